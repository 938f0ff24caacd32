"""`verify`: audit a finished dataset against its own streams and sources.

For every shard: the files' SHA-256 against shard.json; the stream is decoded again with the
inspection decoder's partition trace (encoder/patches/0001, AV1PART_PARTITION_TRACE) and every
label is compared with the partition symbol the decoder parsed for that 16x16 node (frame, x, y);
every block's y/u/v/prev_y is compared with the source clip's pixels (at the recipe bit depth).
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .build import convert_depth
from .errors import DataError
from .shard import _blocks, covered_mask
from .tools import labels_path, read_labels, sha256_file
from .y4m import open_y4m


def _trace_labels(stream: Path, tmp: Path):
    trace = tmp / "trace.txt"
    trace.unlink(missing_ok=True)
    out = tmp / "labels.txt"
    r = subprocess.run([str(labels_path()), "-o", str(out), str(stream)], capture_output=True, text=True,
                       env=dict(os.environ, AV1PART_PARTITION_TRACE=str(trace)))
    if r.returncode != 0:
        raise DataError(f"{stream}: {r.stderr.strip()}")
    lab = read_labels(str(out))
    display_of = {f["decode"]: f["display"] for f in lab.frames if f.get("decode", -1) >= 0}
    parsed, dec = set(), None
    for line in trace.read_text().splitlines():
        t = line.split()
        if t[0] == "F":
            dec = int(t[1])
        elif dec in display_of:
            parsed.add((display_of[dec], 4 * int(t[2]), 4 * int(t[1]), int(t[3])))
    return parsed


def verify(dataset: str, pixels: bool = True) -> dict:
    root = Path(dataset)
    m = json.loads((root / "manifest.json").read_text())
    seqs = {s["name"]: s for s in m["sequences"]}
    res = {"shards": 0, "blocks": 0, "label_mismatches": 0, "hash_mismatches": 0, "pixel_mismatches": 0}
    with tempfile.TemporaryDirectory() as td:
        for sh in m["shards"]:
            d = root / sh["path"]
            info = json.loads((d / "shard.json").read_text())
            for f, v in info["files"].items():
                if sha256_file(d / f) != v["sha256"]:
                    res["hash_mismatches"] += 1
            labels = np.load(d / "labels.npy", mmap_mode="r")
            meta = np.load(d / "meta.npy", mmap_mode="r")
            node = ~covered_mask(meta)
            fxy = list(zip(meta["frame"].tolist(), meta["x"].tolist(), meta["y"].tolist()))
            got = {k + (int(lab),) for k, lab, n in zip(fxy, labels.tolist(), node) if n}
            ref = _trace_labels(root / info["stream"]["file"], Path(td))
            res["label_mismatches"] += len(got ^ ref)
            # covered_as_none rows (NONE inside a larger block) must not be nodes of the stream
            ref_pos = {r[:3] for r in ref}
            res["label_mismatches"] += sum(1 for k, n in zip(fxy, node) if not n and k in ref_pos)
            res["blocks"] += len(labels)
            res["shards"] += 1
            if pixels and len(labels):
                s = seqs[sh["sequence"]]
                src = open_y4m(s["source"])
                arrs = {k: np.load(d / f"{k}.npy", mmap_mode="r") for k in ("y", "u", "v", "prev_y")}
                fr = meta["frame"]
                for f in np.unique(fr):
                    sel = np.flatnonzero(fr == f)
                    ys, xs = meta["y"][sel], meta["x"][sel]
                    planes = [convert_depth(p, src.bit_depth, s["bit_depth"])
                              for p in src.frame(s["source_start_frame"] + int(f))]
                    bad = (arrs["y"][sel] != _blocks(planes[0], 16, ys, xs)).any(axis=(1, 2))
                    bad |= (arrs["u"][sel] != _blocks(planes[1], 8, ys // 2, xs // 2)).any(axis=(1, 2))
                    bad |= (arrs["v"][sel] != _blocks(planes[2], 8, ys // 2, xs // 2)).any(axis=(1, 2))
                    if f > 0:
                        prev = convert_depth(src.frame(s["source_start_frame"] + int(f) - 1)[0],
                                             src.bit_depth, s["bit_depth"])
                        bad |= (arrs["prev_y"][sel] != _blocks(prev, 16, ys, xs)).any(axis=(1, 2))
                    else:
                        bad |= (arrs["prev_y"][sel] != arrs["y"][sel]).any(axis=(1, 2))
                    res["pixel_mismatches"] += int(bad.sum())
    res["ok"] = not (res["label_mismatches"] or res["hash_mismatches"] or res["pixel_mismatches"])
    return res
