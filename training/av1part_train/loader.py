"""Reads the dataset of docs/CONTRACTS.md ("Dataset on disk") for training.

Every array is opened with ``np.load(path, mmap_mode="r")``; only labels and
the few meta fields used for filtering are read in full (1-12 bytes/block).
Batches are gathered per shard by fancy indexing on the memmaps and turned
into the block tensor by ``tensor.build_x`` / ``tensor.build_side`` (the same
code the reference cascade uses), so training sees what the plugin builds.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import PARTITION_NAMES
from .augment import augment_arrays, check_mode as check_augment
from .data.shard import covered_mask
from .models.stage import LABEL_MAPS, STAGES, stage_classes
from .tensor import InputSpec, build_side, build_x, is_intra_frame_type

ARRAYS = ("y", "u", "v", "prev_y", "labels", "meta")
META_FIELDS = ("frame", "x", "y", "frame_type", "base_qindex", "cq", "edge", "bit_depth", "has_prev")


class DatasetError(ValueError):
    """A dataset that cannot be trained on (missing files, empty split, missing class...)."""


class Shard:
    def __init__(self, path: Path, cpu_used: int = -1):
        self.path = path
        self.name = path.name
        self.cpu_used = cpu_used  # the encoder preset of the dataset it belongs to
        info_p = path / "shard.json"
        self.info = json.loads(info_p.read_text())
        self.arr = {}
        for a in ARRAYS:
            p = path / f"{a}.npy"
            if not p.exists():
                raise DatasetError(f"{p}: missing")
            self.arr[a] = np.load(p, mmap_mode="r")
        n = self.arr["labels"].shape[0]
        shapes = {"y": (n, 16, 16), "u": (n, 8, 8), "v": (n, 8, 8), "prev_y": (n, 16, 16), "labels": (n,), "meta": (n,)}
        for a, s in shapes.items():
            if self.arr[a].shape != s:
                raise DatasetError(f"{path / (a + '.npy')}: shape {self.arr[a].shape}, expected {s}")
        missing = [f for f in META_FIELDS if f not in (self.arr["meta"].dtype.names or ())]
        if missing:
            raise DatasetError(f"{path / 'meta.npy'}: fields missing: {missing}")
        self.n = n

    def __len__(self):
        return self.n


def dataset_roots(data) -> list[Path]:
    """One dataset root, or several (a list, or one string with comma-separated
    paths): e.g. the same clips labelled at two encoder presets."""
    if isinstance(data, (list, tuple)):
        parts = [str(d) for d in data]
    else:
        parts = [p for p in str(data).split(",") if p.strip()]
    if not parts:
        raise DatasetError("no dataset given")
    return [Path(p.strip()) for p in parts]


def dataset_cpu_used(root: Path) -> int:
    """The aomenc --cpu-used its labels come from (the recipe in the manifest)."""
    mp = root / "manifest.json"
    if not mp.exists():
        raise DatasetError(f"{mp}: missing (not a dataset directory?)")
    r = json.loads(mp.read_text()).get("recipe") or {}
    return int(r.get("cpu_used", -1))


def split_sequences(root: Path, split: str) -> list[str]:
    mp = root / "manifest.json"
    if not mp.exists():
        raise DatasetError(f"{mp}: missing (not a dataset directory?)")
    m = json.loads(mp.read_text())
    splits = m.get("splits") or {}
    if split not in splits:
        raise DatasetError(f"{mp}: no split {split!r} (have {sorted(splits)})")
    return list(splits[split])


def find_shards(root: Path, sequences: Sequence[str]) -> tuple[list[Path], list[Path]]:
    """Complete and incomplete shard dirs of the given sequences."""
    seqs = set(sequences)
    done, partial = [], []
    sd = root / "shards"
    if not sd.is_dir():
        raise DatasetError(f"{sd}: missing")
    for p in sorted(sd.iterdir()):
        if not p.is_dir() or "__cq" not in p.name:
            continue
        seq = p.name.rsplit("__cq", 1)[0]
        if seq in seqs:
            (done if (p / "shard.json").exists() else partial).append(p)
    return done, partial


class BlockDataset(torch.utils.data.Dataset):
    """The blocks of one split routed to one stage, as stage-class targets.

    stage: "stage1" | "stage2" | "stage3_rect" | "stage3_ab" | None (10-way).
    """

    def __init__(self, root, split: str, spec: InputSpec, stage: str | None = "stage1",
                 exclude_edge: bool = False, max_blocks: int | None = None, seed: int = 0,
                 require_all_classes: bool = True, augment: str = "none"):
        check_augment(augment)   # at construction, not at the first batch
        self.augment = augment
        self.roots = dataset_roots(root)
        self.root = self.roots[0]
        self.split, self.spec, self.stage = split, spec, stage
        self.shards, self.incomplete_shards, self.shard_sequence = [], [], []
        for r in self.roots:
            seqs = split_sequences(r, split)
            if not seqs:
                raise DatasetError(f"{r}: split {split!r} is empty (no sequences)")
            cpu = dataset_cpu_used(r)
            dirs, partial = find_shards(r, seqs)
            self.incomplete_shards += [p.name if len(self.roots) == 1 else f"{r}/{p.name}" for p in partial]
            self.shards += [Shard(p, cpu) for p in dirs]
            self.shard_sequence += [p.name.rsplit("__cq", 1)[0] for p in dirs]
        if "cpu_used" in spec.side_features and any(sh.cpu_used < 0 for sh in self.shards):
            raise DatasetError(f"{root}: the model takes cpu_used but a dataset's recipe has none")
        names = stage_classes(stage) if stage else list(PARTITION_NAMES)
        self.class_names = names
        lut = np.asarray(LABEL_MAPS[stage] if stage else list(range(10)), dtype=np.int64)
        self.lut = lut
        sid, rows, tgt, lab10 = [], [], [], []
        for i, sh in enumerate(self.shards):
            lab = np.asarray(sh.arr["labels"]).astype(np.int64)
            if lab.size and (lab.max() > 9):
                raise DatasetError(f"{sh.path}/labels.npy: label {lab.max()} out of range 0..9")
            t = lut[lab] if lab.size else lab
            keep = t >= 0
            if exclude_edge:
                keep &= np.asarray(sh.arr["meta"]["edge"]) == 0
            r = np.nonzero(keep)[0]
            sid.append(np.full(r.size, i, dtype=np.int32))
            rows.append(r.astype(np.int64))
            tgt.append(t[r])
            lab10.append(lab[r])
        self.sid = np.concatenate(sid) if sid else np.zeros(0, np.int32)
        self.rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        self.targets = np.concatenate(tgt) if tgt else np.zeros(0, np.int64)
        self.labels10 = np.concatenate(lab10) if lab10 else np.zeros(0, np.int64)
        if max_blocks is not None and self.targets.size > max_blocks:
            sel = np.sort(np.random.default_rng(seed).choice(self.targets.size, max_blocks, replace=False))
            self.sid, self.rows, self.targets, self.labels10 = (a[sel] for a in (self.sid, self.rows, self.targets, self.labels10))
        if self.targets.size == 0:
            raise DatasetError(f"{root}: split {split!r} has no blocks for {stage or '10-way'}"
                               f" ({len(self.shards)} complete shards, {len(partial)} incomplete)")
        self.counts = np.bincount(self.targets, minlength=len(names))
        if require_all_classes and (self.counts == 0).any():
            miss = [names[i] for i in np.nonzero(self.counts == 0)[0]]
            raise DatasetError(f"{root}: split {split!r} has no blocks of class(es) {miss} for "
                               f"{stage or '10-way'}; counts {dict(zip(names, self.counts.tolist()))} (set "
                               f"allow_missing_classes=true to train without it: the stage then never predicts it)")

    def __len__(self):
        return int(self.targets.size)

    def arrays(self, idx: np.ndarray) -> dict:
        """Raw samples of the given dataset indices (order kept)."""
        idx = np.asarray(idx, dtype=np.int64)
        n = idx.size
        out = {"y": np.empty((n, 16, 16), np.uint16), "u": np.empty((n, 8, 8), np.uint16),
               "v": np.empty((n, 8, 8), np.uint16), "prev_y": np.empty((n, 16, 16), np.uint16),
               "bit_depth": np.empty(n, np.int64), "has_prev": np.empty(n, np.uint8),
               "base_qindex": np.empty(n, np.int64), "frame_type": np.empty(n, np.uint8),
               "cpu_used": np.empty(n, np.int64)}
        sids = self.sid[idx]
        for s in np.unique(sids):
            pos = np.nonzero(sids == s)[0]
            r = self.rows[idx[pos]]
            order = np.argsort(r, kind="stable")  # sorted reads from the memmap
            rs, ps = r[order], pos[order]
            sh = self.shards[s]
            for a in ("y", "u", "v", "prev_y"):
                out[a][ps] = sh.arr[a][rs]
            meta = sh.arr["meta"][rs]
            out["bit_depth"][ps] = meta["bit_depth"]
            out["has_prev"][ps] = meta["has_prev"]
            out["base_qindex"][ps] = meta["base_qindex"]
            out["frame_type"][ps] = meta["frame_type"]
            out["cpu_used"][ps] = sh.cpu_used
        return out

    def groups(self) -> dict[str, np.ndarray]:
        """Per-block keys for breaking metrics down: sequence, preset, key/inter, and whether
        the block is a 16x16 node of the stream or a position inside a larger block
        (`meta.covered`, shard format 2; 0 for older shards)."""
        seq = np.asarray(self.shard_sequence, dtype=object)[self.sid] if len(self.shards) else np.zeros(0, object)
        cpu = np.asarray([sh.cpu_used for sh in self.shards], np.int64)[self.sid]
        ft = np.empty(len(self), np.uint8)
        cov = np.zeros(len(self), bool)
        for s in np.unique(self.sid):
            pos = np.nonzero(self.sid == s)[0]
            meta = self.shards[s].arr["meta"]
            ft[pos] = np.asarray(meta["frame_type"])[self.rows[pos]]
            cov[pos] = covered_mask(meta)[self.rows[pos]]
        return {"sequence": seq, "cpu_used": cpu, "intra": is_intra_frame_type(ft), "covered": cov}

    def tensors(self, a: dict) -> tuple[np.ndarray, np.ndarray]:
        """The ``x`` and ``side`` tensors (the dataset's input spec) of raw arrays from ``arrays``."""
        x = build_x(self.spec, a["y"], a["u"], a["v"], a["prev_y"], a["bit_depth"], a["has_prev"])
        side = build_side(self.spec, a["base_qindex"], is_intra_frame_type(a["frame_type"]), a["has_prev"],
                          a["cpu_used"], planes=a)
        return x, side

    def batch(self, idx) -> dict:
        idx = np.asarray(idx, dtype=np.int64)
        a, lab10, y = self.arrays(idx), self.labels10[idx], self.targets[idx]
        if self.augment != "none":
            # torch's generator: seeded by seed_everything, and per DataLoader worker
            rng = np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,))))
            a, lab10 = augment_arrays(a, lab10, self.augment, rng)
            y = self.lut[lab10]   # a symmetry keeps the stage (a RECT stays RECT, an AB stays AB)
        x, side = self.tensors(a)
        return {"x": torch.from_numpy(x), "side": torch.from_numpy(side),
                "y": torch.from_numpy(y), "label10": torch.from_numpy(lab10)}

    # torch DataLoader: batched fetching
    def __getitems__(self, indices):
        return self.batch(indices)

    def __getitem__(self, i):
        b = self.batch([i])
        return {k: v[0] for k, v in b.items()}


def identity_collate(b):
    return b


class BalancedSampler(torch.utils.data.Sampler):
    """Class-balanced sampling with replacement (each class equally likely),
    sharded across DDP ranks (rank::world_size of one global draw per epoch)."""

    def __init__(self, targets: np.ndarray, num_samples: int | None = None, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        self.targets = np.asarray(targets)
        k = int(self.targets.max()) + 1
        counts = np.bincount(self.targets, minlength=k).astype(np.float64)
        w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)[self.targets]
        self.p = w / w.sum()
        self.total = int(num_samples or len(self.targets))
        self.total -= self.total % world_size
        self.seed, self.rank, self.world = seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __iter__(self):
        rng = np.random.default_rng((self.seed, self.epoch))
        draw = rng.choice(len(self.targets), self.total, replace=True, p=self.p)
        return iter(draw[self.rank::self.world].tolist())

    def __len__(self):
        return self.total // self.world


def make_loader(ds: BlockDataset, batch_size: int, shuffle: bool, seed: int = 0, balanced: bool = False,
                rank: int = 0, world_size: int = 1, num_workers: int = 0, drop_last: bool = False):
    if balanced:
        sampler = BalancedSampler(ds.targets, seed=seed, rank=rank, world_size=world_size)
    elif world_size > 1:
        sampler = torch.utils.data.DistributedSampler(ds, num_replicas=world_size, rank=rank, shuffle=shuffle,
                                                      seed=seed, drop_last=drop_last)
    elif shuffle:
        g = torch.Generator().manual_seed(seed)
        sampler = torch.utils.data.RandomSampler(ds, generator=g)
    else:
        sampler = torch.utils.data.SequentialSampler(ds)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=sampler, collate_fn=identity_collate,
                                       num_workers=num_workers, drop_last=drop_last,
                                       persistent_workers=num_workers > 0)


class EvalShard:
    """Non-padded rank::world slice of a dataset for exact distributed evaluation."""

    @staticmethod
    def indices(n: int, rank: int, world: int) -> np.ndarray:
        return np.arange(rank, n, world, dtype=np.int64)


def iterate_batches(ds: BlockDataset, idx: np.ndarray, batch_size: int):
    for s in range(0, len(idx), batch_size):
        yield ds.batch(idx[s:s + batch_size])
