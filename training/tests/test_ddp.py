"""Two-process DDP (gloo on CPU) through torchrun and the real CLI: rank 0
writes verified checkpoints; the validation metric reduced over the ranks'
non-padded shards equals a single-process evaluation of the checkpoint."""
import json
import os
import subprocess
import sys

import numpy as np
import torch

from av1part_train.checkpoint import load_stage_models
from av1part_train.engine import evaluate, summarize
from av1part_train.loader import BlockDataset, iterate_batches
from av1part_train.tensor import InputSpec


def test_torchrun_gloo_two_processes(synth_dataset, tmp_path):
    out = tmp_path / "ddp"
    sets = ["arch=\"tiny\"", "stem=\"small\"", "epochs=2", "max_steps_per_epoch=4", "batch_size=32",
            "progress=false", "plots=false", "threads=1", "val_max_blocks=255", "validate_subset=64",
            "device=\"cpu\""]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "av1part_train", "train-stage1", "--data", str(synth_dataset), "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    hist = json.loads((out / "metrics.json").read_text())
    assert len(hist) == 2
    best = max(hist, key=lambda h: h["val_macro_f1"])
    models, ck = load_stage_models(out / "checkpoints" / "best.pt")
    assert ck["epoch"] == best["epoch"]
    ds = BlockDataset(synth_dataset, "val", InputSpec.from_manifest(ck["spec"]), "stage1", max_blocks=255, seed=42,
                      require_all_classes=False)
    acc = evaluate(models, iterate_batches(ds, np.arange(len(ds)), 128), torch.device("cpu"), 2)
    m = summarize(acc, ["NONE", "PARTITION"])
    assert m["n"] == best["val"]["n"] == 255
    assert abs(m["macro_f1"] - best["val_macro_f1"]) < 1e-9
