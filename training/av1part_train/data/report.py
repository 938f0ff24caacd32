"""`report`: class distribution of a dataset per sequence, frame type and cq; bar chart PNG."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import PARTITION_NAMES
from .errors import DataError

FRAME_TYPES = {0: "key", 1: "inter", 2: "intra_only"}


def _load(dataset: Path):
    mpath = dataset / "manifest.json"
    if not mpath.exists():
        raise DataError(f"{mpath}: no manifest (is the build finished?)")
    manifest = json.loads(mpath.read_text())
    rows = []  # (sequence, cq, frame_type, counts[10])
    for sh in manifest["shards"]:
        d = dataset / sh["path"]
        labels = np.load(d / "labels.npy", mmap_mode="r")
        meta = np.load(d / "meta.npy", mmap_mode="r")
        for ft in FRAME_TYPES:
            sel = meta["frame_type"] == ft
            if sel.any():
                rows.append((sh["sequence"], sh["cq"], ft, np.bincount(labels[sel], minlength=10)))
    return manifest, rows


def _table(title: str, groups: dict) -> str:
    names = [n[:6] for n in PARTITION_NAMES]
    head = f"{'':<22}{'blocks':>9} " + " ".join(f"{n:>6}" for n in names)
    out = [title, head]
    for key, c in groups.items():
        tot = int(c.sum())
        pct = " ".join(f"{100.0 * v / tot:6.2f}" if tot else f"{'-':>6}" for v in c)
        out.append(f"{str(key):<22}{tot:>9} {pct}")
    return "\n".join(out)


def report(dataset: str, png: str | None = None) -> str:
    dataset = Path(dataset)
    manifest, rows = _load(dataset)
    split_of = {n: k for k, names in manifest["splits"].items() for n in names}
    by = {"sequence": {}, "frame type": {}, "cq": {}, "split": {}}
    total = np.zeros(10, np.int64)
    for seq, cq, ft, c in rows:
        for kind, key in (("sequence", seq), ("frame type", FRAME_TYPES[ft]), ("cq", cq),
                          ("split", split_of.get(seq, "-"))):
            by[kind][key] = by[kind].get(key, np.zeros(10, np.int64)) + c
        total += c
    parts = [f"dataset {dataset}: {int(total.sum())} blocks, {len(manifest['shards'])} shards "
             f"(percent of blocks per partition type)"]
    parts.append(_table("all", {"all": total}))
    for kind in ("split", "sequence", "frame type", "cq"):
        parts.append(_table(f"by {kind}", dict(sorted(by[kind].items(), key=lambda kv: str(kv[0])))))
    text = "\n\n".join(parts)
    png = Path(png) if png else dataset / "report.png"
    _plot(by, total, png, manifest)
    return text + f"\n\nbar chart: {png}"


def _plot(by, total, png: Path, manifest) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(15, 9))
    x = np.arange(10)
    for ax, kind in zip(axes.flat, ("split", "frame type", "cq", "sequence")):
        groups = dict(sorted(by[kind].items(), key=lambda kv: str(kv[0])))
        if kind == "sequence" and len(groups) > 12:
            groups = {"all": total}
        w = 0.8 / max(1, len(groups))
        for i, (key, c) in enumerate(groups.items()):
            frac = c / max(1, c.sum())
            ax.bar(x + (i - (len(groups) - 1) / 2) * w, frac, w, label=f"{key} ({int(c.sum())})")
        ax.set_xticks(x, PARTITION_NAMES, rotation=45, fontsize=8)
        ax.set_ylabel("fraction of blocks")
        ax.set_yscale("log")
        ax.set_title(f"by {kind}")
        ax.legend(fontsize=7)
    r = manifest["recipe"]
    fig.suptitle(f"av1part dataset: {int(total.sum())} blocks; aomenc cpu-used {r['cpu_used']}, "
                 f"{r['mode']}, {r['bit_depth']}-bit, cq {r['cq_levels']}")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(png.name + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(png)
