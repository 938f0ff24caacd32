"""The ``block_stats`` side feature (docs/CONTRACTS.md, "Side features"): 28
statistics of the block's samples, computed by the plugin (Rust, f64) and
here (NumPy, float64) from the integer samples, then rounded to float32.

They are the in-graph statistics of ``layers/block_stats.py`` (same names,
same order, all channels), moved out of the graph: there they cost more
than the CNN itself (per-node overhead, BENCHMARKS.md / EXPERIMENTS.md); here
they are a few hundred additions per block, and the graph stays the plain
BlockNet one with 31 side inputs instead of 3.

All in 8-bit units, ``s8 = s * 255 / ((1 << bit_depth) - 1)`` (so a 10-bit
block gives the values of its 8-bit rendering), ``var`` the population
variance, ``ln`` the natural log:

* ``mean``: mean(y) / max, in [0, 1];
* ``lvar_<region>`` = ln(1 + var(y8 over the region)) for the 17 regions of
  ``layers.block_stats.REGIONS``: block, q0..q3 (quadrants in raster order),
  top, bottom, left, right (halves), hstrip0..3 (rows 4i..4i+3),
  vstrip0..3 (columns 4i..4i+3);
* ``lgx``, ``lgy`` = ln(1 + mean |difference|) of the 192 horizontal (resp.
  vertical) neighbour pairs of y8 inside each 4x4 cell;
* ``lvar_u``, ``lvar_v`` = ln(1 + var) of the 8x8 chroma planes in 8-bit units;
* ``lmad_block``, ``lmad_q0..3`` = ln(1 + mean |y8 - p8|) over the block and
  its quadrants, and ``lvar_diff`` = ln(1 + var(y8 - p8)), where p is the
  previous frame's block, or y itself when there is none (so they are 0).
"""
from __future__ import annotations

import numpy as np

from .layers.block_stats import REGIONS

NAMES = (["mean"] + [f"lvar_{r}" for r in REGIONS] + ["lgx", "lgy", "lvar_u", "lvar_v", "lmad_block"]
         + [f"lmad_q{i}" for i in range(4)] + ["lvar_diff"])
WIDTH = len(NAMES)  # 28


def _region_slices():
    h, q = slice(0, 8), slice(8, 16)
    full = slice(0, 16)
    out = {"block": (full, full), "q0": (h, h), "q1": (h, q), "q2": (q, h), "q3": (q, q),
           "top": (h, full), "bottom": (q, full), "left": (full, h), "right": (full, q)}
    for i in range(4):
        out[f"hstrip{i}"] = (slice(4 * i, 4 * i + 4), full)
        out[f"vstrip{i}"] = (full, slice(4 * i, 4 * i + 4))
    return [out[r] for r in REGIONS]


_REGION_SLICES = _region_slices()
_QUADS = _REGION_SLICES[1:5]


def block_stats_side(y, u, v, prev_y, bit_depth, has_prev=None) -> np.ndarray:
    """[N, 28] float32 from integer planes y [N,16,16], u, v [N,8,8], prev_y
    [N,16,16] or None; ``bit_depth`` and ``has_prev`` per block or one value."""
    y = np.asarray(y)
    n = y.shape[0]
    bd = np.broadcast_to(np.asarray(bit_depth, dtype=np.int64), (n,))
    maxv = ((np.int64(1) << bd) - 1).astype(np.float64).reshape(n, 1, 1)
    to8 = 255.0 / maxv
    y8 = y.astype(np.float64) * to8
    if prev_y is None:
        p8 = y8
    else:
        p8 = np.asarray(prev_y).astype(np.float64) * to8
        if has_prev is not None:
            hp = np.broadcast_to(np.asarray(has_prev), (n,)).astype(bool).reshape(n, 1, 1)
            p8 = np.where(hp, p8, y8)
    out = np.empty((n, WIDTH), dtype=np.float64)
    out[:, 0] = y.astype(np.float64).mean(axis=(1, 2)) / maxv[:, 0, 0]
    k = 1
    for rs, cs in _REGION_SLICES:
        out[:, k] = np.log1p(y8[:, rs, cs].var(axis=(1, 2)))
        k += 1
    dx = np.abs(np.diff(y8, axis=2))[:, :, [c for c in range(15) if c % 4 != 3]]
    dy = np.abs(np.diff(y8, axis=1))[:, [r for r in range(15) if r % 4 != 3], :]
    out[:, k], out[:, k + 1] = np.log1p(dx.mean(axis=(1, 2))), np.log1p(dy.mean(axis=(1, 2)))
    k += 2
    for c in (u, v):
        out[:, k] = np.log1p((np.asarray(c).astype(np.float64) * to8).var(axis=(1, 2)))
        k += 1
    d = y8 - p8
    ad = np.abs(d)
    out[:, k] = np.log1p(ad.mean(axis=(1, 2)))
    k += 1
    for rs, cs in _QUADS:
        out[:, k] = np.log1p(ad[:, rs, cs].mean(axis=(1, 2)))
        k += 1
    out[:, k] = np.log1p(d.var(axis=(1, 2)))
    return out.astype(np.float32)
