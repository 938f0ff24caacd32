"""Training of one stage (``train_stage``): Stage 1 from scratch, Stages 2/3
on the frozen Stage 1 backbone (adapters + head), with AdamW (separate
backbone / adapter / head learning rates), ReduceLROnPlateau on validation
macro F1, early stopping, per-epoch metrics (JSON + CSV), plots, verified
checkpoints and DDP (torchrun)."""
from __future__ import annotations

import csv
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from .checkpoint import (CheckpointError, load_stage_models, make_checkpoint, read_checkpoint, save_atomic,
                         verify_reload)
from .config import TrainConfig
from .dist import DistInfo, all_reduce_sum, barrier, broadcast_object, init_distributed
from .engine import evaluate, summarize, train_one_epoch
from .loader import BlockDataset, iterate_batches, make_loader
from .losses import create_loss
from .models.stage import STAGES, StageModel, stage_classes


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def setup_threads(cfg: TrainConfig, info: DistInfo):
    n = cfg.threads or max(1, (os.cpu_count() or 1) // max(info.world_size, 1))
    torch.set_num_threads(n)


def build_model(cfg: TrainConfig, seed_offset: int = 0) -> tuple[StageModel, str | None]:
    spec = cfg.spec()
    common = dict(arch=cfg.arch, in_chans=spec.num_channels, num_side=spec.num_side, stem=cfg.stem,
                  head_hidden=cfg.head_hidden, head_dropout=cfg.head_dropout,
                  arch_kwargs={"width_mult": cfg.width_mult} if cfg.arch == "resnet18" else {},
                  block_stats={"channels": list(spec.channels), "mean": list(spec.mean), "std": list(spec.std)}
                  if cfg.block_stats else None, side_norm=cfg.side_norm)
    if cfg.stage == "stage1":
        return StageModel("stage1", mode="full", **common), None
    if not cfg.stage1_ckpt:
        raise CheckpointError(f"{cfg.stage} needs stage1_ckpt (the Stage 1 checkpoint)")
    s1ck = read_checkpoint(cfg.stage1_ckpt)
    if s1ck["stage"] != "stage1":
        raise CheckpointError(f"{cfg.stage1_ckpt}: is a {s1ck['stage']} checkpoint, not Stage 1")
    if s1ck["spec"] != spec.manifest():
        raise CheckpointError(f"{cfg.stage1_ckpt}: Stage 1 was trained on input {s1ck['spec']}, this config asks "
                              f"for {spec.manifest()} (channels and side features must match across stages)")
    a = s1ck["model_args"]
    for k in ("arch", "stem"):
        common[k] = a[k]
    common["arch_kwargs"] = a.get("arch_kwargs", {})
    mode = {"adapter": "adapter", "frozen": "frozen", "finetune": "frozen"}[cfg.mode]
    m = StageModel(cfg.stage, mode=mode, adapter=cfg.adapter, adapter_reduction=cfg.adapter_reduction,
                   adapter_bottleneck=cfg.adapter_bottleneck, bn_mode=cfg.bn_mode, **common)
    state = {k[len("backbone."):]: v for k, v in s1ck["states"][0].items() if k.startswith("backbone.")}
    m.backbone.load_state_dict(state, strict=True)
    return m, cfg.stage1_ckpt


def make_optimizer(model: StageModel, cfg: TrainConfig, include_frozen_backbone: bool = False):
    groups = []
    if model.stage == "stage1":
        groups.append({"params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.lr, "name": "all"})
    else:
        bb = list(model.backbone.parameters()) if include_frozen_backbone else \
            [p for p in model.backbone.parameters() if p.requires_grad]
        if bb:
            groups.append({"params": bb, "lr": cfg.lr, "name": "backbone"})
        ad = list(model.adapters.parameters())
        if ad:
            groups.append({"params": ad, "lr": cfg.lr_adapter, "name": "adapter"})
        # the head's group includes its side/statistics BatchNorms (param_groups): without them
        # they kept gamma 1, beta 0 in Stages 2/3 (bundles before 2026-12-06 were trained so)
        groups.append({"params": model.param_groups()["head"], "lr": cfg.lr_head, "name": "head"})
    return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)


def _write_history(out: Path, history: list[dict]):
    (out / "metrics.json").write_text(json.dumps(history, indent=1) + "\n")
    keys = ["epoch", "lr", "train_loss", "train_macro_f1", "val_loss", "val_macro_f1", "val_accuracy", "val_ece",
            "val_mce", "ms_per_step", "epoch_seconds", "best"]
    with open(out / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for h in history:
            w.writerow({**h, "lr": " ".join(f"{k}={v:g}" for k, v in h["lr"].items())})


def train_member(cfg: TrainConfig, info: DistInfo, out: Path, member: int = 0) -> dict:
    """Train one model; returns {"best": path, "history": [...], ...} on rank 0."""
    seed = cfg.seed + 1000 * member
    seed_everything(seed + info.rank)
    spec = cfg.spec()
    names = stage_classes(cfg.stage)
    k = len(names)
    train_ds = BlockDataset(cfg.data, "train", spec, cfg.stage, cfg.exclude_edge, cfg.train_max_blocks, seed=cfg.seed,
                            require_all_classes=not cfg.allow_missing_classes, augment=cfg.augment)
    val_ds = BlockDataset(cfg.data, "val", spec, cfg.stage, cfg.exclude_edge, cfg.val_max_blocks, seed=cfg.seed,
                          require_all_classes=False)
    torch.manual_seed(seed)  # the same initial weights on every rank
    model, stage1_path = build_model(cfg)
    model.to(info.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    finetune = cfg.stage != "stage1" and cfg.mode == "finetune"
    optimizer = make_optimizer(model, cfg, include_frozen_backbone=finetune)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=cfg.plateau_factor,
                                                           patience=cfg.plateau_patience)
    criterion = create_loss(cfg.loss, train_ds.counts, gamma=cfg.gamma, beta=cfg.beta, epsilon=cfg.poly_epsilon,
                            gamma_pos=cfg.gamma_pos, gamma_neg=cfg.gamma_neg, smoothing=cfg.smoothing,
                            class_weights=cfg.class_weights).to(info.device)
    loader = make_loader(train_ds, cfg.batch_size, shuffle=True, seed=seed, balanced=cfg.balanced_sampling,
                         rank=info.rank, world_size=info.world_size, num_workers=cfg.num_workers,
                         drop_last=info.enabled)

    def wrap(m):
        if not info.enabled:
            return m
        return torch.nn.parallel.DistributedDataParallel(
            m, device_ids=[info.local_rank] if info.device.type == "cuda" else None)

    net = wrap(model)
    # fixed validation subset for the reload check (same blocks every save)
    vrng = np.random.default_rng(12345)
    vsub = np.sort(vrng.choice(len(val_ds), min(cfg.validate_subset, len(val_ds)), replace=False))
    verify_batches = list(iterate_batches(val_ds, vsub, 256))
    val_idx = np.arange(info.rank, len(val_ds), info.world_size)  # exact, non-padded shards

    progress = None
    if cfg.progress and info.is_main:
        from tqdm.auto import tqdm
        progress = tqdm
    ckdir = out / "checkpoints"
    history, best, bad_epochs = [], -1.0, 0
    best_path = ckdir / "best.pt"
    start = 1
    if cfg.resume and (ckdir / "last.pt").exists():
        start, history, best, bad_epochs = _resume(ckdir / "last.pt", out, model, optimizer, scheduler, stage1_path)
        if info.is_main:
            print(f"[{cfg.stage}] resuming after epoch {start - 1} (best val macro F1 {best:.4f})", flush=True)
        if finetune and start > cfg.unfreeze_epoch + 1:
            model.mode = "full"
            for p in model.backbone.parameters():
                p.requires_grad_(True)
            net = wrap(model)
        if bad_epochs >= cfg.early_stop_patience:
            start = cfg.epochs + 1
    epoch = start - 1
    for epoch in range(start, cfg.epochs + 1):
        if finetune and epoch == cfg.unfreeze_epoch + 1:
            model.mode = "full"
            for p in model.backbone.parameters():
                p.requires_grad_(True)
            net = wrap(model)
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        t0 = time.time()
        tr = train_one_epoch(net, loader, criterion, optimizer, info.device, epoch, k, cfg.max_steps_per_epoch,
                             cfg.grad_clip, progress, cfg.channels_last)
        tr_cm = all_reduce_sum(tr["confusion"], info)
        tr_ls = all_reduce_sum(np.array([tr["loss_sum"], tr["n"]]), info)
        va = evaluate([model], iterate_batches(val_ds, val_idx, 512), info.device, k, criterion, cfg.channels_last)
        va = {"confusion": all_reduce_sum(va["confusion"], info).astype(np.int64),
              "bins": all_reduce_sum(va["bins"], info),
              "loss_sum": float(all_reduce_sum(np.array([va["loss_sum"]]), info)[0]),
              "n": int(all_reduce_sum(np.array([va["n"]]), info)[0])}
        vm = summarize(va, names)
        tm = summarize({"confusion": tr_cm.astype(np.int64), "loss_sum": tr_ls[0], "n": int(tr_ls[1])}, names)
        f1 = vm["macro_f1"]
        scheduler.step(f1)
        improved = f1 > best
        rec = {"epoch": epoch, "lr": {g.get("name", str(i)): g["lr"] for i, g in enumerate(optimizer.param_groups)},
               "train_loss": tm["loss"], "train_macro_f1": tm["macro_f1"], "val_loss": vm["loss"],
               "val_macro_f1": f1, "val_accuracy": vm["accuracy"], "val_ece": vm["ece"], "val_mce": vm["mce"],
               "ms_per_step": 1000 * tr["step_seconds"] / max(tr["steps"], 1), "steps": tr["steps"],
               "epoch_seconds": time.time() - t0, "best": improved, "val": vm}
        if info.is_main:
            ck = make_checkpoint(model, cfg, epoch, f1, vm, stage1_path, train_ds.counts,
                                 optimizer=optimizer, scheduler=scheduler, extra={"member": member, "seed": seed})
            check = lambda p: verify_reload(p, [model], verify_batches, info.device, cfg.reload_tolerance)
            rec["reload_check"] = save_atomic(ck, ckdir / "last.pt", verify=check)
            if improved:
                save_atomic(ck, best_path, verify=check)
            history.append(rec)
            _write_history(out, history)
            if progress is not None:
                print(f"[{cfg.stage}] epoch {epoch}: train loss {tm['loss']:.4f} F1 {tm['macro_f1']:.4f} | "
                      f"val loss {vm['loss']:.4f} F1 {f1:.4f} acc {vm['accuracy']:.4f} ECE {vm['ece']:.4f} | "
                      f"{rec['ms_per_step']:.1f} ms/step{' *' if improved else ''}", flush=True)
        if improved:
            best, bad_epochs = f1, 0
        else:
            bad_epochs += 1
        barrier(info)
        if bad_epochs >= cfg.early_stop_patience:
            break
    result = {"best": str(best_path), "best_val_macro_f1": best, "epochs_run": epoch, "history": history,
              "train_counts": train_ds.counts.tolist(), "incomplete_shards": train_ds.incomplete_shards}
    if info.is_main and cfg.plots:
        from .plots import plot_confusion, plot_history
        plot_history(history, out / "curves.png", f"{cfg.stage}")
        best_hist = max(history, key=lambda h: h["val_macro_f1"])
        plot_confusion(np.asarray(best_hist["val"]["confusion"]), names, out / "confusion_val_best.png",
                       f"{cfg.stage} val (epoch {best_hist['epoch']})")
    return result


def _resume(last: Path, out: Path, model: StageModel, optimizer, scheduler, stage1_path):
    """Continue from last.pt: weights, optimiser, scheduler, history. The data
    order after a resume is not bit-identical to an uninterrupted run."""
    fresh, ck = load_stage_models(last, stage1_path)
    model.load_state_dict(fresh[0].state_dict())
    if ck.get("optimizer"):
        optimizer.load_state_dict(ck["optimizer"])
    if ck.get("scheduler"):
        scheduler.load_state_dict(ck["scheduler"])
    hp = out / "metrics.json"
    history = [h for h in json.loads(hp.read_text()) if h["epoch"] <= ck["epoch"]] if hp.exists() else []
    best = max((h["val_macro_f1"] for h in history), default=-1.0)
    bad = 0
    for h in history:
        bad = 0 if h["best"] else bad + 1
    return ck["epoch"] + 1, history, best, bad


def train_stage(cfg: TrainConfig, info: DistInfo | None = None) -> dict:
    """Train a stage (an ensemble of ``ensemble_k`` members for stage3_ab).
    Writes <out>/config.json, metrics, plots and checkpoints/best.pt."""
    info = info or init_distributed(cfg.device)
    setup_threads(cfg, info)
    out = Path(cfg.out)
    if cfg.stage not in STAGES:
        raise ValueError(f"unknown stage {cfg.stage!r}")
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
    k = cfg.ensemble_k if cfg.stage == "stage3_ab" else 1
    if k <= 1:
        res = train_member(cfg, info, out, 0)
    else:
        members = [train_member(cfg, info, out / f"member{i}", i) for i in range(k)]
        res = {"members": members}
        if info.is_main:
            res.update(combine_ensemble(cfg, [m["best"] for m in members], out / "checkpoints" / "best.pt"))
    if info.is_main:
        summary = {k2: v for k2, v in res.items() if k2 not in ("history", "members")}
        (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    barrier(info)
    return res


def combine_ensemble(cfg: TrainConfig, paths: list, dest: Path) -> dict:
    """One checkpoint holding k members (states list), verified on reload."""
    models, cks = [], []
    for p in paths:
        ms, ck = load_stage_models(p, cfg.stage1_ckpt)
        models += ms
        cks.append(ck)
    ck = dict(cks[0])
    ck["states"] = [s for c in cks for s in c["states"]]
    ck["members"] = [str(p) for p in paths]
    ck["optimizer"] = ck["scheduler"] = None
    spec = cfg.spec()
    val_ds = BlockDataset(cfg.data, "val", spec, cfg.stage, cfg.exclude_edge, cfg.val_max_blocks, seed=cfg.seed,
                          require_all_classes=False)
    vsub = np.sort(np.random.default_rng(12345).choice(len(val_ds), min(cfg.validate_subset, len(val_ds)), replace=False))
    batches = list(iterate_batches(val_ds, vsub, 256))
    check = lambda p: verify_reload(p, models, batches, torch.device("cpu"), cfg.reload_tolerance)
    chk = save_atomic(ck, dest, verify=check)
    acc = evaluate(models, iterate_batches(val_ds, np.arange(len(val_ds)), 512), torch.device("cpu"), len(stage_classes(cfg.stage)))
    vm = summarize(acc, stage_classes(cfg.stage))
    ck["metric"] = vm["macro_f1"]
    ck["val_metrics"] = vm
    save_atomic(ck, dest, verify=check)
    return {"best": str(dest), "best_val_macro_f1": vm["macro_f1"], "reload_check": chk}
