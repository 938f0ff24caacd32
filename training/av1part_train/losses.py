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
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

LOSSES = ("ce", "cb_focal", "poly1", "asymmetric", "focal_ls")


def class_balanced_weights(counts: Sequence[int], beta: float) -> torch.Tensor:
    """w_c = (1 - beta) / (1 - beta^n_c), normalised to sum K. Counts of 0 get weight 0."""
    n = torch.as_tensor(counts, dtype=torch.float64)
    eff = 1.0 - torch.pow(torch.full_like(n, beta), n)
    w = torch.where(n > 0, (1.0 - beta) / eff.clamp_min(1e-12), torch.zeros_like(n))
    w = w / w.sum() * (n > 0).sum()
    return w.float()


class CrossEntropy(nn.Module):
    def __init__(self, weight=None):
        super().__init__()
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, logits, target):
        return F.cross_entropy(logits, target, weight=self.weight)


class ClassBalancedFocal(nn.Module):
    def __init__(self, counts: Sequence[int], gamma: float = 2.0, beta: float = 0.9999):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", class_balanced_weights(counts, beta))

    def forward(self, logits, target):
        logp = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
        pt = logp.exp()
        w = self.weight.to(logits.dtype)[target]
        return (-w * (1.0 - pt).pow(self.gamma) * logp).mean()


class Poly1(nn.Module):
    def __init__(self, epsilon: float = 1.0, weight=None):
        super().__init__()
        self.epsilon = epsilon
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, logits, target):
        ce = F.cross_entropy(logits, target, weight=self.weight, reduction="none")
        pt = F.softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
        return (ce + self.epsilon * (1.0 - pt)).mean()


class Asymmetric(nn.Module):
    def __init__(self, gamma_pos: float = 2.0, gamma_neg: float = 4.0, eps: float = 1e-8):
        super().__init__()
        self.gamma_pos, self.gamma_neg, self.eps = gamma_pos, gamma_neg, eps

    def forward(self, logits, target):
        p = F.softmax(logits, dim=1)
        y = F.one_hot(target, logits.shape[1]).to(p.dtype)
        logp = F.log_softmax(logits, dim=1)
        log1mp = torch.log((1.0 - p).clamp_min(self.eps))
        pos = y * (1.0 - p).pow(self.gamma_pos) * (-logp)
        neg = (1.0 - y) * p.pow(self.gamma_neg) * (-log1mp)
        return (pos + neg).sum(1).mean()


class FocalLabelSmoothing(nn.Module):
    def __init__(self, gamma: float = 2.0, smoothing: float = 0.1):
        super().__init__()
        self.gamma, self.smoothing = gamma, smoothing

    def forward(self, logits, target):
        k = logits.shape[1]
        logp = F.log_softmax(logits, dim=1)
        p = logp.exp()
        q = F.one_hot(target, k).to(p.dtype) * (1.0 - self.smoothing) + self.smoothing / k
        return (-(q * (1.0 - p).pow(self.gamma) * logp).sum(1)).mean()


def create_loss(name: str, counts: Sequence[int], gamma: float = 2.0, beta: float = 0.9999,
                epsilon: float = 1.0, gamma_pos: float = 2.0, gamma_neg: float = 4.0,
                smoothing: float = 0.1, class_weighted_ce: bool = False) -> nn.Module:
    if name == "ce":
        return CrossEntropy(class_balanced_weights(counts, beta) if class_weighted_ce else None)
    if name == "cb_focal":
        return ClassBalancedFocal(counts, gamma=gamma, beta=beta)
    if name == "poly1":
        return Poly1(epsilon=epsilon)
    if name == "asymmetric":
        return Asymmetric(gamma_pos=gamma_pos, gamma_neg=gamma_neg)
    if name == "focal_ls":
        return FocalLabelSmoothing(gamma=gamma, smoothing=smoothing)
    raise ValueError(f"unknown loss {name!r}; known: {LOSSES}")
