"""Losses of the research notes (05): CE, class-balanced focal, Poly-1,
asymmetric (one-vs-rest), focal with label smoothing. All take logits
[N, K] and integer targets [N] and return the mean over the batch.

Definitions (p = softmax(logits), p_t = p[target], K classes):
  ce:          -log p_t   (optionally class-weighted)
  cb_focal:    -w_t (1 - p_t)^gamma log p_t, w_c = (1 - beta) / (1 - beta^n_c)
               normalised so sum_c w_c = K   (Cui et al. 2019; Lin et al. 2017)
  poly1:       -log p_t + epsilon (1 - p_t)   (Leng et al. 2022)
  asymmetric:  sum_c [ y_c (1-p_c)^gamma_pos (-log p_c)
                      + (1-y_c) p_c^gamma_neg (-log(1-p_c)) ]  with p = softmax
               (Ridnik et al. 2021, one-vs-rest over the softmax probabilities)
  focal_ls:    sum_c -q_c (1 - p_c)^gamma log p_c, q = (1-eps) onehot + eps/K

Class weighting is a separate choice (``class_weights``), so that a loss
ablation changes one thing: "auto" keeps each loss's historical weighting
(only cb_focal is weighted), "cb" weights every loss's per-sample term by
w_t above, "none" weights nothing (cb_focal is then the plain focal loss).
A weighted loss is mean_i(w_{t_i} l_i), the same reduction for every loss.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

LOSSES = ("ce", "cb_focal", "poly1", "asymmetric", "focal_ls")
CLASS_WEIGHTS = ("auto", "cb", "none")


def class_balanced_weights(counts: Sequence[int], beta: float) -> torch.Tensor:
    """w_c = (1 - beta) / (1 - beta^n_c), normalised to sum K. Counts of 0 get weight 0."""
    n = torch.as_tensor(counts, dtype=torch.float64)
    eff = 1.0 - torch.pow(torch.full_like(n, beta), n)
    w = torch.where(n > 0, (1.0 - beta) / eff.clamp_min(1e-12), torch.zeros_like(n))
    w = w / w.sum() * (n > 0).sum()
    return w.float()


class _Weighted(nn.Module):
    """Base: ``per_sample(logits, target)`` -> [N]; forward returns
    mean_i(w_{t_i} l_i), or the plain mean without weights."""

    def __init__(self, weight=None):
        super().__init__()
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, logits, target):
        loss = self.per_sample(logits, target)
        if self.weight is not None:
            loss = self.weight.to(loss.dtype)[target] * loss
        return loss.mean()


class CrossEntropy(_Weighted):
    def per_sample(self, logits, target):
        return F.cross_entropy(logits, target, reduction="none")


class Focal(_Weighted):
    """-(1 - p_t)^gamma log p_t; with class-balanced weights this is the
    class-balanced focal loss of Cui et al."""

    def __init__(self, gamma: float = 2.0, weight=None):
        super().__init__(weight)
        self.gamma = gamma

    def per_sample(self, logits, target):
        logp = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
        return -(1.0 - logp.exp()).pow(self.gamma) * logp


class Poly1(_Weighted):
    def __init__(self, epsilon: float = 1.0, weight=None):
        super().__init__(weight)
        self.epsilon = epsilon

    def per_sample(self, logits, target):
        ce = F.cross_entropy(logits, target, reduction="none")
        pt = F.softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
        return ce + self.epsilon * (1.0 - pt)


class Asymmetric(_Weighted):
    def __init__(self, gamma_pos: float = 2.0, gamma_neg: float = 4.0, eps: float = 1e-8, weight=None):
        super().__init__(weight)
        self.gamma_pos, self.gamma_neg, self.eps = gamma_pos, gamma_neg, eps

    def per_sample(self, logits, target):
        p = F.softmax(logits, dim=1)
        y = F.one_hot(target, logits.shape[1]).to(p.dtype)
        logp = F.log_softmax(logits, dim=1)
        log1mp = torch.log((1.0 - p).clamp_min(self.eps))
        pos = y * (1.0 - p).pow(self.gamma_pos) * (-logp)
        neg = (1.0 - y) * p.pow(self.gamma_neg) * (-log1mp)
        return (pos + neg).sum(1)


class FocalLabelSmoothing(_Weighted):
    def __init__(self, gamma: float = 2.0, smoothing: float = 0.1, weight=None):
        super().__init__(weight)
        self.gamma, self.smoothing = gamma, smoothing

    def per_sample(self, logits, target):
        k = logits.shape[1]
        logp = F.log_softmax(logits, dim=1)
        p = logp.exp()
        q = F.one_hot(target, k).to(p.dtype) * (1.0 - self.smoothing) + self.smoothing / k
        return -(q * (1.0 - p).pow(self.gamma) * logp).sum(1)


def ClassBalancedFocal(counts: Sequence[int], gamma: float = 2.0, beta: float = 0.9999) -> Focal:
    return Focal(gamma, class_balanced_weights(counts, beta))


def create_loss(name: str, counts: Sequence[int], gamma: float = 2.0, beta: float = 0.9999,
                epsilon: float = 1.0, gamma_pos: float = 2.0, gamma_neg: float = 4.0,
                smoothing: float = 0.1, class_weights: str = "auto") -> nn.Module:
    if class_weights not in CLASS_WEIGHTS:
        raise ValueError(f"unknown class_weights {class_weights!r}; known: {CLASS_WEIGHTS}")
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {LOSSES}")
    weighted = class_weights == "cb" or (class_weights == "auto" and name == "cb_focal")
    w = class_balanced_weights(counts, beta) if weighted else None
    if name == "ce":
        return CrossEntropy(w)
    if name == "cb_focal":
        return Focal(gamma, w)
    if name == "poly1":
        return Poly1(epsilon, w)
    if name == "asymmetric":
        return Asymmetric(gamma_pos, gamma_neg, weight=w)
    return FocalLabelSmoothing(gamma, smoothing, w)
