#!/usr/bin/env bash
# Build libaom 3.6.0 (from Debian bookworm's source package) into the av1part cache:
#
#   ${AV1PART_CACHE:-$HOME/.cache/av1part}/libaom-3.6.0/
#       orig/            the unpacked Debian source (aom-3.6.0 with Debian's patches), never edited
#       src/             orig/ + encoder/patches/*.patch applied in order (the libaom fork)
#       build-inspect/   decoder only, CONFIG_INSPECTION=1 (libaom.a for the label extractor)
#       build-enc/       stock aomenc and aomdec, built from orig/ (never patched): the
#                        dataset's encoder and the evaluation's reference
#       build-av1part/   the fork's aomenc and aomdec: src/ with CONFIG_AV1PART=1, linked to
#                        libav1part through pkg-config (the plugin installed by
#                        scripts/install.sh into $CACHE/plugin)
#       bin/av1part-labels  the label extractor (training/labels), linked to build-inspect
#
# Usage: encoder/build-libaom.sh [all|source|inspect|enc|labels|av1part]   (default: all;
#        `all` does not build av1part, which needs the plugin built first)
# Idempotent: every step writes a stamp file holding the inputs it was built from
# (libaom version, patch series hash, configuration); a second run does nothing.
# Environment: AV1PART_CACHE (cache root), AV1PART_BUILD_JOBS (parallel jobs, default nproc).
set -euo pipefail

AOM_VERSION=3.6.0
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
PATCH_DIR="$HERE/patches"
CACHE="${AV1PART_CACHE:-$HOME/.cache/av1part}"
ROOT="$CACHE/libaom-$AOM_VERSION"
JOBS="${AV1PART_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"

log() { printf '[build-libaom] %s\n' "$*" >&2; }
die() { printf '[build-libaom] ERROR: %s\n' "$*" >&2; exit 1; }

# --- prerequisites --------------------------------------------------------------------------
need_tools() {
  local missing=() t pkg
  for t in "$@"; do
    case "$t" in
      cmake) pkg=cmake ;; nasm) pkg=nasm ;; cc) pkg=build-essential ;; make) pkg=make ;;
      ninja) pkg=ninja-build ;; dpkg-source) pkg=dpkg-dev ;; apt-get) pkg=apt ;; patch) pkg=patch ;;
      perl) pkg=perl ;; *) pkg="$t" ;;
    esac
    command -v "$t" >/dev/null 2>&1 || missing+=("$t (apt package: $pkg)")
  done
  if ((${#missing[@]})); then
    die "missing tools: ${missing[*]}. Install them, e.g.: apt-get install cmake nasm ninja-build build-essential dpkg-dev patch"
  fi
}

generator() { if command -v ninja >/dev/null 2>&1; then echo Ninja; else echo "Unix Makefiles"; fi; }

# Hash of the patch series: names and contents, in application order.
patch_series() { (shopt -s nullglob; for p in "$PATCH_DIR"/*.patch; do echo "$p"; done) | sort; }
patch_hash() {
  local p
  { echo "aom-$AOM_VERSION"; for p in $(patch_series); do basename "$p"; cat "$p"; done; } | sha256sum | cut -c1-16
}

stamp_ok() { [[ -f "$1" && "$(cat "$1")" == "$2" ]]; }

# --- step 1: the Debian source package --------------------------------------------------------
ensure_deb_src() {
  # apt-get source needs a deb-src entry. bookworm-security's source index lacks aom, so use
  # bookworm main. We add the entry ourselves only when running as root.
  if apt-get source --print-uris aom >/dev/null 2>&1 && \
     apt-get source --print-uris aom 2>/dev/null | grep -q "aom_${AOM_VERSION}"; then
    return 0
  fi
  local list=/etc/apt/sources.list.d/av1part-deb-src.list
  local line="deb-src http://deb.debian.org/debian bookworm main"
  if [[ $(id -u) -ne 0 ]]; then
    die "apt-get source cannot find aom $AOM_VERSION: add the line '$line' to $list (as root) and run 'apt-get update'"
  fi
  log "adding '$line' to $list and running apt-get update"
  echo "$line" > "$list"
  apt-get update -qq >/dev/null || die "apt-get update failed after adding $list"
  apt-get source --print-uris aom 2>/dev/null | grep -q "aom_${AOM_VERSION}" || \
    die "apt-get source still cannot find aom $AOM_VERSION (tried $list)"
}

fetch_source() {
  local stamp="$ROOT/orig/.av1part-stamp"
  if stamp_ok "$stamp" "aom-$AOM_VERSION"; then return 0; fi
  need_tools apt-get dpkg-source
  ensure_deb_src
  log "fetching the Debian source package of aom $AOM_VERSION"
  local tmp; tmp="$(mktemp -d "$CACHE/.src-XXXXXX")"
  (cd "$tmp" && apt-get source aom >apt-source.log 2>&1) || {
    tail -n 20 "$tmp/apt-source.log" >&2; die "apt-get source aom failed (see above)"; }
  local dir; dir="$(find "$tmp" -maxdepth 1 -type d -name "aom-${AOM_VERSION}*" | head -n1)"
  [[ -n "$dir" && -f "$dir/CMakeLists.txt" ]] || die "apt-get source aom did not unpack aom-$AOM_VERSION in $tmp"
  local dsc; dsc="$(cd "$tmp" && ls aom_*.dsc | head -n1)"
  rm -rf "$ROOT/orig"
  mkdir -p "$ROOT"
  mv "$dir" "$ROOT/orig"
  echo "${dsc%.dsc}" > "$ROOT/orig/.av1part-debian-version"
  rm -rf "$tmp"
  echo "aom-$AOM_VERSION" > "$stamp"
  log "source: $(cat "$ROOT/orig/.av1part-debian-version") in $ROOT/orig"
}

# --- step 2: the patch series (the seam for the libaom fork) --------------------------------
# src/ = orig/ + encoder/patches/*.patch, applied in lexical order with `patch -p1`.
# Any change to the series (added, removed or edited patch) re-creates src/ and every build.
prepare_source() {
  fetch_source
  local h; h="$(patch_hash)"
  if stamp_ok "$ROOT/src/.av1part-stamp" "$h"; then return 0; fi
  need_tools patch
  log "preparing $ROOT/src (patch series $h)"
  rm -rf "$ROOT/src.tmp" "$ROOT/src"
  cp -a "$ROOT/orig" "$ROOT/src.tmp"
  local p
  for p in $(patch_series); do
    log "  applying $(basename "$p")"
    patch -p1 -d "$ROOT/src.tmp" --forward --batch -s < "$p" || die "patch $(basename "$p") does not apply to aom $AOM_VERSION"
  done
  echo "$h" > "$ROOT/src.tmp/.av1part-stamp"
  mv "$ROOT/src.tmp" "$ROOT/src"
}

# --- step 3: builds --------------------------------------------------------------------------
cmake_build() {  # name source(src|orig) "targets" extra-key cmake-args...
  local name="$1" tree="$2" targets="$3" extra="$4"; shift 4
  local bdir="$ROOT/$name" key
  if [[ "$tree" == orig ]]; then key="orig-$AOM_VERSION"; else key="$(patch_hash)"; fi
  key="$key $extra $* targets=$targets"
  if stamp_ok "$bdir/.av1part-stamp" "$key"; then return 0; fi
  need_tools cmake cc nasm perl
  if [[ "$tree" == orig ]]; then fetch_source; else prepare_source; fi
  log "building $name ($targets) with $JOBS jobs; log in $bdir.log"
  rm -rf "$bdir"
  local t0=$SECONDS
  # shellcheck disable=SC2086  # targets is a word list
  if ! { cmake -G "$(generator)" -S "$ROOT/$tree" -B "$bdir" -DCMAKE_BUILD_TYPE=Release \
           -DENABLE_TESTS=0 -DENABLE_DOCS=0 -DENABLE_TOOLS=0 "$@" \
         && cmake --build "$bdir" --target $targets -j "$JOBS"; } >"$bdir.log" 2>&1; then
    tail -n 30 "$bdir.log" >&2
    die "building $name failed (full log: $bdir.log)"
  fi
  echo "$key" > "$bdir/.av1part-stamp"
  log "built $name in $((SECONDS - t0)) s"
}

build_inspect() {
  cmake_build build-inspect src aom "" -DCONFIG_INSPECTION=1 -DCONFIG_AV1_ENCODER=0 -DENABLE_EXAMPLES=0
}

build_enc() {
  # Stock libaom: the unpatched Debian source. CONFIG_LIBYUV=0: Debian patches the sources
  # to use a system libyuv (only for input scaling in aomenc, which av1part never uses).
  cmake_build build-enc orig "aomenc aomdec" "" -DENABLE_EXAMPLES=1 -DCONFIG_LIBYUV=0
}

# The plugin as the fork links it: scripts/install.sh into $CACHE/plugin (refreshed on
# every run, so the fork always loads the plugin of this checkout).
install_plugin() {
  [[ -f "$REPO/target/release/libav1part.so" ]] || \
    die "build the plugin first (cargo build --release, or make setup)"
  AV1PART_NO_BUILD=1 "$REPO/scripts/install.sh" "$CACHE/plugin" >/dev/null || die "installing the plugin into $CACHE/plugin failed"
}

build_av1part() {
  install_plugin
  need_tools pkg-config
  # The ABI is the header: a changed header rebuilds the fork.
  local abi; abi="header=$(sha256sum "$REPO/include/av1part.h" | cut -c1-16)"
  PKG_CONFIG_PATH="$CACHE/plugin/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" \
    cmake_build build-av1part src "aomenc aomdec" "$abi" -DENABLE_EXAMPLES=1 -DCONFIG_LIBYUV=0 -DCONFIG_AV1PART=1
}

build_labels() {
  build_inspect
  need_tools make cc
  make -s -C "$REPO/training/labels" AV1PART_CACHE="$CACHE" >&2 || die "building the label extractor failed"
}

main() {
  mkdir -p "$CACHE" || die "cannot create cache dir $CACHE"
  case "${1:-all}" in
    source) prepare_source ;;
    inspect) build_inspect ;;
    enc) build_enc ;;
    labels) build_labels ;;
    av1part) build_av1part ;;
    all) build_inspect; build_enc; build_labels ;;
    *) die "usage: $0 [all|source|inspect|enc|labels|av1part]" ;;
  esac
  log "ok: $ROOT"
}
main "$@"
