"""The committed onnx/test-tiny bundle: loadable with the plugin's checks,
its golden set reproducible from the files, non-degenerate, < 1 MB, and the
generator still produces the same numbers."""
import json
from pathlib import Path

import numpy as np
import pytest

from av1part_train.reference import ReferenceBundle

BUNDLE = Path(__file__).resolve().parents[2] / "onnx" / "test-tiny"


def _check_golden(ref, g):
    blocks = g["blocks"]
    res = ref.run_blocks(blocks, g["skip_below"])
    for i, b in enumerate(blocks):
        np.testing.assert_allclose(res.probabilities[i], b["probabilities"], atol=1e-6)
        assert res.partition[i] == b["partition"]
        for s, p in b["stages"].items():
            assert p is not None  # exact mode runs every stage
            np.testing.assert_allclose(res.stage_probs[s][i], p, atol=1e-6)
    for run in g["skip_runs"]:
        r = ref.run_blocks(blocks, run["skip_below"])
        nulls = 0
        for i, e in enumerate(run["results"]):
            np.testing.assert_allclose(r.probabilities[i], e["probabilities"], atol=1e-6)
            assert abs(sum(e["probabilities"]) - 1) < 1e-6
            for s, p in e["stages"].items():
                nulls += p is None
                assert (p is None) == (not r.ran[s][i])
        assert nulls == run["skipped_stage_runs"] > 0


def test_committed_bundle_reproduces_its_golden_set():
    ref = ReferenceBundle(BUNDLE)
    g = json.loads((BUNDLE / "golden.json").read_text())
    _check_golden(ref, g)
    m = ref.manifest
    assert m["input"]["channels"] == ["y", "u", "v", "prev_y"]
    assert m["input"]["side_features"] == ["qindex", "intra", "has_prev"]
    assert m["data_files"] and m["trunk"]
    assert sum(f.stat().st_size for f in BUNDLE.iterdir()) < 1_000_000
    blocks = g["blocks"]
    assert {b["bit_depth"] for b in blocks} == {8, 10, 12}
    assert {b["prev_y"] is None for b in blocks} == {True, False}
    assert {b["intra"] for b in blocks} == {True, False}
    # non-degenerate: confident and unsure blocks, several partitions win
    top = np.array([max(b["probabilities"]) for b in blocks])
    assert top.min() < 0.5 < top.max()
    assert len({b["partition"] for b in blocks}) >= 4


def test_generator_is_deterministic(tmp_path):
    from av1part_train.testbundle import make_test_bundle
    make_test_bundle(tmp_path / "tb")
    a = json.loads((tmp_path / "tb" / "golden.json").read_text())
    b = json.loads((BUNDLE / "golden.json").read_text())
    assert a["skip_runs"][0]["skip_below"] == b["skip_runs"][0]["skip_below"]
    for x, y in zip(a["blocks"], b["blocks"]):
        assert x["y"] == y["y"] and x["partition"] == y["partition"]
        np.testing.assert_allclose(x["probabilities"], y["probabilities"], atol=1e-6)
