"""Classifier heads: pooled features (+ side features) -> MLP -> logits."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn


class MLPHead(nn.Module):
    """in_features(+num_side) -> hidden... -> num_classes, ReLU + dropout between.

    The research head for Stage 2 is 512 -> 256 -> 128 -> 3 with progressive
    dropout (notes 02/05). Side features are concatenated with the pooled
    features before the first layer.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (256, 128),
                 dropout: Sequence[float] | float = (0.1, 0.2), num_side: int = 0):
        super().__init__()
        hidden = list(hidden)
        if isinstance(dropout, (int, float)):
            dropout = [float(dropout)] * len(hidden)
        dropout = list(dropout) + [0.0] * (len(hidden) - len(dropout))
        self.in_features = in_features
        self.num_side = num_side
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        d = in_features + num_side
        for h, p in zip(hidden, dropout):
            layers += [nn.Linear(d, h), nn.ReLU()]
            if p > 0:
                layers.append(nn.Dropout(p))
            d = h
        self.mlp = nn.Sequential(*layers)
        self.fc = nn.Linear(d, num_classes)

    def forward(self, pooled: torch.Tensor | None, side: torch.Tensor | None = None,
                pre_logits: bool = False) -> torch.Tensor:
        if self.num_side:
            if side is None:
                raise ValueError("this head needs side features")
            # pooled is None for a head without trunk (models/notrunk.py)
            pooled = side if pooled is None else torch.cat([pooled, side], dim=1)
        z = self.mlp(pooled)
        return z if pre_logits else self.fc(z)
