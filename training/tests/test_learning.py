"""Tests that fail when training breaks: on the synthetic set (each partition type has a
learnable texture) a few hundred steps must take Stage 1 far above chance, and the same
run with the optimiser step removed must not."""
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


def _weights(path, stage1=None):
    models, _ = load_stage_models(str(path), stage1)
    return {k: v.clone() for k, v in models[0].state_dict().items()}


def test_finetune_unfreezes_the_backbone_after_its_epochs(learned_stage1, synth_dataset, tmp_path):
    """finetune: the backbone is frozen for `unfreeze_epoch` epochs, then trained at lr_backbone;
    the Stage 1 checkpoint it started from is left as it was."""
    s1_out, s1 = learned_stage1
    before = Path(s1).read_bytes()
    base = _weights(s1)
    cfg = dict(LEARN, epochs=2, max_steps_per_epoch=20, mode="finetune", unfreeze_epoch=1, lr=1e-3)
    train_stage(TrainConfig(data=str(synth_dataset), out=str(tmp_path / "f1"), stage="stage2",
                            stage1_ckpt=s1, **{**cfg, "epochs": 1}))
    train_stage(TrainConfig(data=str(synth_dataset), out=str(tmp_path / "f2"), stage="stage2",
                            stage1_ckpt=s1, **cfg))
    assert Path(s1).read_bytes() == before
    w1 = _weights(tmp_path / "f1" / "checkpoints" / "last.pt", s1)
    w3 = _weights(tmp_path / "f2" / "checkpoints" / "last.pt", s1)
    conv = [k for k in base if k.startswith("backbone.") and k.endswith("weight") and base[k].dim() == 4]
    assert conv
    # epoch 1 (frozen): the backbone is Stage 1's; after unfreezing it moved
    assert all(torch.equal(w1[k], base[k]) for k in conv)
    assert any(not torch.equal(w3[k], base[k]) for k in conv)


def test_bn_train_mode_saves_and_reloads_its_running_statistics(learned_stage1, synth_dataset, tmp_path):
    """bn_mode=train changes the frozen backbone's BN statistics: the checkpoint must carry them,
    and a reload must give the outputs of the model that was saved."""
    _, s1 = learned_stage1
    out = tmp_path / "bn"
    r = train_stage(TrainConfig(data=str(synth_dataset), out=str(out), stage="stage2", stage1_ckpt=s1,
                                **dict(LEARN, epochs=1, max_steps_per_epoch=15, bn_mode="train")))
    ck = read_checkpoint(r["best"])
    assert any(k.startswith("backbone.") and "running_mean" in k for k in ck["states"][0])
    base = _weights(s1)
    again = _weights(r["best"], s1)
    rm = [k for k in again if k.startswith("backbone.") and k.endswith("running_mean")]
    assert any(not torch.equal(again[k], base[k]) for k in rm), "BN statistics did not move"
    # reload twice: same weights and buffers, bit for bit
    assert all(torch.equal(v, _weights(r["best"], s1)[k]) for k, v in again.items())
