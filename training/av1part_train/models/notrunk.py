"""A backbone with no trunk: every stage is its head alone, an MLP on the
side features.

Why it exists: on unseen clips a 2-layer MLP on the 28 block statistics of
the `block_stats` side feature (log-variances of the block, its halves,
quadrants and 4-strips, split gains, gradients, chroma, the difference from
the previous block) scores as well as every BlockNet trunk we trained
(training/EXPERIMENTS.md, "Hand-feature baseline"), and a graph of a few
MatMuls costs ONNX Runtime a fraction of a grid trunk's per-node overhead.
The statistics keep the block's geometry (halves, quadrants, strips) that a
trunk's grid pooling would otherwise provide.

The hierarchy is unchanged: Stage 1 trains its head, Stages 2 and 3 train
theirs ("frozen" mode: there is no backbone to freeze or adapt). The block
tensor is not read: a bundle of this arch has no `x` input (docs/CONTRACTS.md).
"""
from __future__ import annotations

import torch.nn as nn

from .registry import register_model


class NoTrunk(nn.Module):
    """Stands where a backbone stands: no parameters, no features (``num_features`` 0);
    every seam returns None so that a StageModel's head sees its side features alone."""

    layout = "cells"
    num_features = 0
    has_trunk = False

    def __init__(self, in_chans: int = 3, stem: str = "none"):
        super().__init__()
        if stem != "none":
            raise ValueError(f"arch without trunk takes stem 'none', got {stem!r}")
        self.in_chans = in_chans
        self.stem_kind = stem
        self.layer3 = nn.Identity()
        self.layer4 = nn.Identity()

    def forward_trunk(self, x):
        return None

    def forward(self, x):
        return None

    def trunk_shape(self) -> tuple[int, int]:
        return (0, 0)


@register_model({"family": "notrunk", "pool": "mean", "fused": True, "stem": "none", "head_hidden": [64, 64]})
def statsmlp(in_chans=3, stem="none", **kw):
    """No trunk: each stage an MLP (64, 64) on the side features (give it `block_stats`)."""
    return NoTrunk(in_chans, stem, **kw)
