"""The research notes' experiments (notes 01-05) on the BlockNet backbone,
as a protocol that can tell rows apart: every row is trained with several
seeds (each seed on its own Stage 1, shared by every row of that seed), and
compared, seed by seed, with the one row it differs from in one thing.

Rows (Stage 2 unless noted; the reference is ``conv_g4``):
  frozen_head   frozen backbone, head only
  finetune      the notes' full fine-tuning: head 5e-4, backbone 1e-5, backbone
                frozen for the first 2 epochs (notes 01: negative transfer)
  conv_g4       Conv-Adapter gamma 4 in layer3+4, BN eval, CE (the shipped recipe)
  conv_g2       Conv-Adapter gamma 2 (notes 02)
  residual      residual adapters (notes 03)
  bn_train      conv_g4 with the frozen backbone's BN in train mode (notes 04)
  focal_g2, focal_g3, poly1, asymmetric, focal_ls
                conv_g4 with another loss (notes 05)
  cb_weights    focal_g2 with its class balance from class-balanced weights
                (beta 0.9999) on natural batches instead of balanced batches:
                the notes' class-balanced focal loss
  ab_single     Stage 3 AB, one specialist (conv gamma 4)
  ab_ens3       Stage 3 AB, the ensemble of 3 (notes 03), paired with ab_single

Class balance is held the same across rows: class-balanced batches and no
loss weights (``class_weights="none"``), so a loss row changes the loss
alone; only ``cb_weights`` changes the balancing, and says so.

Each run writes ``<out>/<row>/seed<s>/result.json``; rows already there are
skipped, so the command resumes, and several processes may run different
seeds into one directory. ``render`` aggregates whatever is there.
"""
from __future__ import annotations

import json
import statistics as st
import time
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_stage_models
from .config import TrainConfig, load_config
from .engine import evaluate, summarize
from .loader import BlockDataset, iterate_batches
from .losses import CrossEntropy, class_balanced_weights
from .models.stage import stage_classes

BUDGETS = {
    # seconds, for tests: the tiny CNN
    "tiny": {"arch": "tiny", "stem": "small", "epochs": 2, "max_steps_per_epoch": 15, "batch_size": 64,
             "val_max_blocks": 1000, "test_max_blocks": 1000, "lr": 3e-3, "lr_adapter": 3e-3, "lr_head": 3e-3},
    # about a minute per run on one core: blocknet8, 8 epochs of 200 steps
    "small": {"arch": "blocknet8", "stem": "patch4", "epochs": 8, "max_steps_per_epoch": 200, "batch_size": 256,
              "val_max_blocks": 20000, "test_max_blocks": None},
    # the blocknet recipe's own budget (30 epochs of 500 steps), without early stopping
    "full": {"test_max_blocks": None},
}

# the same class balance for every row (see the module docstring)
BALANCE = {"balanced_sampling": True, "class_weights": "none"}
ADAPTER = {"mode": "adapter", "adapter": "conv", "adapter_reduction": 4, "bn_mode": "eval", "loss": "ce"}
REFERENCE = "conv_g4"

# id -> (stage, overrides of the reference recipe, what, the row it differs from in one thing)
ROWS = {
    "frozen_head": ("stage2", {"mode": "frozen"}, "frozen backbone + head", REFERENCE),
    "finetune": ("stage2", {"mode": "finetune", "unfreeze_epoch": 2, "lr_head": 5e-4, "lr": 1e-5},
                 "full fine-tuning as in the notes (head 5e-4, backbone 1e-5, unfrozen after epoch 2)", REFERENCE),
    "conv_g4": ("stage2", {}, "Conv-Adapter γ=4, BN eval, CE — reference", None),
    "conv_g2": ("stage2", {"adapter_reduction": 2}, "Conv-Adapter γ=2", REFERENCE),
    "residual": ("stage2", {"adapter": "residual"}, "residual adapters (pooled bottleneck 64)", REFERENCE),
    "bn_train": ("stage2", {"bn_mode": "train"}, "Conv-Adapter γ=4, backbone BN in train mode", REFERENCE),
    "focal_g2": ("stage2", {"loss": "cb_focal", "gamma": 2.0}, "loss: focal γ=2", REFERENCE),
    "focal_g3": ("stage2", {"loss": "cb_focal", "gamma": 3.0}, "loss: focal γ=3", REFERENCE),
    "poly1": ("stage2", {"loss": "poly1", "poly_epsilon": 1.0}, "loss: Poly-1 ε=1", REFERENCE),
    "asymmetric": ("stage2", {"loss": "asymmetric", "gamma_pos": 2.0, "gamma_neg": 4.0},
                   "loss: asymmetric γ+=2, γ−=4", REFERENCE),
    "focal_ls": ("stage2", {"loss": "focal_ls", "gamma": 2.0, "smoothing": 0.1},
                 "loss: focal γ=2 + label smoothing 0.1", REFERENCE),
    "cb_weights": ("stage2", {"loss": "cb_focal", "gamma": 2.0, "balanced_sampling": False, "class_weights": "cb",
                              "beta": 0.9999},
                   "class-balanced focal (γ=2, β=0.9999) on natural batches: balance from weights, not the sampler",
                   "focal_g2"),
    "ab_single": ("stage3_ab", {}, "Stage 3 AB, one specialist (Conv-Adapter γ=4)", None),
    "ab_ens3": ("stage3_ab", {"ensemble_k": 3}, "Stage 3 AB, ensemble of 3 specialists", "ab_single"),
}
STAGE1_ROW = "stage1"


def _test_metrics(models, cfg: TrainConfig, max_blocks) -> dict:
    names = stage_classes(cfg.stage)
    ds = BlockDataset(cfg.data, "test", cfg.spec(), cfg.stage, cfg.exclude_edge, max_blocks, seed=0,
                      require_all_classes=False)
    # the criterion sees log p, so plain cross-entropy on it is the NLL
    acc = evaluate(models, iterate_batches(ds, np.arange(len(ds)), 512), torch.device("cpu"), len(names),
                   criterion=CrossEntropy())
    m = summarize(acc, names)
    return {"macro_f1": m["macro_f1"], "accuracy": m["accuracy"], "ece": m["ece"], "nll": m["loss"],
            "per_class_f1": {k: v["f1"] for k, v in m["per_class"].items()}, "blocks": len(ds)}


def _run(cfg: TrainConfig, test_max_blocks) -> dict:
    from .train import train_stage
    t0 = time.time()
    r = train_stage(cfg)
    first = r["members"][0] if "members" in r else r  # an ensemble: its first member's epochs
    hist = first["history"]
    models, _ = load_stage_models(r["best"], cfg.stage1_ckpt or None)
    trainable = sum(p.numel() for n, p in models[0].named_parameters()
                    if cfg.stage == "stage1" or cfg.mode == "finetune" or not n.startswith("backbone."))
    return {"stage": cfg.stage, "seed": cfg.seed, "val_macro_f1": float(r["best_val_macro_f1"]),
            "val_f1_per_epoch": [round(h["val_macro_f1"], 4) for h in hist],
            "best_epoch": (max(hist, key=lambda h: h["val_macro_f1"])["epoch"] if hist else None),
            "epochs_run": len(hist), "test": _test_metrics(models, cfg, test_max_blocks),
            "trainable_params": trainable * len(models), "members": len(models),
            "ms_per_step": float(np.median([h["ms_per_step"] for h in hist])) if hist else None,
            "wall_seconds": time.time() - t0, "checkpoint": r["best"],
            "train_counts": first["train_counts"]}


def _result_path(out: Path, row: str, seed: int) -> Path:
    return out / row / f"seed{seed}" / "result.json"


def recipe(budget: str, data: str, threads: int, epochs: int | None, max_steps: int | None,
           arch: str | None = None) -> tuple[dict, object]:
    """The reference recipe (the blocknet config's Stage 2 section, with the
    budget and the common class balance) and the test-split block cap."""
    b = dict(BUDGETS[budget])
    test_max = b.pop("test_max_blocks")
    if epochs:
        b["epochs"] = epochs
    if max_steps:
        b["max_steps_per_epoch"] = max_steps
    if arch:
        b["arch"] = arch
    base = load_config("blocknet", [], section="stage2").to_dict()
    base.update(b, data=data, progress=False, plots=False, threads=threads, resume=True,
                early_stop_patience=10 ** 6)  # every row runs the same epochs; the best on validation is kept
    return base, test_max


def run_experiments(data: str, out: str, budget: str = "small", seeds=(1, 2, 3), epochs: int | None = None,
                    max_steps: int | None = None, only=None, threads: int = 0, arch: str | None = None) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base, test_max = recipe(budget, data, threads, epochs, max_steps, arch)
    (out / "budget.json").write_text(json.dumps({"budget": budget, "recipe": base, "test_max_blocks": test_max},
                                                indent=1) + "\n")
    unknown = sorted(set(only or []) - set(ROWS))
    if unknown:
        raise ValueError(f"unknown experiment ids {unknown}; known: {sorted(ROWS)}")
    s1_recipe = load_config("blocknet", [], section="stage1").to_dict()
    for seed in seeds:
        s1_path = _result_path(out, STAGE1_ROW, seed)
        if not s1_path.exists():
            cfg = TrainConfig.from_dict({**base, **{k: s1_recipe[k] for k in ("loss", "gamma", "beta", "lr",
                                                                             "class_weights")},
                                         "stage": "stage1", "seed": seed, "out": str(s1_path.parent)})
            print(f"[experiments] {STAGE1_ROW} seed {seed}", flush=True)
            _write(s1_path, {"what": "Stage 1 (the blocknet recipe: CB focal γ=2 on balanced batches)",
                             **_run(cfg, test_max)})
        s1_ckpt = str(s1_path.parent / "checkpoints" / "best.pt")
        for row, (stage, over, what, _) in ROWS.items():
            path = _result_path(out, row, seed)
            if (only and row not in only) or path.exists():
                continue
            cfg = TrainConfig.from_dict({**base, **BALANCE, **ADAPTER, **over, "stage": stage, "seed": seed,
                                         "out": str(path.parent), "stage1_ckpt": s1_ckpt})
            print(f"[experiments] {row} seed {seed}: {what}", flush=True)
            _write(path, {"what": what, **_run(cfg, test_max)})
    results = collect(out)
    (out / "results.md").write_text(render(results, json.loads((out / "budget.json").read_text())))
    return results


def _write(path: Path, obj: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    tmp.replace(path)


def collect(out) -> dict:
    """{row: {seed: result}} of every finished run under ``out``."""
    res: dict = {}
    for p in sorted(Path(out).glob("*/seed*/result.json")):
        r = json.loads(p.read_text())
        res.setdefault(p.parent.parent.name, {})[int(r["seed"])] = r
    return res


def _ms(xs, fmt="{:.3f}") -> str:
    if not xs:
        return "–"
    if len(xs) == 1:
        return fmt.format(xs[0])
    return f"{fmt.format(st.mean(xs))} ± {fmt.format(st.stdev(xs))}"


def paired(results: dict, row: str, against: str, key=lambda r: r["test"]["macro_f1"]) -> dict | None:
    """Seed-by-seed difference row − against over the seeds both have."""
    a, b = results.get(against, {}), results.get(row, {})
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    d = [key(b[s]) - key(a[s]) for s in seeds]
    return {"seeds": seeds, "diffs": d, "mean": st.mean(d), "sd": st.stdev(d) if len(d) > 1 else 0.0,
            "positive": sum(x > 0 for x in d)}


def _paired_cell(p) -> str:
    if not p:
        return "–"
    return f"{p['mean']:+.3f} ± {p['sd']:.3f} ({p['positive']}/{len(p['diffs'])} >0)"


def render(results: dict, meta: dict) -> str:
    r0 = meta.get("recipe", {})
    lines = [f"# av1part experiments (budget `{meta.get('budget', '?')}`)", "",
             f"Dataset: `{r0.get('data', '?')}`. Backbone `{r0.get('arch')}`; {r0.get('epochs')} epochs of "
             f"{r0.get('max_steps_per_epoch')} steps of {r0.get('batch_size')} blocks per run, the best epoch on "
             f"validation ({r0.get('val_max_blocks')} blocks) kept. Every row: class-balanced batches, no loss "
             "weights (except `cb_weights`). Test: the whole test split (clips no run trained on), stage-level "
             "macro F1 over the stage's classes. Mean ± sd over seeds; Δ is the paired difference (same seed, "
             "same Stage 1) against the row in column 'vs'.", "",
             "| id | what | stage | vs | seeds | trainable params | val macro F1 | test macro F1 | Δ test F1 (paired) | "
             "Δ test NLL (paired) | test per-class F1 | test ECE | test NLL | ms/step |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    order = [STAGE1_ROW] + list(ROWS)
    for row in order + sorted(set(results) - set(order)):
        runs = results.get(row)
        if not runs:
            continue
        rs = [runs[s] for s in sorted(runs)]
        against = ROWS.get(row, (None, None, None, None))[3]
        classes = list(rs[0]["test"]["per_class_f1"])
        per_class = ", ".join(f"{c} {st.mean(r['test']['per_class_f1'][c] for r in rs):.2f}" for c in classes)
        nll = paired(results, row, against, key=lambda r: r["test"]["nll"]) if against else None
        lines.append(
            f"| {row} | {rs[0]['what']} | {rs[0]['stage']} | {against or '–'} | {len(rs)} | "
            f"{rs[0]['trainable_params']:,} | {_ms([r['val_macro_f1'] for r in rs])} | "
            f"{_ms([r['test']['macro_f1'] for r in rs])} | "
            f"{_paired_cell(paired(results, row, against)) if against else '–'} | {_paired_cell(nll)} | {per_class} | "
            f"{_ms([r['test']['ece'] for r in rs])} | {_ms([r['test']['nll'] for r in rs])} | "
            f"{st.mean(r['ms_per_step'] for r in rs):.0f} |")
    ft = results.get("finetune")
    if ft:
        n = min(len(r["val_f1_per_epoch"]) for r in ft.values())
        curve = [st.mean(r["val_f1_per_epoch"][e] for r in ft.values()) for e in range(n)]
        lines += ["", "Fine-tuning, validation macro F1 per epoch (mean over seeds; the backbone is frozen for "
                  "the first 2): " + ", ".join(f"{v:.3f}" for v in curve)]
    counts = next((r.get("train_counts") for r in results.get(REFERENCE, {}).values()), None)
    if counts:
        w = class_balanced_weights(counts, 0.9999).tolist()
        lines += ["", f"Stage 2 training counts {counts}; their class-balanced weights at β=0.9999: "
                  + ", ".join(f"{x:.3f}" for x in w) + "."]
    lines.append("")
    return "\n".join(lines)


def rerender(out: str) -> str:
    out = Path(out)
    text = render(collect(out), json.loads((out / "budget.json").read_text()))
    (out / "results.md").write_text(text)
    return text
