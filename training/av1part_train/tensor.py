"""The block tensor of docs/CONTRACTS.md, built bit-for-bit like the plugin.

Every value is ``((float32)sample / (float32)((1 << bd) - 1) - mean[ch]) / std[ch]``
computed in float32, one operation at a time (IEEE float32 division and
subtraction are correctly rounded, so the Rust plugin gets identical bits).
Chroma (8x8 for 4:2:0) enters as channels by nearest-neighbour 2x upsampling:
``U[r >> 1][c >> 1]``. ``prev_y`` is the co-located Y block of the previous
source frame, or a copy of Y when there is none.

Layout (``input.layout``): ``planar`` (the default) is ``[N, C, 16, 16]``;
``cells`` is ``[N, 16, C * 16]``, the same values ordered cell by cell (the
4x4 grid of 4x4-pixel cells in raster order; in a cell, channel by channel,
its 16 samples in raster order), so that a cell-based backbone's stem reads
its input without a Transpose.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

KNOWN_CHANNELS = ("y", "u", "v", "prev_y")
KNOWN_SIDE_FEATURES = ("qindex", "intra", "has_prev", "cpu_used", "block_stats")
# values per side feature (block_stats: the 28 statistics of side_stats.py)
SIDE_WIDTH = {"block_stats": 28}
CPU_USED_SCALE = 10.0  # side feature cpu_used = preset / 10
BLOCK = 16
LAYOUTS = ("planar", "cells")


@dataclass(frozen=True)
class InputSpec:
    """What a bundle (and a model) consumes: the manifest's ``input`` block."""

    channels: tuple = ("y", "u", "v")
    side_features: tuple = ()
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.25, 0.25, 0.25)
    presets: tuple = ()  # with side feature cpu_used: the presets trained for
    layout: str = "planar"  # of the x tensor: planar [N, C, 16, 16] or cells [N, 16, C * 16]

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown input layout {self.layout!r}; known: {LAYOUTS}")
        for c in self.channels:
            if c not in KNOWN_CHANNELS:
                raise ValueError(f"unknown channel {c!r}; known: {KNOWN_CHANNELS}")
        for s in self.side_features:
            if s not in KNOWN_SIDE_FEATURES:
                raise ValueError(f"unknown side feature {s!r}; known: {KNOWN_SIDE_FEATURES}")
        if len(self.mean) != len(self.channels) or len(self.std) != len(self.channels):
            raise ValueError("normalization mean/std need one value per channel")
        if len(set(self.channels)) != len(self.channels) or "y" not in self.channels:
            raise ValueError("channels must be distinct and include 'y'")

    @property
    def num_channels(self) -> int:
        return len(self.channels)

    @property
    def num_side(self) -> int:
        """Columns of the side tensor (a feature may take several: SIDE_WIDTH)."""
        return sum(SIDE_WIDTH.get(s, 1) for s in self.side_features)

    @classmethod
    def create(cls, channels: Sequence[str] = ("y", "u", "v"), side_features: Sequence[str] = (),
               mean: float | Sequence[float] = 0.5, std: float | Sequence[float] = 0.25) -> "InputSpec":
        channels = tuple(channels)
        if isinstance(mean, (int, float)):
            mean = (float(mean),) * len(channels)
        if isinstance(std, (int, float)):
            std = (float(std),) * len(channels)
        return cls(channels=channels, side_features=tuple(side_features),
                   mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))

    def manifest(self) -> dict:
        return {
            "block_size": BLOCK,
            "chroma": "420",
            "channels": list(self.channels),
            "chroma_upsample": "nearest",
            "normalization": {"divide_by": "max_sample_value",
                              "mean": list(self.mean), "std": list(self.std)},
            "side_features": list(self.side_features),
            "prev_y_when_absent": "copy_current",
            **({"presets": list(self.presets)} if self.presets or "cpu_used" in self.side_features else {}),
            **({"layout": self.layout} if self.layout != "planar" else {}),
        }

    def x_shape(self) -> list[int]:
        """The block tensor's shape, batch -1."""
        c = self.num_channels
        return [-1, c, BLOCK, BLOCK] if self.layout == "planar" else [-1, 16, c * 16]

    @classmethod
    def from_manifest(cls, m: dict) -> "InputSpec":
        if m.get("block_size") != BLOCK or m.get("chroma") != "420":
            raise ValueError("only 16x16 4:2:0 blocks are supported")
        n = m["normalization"]
        return cls(channels=tuple(m["channels"]), side_features=tuple(m.get("side_features", [])),
                   mean=tuple(n["mean"]), std=tuple(n["std"]), presets=tuple(m.get("presets", ())),
                   layout=m.get("layout", "planar"))


def upsample_chroma(c: np.ndarray) -> np.ndarray:
    """[N,8,8] -> [N,16,16], element [r][c] = C[r >> 1][c >> 1]."""
    return np.repeat(np.repeat(c, 2, axis=-2), 2, axis=-1)


def build_x(spec: InputSpec, y, u, v, prev_y, bit_depth, has_prev=None) -> np.ndarray:
    """Build the float32 ``x`` tensor ``[N, C, 16, 16]``.

    y: [N,16,16]; u, v: [N,8,8]; prev_y: [N,16,16] or None; bit_depth: int or [N].
    has_prev: [N] (0/1) or None; where 0 (or prev_y is None) prev_y is a copy of y.
    """
    y = np.asarray(y)
    n = y.shape[0]
    if y.shape[1:] != (16, 16):
        raise ValueError(f"y must be [N,16,16], got {y.shape}")
    bd = np.broadcast_to(np.asarray(bit_depth, dtype=np.int64), (n,))
    if not np.isin(bd, (8, 10, 12)).all():
        raise ValueError(f"bit depth must be 8, 10 or 12, got {np.unique(bd)}")
    maxval = ((np.int64(1) << bd) - 1).astype(np.float32).reshape(n, 1, 1)
    planes = {}
    for name in spec.channels:
        if name == "y":
            p = y
        elif name == "u":
            p = upsample_chroma(np.asarray(u))
        elif name == "v":
            p = upsample_chroma(np.asarray(v))
        else:  # prev_y
            if prev_y is None:
                p = y
            else:
                p = np.asarray(prev_y)
                if has_prev is not None:
                    hp = np.asarray(has_prev).astype(bool).reshape(n, 1, 1)
                    p = np.where(hp, p, y)
        planes[name] = p
    x = np.empty((n, spec.num_channels, 16, 16), dtype=np.float32)
    for i, name in enumerate(spec.channels):
        s = planes[name].astype(np.float32) / maxval  # float32 / float32
        s = s - np.float32(spec.mean[i])
        s = s / np.float32(spec.std[i])
        x[:, i] = s
    return to_layout(x, spec.layout)


def to_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """A planar ``[N, C, 16, 16]`` block tensor in ``layout`` (see the module docstring)."""
    if layout == "planar":
        return x
    n, c = x.shape[:2]
    cells = x.reshape(n, c, 4, 4, 4, 4).transpose(0, 2, 4, 1, 3, 5)   # n, cell row, cell col, ch, i, j
    return np.ascontiguousarray(cells.reshape(n, 16, c * 16))


def build_side(spec: InputSpec, base_qindex, intra, has_prev, cpu_used=None, planes: dict | None = None) -> np.ndarray:
    """Build the float32 ``side`` tensor ``[N, S]`` (S may be 0). ``cpu_used``:
    the encoder preset (per block or one for all), needed only by specs with
    the ``cpu_used`` feature; ``planes`` (``y``, ``u``, ``v``, ``prev_y``,
    ``bit_depth``: the raw integer samples), only by specs with ``block_stats``."""
    q = np.atleast_1d(np.asarray(base_qindex))
    n = q.shape[0]
    out = np.empty((n, spec.num_side), dtype=np.float32)
    i = 0
    for name in spec.side_features:
        if name == "qindex":
            out[:, i] = q.astype(np.float32) / np.float32(255.0)
        elif name == "intra":
            out[:, i] = np.broadcast_to(np.asarray(intra), (n,)).astype(bool).astype(np.float32)
        elif name == "cpu_used":
            if cpu_used is None:
                raise ValueError("the spec takes cpu_used: give the encoder preset")
            c = np.broadcast_to(np.asarray(cpu_used), (n,)).astype(np.float32)
            out[:, i] = c / np.float32(CPU_USED_SCALE)
        elif name == "block_stats":
            if planes is None:
                raise ValueError("the spec takes block_stats: give the block's planes")
            from .side_stats import block_stats_side
            w = SIDE_WIDTH[name]
            out[:, i:i + w] = block_stats_side(planes["y"], planes["u"], planes["v"], planes.get("prev_y"),
                                               planes["bit_depth"], has_prev)
            i += w - 1
        else:
            out[:, i] = np.broadcast_to(np.asarray(has_prev), (n,)).astype(bool).astype(np.float32)
        i += 1
    return out


def is_intra_frame_type(frame_type) -> np.ndarray:
    """meta.frame_type: 0 key, 1 inter, 2 intra-only -> intra flag."""
    ft = np.asarray(frame_type)
    return (ft == 0) | (ft == 2)
