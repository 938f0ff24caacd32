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
