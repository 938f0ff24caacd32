"""Training end to end on the synthetic dataset (tiny backbone): the four
stages, verified checkpoints, refusals, export from checkpoints, evaluation."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from av1part_train.checkpoint import CheckpointError, load_stage_models, read_checkpoint, save_atomic
from av1part_train.config import TrainConfig
from av1part_train.engine import NonFiniteLossError, train_one_epoch
from av1part_train.loader import DatasetError
from av1part_train.train import train_stage

from conftest import TINY


def test_stage_runs_write_metrics_and_verified_checkpoints(tiny_hierarchy):
    root = Path(tiny_hierarchy["root"])
    for s in ("stage1", "stage2", "stage3_rect"):
        hist = json.loads((root / s / "metrics.json").read_text())
        assert len(hist) == 2 and all(h["reload_check"]["max_abs_diff"] <= 1e-5 for h in hist)
        assert (root / s / "metrics.csv").read_text().startswith("epoch,lr,")
        assert (root / s / "config.json").exists()
    s2 = read_checkpoint(tiny_hierarchy["stage2"])
    keys = set(s2["states"][0])
    assert keys and not any(k.startswith("backbone.") for k in keys)   # adapters + head only
    assert any(k.startswith("adapters.layer3") for k in keys)
    assert s2["stage1_sha256"] == read_checkpoint.__globals__["sha256_file"](tiny_hierarchy["stage1"])
    ab = read_checkpoint(tiny_hierarchy["stage3_ab"])
    assert len(ab["states"]) == 2
    models, _ = load_stage_models(tiny_hierarchy["stage3_ab"])
    assert len(models) == 2


def test_stage1_hash_mismatch_is_refused(tiny_hierarchy, tmp_path):
    ck = read_checkpoint(tiny_hierarchy["stage1"])
    ck["states"][0] = {k: (v + 0.01 if v.is_floating_point() else v) for k, v in ck["states"][0].items()}
    other = tmp_path / "other_stage1.pt"
    save_atomic(ck, other)
    with pytest.raises(CheckpointError, match="SHA-256 .* refusing"):
        load_stage_models(tiny_hierarchy["stage2"], str(other))


def _corrupt_reloads(monkeypatch):
    """Every reloaded checkpoint comes back with one head bias changed."""
    import av1part_train.checkpoint as C
    real = C.load_stage_models

    def corrupt(*a, **kw):
        models, ck = real(*a, **kw)
        with torch.no_grad():
            models[0].head.fc.bias[0] += 1.0
        return models, ck
    monkeypatch.setattr(C, "load_stage_models", corrupt)


def test_reload_mismatch_raises(tiny_hierarchy, monkeypatch, synth_dataset, tmp_path):
    _corrupt_reloads(monkeypatch)
    cfg = TrainConfig(data=str(synth_dataset), out=str(tmp_path / "r"), stage="stage2",
                      stage1_ckpt=tiny_hierarchy["stage1"], **{**TINY, "epochs": 1})
    with pytest.raises(CheckpointError, match="reloaded checkpoint differs"):
        train_stage(cfg)


def test_failed_verification_keeps_the_previous_checkpoint(tiny_hierarchy, tmp_path):
    """save_atomic verifies the temporary file before it replaces the old one."""
    good = read_checkpoint(tiny_hierarchy["stage1"])
    dest = tmp_path / "best.pt"
    save_atomic(good, dest)
    before = dest.read_bytes()
    bad = dict(good)
    bad["epoch"] = 999

    def refuse(path):
        assert Path(path).name == "best.pt.tmp" and Path(path).exists()
        raise CheckpointError("reloaded checkpoint differs (test)")
    with pytest.raises(CheckpointError, match="test"):
        save_atomic(bad, dest, verify=refuse)
    assert dest.read_bytes() == before
    assert not (tmp_path / "best.pt.tmp").exists()
    assert read_checkpoint(dest)["epoch"] == good["epoch"]
    # an accepted one replaces it, and the verifier's result is returned
    assert save_atomic(bad, dest, verify=lambda p: {"ok": str(p)}) == {"ok": str(tmp_path / "best.pt.tmp")}
    assert read_checkpoint(dest)["epoch"] == 999


def test_training_reload_failure_leaves_best_in_place(tiny_hierarchy, monkeypatch, synth_dataset, tmp_path):
    """A stage run whose reload check fails writes no best.pt / last.pt over
    the previous ones."""
    cfg = TrainConfig(data=str(synth_dataset), out=str(tmp_path / "r"), stage="stage2",
                      stage1_ckpt=tiny_hierarchy["stage1"], **{**TINY, "epochs": 1})
    train_stage(cfg)
    ckdir = [p.parent for p in (tmp_path / "r").rglob("best.pt")]
    assert ckdir, "first run wrote best.pt"
    saved = {p: p.read_bytes() for d in ckdir for p in d.glob("*.pt")}
    _corrupt_reloads(monkeypatch)
    with pytest.raises(CheckpointError, match="reloaded checkpoint differs"):
        train_stage(cfg)
    for p, b in saved.items():
        assert p.read_bytes() == b, f"{p} was replaced by an unverified checkpoint"
    assert not list((tmp_path / "r").rglob("*.tmp"))


def test_nan_loss_raises():
    m = torch.nn.Linear(3, 2)
    batch = {"x": torch.randn(4, 3), "side": torch.zeros(4, 0), "y": torch.tensor([0, 1, 0, 1])}

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = m

        def forward(self, x, side):
            return self.m(x) * float("nan")
    opt = torch.optim.SGD(m.parameters(), 0.1)
    with pytest.raises(NonFiniteLossError, match="loss is nan at epoch 1, step 0"):
        train_one_epoch(Net(), [batch], torch.nn.CrossEntropyLoss(), opt, "cpu", 1, 2)


def test_bad_inputs(tiny_hierarchy, synth_dataset, tmp_path):
    with pytest.raises(CheckpointError, match="needs stage1_ckpt"):
        train_stage(TrainConfig(data=str(synth_dataset), out=str(tmp_path / "a"), stage="stage2", **TINY))
    with pytest.raises(CheckpointError, match="channels and side features must match"):
        train_stage(TrainConfig(data=str(synth_dataset), out=str(tmp_path / "b"), stage="stage2",
                                stage1_ckpt=tiny_hierarchy["stage1"], **{**TINY, "side_features": ["qindex"]}))
    with pytest.raises(DatasetError, match="manifest.json: missing"):
        train_stage(TrainConfig(data=str(tmp_path), out=str(tmp_path / "c"), stage="stage1", **TINY))
    with pytest.raises(ValueError, match="unknown config keys"):
        TrainConfig.from_dict({"learning_rate": 1})


def test_export_and_evaluate_from_checkpoints(tiny_hierarchy, synth_dataset, tmp_path):
    from av1part_train.pipeline import evaluate_bundle, export_from_checkpoints
    from av1part_train.reference import ReferenceBundle
    ck = {s: tiny_hierarchy[s] for s in ("stage1", "stage2", "stage3_rect", "stage3_ab")}
    m = export_from_checkpoints(ck, str(tmp_path / "bundle"), "t", str(synth_dataset))
    c1 = read_checkpoint(ck["stage1"])["class_counts"]
    assert m["stages"][0]["prior"] == pytest.approx(np.array(c1) / sum(c1))
    t = m["training"]["metrics"]["test"]
    assert 0 <= t["macro_f1_10way"] <= 1 and set(t["errors_enter_at"]) >= {"stage1", "stage2", "mixing"}
    assert m["training"]["recipe"]["stage1_sha256"]
    g = json.loads((tmp_path / "bundle" / "golden.json").read_text())
    assert len(g["blocks"]) == 48 + 16 and g["skip_runs"][0]["skipped_stage_runs"] > 0
    r = evaluate_bundle(str(tmp_path / "bundle"), str(synth_dataset), "test", 0.2)
    assert r["stage_run_fraction"]["stage1"] == 1.0 and r["stage_run_fraction"]["stage3_ab"] < 1.0
    # the breakdown per test sequence, preset and key/inter adds up to the whole split
    from av1part_train.loader import split_sequences
    bd = r["breakdown"]
    assert set(bd["sequence"]) == set(split_sequences(synth_dataset, "test"))
    for key in ("sequence", "cpu_used", "frame"):
        assert sum(v["n"] for v in bd[key].values()) == r["n"]
    assert set(bd["frame"]) <= {"key", "inter"} and r["cascade"]["nll"] > 0
    assert all(0 <= v["macro_f1_balanced"] <= 1 for v in r["stages"].values())
    # torch and the exported bundle agree block by block on the test split
    from av1part_train.loader import BlockDataset
    ref = ReferenceBundle(tmp_path / "bundle")
    ds = BlockDataset(synth_dataset, "test", ref.spec, "stage1", require_all_classes=False)
    b = ds.batch(np.arange(64))
    models, _ = load_stage_models(ck["stage1"])
    with torch.no_grad():
        pt = torch.softmax(models[0](b["x"], b["side"]), 1).numpy()
    res = ref.run_tensors(b["x"].numpy(), b["side"].numpy())
    assert np.abs(res.stage_probs["stage1"] - pt).max() < 1e-4


def test_resume_continues_from_last(tiny_hierarchy, synth_dataset, tmp_path):
    base = dict(data=str(synth_dataset), out=str(tmp_path / "r"), stage="stage2", stage1_ckpt=tiny_hierarchy["stage1"])
    train_stage(TrainConfig(**base, **{**TINY, "epochs": 1}))
    r = train_stage(TrainConfig(**base, **{**TINY, "epochs": 3, "resume": True}))
    assert [h["epoch"] for h in r["history"]] == [1, 2, 3]
    assert read_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["epoch"] == 3


def test_calibrated_export_folds_temperature_and_prior_into_the_graph(tiny_hierarchy, synth_dataset, tmp_path):
    from av1part_train.calibration import nll
    from av1part_train.loader import BlockDataset
    from av1part_train.pipeline import export_from_checkpoints
    from av1part_train.reference import ReferenceBundle
    ck = {s: tiny_hierarchy[s] for s in ("stage1", "stage2", "stage3_rect", "stage3_ab")}
    m = export_from_checkpoints(ck, str(tmp_path / "cal"), "cal", str(synth_dataset), calibrate=True)
    st = m["training"]["recipe"]["stages"]["stage1"]
    cal = st["calibration"]
    assert cal["temperature"] != 1.0 and cal["val_nll_after"] <= cal["val_nll_before"] + 1e-9
    test = m["training"]["metrics"]["test"]
    assert set(test["stage_nll"]) == set(ck) and all(v > 0 for v in test["stage_nll"].values())
    ref = ReferenceBundle(tmp_path / "cal")
    ds = BlockDataset(synth_dataset, "val", ref.spec, "stage1", require_all_classes=False)
    b = ds.batch(np.arange(64))
    models, _ = load_stage_models(ck["stage1"])
    with torch.no_grad():
        z = models[0](b["x"], b["side"]).numpy().astype(np.float64)
    shift = np.log(np.asarray(m["stages"][0]["prior"])) if st["prior_correction"] else 0.0
    want = np.exp(z / cal["temperature"] + shift)
    want /= want.sum(1, keepdims=True)
    got = ref.run_tensors(b["x"].numpy(), b["side"].numpy()).stage_probs["stage1"]
    assert np.abs(got - want).max() < 1e-4
    with pytest.raises(Exception, match="validation split"):
        export_from_checkpoints(ck, str(tmp_path / "x"), "x", None, calibrate=True)


def test_eval_report_tables(tiny_hierarchy, synth_dataset, tmp_path):
    from av1part_train.cli import main
    from av1part_train.pipeline import export_from_checkpoints
    ck = {s: tiny_hierarchy[s] for s in ("stage1", "stage2", "stage3_rect", "stage3_ab")}
    export_from_checkpoints(ck, str(tmp_path / "b"), "b", None)
    j = tmp_path / "e.json"
    assert main(["evaluate", "--bundle", str(tmp_path / "b"), "--data", str(synth_dataset), "--json", str(j)]) == 0
    out = tmp_path / "e.md"
    assert main(["eval-report", str(j), "--title", "synthetic", "--out", str(out)]) == 0
    text = out.read_text()
    assert "### synthetic" in text and "| all |" in text and "| frames " in text and "| clip " in text


def test_eval_seeds_pairs_the_seeds(tmp_path):
    from av1part_train.evalreport import seed_table

    def res(path, f1, nll):
        st = {s: {"macro_f1": f1} for s in ("stage1", "stage2", "stage3_rect", "stage3_ab")}
        m = {"stages": st, "policies": {"greedy": {"macro_f1": f1}}, "topk_recall": {"2": f1, "3": f1},
             "cascade": {"ece": 0.1, "nll": nll}}
        path.write_text(json.dumps([{**m, "breakdown": {"cpu_used": {"3": m}}}]))
        return str(path)
    a = [res(tmp_path / f"a{i}.json", 0.5 + i / 100, 1.0) for i in range(3)]
    b = [res(tmp_path / f"b{i}.json", 0.52 + i / 100, 0.9) for i in range(3)]
    t = seed_table(a, b, "3")
    assert "| A | 0.510 ± 0.010 |" in t and "| B − A (paired) | +0.020 (3/3 >0) |" in t
    assert "-0.100 (0/3 >0) |" in t
    with pytest.raises(ValueError):
        seed_table(a, b[:2], "3")


def test_the_balanced_decision_divides_by_the_prior():
    from av1part_train.pipeline import _balanced_macro_f1
    # calibrated-looking probabilities: the frequent class 0 always has the larger p,
    # but class 1 rises well above its prior exactly on its own blocks
    y = np.array([0] * 8 + [1] * 2)
    p1 = np.where(y == 1, 0.45, 0.05)
    probs = np.stack([1 - p1, p1], 1)
    prior = np.array([0.8, 0.2])
    assert _balanced_macro_f1(probs, y, prior, ["a", "b"]) == pytest.approx(1.0)
    # the plain argmax never picks class 1: macro F1 of (8/9-ish, 0)
    from av1part_train.metrics import confusion_matrix, prf_from_confusion
    plain = prf_from_confusion(confusion_matrix(y, probs.argmax(1), 2), ["a", "b"])["macro_f1"]
    assert plain < 0.5
    # a class with prior 0 is never chosen
    assert _balanced_macro_f1(probs, y, np.array([1.0, 0.0]), ["a", "b"]) == pytest.approx(plain)
