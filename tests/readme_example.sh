#!/usr/bin/env bash
# Compiles the C example of README.md exactly as written, with
# gcc -Wall -Wextra -Werror, links it against the release build, and runs it
# on the test bundle: the README's example must stay true.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
awk '/^```c$/{on=1; next} /^```$/{if (on) exit} on' README.md > "$work/example.c"
[ -s "$work/example.c" ] || { echo "readme_example: no \`\`\`c block in README.md" >&2; exit 1; }
# The shared library's SONAME is libav1part.so.<abi>, as the install step names it.
abi=$(sed -n 's/^#define AV1PART_ABI_VERSION \([0-9]*\)$/\1/p' include/av1part.h)
mkdir -p "$work/lib"
ln -s "$PWD/target/release/libav1part.so" "$work/lib/libav1part.so"
ln -s "$PWD/target/release/libav1part.so" "$work/lib/libav1part.so.$abi"
gcc -std=c11 -Wall -Wextra -Werror -Iinclude "$work/example.c" -L"$work/lib" -lav1part \
    -Wl,-rpath,"$work/lib" -o "$work/example"
out=$("$work/example" onnx/test-tiny)
echo "$out"
echo "$out" | grep -Eq '^partition (NONE|HORZ|VERT|SPLIT|HORZ_A|HORZ_B|VERT_A|VERT_B|HORZ_4|VERT_4) \(p = [01]\.[0-9]{3}\) on (CPU|CUDA)$'
echo "readme_example: 1 passed, 0 failed"
