"""Reproduce the research notes' Stage 2 experiments on our dataset and write
a markdown table (``<out>/results.md``) plus ``results.json``.

Experiments (notes 01-05), all on one Stage 1 checkpoint unless the input
changes:
  finetune        Stage 2 full fine-tuning, backbone unfrozen after 1 epoch (negative-transfer baseline, notes 01)
  frozen_head     frozen backbone + head only
  conv_g2/4/8     Conv-Adapter (layer3+4), reduction gamma 2/4/8 (notes 02)
  residual        residual adapters (pooled bottleneck MLP, notes 03)
  bn_train        conv_g4 with the frozen backbone's BN in train mode (notes 04: eval is the fix)
  loss_*          conv_g4 with ce / cb_focal / poly1 / asymmetric / focal_ls (notes 05)
  input_*         Stage 1 + Stage 2 (conv_g4) retrained for pixels only, + qindex, + intra, + prev_y
Budgets: tiny (tiny CNN, minutes: for tests), small (ResNet-18, a CPU hour or
so), full (the default recipe's epochs). Results of a reduced budget are
only indicative; the table says which budget produced it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_stage_models
from .config import TrainConfig, load_config
from .engine import evaluate, summarize
from .loader import BlockDataset, iterate_batches
from .models.stage import stage_classes

BUDGETS = {
    "tiny": {"arch": "tiny", "stem": "small", "epochs": 2, "max_steps_per_epoch": 15, "batch_size": 64,
             "val_max_blocks": 1000, "test_max_blocks": 1000, "lr": 3e-3, "lr_adapter": 3e-3, "lr_head": 3e-3},
    "small": {"arch": "resnet18", "stem": "imagenet", "epochs": 4, "max_steps_per_epoch": 150, "batch_size": 128,
              "val_max_blocks": 10000, "test_max_blocks": 20000},
    "full": {"test_max_blocks": None},
}

BASE_INPUT = {"channels": ["y", "u", "v"], "side_features": ["qindex", "intra"]}
INPUTS = {
    "input_pixels": {"channels": ["y", "u", "v"], "side_features": []},
    "input_qindex": {"channels": ["y", "u", "v"], "side_features": ["qindex"]},
    "input_intra": {"channels": ["y", "u", "v"], "side_features": ["intra"]},
    "input_prev_y": {"channels": ["y", "u", "v", "prev_y"], "side_features": ["has_prev"]},
}
ADAPTER = {"mode": "adapter", "adapter": "conv", "adapter_reduction": 4, "bn_mode": "eval", "loss": "cb_focal"}
STAGE2 = {
    "finetune": ({"mode": "finetune", "unfreeze_epoch": 1}, "full fine-tuning, backbone unfrozen after epoch 1"),
    "frozen_head": ({"mode": "frozen"}, "frozen backbone + head"),
    "conv_g2": ({**ADAPTER, "adapter_reduction": 2}, "Conv-Adapter γ=2"),
    "conv_g4": (ADAPTER, "Conv-Adapter γ=4 (BN eval, CB focal γ=2) — reference"),
    "conv_g8": ({**ADAPTER, "adapter_reduction": 8}, "Conv-Adapter γ=8"),
    "residual": ({**ADAPTER, "adapter": "residual"}, "residual adapters (pooled bottleneck 64)"),
    "bn_train": ({**ADAPTER, "bn_mode": "train"}, "Conv-Adapter γ=4, backbone BN in train mode"),
    "loss_ce": ({**ADAPTER, "loss": "ce"}, "loss: cross-entropy"),
    "loss_cb_focal_g3": ({**ADAPTER, "loss": "cb_focal", "gamma": 3.0}, "loss: CB focal γ=3, β=0.9999"),
    "loss_poly1": ({**ADAPTER, "loss": "poly1", "poly_epsilon": 1.0}, "loss: Poly-1 ε=1"),
    "loss_asymmetric": ({**ADAPTER, "loss": "asymmetric", "gamma_pos": 2.0, "gamma_neg": 4.0}, "loss: asymmetric γ+=2, γ−=4"),
    "loss_focal_ls": ({**ADAPTER, "loss": "focal_ls", "gamma": 2.0, "smoothing": 0.1}, "loss: focal γ=2 + label smoothing 0.1"),
}


def _test_metrics(ckpt: str, cfg: TrainConfig, max_blocks) -> dict:
    models, _ = load_stage_models(ckpt, cfg.stage1_ckpt or None)
    ds = BlockDataset(cfg.data, "test", cfg.spec(), cfg.stage, cfg.exclude_edge, max_blocks, seed=0,
                      require_all_classes=False)
    acc = evaluate(models, iterate_batches(ds, np.arange(len(ds)), 512), torch.device("cpu"), len(stage_classes(cfg.stage)))
    return summarize(acc, stage_classes(cfg.stage))


def _run(cfg: TrainConfig, test_max_blocks) -> dict:
    from .train import train_stage
    t0 = time.time()
    r = train_stage(cfg)
    hist = r["history"]
    best = max(hist, key=lambda h: h["val_macro_f1"])
    tm = _test_metrics(r["best"], cfg, test_max_blocks)
    models, ck = load_stage_models(r["best"], cfg.stage1_ckpt or None)
    m = models[0]
    return {"stage": cfg.stage, "best_epoch": best["epoch"], "epochs_run": len(hist),
            "val_macro_f1": best["val_macro_f1"], "val_ece": best["val_ece"],
            "val_f1_per_epoch": [round(h["val_macro_f1"], 4) for h in hist],
            "test_macro_f1": tm["macro_f1"], "test_accuracy": tm["accuracy"], "test_ece": tm["ece"],
            "test_per_class_f1": {k: v["f1"] for k, v in tm["per_class"].items()},
            "trainable_params": sum(p.numel() for n, p in m.named_parameters()
                                    if cfg.stage == "stage1" or cfg.mode == "finetune"
                                    or not n.startswith("backbone.")),
            "ms_per_step": float(np.median([h["ms_per_step"] for h in hist])),
            "wall_seconds": time.time() - t0, "checkpoint": r["best"]}


def rescore(out: str, data: str | None = None) -> dict:
    """Recompute the test columns of finished rows from their checkpoints
    (after a metrics change), keeping the training columns."""
    out = Path(out)
    results = json.loads((out / "results.json").read_text())
    meta = json.loads((out / "budget.json").read_text()) if (out / "budget.json").exists() else {}
    for eid, r in results.items():
        cfg = TrainConfig.from_dict(json.loads((Path(r["checkpoint"]).parent.parent / "config.json").read_text()))
        if data:
            cfg = cfg.replace(data=data)
        tm = _test_metrics(r["checkpoint"], cfg, meta.get("test_max_blocks"))
        r.update(test_macro_f1=tm["macro_f1"], test_accuracy=tm["accuracy"], test_ece=tm["ece"],
                 test_per_class_f1={k: v["f1"] for k, v in tm["per_class"].items()})
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "results.md").write_text(render(results, meta.get("budget", "?"), meta.get("settings", {}),
                                           data or meta.get("data", "?")))
    return results


def run_experiments(data: str, out: str, budget: str = "small", epochs: int | None = None,
                    max_steps: int | None = None, only=None, threads: int = 0) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    b = dict(BUDGETS[budget])
    test_max = b.pop("test_max_blocks")
    if epochs:
        b["epochs"] = epochs
    if max_steps:
        b["max_steps_per_epoch"] = max_steps
    base = load_config("default", [], section="stage2").to_dict()
    base.update(b, data=data, progress=False, plots=True, threads=threads, early_stop_patience=10 ** 6)
    (out / "budget.json").write_text(json.dumps({"budget": budget, "settings": b, "test_max_blocks": test_max,
                                                 "data": data}, indent=1) + "\n")
    rpath = out / "results.json"
    results = json.loads(rpath.read_text()) if rpath.exists() else {}

    def want(eid):
        return not only or eid in only

    def save():
        rpath.write_text(json.dumps(results, indent=1) + "\n")
        (out / "results.md").write_text(render(results, budget, b, data))

    def stage1_for(tag, inp):
        ck = out / f"stage1_{tag}" / "checkpoints" / "best.pt"
        key = f"stage1_{tag}"
        if key not in results or not ck.exists():
            cfg = TrainConfig.from_dict({**base, **inp, "stage": "stage1", "out": str(out / key), "lr": base["lr"]})
            print(f"[experiments] {key}", flush=True)
            results[key] = {"what": f"Stage 1 ({'+'.join(inp['channels'] + inp['side_features'])})",
                            **_run(cfg, test_max)}
            save()
        return str(ck)

    s1 = stage1_for("base", BASE_INPUT)
    for eid, (over, what) in STAGE2.items():
        if not want(eid) or eid in results:
            continue
        cfg = TrainConfig.from_dict({**base, **BASE_INPUT, **over, "stage": "stage2", "out": str(out / eid),
                                     "stage1_ckpt": s1})
        print(f"[experiments] {eid}: {what}", flush=True)
        results[eid] = {"what": what, **_run(cfg, test_max)}
        save()
    for eid, inp in INPUTS.items():
        if not want(eid) or eid in results:
            continue
        s1i = stage1_for(eid[len("input_"):], inp)
        cfg = TrainConfig.from_dict({**base, **inp, **ADAPTER, "stage": "stage2", "out": str(out / eid),
                                     "stage1_ckpt": s1i})
        print(f"[experiments] {eid}", flush=True)
        results[eid] = {"what": f"input: {'+'.join(inp['channels'] + inp['side_features'])} (Stage 2 conv γ=4)",
                        "stage1_val_macro_f1": results[f"stage1_{eid[len('input_'):]}"]["val_macro_f1"],
                        **_run(cfg, test_max)}
        save()
    save()
    return results


def render(results: dict, budget: str, b: dict, data: str) -> str:
    lines = [f"# av1part experiments (budget `{budget}`)", "",
             f"Dataset: `{data}`. Budget: {json.dumps(b)}. Selection on the validation split (best epoch), "
             "test = the test split scored with that checkpoint (stage-level macro F1 over the stage's classes). "
             "Reduced budgets train for a few hundred steps: differences smaller than the spread between "
             "epochs (column 'val F1 per epoch') are noise.", "",
             "| id | what | stage | trainable params | best epoch / run | val macro F1 | test macro F1 | test acc | test ECE | ms/step | val F1 per epoch |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for eid, r in results.items():
        lines.append(f"| {eid} | {r['what']} | {r['stage']} | {r['trainable_params']:,} | {r['best_epoch']}/{r['epochs_run']} | "
                     f"{r['val_macro_f1']:.4f} | {r['test_macro_f1']:.4f} | {r['test_accuracy']:.4f} | {r['test_ece']:.4f} | "
                     f"{r['ms_per_step']:.0f} | {r['val_f1_per_epoch']} |")
    lines.append("")
    return "\n".join(lines)
