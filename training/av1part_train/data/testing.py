"""Helpers for the dataset tool's tests: a random AV1 partition-tree generator (an independent
reference for the label derivation) and small test clips."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

NONE, HORZ, VERT, SPLIT, HORZ_A, HORZ_B, VERT_A, VERT_B, HORZ_4, VERT_4 = range(10)


def sub_blocks(r: int, c: int, n: int, p: int):
    """Sub-blocks (r, c, h, w, recurse) in mi (4x4) units of the n x n block at (r, c) under
    partition p, in coding order; recurse=True for the square SPLIT children."""
    h = n // 2
    q = n // 4
    if p == NONE:
        return [(r, c, n, n, False)]
    if p == HORZ:
        return [(r, c, h, n, False), (r + h, c, h, n, False)]
    if p == VERT:
        return [(r, c, n, h, False), (r, c + h, n, h, False)]
    if p == SPLIT:
        return [(r, c, h, h, True), (r, c + h, h, h, True), (r + h, c, h, h, True), (r + h, c + h, h, h, True)]
    if p == HORZ_A:
        return [(r, c, h, h, False), (r, c + h, h, h, False), (r + h, c, h, n, False)]
    if p == HORZ_B:
        return [(r, c, h, n, False), (r + h, c, h, h, False), (r + h, c + h, h, h, False)]
    if p == VERT_A:
        return [(r, c, h, h, False), (r + h, c, h, h, False), (r, c + h, n, h, False)]
    if p == VERT_B:
        return [(r, c, n, h, False), (r, c + h, h, h, False), (r + h, c + h, h, h, False)]
    if p == HORZ_4:
        return [(r + i * q, c, q, n, False) for i in range(4)]
    if p == VERT_4:
        return [(r, c + i * q, n, q, False) for i in range(4)]
    raise ValueError(p)


def allowed(n: int, has_rows: bool, has_cols: bool):
    """Partitions the AV1 syntax allows for an n x n (mi) block (as libaom's read_partition)."""
    if n == 1:
        return [NONE]
    if not has_rows and not has_cols:
        return [SPLIT]
    if not has_rows:
        return [HORZ, SPLIT]
    if not has_cols:
        return [VERT, SPLIT]
    if n == 2:  # 8x8
        return [NONE, HORZ, VERT, SPLIT]
    if n == 32:  # 128x128: no 4-way
        return [NONE, HORZ, VERT, SPLIT, HORZ_A, HORZ_B, VERT_A, VERT_B]
    return list(range(10))


class Frame:
    """A random partitioning of a frame; bw/bh in pixels per mi, nodes = the 16x16 truth."""

    def __init__(self, width: int, height: int, sb: int = 16, rng=None, weights=None,
                 force16: dict | None = None):
        self.width, self.height = width, height
        self.mi_rows = (height + 7) // 8 * 2
        self.mi_cols = (width + 7) // 8 * 2
        self.bw = np.zeros((self.mi_rows, self.mi_cols), np.int32)
        self.bh = np.zeros_like(self.bw)
        self.nodes = []  # (x, y, partition, edge)
        self.rng = rng or random.Random(0)
        self.weights = weights  # dict n -> list of 10 weights
        self.force16 = force16 or {}
        for r in range(0, self.mi_rows, sb):
            for c in range(0, self.mi_cols, sb):
                self._visit(r, c, sb)

    def _choose(self, n, r, c, opts):
        if n == 4 and (r, c) in self.force16 and self.force16[(r, c)] in opts:
            return self.force16[(r, c)]
        w = self.weights.get(n) if self.weights else None
        if w:
            return self.rng.choices(opts, [w[o] for o in opts])[0]
        return self.rng.choice(opts)

    def _visit(self, r, c, n, forced=None):
        if r >= self.mi_rows or c >= self.mi_cols:
            return
        hbs = n // 2
        has_rows = r + hbs < self.mi_rows
        has_cols = c + hbs < self.mi_cols
        opts = allowed(n, has_rows, has_cols)
        p = forced if forced is not None else self._choose(n, r, c, opts)
        assert p in opts
        if n == 4:
            self.nodes.append((4 * c, 4 * r, p, int(4 * c + 16 > self.width or 4 * r + 16 > self.height)))
        for (sr, sc, h, w, rec) in sub_blocks(r, c, n, p):
            if sr >= self.mi_rows or sc >= self.mi_cols:
                continue
            if rec:
                self._visit(sr, sc, h)
            else:
                self.bw[sr:sr + h, sc:sc + w] = 4 * w
                self.bh[sr:sr + h, sc:sc + w] = 4 * h

    def map_text(self) -> str:
        lines = [f"{self.mi_rows} {self.mi_cols} {self.width} {self.height}"]
        for r in range(self.mi_rows):
            lines.append(" ".join(f"{w}x{h}" for w, h in zip(self.bw[r], self.bh[r])))
        return "\n".join(lines) + "\n"


def crop_y4m(src: str, dst: str, width: int, height: int, frames: int, x0: int = 0, y0: int = 0,
             bit_depth: int | None = None) -> str:
    """A small test clip: crop of an existing Y4M (optionally shifted to 10-bit)."""
    from .y4m import open_y4m, write_y4m
    s = open_y4m(src)
    bd = bit_depth or s.bit_depth
    sh = bd - s.bit_depth

    def gen():
        for i in range(frames):
            y, u, v = s.frame(i)
            yield (y[y0:y0 + height, x0:x0 + width] << sh,
                   u[y0 // 2:(y0 + height) // 2, x0 // 2:(x0 + width) // 2] << sh,
                   v[y0 // 2:(y0 + height) // 2, x0 // 2:(x0 + width) // 2] << sh)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    write_y4m(dst, gen(), width, height, bd)
    return dst
