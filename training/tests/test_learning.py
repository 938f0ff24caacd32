"""Tests that fail when training breaks: on the synthetic set (each partition type has a
learnable texture) a few hundred steps must take Stage 1 and Stage 2 far above chance, and
the same run with the optimiser step removed must not; finetune mode must move the
backbone (after its frozen epochs) while adapter mode must not; a bn_mode=train stage
must save and reload to the same predictions."""
import json
from pathlib import Path

import pytest
import torch

from av1part_train.checkpoint import load_stage_models, read_checkpoint
from av1part_train.config import TrainConfig
from av1part_train.train import train_stage

from conftest import TINY

LEARN = dict(TINY, epochs=3, max_steps_per_epoch=70, val_max_blocks=400, validate_subset=400)


def _best_f1(out: Path) -> float:
    return max(h["val_macro_f1"] for h in json.loads((out / "metrics.json").read_text()))


@pytest.fixture(scope="module")
def learned_stage1(synth_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("learn") / "stage1"
    r = train_stage(TrainConfig(data=str(synth_dataset), out=str(out), stage="stage1", **LEARN))
    return out, r["best"]


def test_a_few_hundred_steps_learn_stage1(learned_stage1):
    # Two classes: chance macro F1 is about 0.5 (0.33-0.5 for a constant answer).
    assert _best_f1(learned_stage1[0]) > 0.85


def test_without_the_optimiser_step_nothing_is_learned(synth_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.optim.Optimizer, "step", lambda self, closure=None: None)
    for cls in (torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD):
        monkeypatch.setattr(cls, "step", lambda self, closure=None: None)
    out = tmp_path / "stage1"
    train_stage(TrainConfig(data=str(synth_dataset), out=str(out), stage="stage1", **LEARN))
    assert _best_f1(out) < 0.75


def test_stage2_adapters_learn_on_the_frozen_backbone(learned_stage1, synth_dataset, tmp_path):
    out = tmp_path / "stage2"
    r = train_stage(TrainConfig(data=str(synth_dataset), out=str(out), stage="stage2",
                                stage1_ckpt=learned_stage1[1], **LEARN))
    assert _best_f1(out) > 0.6  # three classes: chance about 0.33
    # The backbone is frozen: the stage's checkpoint holds adapters and head only.
    keys = set(read_checkpoint(r["best"])["states"][0])
    assert not any(k.startswith("backbone.") for k in keys)


def _backbone(models):
    return {k: v.clone() for k, v in models[0].state_dict().items() if k.startswith("backbone.")}


def test_finetune_mode_moves_the_backbone_after_its_frozen_epochs(learned_stage1, synth_dataset, tmp_path):
    s1 = learned_stage1[1]
    cfg = dict(LEARN, epochs=2, max_steps_per_epoch=10)
    r = train_stage(TrainConfig(data=str(synth_dataset), out=str(tmp_path / "ft"), stage="stage2", stage1_ckpt=s1,
                                mode="finetune", unfreeze_epoch=1, **cfg))
    ref, _ = load_stage_models(s1)
    tuned, _ = load_stage_models(str(tmp_path / "ft" / "checkpoints" / "last.pt"), s1)
    b0 = {k[len("backbone."):] if k.startswith("backbone.") else k: v for k, v in ref[0].state_dict().items()}
    moved = [k for k, v in _backbone(tuned).items() if v.is_floating_point() and k[len("backbone."):] in b0
             and not torch.allclose(v, b0[k[len("backbone."):]])]
    assert moved, "finetune mode left every backbone weight where Stage 1 put it"


def test_bn_train_mode_saves_and_reloads_to_the_same_predictions(learned_stage1, synth_dataset, tmp_path):
    r = train_stage(TrainConfig(data=str(synth_dataset), out=str(tmp_path / "bn"), stage="stage2",
                                stage1_ckpt=learned_stage1[1], bn_mode="train",
                                **dict(LEARN, epochs=1, max_steps_per_epoch=10)))
    hist = json.loads((tmp_path / "bn" / "metrics.json").read_text())
    assert all(h["reload_check"]["max_abs_diff"] <= 1e-5 for h in hist)
    ck = read_checkpoint(r["best"])
    assert ck["config"]["bn_mode"] == "train"
    a, _ = load_stage_models(r["best"], learned_stage1[1])
    b, _ = load_stage_models(r["best"], learned_stage1[1])
    x = torch.randn(8, 4, 16, 16)
    side = torch.rand(8, 3)
    with torch.no_grad():
        a[0].eval(), b[0].eval()
        assert torch.equal(a[0](x, side), b[0](x, side))
