"""The reference cascade's semantics (CONTRACTS.md) on a hand-made manifest."""
import numpy as np
import pytest

from av1part_train.metrics import cascade_metrics
from av1part_train.models.stage import STAGES
from av1part_train.reference import BundleError, run_cascade, stage_topology

MANIFEST = {"cascade": {"root": "stage1", "skip_below": 0.0},
            "stages": [{"name": s, "classes": STAGES[s], "prior": p} for s, p in (
                ("stage1", [0.6, 0.4]), ("stage2", [0.2, 0.5, 0.3]),
                ("stage3_rect", [0.4, 0.3, 0.2, 0.1]), ("stage3_ab", [0.25, 0.25, 0.25, 0.25]))]}
P = {"stage1": [0.3, 0.7], "stage2": [0.1, 0.6, 0.3], "stage3_rect": [0.5, 0.2, 0.2, 0.1],
     "stage3_ab": [0.1, 0.2, 0.3, 0.4]}


def fn(stage, idx):
    return np.tile(np.asarray(P[stage], np.float32), (len(idx), 1))


def test_exact_mode_by_hand():
    r = run_cascade(MANIFEST, 2, fn, 0.0)
    p = r.probabilities[0]
    assert p.sum() == pytest.approx(1.0)
    assert p[0] == pytest.approx(0.3)                       # NONE
    assert p[3] == pytest.approx(0.7 * 0.1, rel=1e-6)         # SPLIT
    assert p[1] == pytest.approx(0.7 * 0.6 * 0.5, rel=1e-6)   # HORZ
    assert p[7] == pytest.approx(0.7 * 0.3 * 0.4, rel=1e-6)   # VERT_B
    assert r.partition[0] == 0 and all(r.ran[s].all() for s in r.ran)


def test_skip_spreads_prior_recursively():
    # stage2 mass 0.7 >= 0.5 runs; stage3_rect mass 0.42 < 0.5 -> prior; stage3_ab 0.21 -> prior
    r = run_cascade(MANIFEST, 1, fn, 0.5)
    assert r.ran["stage1"][0] and r.ran["stage2"][0]
    assert not r.ran["stage3_rect"][0] and not r.ran["stage3_ab"][0]
    assert np.isnan(r.stage_probs["stage3_rect"][0]).all()
    assert r.probabilities[0, 1] == pytest.approx(0.7 * 0.6 * 0.4, rel=1e-6)
    assert r.probabilities[0].sum() == pytest.approx(1.0)
    # stage2 skipped too: its children are not run even with skip_below above their masses
    r = run_cascade(MANIFEST, 1, fn, 0.8)
    assert not r.ran["stage2"][0]
    assert r.probabilities[0, 3] == pytest.approx(0.7 * 0.2, rel=1e-6)
    assert r.probabilities[0, 4] == pytest.approx(0.7 * 0.3 * 0.25, rel=1e-6)


def test_tie_goes_to_lowest_partition():
    m = {"cascade": {"root": "s"}, "stages": [{"name": "s", "prior": [0.5, 0.5], "classes": [
        {"name": "a", "partition": "VERT"}, {"name": "b", "partition": "HORZ"}]}]}
    r = run_cascade(m, 1, lambda s, i: np.array([[0.5, 0.5]], np.float32), 0.0)
    assert r.partition[0] == 1  # HORZ=1 < VERT=2


def test_topology_errors():
    bad = {"cascade": {"root": "s"}, "stages": [{"name": "s", "prior": [1.0], "classes": [
        {"name": "a", "partition": "DIAG"}]}]}
    with pytest.raises(BundleError, match="unknown partition"):
        stage_topology(bad)
    dup = {"cascade": {"root": "s"}, "stages": [{"name": "s", "prior": [0.5, 0.5], "classes": [
        {"name": "a", "partition": "NONE"}, {"name": "b", "partition": "NONE"}]}]}
    with pytest.raises(BundleError, match="more than one leaf"):
        stage_topology(dup)


def test_error_attribution():
    r = run_cascade(MANIFEST, 4, fn, 0.0)
    # every block predicted NONE (0.3 vs ...)? argmax: NONE 0.3 is the largest leaf
    labels = np.array([0, 3, 1, 4])  # right, SPLIT (stage2 says RECT), HORZ (path argmaxes all right), HORZ_A
    m = cascade_metrics(r, labels, MANIFEST)
    e = {k: v["count"] for k, v in m["errors_enter_at"].items()}
    # stage1 argmax is PARTITION (0.7): right for 3/1/4; stage2 argmax RECT: wrong for SPLIT and AB
    assert e["stage2"] == 2 and e["mixing"] == 1 and e["stage1"] == 0
