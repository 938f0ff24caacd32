#!/usr/bin/env bash
# Installs the av1part plugin under a prefix:
#   PREFIX/lib/libav1part.so.<abi>  (+ libav1part.so symlink), PREFIX/lib/libav1part.a
#   PREFIX/lib/libonnxruntime.so.1.31.1  (when the set-up installed it: the plugin
#                                         looks for ONNX Runtime next to itself)
#   PREFIX/include/av1part.h
#   PREFIX/lib/pkgconfig/av1part.pc
# Usage: scripts/install.sh PREFIX      (builds with `cargo build --release` first;
#        AV1PART_NO_BUILD=1 installs what target/release already holds)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] && [ -n "$1" ] || { echo "usage: $0 PREFIX" >&2; exit 2; }
mkdir -p "$1"
prefix=$(cd "$1" && pwd)
export PATH="$HOME/.cargo/bin:$PATH"

if [ "${AV1PART_NO_BUILD:-0}" != "1" ]; then
  cargo build --release --quiet
fi
rel=target/release
for f in "$rel/libav1part.so" "$rel/libav1part.a" include/av1part.h; do
  [ -f "$f" ] || { echo "install: missing $f (build first)" >&2; exit 1; }
done

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
abi=$(sed -n 's/^pub const AV1PART_ABI_VERSION: u32 = \([0-9]*\);/\1/p' src/capi.rs)
[ -n "$version" ] && [ -n "$abi" ] || { echo "install: cannot read the version or ABI version" >&2; exit 1; }

install -d "$prefix/lib/pkgconfig" "$prefix/include"
# The shared library's SONAME is libav1part.so.<abi> (set by build.rs).
install -m 0755 "$rel/libav1part.so" "$prefix/lib/libav1part.so.$abi"
ln -sf "libav1part.so.$abi" "$prefix/lib/libav1part.so"
install -m 0644 "$rel/libav1part.a" "$prefix/lib/libav1part.a"
install -m 0644 include/av1part.h "$prefix/include/av1part.h"
ort=.deps/onnxruntime/lib/libonnxruntime.so.1.31.1
if [ -f "$ort" ]; then
  install -m 0755 "$ort" "$prefix/lib/libonnxruntime.so.1.31.1"
else
  echo "install: note: $ort not found; set AV1PART_ORT_LIB at run time" >&2
fi
# Static linking needs the system libraries the Rust standard library uses
# (as printed by `rustc --print native-static-libs` on Linux/glibc).
libs_private="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" -e "s|@LIBS_PRIVATE@|$libs_private|g" \
  av1part.pc.in > "$prefix/lib/pkgconfig/av1part.pc"
echo "installed av1part $version (ABI $abi) under $prefix"
