"""BlockNet: a backbone built for 16x16 4:2:0 blocks.

The block is cut into a 4x4 grid of 4x4-pixel cells, so every AV1 partition
boundary of a 16x16 block (halves at 8, quarters at 4, the AB corners) falls
on a cell edge. The grid is kept, at 4x4, through every layer, the adapted
ones (layer3, layer4) included, so that the Conv-Adapters' depthwise 3x3
sees neighbouring cells and the head can pool rows, columns and quadrants
apart (StageModel ``pool="grid"``).

* stem: a 4x4 stride-4 convolution (patchify) + BN + ReLU. Each cell's
  features are a learnt function of exactly its 16 luma samples and, for
  the chroma channels of the block tensor (nearest-upsampled from 8x8, see
  docs/CONTRACTS.md), of its 2x2 native chroma samples: a stride-4 kernel on
  replicated samples spans the same functions as a stride-2 2x2 kernel on
  native chroma, at 4x the (small) stem cost for those channels.
* layer1..layer4: one BasicBlock each (3x3 convs at 4x4, stride 1).
* trunk = stem..layer2; layer3 is frozen for Stages 2/3 and comes before
  the first adapter, so a fused bundle computes it once per block too.

MACs per block (``av1part_train.macs``, only taps that touch data): a
C-channel 3x3 conv at 4x4 has 100 of its 144 taps inside the map, 100 C^2;
each BasicBlock 200 C^2; the stem 256 C per input channel.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model
from .resnet import BasicBlock

GRID = 4  # cells per side


class BlockNetBackbone(nn.Module):
    def __init__(self, in_chans: int = 3, width: int = 16, stem: str = "patch4"):
        super().__init__()
        if stem != "patch4":
            raise ValueError(f"unknown BlockNet stem {stem!r}; known: ('patch4',)")
        self.in_chans = in_chans
        self.width = width
        self.stem_kind = stem
        self.stem = nn.Sequential(nn.Conv2d(in_chans, width, 4, 4, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            nn.Sequential(BasicBlock(width, width, 1)) for _ in range(4))
        self.num_features = width
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(self.layer1(self.stem(x)))

    def forward(self, x):
        return self.layer4(self.layer3(self.forward_trunk(x)))

    @torch.no_grad()
    def trunk_shape(self) -> tuple[int, int, int]:
        return (self.width, GRID, GRID)


_CFG = {"family": "blocknet", "pool": "grid", "fused": True}


@register_model({**_CFG, "widths": [8], "head_hidden": [32]})
def blocknet8(in_chans=3, stem="patch4", **kw):
    """BlockNet, width 8: about 0.15 M MACs per block for the whole cascade."""
    return BlockNetBackbone(in_chans, 8, stem, **kw)


@register_model({**_CFG, "widths": [24], "head_hidden": [64]})
def blocknet24(in_chans=3, stem="patch4", **kw):
    """BlockNet, width 24: about 1 M MACs per block for the whole cascade."""
    return BlockNetBackbone(in_chans, 24, stem, **kw)


@register_model({**_CFG, "widths": [64], "head_hidden": [128]})
def blocknet64(in_chans=3, stem="patch4", **kw):
    """BlockNet, width 64: about 8 M MACs per block for the whole cascade."""
    return BlockNetBackbone(in_chans, 64, stem, **kw)
