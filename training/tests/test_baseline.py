"""The hand-feature baseline: features computed from the raw block arrays, a
classifier that learns (and does not without its steps), a result per split
and per clip."""
import numpy as np

from av1part_train.baseline import FEATURE_NAMES, block_features, fit, run_baseline


def _arrays(n, rng, bit_depth=8):
    hi = (1 << bit_depth) - 1
    return {"y": rng.integers(0, hi, (n, 16, 16)).astype(np.uint16),
            "u": rng.integers(0, hi, (n, 8, 8)).astype(np.uint16),
            "v": rng.integers(0, hi, (n, 8, 8)).astype(np.uint16),
            "prev_y": rng.integers(0, hi, (n, 16, 16)).astype(np.uint16),
            "bit_depth": np.full(n, bit_depth), "has_prev": rng.integers(0, 2, n).astype(np.uint8),
            "base_qindex": rng.integers(0, 256, n), "frame_type": rng.integers(0, 2, n).astype(np.uint8)}


def test_features_are_finite_and_do_not_depend_on_the_bit_depth_scale():
    rng = np.random.default_rng(0)
    a8 = _arrays(20, rng)
    f8 = block_features(a8)
    assert f8.shape == (20, len(FEATURE_NAMES)) and np.isfinite(f8).all()
    a10 = dict(a8, y=a8["y"] * 4, u=a8["u"] * 4, v=a8["v"] * 4, prev_y=a8["prev_y"] * 4,
               bit_depth=np.full(20, 10))
    f10 = block_features(a10)
    # 10-bit samples of 4x the 8-bit values are the same content (up to 1023 vs 1020)
    assert np.abs(f10 - f8).max() < 0.05
    # a flat block has no variance, a noisy one does
    flat = dict(a8, y=np.full((20, 16, 16), 128, np.uint16))
    i = FEATURE_NAMES.index("lvar")
    assert (block_features(flat)[:, i] == 0).all() and (f8[:, i] > 5).all()


def test_the_classifier_learns_and_fails_without_its_steps():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4000, 6)).astype(np.float32)
    y = ((x[:, 0] + x[:, 1] ** 2) > 1.0).astype(np.int64)
    acc = lambda p: ((p(x).argmax(1) == y).mean())
    assert acc(fit(x, y, 2, "mlp", steps=400)) > 0.9
    assert acc(fit(x, y, 2, "mlp", steps=0)) < 0.8


def test_run_baseline_on_the_synthetic_dataset(synth_dataset):
    r = run_baseline(synth_dataset, "stage1", "linear", steps=50, max_train=2000)
    assert r["train_blocks"] <= 2000 and r["features"] == FEATURE_NAMES
    for split in ("val", "test"):
        s = r["splits"][split]
        assert 0.0 <= s["macro_f1"] <= 1.0 and s["blocks"] > 0
        assert s["clips"] and sum(c["blocks"] for c in s["clips"].values()) == s["blocks"]


def test_a_bundles_probabilities_join_the_features(synth_dataset):
    from pathlib import Path
    from av1part_train.baseline import dataset_features
    from av1part_train.loader import BlockDataset
    from av1part_train.reference import ReferenceBundle
    bundle = Path(__file__).resolve().parents[2] / "onnx" / "test-fused"
    ref = ReferenceBundle(bundle)
    ds = BlockDataset(synth_dataset, "test", ref.spec, stage="stage1", require_all_classes=False)
    plain = dataset_features(ds)
    both = dataset_features(ds, bundle=ref, stage="stage1")
    assert both.shape == (plain.shape[0], plain.shape[1] + 2)
    np.testing.assert_array_equal(both[:, :plain.shape[1]], plain)
    # the two appended columns are log probabilities of one softmax
    np.testing.assert_allclose(np.exp(both[:, -2:]).sum(axis=1), 1.0, atol=1e-4)
    r = run_baseline(synth_dataset, "stage1", "linear", steps=20, max_train=500, with_bundle=bundle)
    assert r["with_bundle"] == str(bundle) and r["splits"]["test"]["blocks"] == plain.shape[0]
