"""External tools: the libaom build (aomenc, the label extractor), ffmpeg.

Paths follow docs/CONTRACTS.md: ``${AV1PART_CACHE:-$HOME/.cache/av1part}/libaom-3.6.0/``.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from ..hashing import sha256_file  # noqa: F401  (re-exported)

AOM_VERSION = "3.6.0"
REPO = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO / "encoder" / "build-libaom.sh"


def cache_dir() -> Path:
    return Path(os.environ.get("AV1PART_CACHE") or Path.home() / ".cache" / "av1part")


def aom_root() -> Path:
    return cache_dir() / f"libaom-{AOM_VERSION}"


def aomenc_path() -> Path:
    return aom_root() / "build-enc" / "aomenc"


def labels_path() -> Path:
    return aom_root() / "bin" / "av1part-labels"


def ensure_tools(build: bool = True) -> None:
    """Makes sure aomenc and the label extractor exist (runs encoder/build-libaom.sh)."""
    missing = [p for p in (aomenc_path(), labels_path()) if not p.exists()]
    # the extractor is cheap to rebuild when its sources changed; make decides
    if build and BUILD_SCRIPT.exists():
        if missing:
            print(f"[av1part-data] building libaom tools into {aom_root()} (a few minutes)", flush=True)
        r = subprocess.run(["bash", str(BUILD_SCRIPT), "all"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise DataError(f"{BUILD_SCRIPT}: failed:\n{r.stdout[-3000:]}")
    missing = [p for p in (aomenc_path(), labels_path()) if not p.exists()]
    if missing:
        raise DataError(f"missing tools: {', '.join(map(str, missing))}; run {BUILD_SCRIPT}")


def ffmpeg_path() -> str:
    p = shutil.which("ffmpeg")
    if not p:
        raise DataError("ffmpeg not found (apt-get install ffmpeg)")
    return p


@functools.lru_cache(maxsize=None)
def tool_versions() -> dict:
    """Versions recorded in the manifest."""
    v = {"libaom": AOM_VERSION}
    deb = aom_root() / "orig" / ".av1part-debian-version"
    if deb.exists():
        v["libaom_source"] = deb.read_text().strip()
    stamp = aom_root() / "src" / ".av1part-stamp"
    if stamp.exists():
        v["libaom_patch_series"] = stamp.read_text().strip()
    try:
        out = subprocess.run([str(aomenc_path()), "--help"], capture_output=True, text=True).stdout
        m = re.search(r"av1\s+-\s+(AOMedia Project AV1 Encoder[^\n]*)", out)
        if m:
            v["aomenc"] = m.group(1).strip()
    except OSError:
        pass
    try:
        v["av1part_labels"] = subprocess.run([str(labels_path()), "--version"], capture_output=True,
                                             text=True).stdout.strip()
        v["av1part_labels_sha256"] = sha256_file(labels_path())[:16]
    except OSError:
        pass
    return v


# ------------------------------------------------------------------------- label files --
@dataclass
class StreamLabels:
    path: str
    width: int
    height: int
    bit_depth: int
    frames: list[dict]        # one per displayed frame, in display order
    nodes: np.ndarray          # int32 [N, 9]: display decode x y partition frame_type qindex edge existing
    summary: dict              # decoded, displayed, nodes, hidden_never_shown

    COLS = ("display", "decode", "x", "y", "partition", "frame_type", "base_qindex", "edge", "existing")


def _kv(tokens):
    out = {}
    for t in tokens:
        if "=" in t:
            k, v = t.split("=", 1)
            out[k] = v
    return out


def read_labels(path: str) -> StreamLabels:
    """Parses the text output of av1part-labels."""
    header, frames, rows, end = None, [], [], None
    with open(path) as f:
        for line in f:
            if line.startswith("# av1part-labels"):
                header = _kv(line.split()[2:])
            elif line.startswith("# frame"):
                d = {k: (int(v) if k != "stream" else v) for k, v in _kv(line.split()[2:]).items()}
                frames.append(d)
            elif line.startswith("# end"):
                end = {k: int(v) for k, v in _kv(line.split()[2:]).items()}
            elif line.strip() and not line.startswith("#"):
                rows.append(line)
    if header is None:
        raise DataError(f"{path}: not an av1part-labels output")
    if end is None:
        raise DataError(f"{path}: incomplete av1part-labels output (no end line)")
    nodes = (np.loadtxt(rows, dtype=np.int32, ndmin=2) if rows
             else np.zeros((0, len(StreamLabels.COLS)), np.int32))
    if nodes.shape[1] != len(StreamLabels.COLS):
        raise DataError(f"{path}: expected {len(StreamLabels.COLS)} columns per node")
    return StreamLabels(path=path, width=int(header["width"]), height=int(header["height"]),
                        bit_depth=int(header["bit_depth"]), frames=frames, nodes=nodes, summary=end)


def extract_labels(stream: str, out: str, all_decoded: bool = False, env: dict | None = None) -> StreamLabels:
    """Runs av1part-labels on an IVF/OBU stream; raises DataError naming the stream on failure."""
    cmd = [str(labels_path())] + (["--all-decoded"] if all_decoded else []) + ["-o", str(out), str(stream)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        msg = r.stderr.strip() or f"exit status {r.returncode}"
        raise DataError(f"{stream}: label extraction failed: {msg}")
    return read_labels(out)


_FNV_OFFSET, _FNV_PRIME, _MASK64 = 0xcbf29ce484222325, 0x100000001b3, (1 << 64) - 1


def source_hash(y4m: str) -> str:
    """FNV-1a 64 of a clip's first frame luma, each sample as two bytes (low, high), in
    16 hex digits: the `source=` of an oracle label file, which the fork checks against the
    first frame it is given (encoder/patches/0002, av1part_hook_check_source)."""
    from .y4m import open_y4m
    y, _, _ = open_y4m(y4m).frame(0)
    h = _FNV_OFFSET
    for b in y.astype("<u2").tobytes():
        h = ((h ^ b) * _FNV_PRIME) & _MASK64
    return f"{h:016x}"


def stamp_source(labels: str, y4m: str) -> str:
    """Names the clip an oracle label file belongs to: appends `source=<source_hash>` to its
    header line (replacing an earlier one); returns the hash."""
    lines = Path(labels).read_text().splitlines(keepends=True)
    if not lines or not lines[0].startswith("# av1part-labels"):
        raise DataError(f"{labels}: not an av1part-labels output")
    h = source_hash(y4m)
    head = re.sub(r" source=[0-9a-f]{16}$", "", lines[0].rstrip("\n"))   # the field this function appends
    lines[0] = f"{head} source={h}\n"
    Path(labels).write_text("".join(lines))
    return h
