"""Bad input gives a clear error naming the file, and nothing already written is lost."""
import json
import subprocess
import sys

import numpy as np
import pytest

from av1part_train.data import build as B
from av1part_train.data import shard as S
from av1part_train.data import testing as T
from av1part_train.data.content import fetch_content
from av1part_train.data.errors import DataError
from av1part_train.data.tools import aomenc_path, ensure_tools, extract_labels
from av1part_train.data.y4m import open_y4m, write_y4m


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    try:
        ensure_tools()
        src = fetch_content(["carphone"], verbose=False)["carphone"]
    except DataError as e:
        pytest.fail(f"tools or content unavailable: {e}")
    d = tmp_path_factory.mktemp("err")
    clip = T.crop_y4m(str(src), str(d / "clip.y4m"), 64, 64, 4)
    stream = d / "clip.ivf"
    subprocess.run([str(aomenc_path()), "--good", "--cpu-used=6", "--end-usage=q", "--cq-level=30",
                    "--threads=1", "--ivf", "-o", str(stream), clip], check=True, capture_output=True)
    return d, clip, stream


def _y4m_raw(path, header, frames, frame_bytes):
    with open(path, "wb") as f:
        f.write(header.encode() + b"\n")
        for _ in range(frames):
            f.write(b"FRAME\n" + bytes(frame_bytes))
    return str(path)


# ------------------------------------------------------------------------------- streams --
def test_truncated_stream(env, tmp_path):
    d, clip, stream = env
    bad = tmp_path / "trunc.ivf"
    data = stream.read_bytes()
    bad.write_bytes(data[: len(data) - 100])
    out = tmp_path / "trunc.txt"
    with pytest.raises(DataError, match=r"trunc\.ivf.*truncated"):
        extract_labels(str(bad), str(out))
    assert not out.exists() and not (tmp_path / "trunc.txt.tmp").exists()


def test_corrupt_stream(env, tmp_path):
    d, clip, stream = env
    data = bytearray(stream.read_bytes())
    for i in range(60, min(len(data), 300)):  # the sequence header and key frame header
        data[i] ^= 0x5A
    bad = tmp_path / "corrupt.ivf"
    bad.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"corrupt\.ivf.*(corrupt|unsupported|error)"):
        extract_labels(str(bad), str(tmp_path / "c.txt"))
    nonav1 = tmp_path / "garbage.ivf"
    nonav1.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match=r"garbage\.ivf"):
        extract_labels(str(nonav1), str(tmp_path / "g.txt"))


def test_stream_dimensions_differ_from_source(env, tmp_path):
    d, clip, stream = env
    other = T.crop_y4m(clip, str(tmp_path / "other.y4m"), 48, 64, 4)
    out = tmp_path / "shard"
    r = subprocess.run([sys.executable, "-m", "av1part_train.data", "shard", str(out), "--stream",
                        str(stream), "--source", other], capture_output=True, text=True)
    assert r.returncode == 2
    assert "clip.ivf" in r.stderr and "64x64" in r.stderr and "other.y4m is 48x64" in r.stderr
    assert not (out / "shard.json").exists()


def test_stream_frame_count_differs_from_source(env, tmp_path):
    d, clip, stream = env
    longer = T.crop_y4m(str(fetch_content(["carphone"], verbose=False)["carphone"]),
                        str(tmp_path / "longer.y4m"), 64, 64, 6)
    with pytest.raises(DataError, match=r"clip\.ivf: stream shows 4 frames but its source .*longer\.y4m has 6"):
        lab = extract_labels(str(stream), str(tmp_path / "l.txt"))
        S.write_shard(tmp_path / "s", lab, open_y4m(longer), 30, {}, str(stream))
    assert not (tmp_path / "s" / "shard.json").exists()


def test_good_stream_makes_a_shard(env, tmp_path):
    d, clip, stream = env
    out = tmp_path / "shard"
    r = subprocess.run([sys.executable, "-m", "av1part_train.data", "shard", str(out), "--stream",
                        str(stream), "--source", clip, "--cq", "30"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert S.is_complete(out)


# ---------------------------------------------------------------------------------- Y4M --
def test_y4m_odd_size(tmp_path):
    p = _y4m_raw(tmp_path / "odd.y4m", "YUV4MPEG2 W65 H64 F30:1 Ip C420jpeg", 2, 65 * 64 * 3 // 2)
    with pytest.raises(DataError, match=r"odd\.y4m: odd frame size 65x64"):
        open_y4m(p)


@pytest.mark.parametrize("tag,name", [("C422", "4:2:2"), ("C444", "4:4:4"), ("C422p10", "4:2:2"),
                                      ("Cmono", "monochrome")])
def test_y4m_chroma_not_420(tmp_path, tag, name):
    p = _y4m_raw(tmp_path / "c.y4m", f"YUV4MPEG2 W64 H64 F30:1 Ip {tag}", 2, 64 * 64 * 3)
    with pytest.raises(DataError, match=rf"c\.y4m: chroma format {name}"):
        open_y4m(p)


def test_y4m_truncated_frame(tmp_path):
    p = tmp_path / "t.y4m"
    _y4m_raw(p, "YUV4MPEG2 W64 H64 F30:1 Ip C420jpeg", 3, 64 * 64 * 3 // 2)
    data = p.read_bytes()
    p.write_bytes(data[:-1000])
    with pytest.raises(DataError, match=r"t\.y4m: frame 2 is truncated"):
        open_y4m(str(p))


def test_y4m_not_y4m(tmp_path):
    p = tmp_path / "n.y4m"
    p.write_bytes(b"RIFF....\n" + bytes(100))
    with pytest.raises(DataError, match=r"n\.y4m: not a Y4M"):
        open_y4m(str(p))


def test_y4m_ten_bit_reads(tmp_path):
    y = (np.arange(64 * 64).reshape(64, 64) % 1024).astype(np.uint16)
    u = np.full((32, 32), 512, np.uint16)
    write_y4m(str(tmp_path / "ten.y4m"), [(y, u, u)], 64, 64, 10)
    s = open_y4m(str(tmp_path / "ten.y4m"))
    assert s.bit_depth == 10 and s.frames == 1
    assert (s.frame(0)[0] == y).all()


def test_build_rejects_bad_input_by_name(env, tmp_path):
    d, clip, stream = env
    bad = _y4m_raw(tmp_path / "bad422.y4m", "YUV4MPEG2 W64 H64 F30:1 Ip C422", 2, 64 * 64 * 2)
    r = subprocess.run([sys.executable, "-m", "av1part_train.data", "build", str(tmp_path / "ds"),
                        clip, bad, "--cq", "30", "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "bad422.y4m" in r.stderr and "4:2:2" in r.stderr


def test_failed_job_keeps_finished_shards(env, tmp_path):
    """A corrupt stream left in a dataset directory fails its job with the file's name; the
    finished shards stay complete and untouched, and no manifest claims completion."""
    d, clip, stream = env
    out = tmp_path / "ds"
    recipe = B.load_recipe(None, dict(cpu_used=6, cq_levels=[30, 40], max_frames=4, segment_frames=0))
    B.build(str(out), [clip], recipe, jobs=1, progress=False, keep_work=True)
    (out / "manifest.json").unlink()
    good = out / "shards" / "clip__cq30"
    mtimes = {f.name: f.stat().st_mtime_ns for f in good.iterdir()}
    broken = out / "shards" / "clip__cq40"
    (broken / "shard.json").unlink()
    s = out / "streams" / "clip__cq40.ivf"
    s.write_bytes(s.read_bytes()[:-50])
    with pytest.raises(DataError, match=r"clip__cq40\.ivf.*truncated"):
        B.build(str(out), [clip], recipe, jobs=1, progress=False)
    assert {f.name: f.stat().st_mtime_ns for f in good.iterdir()} == mtimes
    assert S.is_complete(good) and not S.is_complete(broken)
    assert not (out / "manifest.json").exists()
    s.unlink()  # the fix: remove the broken stream; the job re-encodes it
    B.build(str(out), [clip], recipe, jobs=1, progress=False)
    assert json.loads((out / "manifest.json").read_text())["total"] > 0
