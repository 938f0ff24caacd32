#!/usr/bin/env bash
# Installs av1part into a temporary prefix (scripts/install.sh) and links the
# README's C example through pkg-config, shared and static, with the
# README's commands; both programs must run on the test bundle, and the
# static one must not need libav1part.so.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
AV1PART_NO_BUILD=1 scripts/install.sh "$work/prefix" >/dev/null
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
awk '/^```c$/{on=1; next} /^```$/{if (on) exit} on' README.md > "$work/my_encoder.c"
cd "$work"
gcc -Wall -O2 my_encoder.c $(pkg-config --cflags --libs av1part) \
    -Wl,-rpath,$(pkg-config --variable=libdir av1part) -o my_encoder
gcc -Wall -O2 my_encoder.c $(pkg-config --cflags av1part) \
    -Wl,-Bstatic $(pkg-config --libs av1part) -Wl,-Bdynamic \
    $(pkg-config --static --libs-only-l av1part | sed 's/-lav1part //') -o my_encoder_static
cd - >/dev/null
pass=0; fail=0
check() { if "$@"; then pass=$((pass + 1)); else echo "FAIL: $*" >&2; fail=$((fail + 1)); fi; }
check "$work/my_encoder" onnx/test-tiny
check "$work/my_encoder_static" onnx/test-tiny
if ldd "$work/my_encoder_static" | grep -q libav1part; then
  echo "FAIL: the static program still needs libav1part.so" >&2; fail=$((fail + 1))
else pass=$((pass + 1)); fi
echo "install_pkgconfig: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
