"""Bundles without trunk (models/notrunk.py): every stage an MLP on the side
features, a graph whose one input is `side`, and the committed
onnx/test-notrunk bundle that the plugin's parity tests read."""
import json
from pathlib import Path

import onnx
import pytest
import torch

from av1part_train.compact import compact_bundle, max_output_diff
from av1part_train.models.stage import StageModel
from av1part_train.testbundle import REGENERATED_TOLERANCE

ONNX = Path(__file__).resolve().parents[2] / "onnx"


def test_a_head_without_trunk_sees_the_side_features_alone():
    m = StageModel("stage2", arch="statsmlp", in_chans=4, num_side=31, stem="none", mode="frozen",
                   side_norm=True).eval()
    side = torch.randn(5, 31)
    out = m(torch.randn(5, 4, 16, 16), side)
    assert out.shape == (5, 3)
    # the block tensor is not read: any x (even None) gives the same logits
    torch.testing.assert_close(m(None, side), out)
    assert m.head.in_features == 0 and sum(p.numel() for p in m.backbone.parameters()) == 0


def test_no_trunk_refuses_adapters_and_heads_without_side_features():
    with pytest.raises(ValueError, match="no trunk to adapt"):
        StageModel("stage2", arch="statsmlp", in_chans=4, num_side=31, stem="none", mode="adapter")
    with pytest.raises(ValueError, match="need side features"):
        StageModel("stage1", arch="statsmlp", in_chans=4, num_side=0, stem="none")


def test_committed_test_notrunk_bundle_is_what_the_generator_and_compact_make(tmp_path):
    from av1part_train.testbundle import make_test_bundle
    raw = make_test_bundle(tmp_path / "raw", kind="test-notrunk")
    assert [i["name"] for i in raw["graph"]["inputs"]] == ["side"]
    assert {i.name for i in onnx.load(str(tmp_path / "raw" / "model.onnx")).graph.input} == {"side"}
    m = compact_bundle(tmp_path / "raw", tmp_path / "c", name="test-notrunk")
    assert m["input"].get("layout", "planar") == "planar"   # no block tensor to reorder
    new = onnx.load(str(tmp_path / "c" / "model.onnx"))
    old = onnx.load(str(ONNX / "test-notrunk" / "model.onnx"))
    assert [n.op_type for n in new.graph.node] == [n.op_type for n in old.graph.node]
    assert len(old.graph.node) < 30                   # a few MatMuls: no per-node overhead of a trunk
    assert max(max_output_diff(old, new).values()) < REGENERATED_TOLERANCE
    m_old = json.loads((ONNX / "test-notrunk" / "manifest.json").read_text())
    assert m_old["input"] == m["input"] and m_old["graph"]["inputs"] == m["graph"]["inputs"]


def test_later_stages_train_the_side_normalisation():
    """Stages 2/3 optimise their head's side BatchNorm too (its scale and shift): every
    input of a head without trunk passes through it."""
    from av1part_train.config import TrainConfig
    from av1part_train.train import make_optimizer
    m = StageModel("stage2", arch="statsmlp", in_chans=4, num_side=31, stem="none", mode="frozen", side_norm=True)
    opt = make_optimizer(m, TrainConfig(stage="stage2"))
    trained = {id(p) for g in opt.param_groups for p in g["params"]}
    assert {id(m.side_norm.weight), id(m.side_norm.bias)} <= trained
    assert {id(p) for p in m.head.parameters()} <= trained
