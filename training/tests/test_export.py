"""Export: shared external data, ORT-from-disk vs PyTorch, refusals."""
import copy
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from av1part_train.export import ExportError, export_bundle, synthetic_golden_blocks
from av1part_train.models import StageModel
from av1part_train.reference import BundleError, ReferenceBundle
from av1part_train.tensor import InputSpec
from av1part_train.testbundle import randomize_

SPEC = InputSpec.create(("y", "u", "v"), ("qindex", "intra"))
PRIORS = {"stage1": [0.6, 0.4], "stage2": [0.2, 0.5, 0.3], "stage3_rect": [0.25] * 4, "stage3_ab": [0.25] * 4}


def hierarchy(seed=0):
    g = torch.Generator().manual_seed(seed)
    s1 = StageModel("stage1", "tiny", 3, num_side=2, stem="imagenet")
    randomize_(s1, g)
    st = {"stage1": [s1]}
    for s in ("stage2", "stage3_rect", "stage3_ab"):
        m = StageModel(s, "tiny", 3, num_side=2, stem="imagenet", mode="adapter", backbone=copy.deepcopy(s1.backbone))
        randomize_(m.adapters, g)
        st[s] = [m]
    return st


def test_export_shares_weights_and_matches_torch(tmp_path):
    st = hierarchy()
    m = export_bundle(tmp_path / "b", SPEC, st, PRIORS, name="t", golden_blocks=synthetic_golden_blocks(12),
                      golden_skip_below=[0.3, 0.35][:1])
    d = tmp_path / "b"
    assert m["data_files"][0]["file"] == "backbone.data"
    # each stage file refers to backbone.data and loads from disk by itself
    x = torch.randn(5, 3, 16, 16)
    side = torch.rand(5, 2)
    feats = ort.InferenceSession(str(d / "trunk.onnx")).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(feats - st["stage1"][0].eval().forward_trunk(x).numpy()).max() < 1e-4
    for s in ("stage1", "stage2", "stage3_rect", "stage3_ab"):
        proto = onnx.load(str(d / f"{s}.onnx"), load_external_data=False)
        ext = [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
        assert ext and all(e.value == "backbone.data" for t in ext for e in t.external_data if e.key == "location")
        got = ort.InferenceSession(str(d / f"{s}.onnx")).run(None, {"features": feats, "side": side.numpy()})[0]
        with torch.no_grad():
            mm = st[s][0].eval()
            want = torch.softmax(mm.forward_head(mm.forward_deep(torch.from_numpy(feats)), side), 1).numpy()
        assert np.abs(got - want).max() < 1e-4
        assert np.allclose(got.sum(1), 1, atol=1e-5)
    # the frozen layer3/layer4 are stored once: backbone.data < 2x one copy of them
    deep = sum(p.numel() for n, p in st["stage1"][0].backbone.named_parameters() if n.startswith(("layer3", "layer4")))
    assert (d / "backbone.data").stat().st_size < 2 * 4 * deep
    assert m["training"]["export_check"]["max_abs_diff_ort_vs_torch"]["stage2.onnx"] <= 1e-4
    g = json.loads((d / "golden.json").read_text())
    assert len(g["blocks"]) == 12 and g["skip_runs"]


def test_export_fails_beyond_tolerance(tmp_path):
    with pytest.raises(ExportError, match="max abs diff"):
        export_bundle(tmp_path / "b", SPEC, hierarchy(), PRIORS, name="t", tol=-1.0)
    assert not (tmp_path / "b").exists()  # nothing half-written


def test_export_refuses_unshared_trunk_and_oversize(tmp_path):
    st = hierarchy()
    with torch.no_grad():
        st["stage2"][0].backbone.layer1[0].conv1.weight.add_(0.1)
    with pytest.raises(ExportError, match="trunk would not be shared"):
        export_bundle(tmp_path / "b", SPEC, st, PRIORS, name="t")
    with pytest.raises(ExportError, match="MB >"):
        export_bundle(tmp_path / "b", SPEC, hierarchy(), PRIORS, name="t", max_bundle_bytes=10_000)


def test_reference_refuses_tampered_files(tmp_path):
    export_bundle(tmp_path / "b", SPEC, hierarchy(), PRIORS, name="t")
    d = tmp_path / "b"
    with open(d / "backbone.data", "r+b") as f:
        f.seek(100)
        f.write(b"\x01\x02")
    with pytest.raises(BundleError, match="sha256 mismatch"):
        ReferenceBundle(d)


def test_auto_skip_below_keeps_away_from_masses():
    from av1part_train.export import auto_skip_below
    masses = np.array([[0.9, 0.05, 0.3], [0.31, 0.2, 0.8], [0.5, 0.02, 0.01]])
    sb = auto_skip_below(masses)
    assert 0.05 <= sb <= 0.6 and np.abs(masses - sb).min() >= 1e-3
    assert sb == pytest.approx(0.405)  # middle of the widest gap, 0.31 .. 0.5
    with pytest.raises(ExportError, match="no skip_below"):
        auto_skip_below(np.linspace(0.0, 1.0, 5001))


def test_prior_correction_adds_log_prior_to_the_logits(tmp_path):
    """A stage trained on class-balanced batches is exported with log(prior)
    added to its logits: ONNX probabilities == softmax(logits + log prior)."""
    st = hierarchy(3)
    priors = dict(PRIORS, stage2=[0.7, 0.2, 0.1])
    export_bundle(tmp_path / "b", SPEC, st, priors, name="t", golden_blocks=synthetic_golden_blocks(4),
                  prior_corrected=["stage2"])
    torch.manual_seed(5)
    x = torch.randn(6, 3, 16, 16)
    side = torch.rand(6, 2)
    m = st["stage2"][0].eval()
    with torch.no_grad():
        feats = m.backbone.forward_trunk(x)
        logits = m.forward_head(m.forward_deep(feats), side)
    want = torch.softmax(logits + torch.log(torch.tensor(priors["stage2"])), dim=1).numpy()
    plain = torch.softmax(logits, dim=1).numpy()
    so = ort.SessionOptions()
    sess = ort.InferenceSession(str(tmp_path / "b" / "stage2.onnx"), so, providers=["CPUExecutionProvider"])
    got = sess.run(["probs"], {"features": feats.numpy(), "side": side.numpy()})[0]
    assert np.max(np.abs(got - want)) < 1e-5
    assert np.max(np.abs(got - plain)) > 1e-3, "the correction must change the probabilities"
    # stages not named keep their plain softmax
    s1 = st["stage1"][0].eval()
    with torch.no_grad():
        p1 = torch.softmax(s1.forward_head(s1.forward_deep(feats), side), dim=1).numpy()
    sess1 = ort.InferenceSession(str(tmp_path / "b" / "stage1.onnx"), so, providers=["CPUExecutionProvider"])
    assert np.max(np.abs(sess1.run(["probs"], {"features": feats.numpy(), "side": side.numpy()})[0] - p1)) < 1e-5


def test_prior_correction_refuses_a_zero_prior(tmp_path):
    st = hierarchy(4)
    priors = dict(PRIORS, stage2=[0.8, 0.2, 0.0])
    with pytest.raises(ExportError, match="prior > 0"):
        export_bundle(tmp_path / "b", SPEC, st, priors, name="t", prior_corrected=["stage2"])
