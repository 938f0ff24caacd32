"""A synthetic dataset in the format of docs/CONTRACTS.md, for tests and
smoke runs until the real dataset exists. Each label has a learnable texture
(flat for NONE, quadrants for SPLIT, halves/stripes for HORZ/VERT(_4),
three-part layouts for the A/B types), plus noise."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

META_DTYPE = np.dtype([
    ("frame", "<i4"), ("x", "<i4"), ("y", "<i4"), ("frame_type", "u1"), ("base_qindex", "u1"),
    ("cq", "u1"), ("edge", "u1"), ("bit_depth", "u1"), ("has_prev", "u1"),
])

# region masks (which sub-block each pixel belongs to) per partition type
_r, _c = np.mgrid[0:16, 0:16]
_TOP, _LEFT = _r < 8, _c < 8
MASKS = {
    0: np.zeros((16, 16), int),
    1: _TOP.astype(int),                                   # HORZ
    2: _LEFT.astype(int),                                  # VERT
    3: (_TOP * 2 + _LEFT).astype(int),                     # SPLIT
    4: np.where(_TOP, 1 + _LEFT, 0),                       # HORZ_A: top split, bottom whole
    5: np.where(_TOP, 0, 1 + _LEFT),                       # HORZ_B: top whole, bottom split
    6: np.where(_LEFT, 1 + _TOP, 0),                       # VERT_A: left split, right whole
    7: np.where(_LEFT, 0, 1 + _TOP),                       # VERT_B
    8: _r // 4,                                            # HORZ_4
    9: _c // 4,                                            # VERT_4
}
DEFAULT_DIST = [0.30, 0.14, 0.14, 0.12, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]


def synth_blocks(labels: np.ndarray, bit_depth: int, rng: np.random.Generator, noise: float = 0.04):
    n = labels.size
    mx = (1 << bit_depth) - 1
    y = np.empty((n, 16, 16), np.float64)
    for i, lab in enumerate(labels):
        m = MASKS[int(lab)]
        levels = rng.uniform(0.15, 0.85, size=m.max() + 1)
        if m.max() > 0:  # make regions clearly different
            levels[1:] = np.clip(levels[0] + rng.choice([-1, 1], m.max()) * rng.uniform(0.15, 0.35, m.max()), 0, 1)
        y[i] = levels[m]
    y += rng.normal(0, noise, y.shape)
    u = 0.5 + 0.5 * (y[:, ::2, ::2] - 0.5) + rng.normal(0, noise, (n, 8, 8))
    v = 0.5 - 0.3 * (y[:, 1::2, 1::2] - 0.5) + rng.normal(0, noise, (n, 8, 8))
    prev = y + rng.normal(0, noise, y.shape)
    q = lambda a: np.clip(np.rint(a * mx), 0, mx).astype(np.uint16)  # noqa: E731
    return q(y), q(u), q(v), q(prev)


def _save(path: Path, arr):
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, arr)
    os.replace(tmp, path)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def make_synthetic_dataset(root, sequences: dict[str, str] | None = None, blocks_per_shard: int = 256,
                           cqs: Sequence[int] = (32,), bit_depths: Sequence[int] = (8, 10),
                           class_dist: Sequence[float] = DEFAULT_DIST, seed: int = 0,
                           drop_classes: Sequence[int] = (), incomplete_shard: bool = False) -> Path:
    """Write a dataset. ``sequences`` maps sequence name -> split."""
    root = Path(root)
    sequences = sequences or {"seqA": "train", "seqB": "train", "seqC": "val", "seqD": "test"}
    rng = np.random.default_rng(seed)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    p = np.asarray(class_dist, dtype=np.float64)
    for c in drop_classes:
        p[c] = 0
    p /= p.sum()
    splits = {"train": [], "val": [], "test": []}
    counts = {s: [0] * 10 for s in splits}
    shards, seqs = [], []
    for si, (seq, split) in enumerate(sequences.items()):
        splits[split].append(seq)
        bd = int(bit_depths[si % len(bit_depths)])
        seqs.append({"name": seq, "source": f"synthetic:{seq}", "width": 256, "height": 256,
                     "bit_depth": bd, "frames": 8})
        for cq in cqs:
            d = root / "shards" / f"{seq}__cq{cq}"
            d.mkdir(parents=True, exist_ok=True)
            n = blocks_per_shard
            labels = rng.choice(10, n, p=p).astype(np.uint8)
            y, u, v, prev = synth_blocks(labels, bd, rng)
            meta = np.zeros(n, META_DTYPE)
            meta["frame"] = np.arange(n) // 256
            meta["x"] = (np.arange(n) % 16) * 16
            meta["y"] = ((np.arange(n) // 16) % 16) * 16
            meta["frame_type"] = np.where(meta["frame"] == 0, 0, 1)
            meta["base_qindex"] = np.clip(cq * 4 + rng.integers(-8, 9, n), 0, 255)
            meta["cq"] = cq
            meta["bit_depth"] = bd
            meta["has_prev"] = (meta["frame"] > 0) | (rng.random(n) < 0.7)
            prev = np.where(meta["has_prev"][:, None, None] == 1, prev, y)
            arrays = {"y": y, "u": u, "v": v, "prev_y": prev, "labels": labels, "meta": meta}
            for k, a in arrays.items():
                _save(d / f"{k}.npy", a)
            for k in range(10):
                counts[split][k] += int((labels == k).sum())
            files = {f"{k}.npy": {"bytes": (d / f"{k}.npy").stat().st_size, "sha256": _sha(d / f"{k}.npy")}
                     for k in arrays}
            info = {"sequence": seq, "cq": cq, "blocks": n, "bit_depth": bd, "files": files}
            if not (incomplete_shard and si == 0):
                tmp = d / "shard.json.tmp"
                tmp.write_text(json.dumps(info, indent=1))
                os.replace(tmp, d / "shard.json")
            shards.append({"dir": f"shards/{d.name}", "sha256": {k: v["sha256"] for k, v in files.items()}})
    manifest = {"format_version": 1, "recipe": {"synthetic": True, "seed": seed}, "tools": {},
                "sequences": seqs, "splits": splits, "class_counts": counts, "shards": shards}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return root
