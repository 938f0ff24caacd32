"""The encoder evaluation tool: its parts, and one small end-to-end run on a real clip."""
import json
import struct
import subprocess
import sys

import numpy as np
import pytest

from av1part_train.data import testing as T
from av1part_train.data.errors import DataError
from av1part_train.data.y4m import write_y4m
from av1part_train.encoder_eval import fork_aomenc, frame_md5s, ivf_payload_bytes, parse_configs, psnr_planes


def test_configurations_parse_and_bad_ones_are_refused():
    got = parse_configs("prune:0.05, keep:3,recall:0.9,force,oracle,oracle-node,off,force@block,recall:0.9+square")
    assert [c.spec for c in got] == ["prune:0.05", "keep:3", "recall:0.9", "force", "oracle", "oracle-node", "off",
                                     "force@block", "recall:0.9+square"]
    assert got[-1].parts() == ("recall", "0.9", "square", False)
    assert "--av1part-always=none,split" in got[-1].av1part_args("m", "s")
    assert not any(a.startswith("--av1part-always") for a in got[0].av1part_args("m", "s"))
    assert "--av1part-call=block" in got[-2].av1part_args("m", "s") and "--av1part-mode=force" in got[-2].av1part_args("m", "s")
    assert not any(a.startswith("--av1part-call") for a in got[0].av1part_args("m", "s"))
    for bad in ["prune", "prune:2", "keep:0", "keep:11", "recall:0", "force:1", "magic", "oracle@block", "oracle-node@block", "oracle-node:1", "off@block",
                "oracle+none", "prune:0.1+all", "force+"]:
        with pytest.raises(DataError):
            parse_configs(bad)


def test_ivf_payload_excludes_headers(tmp_path):
    p = tmp_path / "a.ivf"
    hdr = b"DKIF" + struct.pack("<HHIHHIIII", 0, 32, 0x31305641, 16, 16, 30, 1, 2, 0)
    frames = [b"x" * 7, b"y" * 100]
    body = b"".join(struct.pack("<IQ", len(f), i) + f for i, f in enumerate(frames))
    p.write_bytes(hdr + body)
    assert ivf_payload_bytes(p) == (107, 2)
    p.write_bytes(hdr + body[:-3])
    with pytest.raises(DataError, match="truncated"):
        ivf_payload_bytes(p)


def test_psnr_and_frame_md5s(tmp_path):
    rng = np.random.default_rng(0)
    w, h = 32, 16
    frames = [tuple(rng.integers(0, 256, s, dtype=np.uint16) for s in ((h, w), (h // 2, w // 2), (h // 2, w // 2)))
              for _ in range(2)]
    src = tmp_path / "s.y4m"
    write_y4m(str(src), iter(frames), w, h, 8, "30:1")
    dec = tmp_path / "d.yuv"
    raw = []
    for y, u, v in frames:  # Y off by 2 everywhere (MSE 4), U exact, V off by 1 (MSE 1)
        raw.append(np.clip(y.astype(int) + np.where(y < 128, 2, -2), 0, 255).astype(np.uint8).tobytes()
                   + u.astype(np.uint8).tobytes()
                   + np.clip(v.astype(int) + np.where(v < 128, 1, -1), 0, 255).astype(np.uint8).tobytes())
    dec.write_bytes(b"".join(raw))
    p = psnr_planes(str(src), dec, 2)
    assert p["psnr_y"] == pytest.approx(10 * np.log10(255 ** 2 / 4))
    assert p["psnr_u"] == 100.0
    assert p["psnr_v"] == pytest.approx(10 * np.log10(255 ** 2))
    assert p["psnr_yuv"] == pytest.approx((6 * p["psnr_y"] + p["psnr_u"] + p["psnr_v"]) / 8)
    md5 = frame_md5s(dec, w * h * 3 // 2)
    assert len(md5) == 2 and md5[0] != md5[1]
    with pytest.raises(DataError, match="2 decoded frames, expected 3"):
        psnr_planes(str(src), dec, 3)


def test_small_evaluation_end_to_end(tmp_path, carphone_y4m):
    """Every configuration on a 4-frame crop at --cpu-used=6: the report is complete, the
    'off' stream is stock's, every stream conforms and the oracle finds stock's partitions."""
    if not fork_aomenc().exists():
        pytest.fail(f"{fork_aomenc()} missing: the set-up builds it")
    clip = T.crop_y4m(carphone_y4m, str(tmp_path / "owncp.y4m"), 160, 112, 4)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "av1part_train.encoder_eval", "--y4m", clip, "--frames", "4", "--preset", "6",
           "--presets", "5,6", "--configs", "prune:0.05,force,oracle,oracle-node,off", "--reps", "1", "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((out / "encoder-eval.json").read_text())
    rows = {(x["clip"], x["config"]): x for x in s["rows"]}
    for cfg in ["stock:5", "stock:6", "prune:0.05", "force", "oracle", "oracle-node", "off"]:
        row = rows[("owncp", cfg)]
        assert row["conformance"] is True
        assert row["bd_psnr_yuv"] is not None and row["match_16x16"] is not None
    assert rows[("owncp", "off")]["identical_streams"] is True
    assert rows[("owncp", "stock:6")]["bd_psnr_yuv"] == pytest.approx(0.0, abs=1e-9)
    assert rows[("owncp", "oracle")]["match_16x16"] > 0.9
    assert rows[("owncp", "oracle")]["oracle_mismatch"] == 0
    # oracle-node also restricts the nodes stock coded inside larger blocks.
    assert rows[("owncp", "oracle-node")]["oracle_mismatch"] == 0
    assert rows[("owncp", "oracle-node")]["restricted_share"] > rows[("owncp", "oracle")]["restricted_share"]
    assert (out / "encoder-eval.png").stat().st_size > 1000
    assert "| owncp | prune:0.05 |" in (out / "encoder-eval.md").read_text()
    # A second run resumes: every encode is taken from the work directory.
    r2 = subprocess.run(cmd, capture_output=True, text=True)
    assert r2.returncode == 0 and r2.stderr.count("cached") == 28, r2.stderr[-1500:]
    # Another preset as the reference: its stock encodes are reused from the plane, and the
    # oracle's label file is extracted from the cached stream.
    cmd3 = [sys.executable, "-m", "av1part_train.encoder_eval", "--y4m", clip, "--frames", "4", "--preset", "5",
            "--presets", "5", "--configs", "oracle", "--reps", "1", "--out", str(out)]
    r3 = subprocess.run(cmd3, capture_output=True, text=True)
    assert r3.returncode == 0, r3.stderr[-2000:]
    rows3 = {(x["clip"], x["config"]): x for x in json.loads((out / "encoder-eval.json").read_text())["rows"]}
    assert rows3[("owncp", "oracle")]["oracle_mismatch"] == 0
    assert rows3[("owncp", "oracle")]["match_16x16"] > 0.9
