"""The block_stats side feature (side_stats.py): the in-graph statistics'
values from the integer samples, its place in the side tensor, the model
that normalises it, and the committed onnx/test-sidestats bundle."""
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from av1part_train.checkpoint import model_args
from av1part_train.compact import compact_bundle, max_output_diff
from av1part_train.config import TrainConfig
from av1part_train.layers.block_stats import BlockStats, patchify
from av1part_train.models.stage import StageModel
from av1part_train.side_stats import NAMES, WIDTH, block_stats_side
from av1part_train.tensor import InputSpec, build_side, build_x
from av1part_train.testbundle import REGENERATED_TOLERANCE

ONNX = Path(__file__).resolve().parents[2] / "onnx"
SPEC = InputSpec.create(("y", "u", "v", "prev_y"), ("qindex", "intra", "has_prev", "block_stats"),
                        mean=(0.5, 0.5, 0.5, 0.5), std=(0.25, 0.2, 0.2, 0.25))


def _blocks(n=40, seed=0, bd=8):
    rng = np.random.default_rng(seed)
    mx = (1 << bd) - 1
    y = rng.integers(0, mx + 1, (n, 16, 16))
    y[:6] = rng.integers(0, mx + 1, (6, 1, 1))                 # flat
    y[6:12] = np.linspace(0, mx, 16).astype(int)               # a ramp along x
    u, v = rng.integers(0, mx + 1, (n, 8, 8)), rng.integers(0, mx + 1, (n, 8, 8))
    p = np.clip(y + rng.integers(-12, 12, (n, 16, 16)), 0, mx)
    return y, u, v, p


def test_the_side_feature_is_the_in_graph_statistics():
    for bd in (8, 10):
        y, u, v, p = _blocks(bd=bd)
        got = block_stats_side(y, u, v, p, bd, np.ones(len(y)))
        bs = BlockStats(SPEC.channels, SPEC.mean, SPEC.std)
        want = bs(patchify(torch.from_numpy(build_x(SPEC, y, u, v, p, bd)), 4)).numpy()
        assert list(NAMES) == bs.names and got.shape == (len(y), WIDTH) == want.shape
        np.testing.assert_allclose(got, want, atol=0.01)


def test_flat_blocks_ramps_and_a_missing_previous_block():
    y, u, v, p = _blocks()
    f = block_stats_side(y, u, v, p, 8, np.ones(len(y)))
    lvar = [i for i, n in enumerate(NAMES) if n.startswith("lvar_") and n not in ("lvar_u", "lvar_v", "lvar_diff")]
    assert (f[:6][:, lvar] == 0).all()
    assert (f[6:12, NAMES.index("lgx")] > 2).all() and (f[6:12, NAMES.index("lgy")] == 0).all()
    f0 = block_stats_side(y, u, v, p, 8, np.zeros(len(y)))          # no previous block: p = y
    assert (f0[:, -6:] == 0).all() and (f0[:, :-6] == f[:, :-6]).all()
    assert (block_stats_side(y, u, v, None, 8)[:, -6:] == 0).all()


def test_its_place_in_the_side_tensor():
    y, u, v, p = (a[:5] for a in _blocks())
    planes = {"y": y, "u": u, "v": v, "prev_y": p, "bit_depth": np.full(5, 8)}
    assert SPEC.num_side == 31
    s = build_side(SPEC, np.full(5, 51), np.zeros(5), np.ones(5), planes=planes)
    assert s.shape == (5, 31) and s.dtype == np.float32
    np.testing.assert_array_equal(s[:, 0], np.float32(51) / np.float32(255))
    np.testing.assert_array_equal(s[:, 3:], block_stats_side(y, u, v, p, 8, np.ones(5)))
    with pytest.raises(ValueError, match="planes"):
        build_side(SPEC, np.full(5, 51), np.zeros(5), np.ones(5))


def test_a_side_norm_model_round_trips_and_trains_its_normalisation():
    torch.manual_seed(0)
    m = StageModel("stage2", "blocknet8", 4, SPEC.num_side, stem="patch4", mode="adapter", side_norm=True)
    assert any(p is m.side_norm.weight for p in m.param_groups()["head"])
    x, side = torch.randn(8, 4, 16, 16), torch.rand(8, SPEC.num_side) * 5
    m.train()
    m(x, side).sum().backward()
    assert m.side_norm.weight.grad.abs().sum() > 0
    m.eval()
    args = model_args(m, TrainConfig())
    assert args["side_norm"] is True
    m2 = StageModel(**args)
    m2.load_state_dict(m.state_dict())
    m2.eval()
    torch.testing.assert_close(m2(x, side), m(x, side))
    # eval: the BatchNorm's function, written as an affine map for the export
    from av1part_train.models.stage import _batchnorm_affine
    torch.testing.assert_close(_batchnorm_affine(m.side_norm, side), m.side_norm(side))
    assert "side_norm.running_mean" in m.trainable_state_dict()


def test_committed_test_sidestats_bundle_is_what_the_generator_and_compact_make(tmp_path):
    from av1part_train.testbundle import make_test_bundle
    make_test_bundle(tmp_path / "raw", kind="test-sidestats")
    m = compact_bundle(tmp_path / "raw", tmp_path / "c", name="test-sidestats")
    assert m["input"]["side_features"][-1] == "block_stats"
    assert m["graph"]["inputs"][1]["shape"] == [-1, 31]
    new = onnx.load(str(tmp_path / "c" / "model.onnx"))
    old = onnx.load(str(ONNX / "test-sidestats" / "model.onnx"))
    assert [n.op_type for n in new.graph.node] == [n.op_type for n in old.graph.node]
    assert not {"Log", "Abs"} & {n.op_type for n in old.graph.node}   # the statistics are not in the graph
    assert max(max_output_diff(old, new).values()) < REGENERATED_TOLERANCE
    m_old = json.loads((ONNX / "test-sidestats" / "manifest.json").read_text())
    assert m_old["input"] == m["input"]
