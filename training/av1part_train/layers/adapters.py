"""Adapters for the frozen Stage 1 backbone (research notes 02 and 03).

ConvAdapter (Chen et al., Conv-Adapter; notes 02):
    h' = h + alpha * dh,   dh = Up1x1(DW3x3(ReLU(Down1x1(h))))
    hidden = channels // reduction (gamma, default 4); alpha per channel,
    initialised to 1; Down/DW/Up near zero (kaiming * 0.01) so dh ~ 0 at the
    start and the Stage 1 features pass through unchanged.

ResidualAdapter (Rebuffi et al.; notes 03, "exp11a"): a bottleneck MLP on
the globally pooled features whose output is broadcast-added back:
    h' = h + Up(Dropout(ReLU(Down(mean_hw(h)))))[:, :, None, None]

Both exist for two feature layouts: ``nchw`` maps (ResNet) and ``cells``,
``[N, 16, C]`` per 4x4-pixel cell (BlockNet), where the depthwise 3x3 runs
over the 4x4 grid of cells.
"""
from __future__ import annotations

import torch
import torch.nn as nn

ADAPTER_KINDS = ("conv", "residual")


class ConvAdapter(nn.Module):
    def __init__(self, channels: int, reduction: int = 4, init_scale: float = 0.01):
        super().__init__()
        if reduction < 1:
            raise ValueError("adapter reduction must be >= 1")
        hidden = max(1, channels // reduction)
        self.down = nn.Conv2d(channels, hidden, 1, bias=False)
        self.act = nn.ReLU(inplace=False)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.up = nn.Conv2d(hidden, channels, 1, bias=False)
        self.alpha = nn.Parameter(torch.ones(channels))
        self.reset_parameters(init_scale)

    @torch.no_grad()
    def reset_parameters(self, init_scale: float = 0.01):
        for m in (self.down, self.dw, self.up):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            m.weight.mul_(init_scale)
        self.alpha.fill_(1.0)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        dh = self.up(self.dw(self.act(self.down(h))))
        return h + self.alpha.view(1, -1, 1, 1) * dh


class ResidualAdapter(nn.Module):
    def __init__(self, channels: int, bottleneck: int = 64, dropout: float = 0.1, init_std: float = 1e-3):
        super().__init__()
        self.down = nn.Linear(channels, bottleneck)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, channels)
        nn.init.normal_(self.down.weight, std=init_std)
        nn.init.normal_(self.up.weight, std=init_std)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        pooled = h.mean(dim=(2, 3))
        d = self.up(self.drop(self.act(self.down(pooled))))
        return h + d[:, :, None, None]


class CellDepthwise(nn.Module):
    """Depthwise 3x3 over the 4x4 cell grid (zero padding): [N, 16, C], as
    one MatMul with the dense grid matrix (see models/blocknet.py)."""

    def __init__(self, channels: int):
        super().__init__()
        from ..models.blocknet import shift_tensor
        self.weight = nn.Parameter(torch.empty(9, channels))
        self.channels = channels
        self.register_buffer("shift", shift_tensor(), persistent=False)
        self.register_buffer("eye", torch.eye(channels), persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        from ..models.blocknet import CELLS, grid_matrix
        w_taps = self.weight[:, :, None] * self.eye          # [9, c, c], diagonal per tap
        dense = grid_matrix(self.shift, w_taps)
        return (h.reshape(-1, CELLS * self.channels) @ dense.t()).reshape(-1, CELLS, self.channels)

    def macs(self, h: torch.Tensor) -> tuple[int, int]:
        from ..models.blocknet import VALID_TAPS, CELLS
        return VALID_TAPS * self.channels, CELLS * CELLS * self.channels * self.channels


class CellConvAdapter(nn.Module):
    """ConvAdapter on cell features: h + alpha * Up(DW3x3(ReLU(Down(h))))."""

    def __init__(self, channels: int, reduction: int = 4, init_scale: float = 0.01):
        super().__init__()
        if reduction < 1:
            raise ValueError("adapter reduction must be >= 1")
        hidden = max(1, channels // reduction)
        self.down = nn.Linear(channels, hidden, bias=False)
        self.act = nn.ReLU(inplace=False)
        self.dw = CellDepthwise(hidden)
        self.up = nn.Linear(hidden, channels, bias=False)
        self.alpha = nn.Parameter(torch.ones(channels))
        self.reset_parameters(init_scale)

    @torch.no_grad()
    def reset_parameters(self, init_scale: float = 0.01):
        # kaiming (fan_out, ReLU) as ConvAdapter, scaled near zero
        nn.init.normal_(self.down.weight, std=init_scale * (2.0 / self.down.out_features) ** 0.5)
        nn.init.normal_(self.dw.weight, std=init_scale * (2.0 / 9) ** 0.5)
        nn.init.normal_(self.up.weight, std=init_scale * (2.0 / self.up.out_features) ** 0.5)
        self.alpha.fill_(1.0)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # alpha folded into Up: a constant for the exporter, one Mul fewer per adapter
        return h + torch.nn.functional.linear(self.dw(self.act(self.down(h))), self.up.weight * self.alpha[:, None])


class CellResidualAdapter(ResidualAdapter):
    """ResidualAdapter on cell features: the MLP of the mean over cells."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        d = self.up(self.drop(self.act(self.down(h.mean(dim=1)))))
        return h + d[:, None, :]


LAYOUTS = ("nchw", "cells")


def create_adapter(kind: str, channels: int, reduction: int = 4, bottleneck: int = 64,
                   dropout: float = 0.1, layout: str = "nchw") -> nn.Module:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown feature layout {layout!r}; known: {LAYOUTS}")
    cells = layout == "cells"
    if kind == "conv":
        return (CellConvAdapter if cells else ConvAdapter)(channels, reduction=reduction)
    if kind == "residual":
        return (CellResidualAdapter if cells else ResidualAdapter)(channels, bottleneck=bottleneck, dropout=dropout)
    raise ValueError(f"unknown adapter kind {kind!r}; known: {ADAPTER_KINDS}")
