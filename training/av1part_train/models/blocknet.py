"""BlockNet: a backbone built for 16x16 4:2:0 blocks.

The block is cut into a 4x4 grid of 4x4-pixel cells, so every AV1 partition
boundary of a 16x16 block (halves at 8, quarters at 4, the AB corners) falls
on a cell edge. Features are kept per cell, ``[N, 16, C]`` (cells in raster
order, channels last), through every layer, the adapted ones (layer3,
layer4) included: the Conv-Adapters' depthwise 3x3 sees neighbouring cells,
and the head pools rows, columns and quadrants apart (StageModel
``pool="grid"``).

Why cells and matmuls rather than Conv2d on 4x4 maps: ONNX Runtime runs a
convolution image by image (a tiny im2col + GEMM per block), which on a 4x4
map is dominated by overhead; gathering each cell's neighbourhood instead
is dominated by the copies (measured: 28 Gathers took 28% of a run). Here a
3x3 convolution over the grid is one MatMul of the block's whole feature
vector ``[N, 16*C]`` with a ``[16*C, 16*C]`` matrix built from the 3x3
kernel (each output cell reads its 3x3 neighbours, zero where the tap leaves
the grid): 2.56x the real MACs, but one GEMM with a row per block, which
CPUs run near full speed. The matrix and the folded BatchNorm depend only
on weights, so the exporter and ONNX Runtime constant-fold them: the graph
is MatMul, Add and Relu.

* stem: patchify, each cell's 16 samples of every channel of the block
  tensor -> C features (Linear + BN + ReLU). A cell's features are a learnt
  function of exactly its 16 luma samples and, for the chroma channels
  (nearest-upsampled from 8x8, docs/CONTRACTS.md), of its 2x2 native chroma
  samples: a linear map of replicated samples spans the same functions as
  one of the native 2x2 samples, at 4x the (small) stem cost for chroma.
* layer1..layer4: one residual block each (two 3x3 grid convs).
* trunk = stem..layer2; layer3 is frozen for Stages 2/3 and comes before the
  first adapter, so a fused bundle computes it once per block.

MACs per block (``av1part_train.macs``): a C->C 3x3 grid conv has 100 of its
144 taps on real cells (100 C^2 real, 144 C^2 run); a block 2x that; the
stem 256 C per input channel.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..layers.block_stats import patchify
from .registry import register_model

GRID = 4            # cells per side
CELLS = GRID * GRID


def neighbour_index() -> torch.Tensor:
    """[16, 9]: for each cell, the index of each 3x3 neighbour (raster order
    of the taps); 16, the appended zero cell, where a tap leaves the grid."""
    idx = torch.full((CELLS, 9), CELLS, dtype=torch.long)
    for r in range(GRID):
        for c in range(GRID):
            for t, (dr, dc) in enumerate((a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)):
                rr, cc = r + dr, c + dc
                if 0 <= rr < GRID and 0 <= cc < GRID:
                    idx[r * GRID + c, t] = rr * GRID + cc
    return idx


VALID_TAPS = int((neighbour_index() < CELLS).sum())   # 100 of 144


def shift_tensor() -> torch.Tensor:
    """[16 * 16, 9]: row (out_cell * 16 + in_cell) has a 1 at tap t when
    in_cell is out_cell's neighbour t."""
    s = torch.zeros(CELLS, CELLS, 9)
    for o, taps in enumerate(neighbour_index().tolist()):
        for t, i in enumerate(taps):
            if i < CELLS:
                s[o, i, t] = 1.0
    return s.reshape(CELLS * CELLS, 9)


def grid_matrix(shift: torch.Tensor, w_taps: torch.Tensor) -> torch.Tensor:
    """The dense ``[16*cout, 16*cin]`` matrix of a 3x3 grid convolution
    whose kernel is ``w_taps`` ``[9, cout, cin]`` (out cell-major)."""
    _, cout, cin = w_taps.shape
    m = shift @ w_taps.reshape(9, cout * cin)                  # [(o, i), (k, c)]
    return m.reshape(CELLS, CELLS, cout, cin).permute(0, 2, 1, 3).reshape(CELLS * cout, CELLS * cin)


class LinearBN(nn.Module):
    """Per-cell Linear (no bias) + BatchNorm over channels; in eval mode the
    BatchNorm is folded into the weight and a bias."""

    def __init__(self, cin: int, cout: int, zero_gamma: bool = False):
        super().__init__()
        self.cin, self.cout = cin, cout
        self.weight = nn.Parameter(torch.empty(cout, cin))
        nn.init.normal_(self.weight, std=math.sqrt(2.0 / cin))
        self.bn = nn.BatchNorm1d(cout)
        if zero_gamma:
            nn.init.zeros_(self.bn.weight)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if self.bn.training:
            n, cells, _ = u.shape
            y = u @ self.weight.t()
            return self.bn(y.reshape(-1, self.cout)).reshape(-1, cells, self.cout)
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        w = self.weight * scale[:, None]
        b = self.bn.bias - self.bn.running_mean * scale
        return u @ w.t() + b

    def macs(self, u: torch.Tensor) -> tuple[int, int]:
        n = u.shape[1] * self.cin * self.cout
        return n, n


class CellConvBN(nn.Module):
    """3x3 convolution over the cell grid (zero padding) + BatchNorm, as one
    MatMul of the flattened cells (see the module docstring).
    ``lin.weight`` is ``[cout, 9 * cin]``, taps in raster order."""

    def __init__(self, cin: int, cout: int, zero_gamma: bool = False):
        super().__init__()
        self.lin = LinearBN(9 * cin, cout, zero_gamma)
        self.cin, self.cout = cin, cout
        self.register_buffer("shift", shift_tensor(), persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``[N, 16, cin] -> [N, 16, cout]``, or flat ``[N, 16*cin] ->
        [N, 16*cout]`` (so that chained grid convolutions need no Reshape
        between them). Shapes use -1 for the batch: the exported graph has
        no shape arithmetic."""
        if h.dim() == 3:
            return self.forward(h.reshape(-1, CELLS * self.cin)).reshape(-1, CELLS, self.cout)
        f = h
        w_taps = self.lin.weight.reshape(self.cout, 9, self.cin).permute(1, 0, 2)
        bn = self.lin.bn
        if bn.training:
            y = f @ grid_matrix(self.shift, w_taps).t()
            return bn(y.reshape(-1, self.cout)).reshape(-1, CELLS * self.cout)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        dense = grid_matrix(self.shift, w_taps * scale[None, :, None])
        bias = (bn.bias - bn.running_mean * scale).repeat(CELLS)
        return f @ dense.t() + bias

    @property
    def bn(self):
        return self.lin.bn

    def macs(self, h: torch.Tensor) -> tuple[int, int]:
        """(MACs on real cells, MACs the dense MatMul runs)."""
        return VALID_TAPS * self.cin * self.cout, CELLS * CELLS * self.cin * self.cout


class CellBlock(nn.Module):
    """Residual block of two 3x3 grid convs (a BasicBlock on cells)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = CellConvBN(c, c)
        self.conv2 = CellConvBN(c, c, zero_gamma=True)   # residual branch starts at 0
        self.relu = nn.ReLU()

    @property
    def bn2(self):
        return self.conv2.bn

    def forward(self, h):
        f = h.reshape(-1, CELLS * self.conv1.cin)
        y = self.conv2(self.relu(self.conv1(f)))
        return self.relu(f + y).reshape(-1, CELLS, self.conv2.cout)


class CellStem(nn.Module):
    """[N, Cin, 16, 16] (or its cell-major view) -> [N, 16, C]: each 4x4 cell's samples -> features."""

    def __init__(self, in_chans: int, width: int):
        super().__init__()
        self.in_chans = in_chans
        self.lin = LinearBN(in_chans * 16, width)
        self.relu = nn.ReLU()

    def forward(self, x):
        """``x``: planar ``[N, Cin, 16, 16]``, or already cell-major ``[N, 16, Cin * 16]``
        (a fused graph that also computes block statistics builds the view once)."""
        cells = patchify(x, self.in_chans) if x.dim() == 4 else x
        return self.relu(self.lin(cells))


class BlockNetBackbone(nn.Module):
    layout = "cells"

    def __init__(self, in_chans: int = 3, width: int = 16, stem: str = "patch4"):
        super().__init__()
        if stem != "patch4":
            raise ValueError(f"unknown BlockNet stem {stem!r}; known: ('patch4',)")
        self.in_chans = in_chans
        self.width = width
        self.stem_kind = stem
        self.stem = CellStem(in_chans, width)
        self.layer1, self.layer2, self.layer3, self.layer4 = (nn.Sequential(CellBlock(width)) for _ in range(4))
        self.num_features = width

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(self.layer1(self.stem(x)))

    def forward(self, x):
        return self.layer4(self.layer3(self.forward_trunk(x)))

    def trunk_shape(self) -> tuple[int, int]:
        return (CELLS, self.width)


_CFG = {"family": "blocknet", "pool": "grid", "fused": True, "stem": "patch4"}


@register_model({**_CFG, "widths": [8], "head_hidden": [32]})
def blocknet8(in_chans=3, stem="patch4", **kw):
    """BlockNet, width 8: about 0.1 M MACs per block for the whole cascade."""
    return BlockNetBackbone(in_chans, 8, stem, **kw)


@register_model({**_CFG, "widths": [24], "head_hidden": [64]})
def blocknet24(in_chans=3, stem="patch4", **kw):
    """BlockNet, width 24: about 1 M MACs per block for the whole cascade."""
    return BlockNetBackbone(in_chans, 24, stem, **kw)


@register_model({**_CFG, "widths": [64], "head_hidden": [128]})
def blocknet64(in_chans=3, stem="patch4", **kw):
    """BlockNet, width 64: about 8 M MACs per block for the whole cascade."""
    return BlockNetBackbone(in_chans, 64, stem, **kw)
