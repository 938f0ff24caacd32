"""ResNet backbones adapted to 16x16 blocks (no pretrained weights).

Input: the block tensor [N, C, 16, 16] (docs/CONTRACTS.md): Y, chroma
nearest-upsampled from 8x8 to 16x16 as extra channels, optionally prev_y,
each divided by (2^bd - 1) so 8/10/12-bit share one range, then
standardised by the manifest's mean/std.

Stems (config ``stem``):
  * "imagenet": 7x7/2 conv + 3x3/2 maxpool (16 -> 4x4 at layer1;
    layer2 2x2, layer3/4 1x1). Cheap on CPU (~90 ms/step at batch 64).
  * "small": 3x3/1 conv, no maxpool (16x16 at layer1, layer4 2x2).
    Keeps the spatial detail, ~6x slower.
The trunk (exported as trunk.onnx) is stem..layer2; layer3+layer4 belong to
each stage file.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .registry import register_model

STEMS = ("imagenet", "small")


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + idt)


class ResNetBackbone(nn.Module):
    def __init__(self, in_chans: int = 3, widths: Sequence[int] = (64, 128, 256, 512),
                 blocks: Sequence[int] = (2, 2, 2, 2), stem: str = "imagenet", stem_width: int | None = None):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; known: {STEMS}")
        sw = stem_width or widths[0]
        self.stem_kind = stem
        self.in_chans = in_chans
        self.widths = tuple(widths)
        if stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(in_chans, sw, 7, 2, 3, bias=False), nn.BatchNorm2d(sw), nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_chans, sw, 3, 1, 1, bias=False), nn.BatchNorm2d(sw),
                                      nn.ReLU(inplace=True))
        layers = []
        cin = sw
        for i, (w, b) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            mods = [BasicBlock(cin, w, stride)] + [BasicBlock(w, w, 1) for _ in range(b - 1)]
            layers.append(nn.Sequential(*mods))
            cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.num_features = widths[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # zero-init the last BN of each residual branch (standard ResNet trick)
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(self.layer1(self.stem(x)))

    def forward(self, x):
        return self.layer4(self.layer3(self.forward_trunk(x)))

    @torch.no_grad()
    def trunk_shape(self) -> tuple[int, int, int]:
        was = self.training
        self.eval()
        f = self.forward_trunk(torch.zeros(1, self.in_chans, 16, 16))
        self.train(was)
        return tuple(f.shape[1:])


def _build(in_chans=3, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), stem="imagenet", **kw):
    return ResNetBackbone(in_chans=in_chans, widths=widths, blocks=blocks, stem=stem, **kw)


@register_model({"family": "resnet18", "widths": [64, 128, 256, 512], "head_hidden": [256, 128]})
def resnet18(in_chans=3, stem="imagenet", width_mult: float = 1.0, **kw):
    """ResNet-18 (2-2-2-2 BasicBlocks), widths 64..512 x width_mult."""
    widths = tuple(max(8, int(round(w * width_mult))) for w in (64, 128, 256, 512))
    return _build(in_chans, widths, (2, 2, 2, 2), stem, **kw)


@register_model({"family": "resnet18", "widths": [32, 64, 128, 256], "head_hidden": [256, 128]})
def resnet18_half(in_chans=3, stem="imagenet", **kw):
    """ResNet-18 at half width (a 4x smaller bundle)."""
    return _build(in_chans, (32, 64, 128, 256), (2, 2, 2, 2), stem, **kw)


@register_model({"family": "tiny", "widths": [8, 16, 24, 32], "head_hidden": [32, 16]})
def tiny(in_chans=3, stem="small", **kw):
    """~30k-parameter ResNet (1 block per layer, widths 8/16/24/32) for tests
    and the test bundle; same structure and seams as resnet18."""
    return _build(in_chans, (8, 16, 24, 32), (1, 1, 1, 1), stem, **kw)
