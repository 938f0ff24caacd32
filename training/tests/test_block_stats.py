"""Block statistics computed in the graph (layers/block_stats.py): the values,
their invariances, the model that uses them (checkpoint, export, compaction),
and the committed onnx/test-stats bundle."""
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from av1part_train import baseline
from av1part_train.checkpoint import model_args
from av1part_train.compact import compact_bundle, max_output_diff
from av1part_train.config import TrainConfig
from av1part_train.export import ExportError, export_bundle
from av1part_train.layers.block_stats import REGIONS, BlockStats, patchify
from av1part_train.models.stage import StageModel, pool_features
from av1part_train.tensor import InputSpec, build_x
from av1part_train.testbundle import REGENERATED_TOLERANCE

ONNX = Path(__file__).resolve().parents[2] / "onnx"
SPEC = InputSpec.create(("y", "u", "v", "prev_y"), ("qindex", "intra", "has_prev"),
                        mean=(0.5, 0.5, 0.5, 0.5), std=(0.25, 0.2, 0.2, 0.25))


def _blocks(n=48, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 256, (n, 16, 16))
    y[:8] = rng.integers(90, 110, (8, 1, 1))          # flat blocks
    y[8:16, :8] = 50                                  # a flat half in a textured block
    y[16:24] = np.linspace(0, 255, 16).astype(int)     # a vertical ramp: x gradients only
    u, v = rng.integers(0, 256, (n, 8, 8)), rng.integers(0, 256, (n, 8, 8))
    p = np.clip(y + rng.integers(-12, 12, (n, 16, 16)), 0, 255)
    return y, u, v, p


def _stats(spec, y, u, v, p, bd=8):
    bs = BlockStats(spec.channels, spec.mean, spec.std)
    x = torch.from_numpy(build_x(spec, y, u, v, p, bd))
    return bs, bs(patchify(x, spec.num_channels)).numpy()


def test_the_statistics_are_the_baselines_within_float32_rounding():
    """The graph's statistics are the hand features ``baseline.py`` beat the CNNs with
    (different normalisations per channel included)."""
    y, u, v, p = _blocks()
    bs, f = _stats(SPEC, y, u, v, p)
    n = len(y)
    want = baseline.block_features(dict(y=y, u=u, v=v, prev_y=p, bit_depth=np.full(n, 8), has_prev=np.ones(n),
                                        base_qindex=np.full(n, 100), frame_type=np.zeros(n)))
    names = baseline.FEATURE_NAMES
    pairs = {"mean": "mean", "lvar_block": "lvar", "lvar_top": "lvar_top", "lvar_bottom": "lvar_bottom",
             "lvar_left": "lvar_left", "lvar_right": "lvar_right", "lvar_u": "lvar_u", "lvar_v": "lvar_v",
             "lmad_block": "lmad", "lvar_diff": "lvar_diff"}
    pairs |= {f"lvar_q{i}": f"lvar_q{i}" for i in range(4)} | {f"lmad_q{i}": f"lmad_q{i}" for i in range(4)}
    for mine, theirs in pairs.items():
        np.testing.assert_allclose(f[:, bs.names.index(mine)], want[:, names.index(theirs)], atol=0.01,
                                   err_msg=mine)
    # the 16x4 strips: what baseline's horz4/vert4 gains are made of
    hs = np.log1p((y.astype(np.float64).reshape(-1, 4, 4, 16)).var(axis=(2, 3)))
    vs = np.log1p((y.astype(np.float64).reshape(-1, 16, 4, 4)).var(axis=(1, 3)))
    np.testing.assert_allclose(f[:, [bs.names.index(f"lvar_hstrip{i}") for i in range(4)]], hs, atol=0.01)
    np.testing.assert_allclose(f[:, [bs.names.index(f"lvar_vstrip{i}") for i in range(4)]], vs, atol=0.01)
    # the gradients: mean |difference| of neighbours inside each 4x4 cell, in 8-bit units
    yf = y.astype(np.float64)
    gx = np.abs(np.diff(yf, axis=2)).reshape(-1, 16, 15)[:, :, [c for c in range(15) if c % 4 != 3]]
    gy = np.abs(np.diff(yf, axis=1)).reshape(-1, 15, 16)[:, [r for r in range(15) if r % 4 != 3], :]
    np.testing.assert_allclose(f[:, bs.names.index("lgx")], np.log1p(gx.mean(axis=(1, 2))), atol=0.01)
    np.testing.assert_allclose(f[:, bs.names.index("lgy")], np.log1p(gy.mean(axis=(1, 2))), atol=0.01)
    assert len(REGIONS) == 17 and bs.num_features == f.shape[1] == 28


def test_flat_blocks_and_ramps_read_as_such():
    y, u, v, p = _blocks()
    bs, f = _stats(SPEC, y, u, v, p)
    lvar = [bs.names.index(f"lvar_{r}") for r in REGIONS]
    assert np.abs(f[:8][:, lvar]).max() < 1e-3                      # flat: no variance anywhere
    assert np.abs(f[8:16, bs.names.index("lvar_q0")]).max() < 0.01   # the flat half's quadrant
    assert (f[16:24, bs.names.index("lgx")] > 2).all() and np.abs(f[16:24, bs.names.index("lgy")]).max() < 1e-6


def test_the_statistics_do_not_depend_on_the_bit_depth():
    y, u, v, p = _blocks()
    _, f8 = _stats(SPEC, y, u, v, p, 8)
    _, f10 = _stats(SPEC, y * 4, u * 4, v * 4, p * 4, 10)
    np.testing.assert_allclose(f10, f8, atol=0.02)   # 4 * s / 1023 against s / 255: 0.3 % apart


def test_without_prev_y_or_chroma_those_statistics_are_left_out():
    spec = InputSpec.create(("y",), ())
    bs = BlockStats(spec.channels, spec.mean, spec.std)
    assert bs.names[-1] == "lgy" and bs.num_features == 20
    x = torch.randn(3, 1, 16, 16)
    assert bs(patchify(x, 1)).shape == (3, 20)
    with pytest.raises(ValueError, match="y channel"):
        BlockStats(("u",), (0.5,), (0.25,))


def _stats_model(stage="stage1", mode="full"):
    cfg = {"channels": list(SPEC.channels), "mean": list(SPEC.mean), "std": list(SPEC.std)}
    return StageModel(stage, "blocknet8", SPEC.num_channels, SPEC.num_side, stem="patch4", mode=mode,
                      block_stats=cfg)


def test_a_stats_model_rebuilds_from_its_checkpoint_args_and_trains_its_normalisation():
    torch.manual_seed(0)
    m = _stats_model("stage2", "adapter")
    assert "stats_norm.weight" in m.trainable_state_dict()
    assert any(p is m.stats_norm.weight for p in m.param_groups()["head"])
    x, side = torch.randn(6, 4, 16, 16), torch.rand(6, 3)
    m.train()
    m(x, side).sum().backward()
    assert m.stats_norm.weight.grad is not None and m.stats_norm.weight.grad.abs().sum() > 0
    m.eval()
    args = model_args(m, TrainConfig())
    assert args["block_stats"]["std"] == list(SPEC.std)
    m2 = StageModel(**args)
    m2.load_state_dict(m.state_dict())
    m2.eval()
    torch.testing.assert_close(m2(x, side), m(x, side))
    # the eval-mode normalisation (exported as Mul + Add) is the BatchNorm's
    stats = m.compute_stats(x)
    feats = m.forward_features(x)
    bn = m.stats_norm
    want = m.head(torch.cat([pool_features(feats, m.pool), bn(stats)], dim=1), side)
    torch.testing.assert_close(m.forward_head(feats, side, stats=stats), want)
    with pytest.raises(ValueError, match="block statistics"):
        m.forward_head(feats, side)


def test_stats_heads_need_a_fused_bundle(tmp_path):
    s1 = _stats_model()
    stages = {"stage1": [s1]}
    for s in ("stage2", "stage3_rect", "stage3_ab"):
        m = _stats_model(s, "adapter")
        m.backbone.load_state_dict(s1.backbone.state_dict())
        stages[s] = [m]
    priors = {"stage1": [0.5, 0.5], "stage2": [0.4, 0.4, 0.2], "stage3_rect": [0.25] * 4, "stage3_ab": [0.25] * 4}
    with pytest.raises(ExportError, match="fused"):
        export_bundle(tmp_path / "b", SPEC, stages, priors, name="x", fused=False)


def test_committed_test_stats_bundle_is_what_the_generator_and_compact_make(tmp_path):
    """onnx/test-stats (the plugin's parity tests run it): make-test-bundle --kind test-stats,
    then compact (the statistics' part kept verbatim like a stem, the rest collapsed)."""
    from av1part_train.testbundle import make_test_bundle
    make_test_bundle(tmp_path / "raw", kind="test-stats")
    m = compact_bundle(tmp_path / "raw", tmp_path / "c", name="test-stats")
    before, after = m["training"]["recipe"]["compaction"]["nodes"]
    assert after < before
    assert m["training"]["recipe"]["block_stats"] is True
    new = onnx.load(str(tmp_path / "c" / "model.onnx"))
    old = onnx.load(str(ONNX / "test-stats" / "model.onnx"))
    assert [n.op_type for n in new.graph.node] == [n.op_type for n in old.graph.node]
    assert {"Log", "Abs"} <= {n.op_type for n in old.graph.node}
    # both take the cells layout: the same random feed goes to each
    assert max(max_output_diff(old, new).values()) < REGENERATED_TOLERANCE
    m_old = json.loads((ONNX / "test-stats" / "manifest.json").read_text())
    assert m_old["input"] == m["input"] and m_old["input"]["layout"] == "cells"
