"""train_one_epoch / evaluate, kept apart from model, data and config."""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from .metrics import calibration_bins, confusion_matrix, ece_mce, prf_from_confusion


class NonFiniteLossError(FloatingPointError):
    pass


def _to(b, device, channels_last=False):
    x = b["x"].to(device, non_blocking=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, b["side"].to(device, non_blocking=True), b["y"].to(device, non_blocking=True)


def train_one_epoch(model, loader, criterion, optimizer, device, epoch: int, num_classes: int,
                    max_steps: int | None = None, grad_clip: float | None = None, progress=None,
                    channels_last: bool = False) -> dict:
    model.train()
    cm = np.zeros((num_classes, num_classes), np.int64)
    loss_sum, n, steps, t_step = 0.0, 0, 0, 0.0
    it = loader if progress is None else progress(loader, desc=f"epoch {epoch} train", leave=False)
    for b in it:
        if max_steps is not None and steps >= max_steps:
            break
        t0 = time.perf_counter()
        x, side, y = _to(b, device, channels_last)
        logits = model(x, side)
        loss = criterion(logits, y)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"loss is {float(loss.detach())} at epoch {epoch}, step {steps} "
                                     f"(check the learning rate, the loss parameters and the inputs: "
                                     f"input finite={bool(torch.isfinite(x).all())})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
        optimizer.step()
        t_step += time.perf_counter() - t0
        bs = y.numel()
        loss_sum += float(loss.detach()) * bs
        n += bs
        steps += 1
        cm += confusion_matrix(y.cpu().numpy(), logits.detach().argmax(1).cpu().numpy(), num_classes)
        if progress is not None and hasattr(it, "set_postfix") and steps % 10 == 0:
            it.set_postfix(loss=f"{loss_sum / n:.4f}")
    return {"loss_sum": loss_sum, "n": n, "steps": steps, "step_seconds": t_step, "confusion": cm}


@torch.no_grad()
def predict_probs(models, batch, device, channels_last=False):
    x, side, _ = _to(batch, device, channels_last)
    p = None
    for m in models:
        q = torch.softmax(m(x, side).float(), dim=1)
        p = q if p is None else p + q
    return p / len(models)


@torch.no_grad()
def evaluate(models, batches, device, num_classes: int, criterion=None, channels_last=False, keep_probs=False) -> dict:
    """Accumulators over batches (to be summed across ranks): confusion,
    calibration bins, loss sum (criterion on log of the ensemble probs)."""
    was = [m.training for m in models]
    for m in models:
        m.eval()
    cm = np.zeros((num_classes, num_classes), np.int64)
    bins = np.zeros((15, 3))
    loss_sum, n = 0.0, 0
    probs_all = []
    try:
        for b in batches:
            p = predict_probs(models, b, device, channels_last)
            y = b["y"].to(device)
            if criterion is not None:
                loss_sum += float(criterion(torch.log(p.clamp_min(1e-12)), y)) * y.numel()
            pn, yn = p.cpu().numpy(), y.cpu().numpy()
            cm += confusion_matrix(yn, pn.argmax(1), num_classes)
            bins += calibration_bins(pn, yn, 15)
            n += yn.size
            if keep_probs:
                probs_all.append(pn)
    finally:
        for m, w in zip(models, was):
            m.train(w)
    out = {"confusion": cm, "bins": bins, "loss_sum": loss_sum, "n": n}
    if keep_probs:
        out["probs"] = np.concatenate(probs_all) if probs_all else np.zeros((0, num_classes))
    return out


def summarize(acc: dict, names) -> dict:
    m = prf_from_confusion(acc["confusion"], names)
    if "bins" in acc:
        m["ece"], m["mce"] = ece_mce(acc["bins"])
    m["loss"] = acc["loss_sum"] / max(acc["n"], 1) if acc.get("n") else math.nan
    return m
