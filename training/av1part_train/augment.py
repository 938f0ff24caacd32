"""Geometric augmentation of training blocks, with the partition relabelled.

A 16x16 block mirrored or transposed is still a 16x16 block, and its
partition maps to a known one (libaom numbering, av1part_train.PARTITION_NAMES):

* mirror left-right (columns reversed): VERT_A (left half split) <-> VERT_B;
* mirror top-bottom (rows reversed):    HORZ_A (top half split)  <-> HORZ_B;
* transpose (rows <-> columns):         HORZ <-> VERT, HORZ_4 <-> VERT_4,
                                        HORZ_A <-> VERT_A, HORZ_B <-> VERT_B.

Their compositions are the 8 symmetries of the square. Every plane (luma,
both 8x8 chroma planes, the previous frame's luma) is transformed the same
way, so chroma stays co-sited and the temporal difference keeps its meaning.

Why it is only an approximation, and why that is measured rather than
assumed: libaom's partition search is not symmetric (it searches HORZ before
VERT, and its pruning reads neighbours above and to the left), so the
encoder's label of a transformed block need not be the transformed label.
EXPERIMENTS.md compares training with and without it on unseen clips.
"""
from __future__ import annotations

import numpy as np

MODES = ("none", "flips", "dihedral")

# label permutations (index: libaom partition 0..9 -> partition after the transform)
FLIP_X = np.array([0, 1, 2, 3, 4, 5, 7, 6, 8, 9])
FLIP_Y = np.array([0, 1, 2, 3, 5, 4, 6, 7, 8, 9])
TRANSPOSE = np.array([0, 2, 1, 3, 6, 7, 4, 5, 9, 8])

PLANES = ("y", "u", "v", "prev_y")


def _apply(p: np.ndarray, fx: np.ndarray, fy: np.ndarray, tr: np.ndarray) -> np.ndarray:
    """``p`` [N, H, W] with each block mirrored / transposed by its flags
    (transpose last, like the label maps composed in ``relabel``)."""
    p = p.copy()
    p[fx] = p[fx][:, :, ::-1]
    p[fy] = p[fy][:, ::-1, :]
    p[tr] = p[tr].transpose(0, 2, 1)
    return p


def relabel(labels: np.ndarray, fx: np.ndarray, fy: np.ndarray, tr: np.ndarray) -> np.ndarray:
    lab = np.asarray(labels, dtype=np.int64).copy()
    lab[fx] = FLIP_X[lab[fx]]
    lab[fy] = FLIP_Y[lab[fy]]
    lab[tr] = TRANSPOSE[lab[tr]]
    return lab


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"augment must be one of {MODES}, got {mode!r}")


def draw(n: int, mode: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-block flags (mirror x, mirror y, transpose): each 1/2 for the modes that use it."""
    check_mode(mode)
    none = np.zeros(n, bool)
    if mode == "none":
        return none, none, none
    fx, fy = rng.random(n) < 0.5, rng.random(n) < 0.5
    tr = rng.random(n) < 0.5 if mode == "dihedral" else none
    return fx, fy, tr


def augment_arrays(a: dict, labels: np.ndarray, mode: str, rng: np.random.Generator) -> tuple[dict, np.ndarray]:
    """A copy of the raw arrays of ``BlockDataset.arrays`` (planes [N,16,16] and
    [N,8,8]) and their 10-way labels, each block under a random symmetry of ``mode``."""
    fx, fy, tr = draw(len(labels), mode, rng)
    if not (fx.any() or fy.any() or tr.any()):
        return a, np.asarray(labels, dtype=np.int64)
    out = dict(a)
    for k in PLANES:
        out[k] = _apply(np.asarray(a[k]), fx, fy, tr)
    return out, relabel(labels, fx, fy, tr)
