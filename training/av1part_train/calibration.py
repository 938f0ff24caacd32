"""Calibration of each stage's probabilities on the validation split.

Two corrections, both folded into the exported graph (``StageExport``:
``softmax(logits / T + shift)``), so the plugin needs nothing new:

* prior correction: a stage trained on class-balanced batches estimates
  p(y|x) under a uniform prior; ``shift = log(training prior)`` puts the real
  training distribution back (Bayes' rule for a label shift). The manifest's
  ``prior`` of that stage is that same training prior, and it is what the
  cascade spreads a skipped stage's mass by, so a skipped stage and a run one
  follow the same distribution;
* temperature: one T per stage, chosen to minimise the negative
  log-likelihood of the validation blocks that reach the stage (with the
  shift applied). T > 1 softens an overconfident stage, T < 1 sharpens an
  underconfident one.

The fit is a golden-section search on log T over [1/8, 8] of a function that
is convex in 1/T (the NLL of a softmax is convex in a logit scale), so it
finds the optimum to ~1e-4 in log T.
"""
from __future__ import annotations

import math

import numpy as np
import torch

LOG_T_RANGE = (-math.log(8.0), math.log(8.0))


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0, shift: np.ndarray | None = None) -> float:
    """Mean negative log-likelihood of softmax(logits / T + shift).
    ``logits`` [M, N, K] (M ensemble members, averaged in probability) or [N, K]."""
    p = probabilities(logits, temperature, shift)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())


def probabilities(logits: np.ndarray, temperature: float = 1.0, shift: np.ndarray | None = None) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    if z.ndim == 2:
        z = z[None]
    z = z / temperature
    if shift is not None:
        z = z + np.asarray(shift, np.float64)
    z = z - z.max(axis=2, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=2, keepdims=True)).mean(axis=0)


def fit_temperature(logits: np.ndarray, y: np.ndarray, shift: np.ndarray | None = None,
                    iters: int = 60) -> float:
    """The T in [1/8, 8] minimising the NLL (golden-section search on log T)."""
    y = np.asarray(y, np.int64)
    if len(y) == 0:
        return 1.0
    f = lambda lt: nll(logits, y, math.exp(lt), shift)
    a, b = LOG_T_RANGE
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iters):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return float(math.exp((a + b) / 2))


@torch.no_grad()
def member_logits(members, ds, idx: np.ndarray, batch: int = 2048) -> np.ndarray:
    """[M, N, K] logits of every ensemble member on the dataset rows ``idx``."""
    out = [[] for _ in members]
    for s in range(0, len(idx), batch):
        b = ds.batch(idx[s:s + batch])
        for i, m in enumerate(members):
            m.eval()
            side = b["side"] if m.num_side else None
            out[i].append(m(b["x"], side).float().numpy())
    return np.stack([np.concatenate(o) for o in out])


def calibrate_stage(members, ds, shift: np.ndarray | None, max_blocks: int = 50_000, seed: int = 0) -> dict:
    """Fits the stage's temperature on ``ds`` (a validation BlockDataset routed
    to the stage) and reports the NLL and ECE before and after."""
    from .metrics import calibration_bins, ece_mce
    n = len(ds)
    idx = np.arange(n) if n <= max_blocks else np.sort(np.random.default_rng(seed).choice(n, max_blocks, replace=False))
    z = member_logits(members, ds, idx)
    y = ds.targets[idx]
    t = fit_temperature(z, y, shift)
    p0, p1 = probabilities(z, 1.0, shift), probabilities(z, t, shift)
    return {"temperature": t, "blocks": int(len(idx)),
            "val_nll_before": nll(z, y, 1.0, shift), "val_nll_after": nll(z, y, t, shift),
            "val_ece_before": ece_mce(calibration_bins(p0, y))[0],
            "val_ece_after": ece_mce(calibration_bins(p1, y))[0]}
