#!/usr/bin/env bash
# Do ONNX Runtime's other code paths change av1part's decisions? Dumps every
# decision of a fixed block set (examples/decision_paths.rs) natively and
# on other paths, and compares them:
#   - the same machine at graph optimisation level `disabled` (unfused kernels);
#   - qemu-user with CPU models without AVX-512: EPYC-Rome (AVX2, the
#     instruction set of the machines where bit-exact tests used to fail) and
#     Nehalem (SSE4.2), so ONNX Runtime's MLAS dispatch picks other kernels.
# qemu's emulation of AVX2 is slow (about 1,000x here), hence the sizes.
#
#   scripts/decision-paths.sh [OUTDIR]      (default out/decisions)
# Environment: DP_JOBS, a space-separated list of bundle:path:random[:frames]
# (path is native, disabled, EPYC-Rome or Nehalem; frames of carphone).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
OUT=${1:-out/decisions}
mkdir -p "$OUT"
JOBS=${DP_JOBS:-"test-tiny:Nehalem:16000 default:EPYC-Rome:1000:10 default:Nehalem:16000 test-tiny:EPYC-Rome:16000"}
cargo build --release --quiet --example decision_paths
TOOL=target/release/examples/decision_paths
Y4M=$(.venv/bin/python -m av1part_train.data fetch-content carphone | awk -F'\t' '$1=="carphone"{print $2}')
command -v qemu-x86_64 >/dev/null || {
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends qemu-user >/dev/null
}
{
  echo "# decision paths, $(date -u +%FT%TZ), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "# native flags: $(grep -o -w -E 'avx512f|avx2|fma' /proc/cpuinfo | sort -u | tr '\n' ' ')"
} > "$OUT/summary.txt"
for job in $JOBS; do
  IFS=: read -r bundle path n frames <<<"$job"
  clip=(); tag="$bundle-$n"
  if [ -n "${frames:-}" ]; then clip=(--y4m "$Y4M" --frames "$frames"); tag="$tag-f$frames"; fi
  base="$OUT/$tag-native.txt"
  [ -s "$base" ] || "$TOOL" dump --bundle "onnx/$bundle" --out "$base" --random "$n" "${clip[@]}"
  other="$OUT/$tag-$path.txt"
  t0=$(date +%s)
  case "$path" in
    disabled) "$TOOL" dump --bundle "onnx/$bundle" --out "$other" --random "$n" "${clip[@]}" --opt disabled ;;
    *) qemu-x86_64 -cpu "$path" "$TOOL" dump --bundle "onnx/$bundle" --out "$other" --random "$n" "${clip[@]}" \
         2> >(grep -v "TCG doesn't support" >&2) ;;
  esac
  {
    echo
    echo "## $bundle, $n random blocks${frames:+ + $frames carphone frames}: native vs $path ($(( $(date +%s) - t0 )) s)"
    "$TOOL" compare "$base" "$other"
  } | tee -a "$OUT/summary.txt"
done
