"""One shard: the labelled 16x16 blocks of one AV1 stream and its source Y4M.

Format (docs/CONTRACTS.md, "Dataset on disk"): y.npy, u.npy, v.npy, prev_y.npy, labels.npy,
meta.npy and shard.json, each written to a temporary name and renamed; shard.json last.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from .errors import DataError
from .tools import StreamLabels, sha256_file
from .y4m import Y4M

NUM_CLASSES = 10
META_DTYPE = np.dtype([
    ("frame", "<i4"), ("x", "<i4"), ("y", "<i4"), ("frame_type", "u1"), ("base_qindex", "u1"),
    ("cq", "u1"), ("edge", "u1"), ("bit_depth", "u1"), ("has_prev", "u1"), ("covered", "u1"),
])
ARRAY_FILES = ("y.npy", "u.npy", "v.npy", "prev_y.npy", "labels.npy", "meta.npy")
SHARD_FORMAT = 2  # 2: meta.covered


def _blocks(plane: np.ndarray, size: int, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Blocks of `size` at grid positions (ys, xs) (multiples of size); the plane is padded by
    edge replication to a whole number of blocks (what an encoder's border extension does)."""
    h, w = plane.shape
    ph, pw = -h % size, -w % size
    if ph or pw:
        plane = np.pad(plane, ((0, ph), (0, pw)), mode="edge")
    H, W = plane.shape
    grid = plane.reshape(H // size, size, W // size, size).transpose(0, 2, 1, 3)
    return grid[ys // size, xs // size]


def check_stream_matches_source(labels: StreamLabels, src: Y4M, stream: str, bit_depth: int | None = None):
    if (labels.width, labels.height) != (src.width, src.height):
        raise DataError(f"{stream}: stream is {labels.width}x{labels.height} but its source "
                        f"{src.path} is {src.width}x{src.height}")
    bad = [f for f in labels.frames if f.get("width", -1) not in (-1, src.width)
           or f.get("height", -1) not in (-1, src.height)]
    if bad:
        raise DataError(f"{stream}: frame {bad[0]['display']} is {bad[0]['width']}x{bad[0]['height']} "
                        f"(frame size changes are not supported); source {src.path} is {src.width}x{src.height}")
    if len(labels.frames) != src.frames:
        raise DataError(f"{stream}: stream shows {len(labels.frames)} frames but its source "
                        f"{src.path} has {src.frames}")
    if labels.bit_depth != src.bit_depth:
        raise DataError(f"{stream}: stream is {labels.bit_depth}-bit but its source {src.path} "
                        f"is {src.bit_depth}-bit")
    if bit_depth is not None and labels.bit_depth != bit_depth:
        raise DataError(f"{stream}: stream is {labels.bit_depth}-bit, recipe asks for {bit_depth}")


def _save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, arr)
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def is_complete(shard_dir: Path) -> bool:
    """A shard is complete when shard.json exists and every file it lists has its size."""
    sj = shard_dir / "shard.json"
    if not sj.exists():
        return False
    try:
        info = json.loads(sj.read_text())
        return all((shard_dir / f).stat().st_size == d["bytes"] for f, d in info["files"].items())
    except (OSError, ValueError, KeyError):
        return False


def covered_mask(meta: np.ndarray) -> np.ndarray:
    """Rows of a shard's meta that are positions inside a larger block (`covered`); a shard of
    format 1 has no such field and no such rows."""
    if "covered" in (meta.dtype.names or ()):
        return np.asarray(meta["covered"]) != 0
    return np.zeros(len(meta), bool)


def covered_positions(labels: StreamLabels, keep_existing_frames: bool = True) -> np.ndarray:
    """The 16x16 positions wholly inside the frame where the stream has no 16x16 node (stock
    coded them inside a larger block), in the node rows' format (StreamLabels.COLS) with
    partition NONE and edge 0. Only frames that carry labels (not repeats) count."""
    w, h = labels.width, labels.height
    gx, gy = np.meshgrid(np.arange(w // 16) * 16, np.arange(h // 16) * 16)
    grid = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.int32)
    out = []
    nodes = labels.nodes
    for f in labels.frames:
        if f.get("decode", -1) < 0 or (f.get("existing", 0) and not keep_existing_frames):
            continue
        if f.get("width", w) != w or f.get("height", h) != h:
            raise DataError(f"{labels.path}: frame {f.get('display')} is {f.get('width')}x{f.get('height')}, "
                            f"the stream {w}x{h}")
        d = f["display"]
        here = nodes[nodes[:, 0] == d] if len(nodes) else nodes
        taken = set(zip(here[:, 2].tolist(), here[:, 3].tolist()))
        free = np.array([(x, y) not in taken for x, y in grid.tolist()], bool)
        n = int(free.sum())
        if not n:
            continue
        rows = np.zeros((n, len(StreamLabels.COLS)), np.int32)
        rows[:, 0], rows[:, 1] = d, f["decode"]
        rows[:, 2:4] = grid[free]
        rows[:, 4] = 0  # NONE: all the 16x16 search needs to find inside a larger block
        rows[:, 5], rows[:, 6] = f["type"], f["qindex"]
        rows[:, 8] = f.get("existing", 0)
        out.append(rows)
    return np.concatenate(out) if out else np.zeros((0, len(StreamLabels.COLS)), np.int32)


def write_shard(shard_dir: Path, labels: StreamLabels, src: Y4M, cq: int, info: dict,
                stream: str, keep_existing_frames: bool = True, covered_as_none: bool = False) -> dict:
    """Builds the arrays of one shard from extracted labels and the source frames.

    `info` (sequence, encoder command, ...) is merged into shard.json. Returns shard.json's dict.
    """
    t0 = time.time()
    check_stream_matches_source(labels, src, stream)
    shard_dir.mkdir(parents=True, exist_ok=True)
    sj = shard_dir / "shard.json"
    if sj.exists():
        sj.unlink()  # being rebuilt: not complete until the new shard.json is written
    nodes = labels.nodes
    if not keep_existing_frames and len(nodes):
        nodes = nodes[nodes[:, 8] == 0]
    covered = np.zeros(len(nodes), np.uint8)
    if covered_as_none:
        extra = covered_positions(labels, keep_existing_frames)
        nodes = np.concatenate([nodes, extra]) if len(nodes) else extra
        covered = np.concatenate([covered, np.ones(len(extra), np.uint8)])
    n = len(nodes)
    bd = src.bit_depth
    y_out = np.empty((n, 16, 16), np.uint16)
    u_out = np.empty((n, 8, 8), np.uint16)
    v_out = np.empty((n, 8, 8), np.uint16)
    p_out = np.empty((n, 16, 16), np.uint16)
    meta = np.zeros(n, META_DTYPE)
    labels_out = np.empty(n, np.uint8)
    if n:
        order = np.lexsort((nodes[:, 2], nodes[:, 3], nodes[:, 0]))  # frame, y, x
        nodes, covered = nodes[order], covered[order]
        disp = nodes[:, 0]
        if disp.min() < 0 or disp.max() >= src.frames:
            raise DataError(f"{stream}: labels for frame {int(disp.max())} but the source "
                            f"{src.path} has {src.frames} frames")
        if nodes[:, 4].max() > 9 or nodes[:, 4].min() < 0:
            raise DataError(f"{stream}: partition type out of range")
        bounds = np.flatnonzero(np.diff(disp)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [n]])
        prev_cache = {}
        for s, e in zip(starts, ends):
            d = int(disp[s])
            ys, xs = nodes[s:e, 3], nodes[s:e, 2]
            if (xs % 16).any() or (ys % 16).any() or (xs >= src.width).any() or (ys >= src.height).any():
                raise DataError(f"{stream}: node position off the 16x16 grid or outside the frame")
            Y, U, V = prev_cache.pop(d, None) or src.frame(d)
            y_out[s:e] = _blocks(Y, 16, ys, xs)
            u_out[s:e] = _blocks(U, 8, ys // 2, xs // 2)
            v_out[s:e] = _blocks(V, 8, ys // 2, xs // 2)
            if d > 0:
                PY = src.frame(d - 1)[0]
                p_out[s:e] = _blocks(PY, 16, ys, xs)
                meta["has_prev"][s:e] = 1
            else:
                p_out[s:e] = y_out[s:e]
        meta["frame"] = disp
        meta["x"] = nodes[:, 2]
        meta["y"] = nodes[:, 3]
        meta["frame_type"] = nodes[:, 5]
        meta["base_qindex"] = nodes[:, 6]
        meta["edge"] = nodes[:, 7]
        meta["covered"] = covered
        labels_out[:] = nodes[:, 4]
    meta["cq"] = cq
    meta["bit_depth"] = bd
    arrays = {"y.npy": y_out, "u.npy": u_out, "v.npy": v_out, "prev_y.npy": p_out,
              "labels.npy": labels_out, "meta.npy": meta}
    files = {}
    for name in ARRAY_FILES:
        path = shard_dir / name
        _save_npy(path, arrays[name])
        files[name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    class_counts = np.bincount(labels_out, minlength=NUM_CLASSES).tolist()
    by_ft = {}
    for ft, name in ((0, "key"), (1, "inter"), (2, "intra_only")):
        sel = meta["frame_type"] == ft
        if sel.any():
            by_ft[name] = np.bincount(labels_out[sel], minlength=NUM_CLASSES).tolist()
    frames = labels.frames
    shard = {
        "schema": "av1part-shard", "format_version": SHARD_FORMAT,
        **info,
        "cq": cq, "bit_depth": bd, "width": src.width, "height": src.height,
        "count": n, "covered": int(covered.sum()), "class_counts": class_counts, "class_counts_by_frame_type": by_ft,
        "frames": {
            "source": src.frames,
            "displayed": len(frames),
            "decoded": labels.summary.get("decoded"),
            "hidden_never_shown_dropped": labels.summary.get("hidden_never_shown"),
            "with_labels": int(len(np.unique(nodes[:, 0]))) if n else 0,
            "shown_via_show_existing": sum(1 for f in frames if f.get("existing") == 1 and f.get("decode", -1) >= 0),
            "repeats_without_labels": sum(1 for f in frames if f.get("decode", -1) < 0),
            "frame_types": {str(k): sum(1 for f in frames if f.get("type") == k) for k in (0, 1, 2)},
        },
        "files": files,
        "shard_seconds": round(time.time() - t0, 3),
    }
    write_json_atomic(sj, shard)
    return shard
