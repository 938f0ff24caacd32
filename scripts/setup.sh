#!/usr/bin/env bash
# Idempotent set-up of a fresh machine for av1part: system packages, the Python
# environment (.venv) with the locked training packages, the ONNX Runtime
# library the plugin loads, libaom 3.6.0 (inspection decoder + aomenc), and a
# release build of the plugin. Each step checks what is there first, so a
# second run takes seconds.
#
# Environment:
#   AV1PART_WITH_CUDA=1  also install the CUDA execution provider
#                        (onnxruntime-gpu) into .deps/onnxruntime-gpu/
#   AV1PART_SKIP_LIBAOM=1  skip the libaom build (plugin-only set-up)
#   AV1PART_CACHE        cache directory for libaom (default ~/.cache/av1part)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
say() { printf '[setup] %s\n' "$*"; }

# 1. System packages (Debian). Only missing ones are installed.
APT_PKGS=(build-essential pkg-config cmake nasm ninja-build dpkg-dev patch ffmpeg svt-av1 dav1d valgrind python3-venv curl ca-certificates)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "apt: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Rust toolchain (the machine's rustup one).
if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { echo "[setup] error: cargo not found; install a Rust toolchain (rustup)" >&2; exit 1; }

# 3. Python environment with the locked versions, and the training package.
LOCK=training/requirements.lock
STAMP=.venv/.av1part-lock.sha256
want=$(cat "$LOCK" training/pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  say "python: creating .venv from $LOCK (torch is large: a few minutes)"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r "$LOCK"
  if [ -f training/pyproject.toml ]; then
    .venv/bin/pip install -q --no-deps -e training
  fi
  echo "$want" > "$STAMP"
fi

# 4. ONNX Runtime shared library for the plugin, from the locked wheel.
ORT_SRC=$(.venv/bin/python -c 'import onnxruntime,os;print(os.path.join(os.path.dirname(onnxruntime.__file__),"capi"))')
mkdir -p .deps/onnxruntime/lib
for f in libonnxruntime.so.1.31.1 libonnxruntime_providers_shared.so; do
  if [ ! -f ".deps/onnxruntime/lib/$f" ] || ! cmp -s "$ORT_SRC/$f" ".deps/onnxruntime/lib/$f"; then
    cp "$ORT_SRC/$f" .deps/onnxruntime/lib/
  fi
done
if [ "${AV1PART_WITH_CUDA:-0}" = "1" ] && [ ! -f .deps/onnxruntime-gpu/.done ]; then
  say "onnxruntime-gpu: installing the CUDA execution provider into .deps/onnxruntime-gpu"
  .venv/bin/pip install -q --no-deps --target .deps/onnxruntime-gpu/py onnxruntime-gpu==1.31.1
  mkdir -p .deps/onnxruntime-gpu/lib
  cp .deps/onnxruntime-gpu/py/onnxruntime/capi/lib*.so* .deps/onnxruntime-gpu/lib/
  touch .deps/onnxruntime-gpu/.done
fi

# 5. libaom 3.6.0: inspection decoder and aomenc (the dataset tool).
if [ "${AV1PART_SKIP_LIBAOM:-0}" != "1" ] && [ -x encoder/build-libaom.sh ]; then
  encoder/build-libaom.sh
fi

# 6. The plugin.
say "cargo: building the plugin (release)"
cargo build --release --quiet

# 7. The libaom fork (aomenc/aomdec that ask the plugin), linked to the plugin just built.
if [ "${AV1PART_SKIP_LIBAOM:-0}" != "1" ] && [ -x encoder/build-libaom.sh ]; then
  encoder/build-libaom.sh av1part
fi
say "ready"
