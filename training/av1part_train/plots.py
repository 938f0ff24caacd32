"""Learning curves and confusion matrices as PNG (matplotlib, Agg)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_history(history: list[dict], path: Path, title: str = ""):
    plt = _plt()
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(ep, [h["train_loss"] for h in history], label="train")
    ax[0].plot(ep, [h["val_loss"] for h in history], label="val")
    ax[0].set_title("loss"); ax[0].legend()
    ax[1].plot(ep, [h["train_macro_f1"] for h in history], label="train")
    ax[1].plot(ep, [h["val_macro_f1"] for h in history], label="val")
    ax[1].set_title("macro F1"); ax[1].legend()
    for name in history[0]["lr"]:
        ax[2].plot(ep, [h["lr"][name] for h in history], label=name)
    ax[2].set_yscale("log"); ax[2].set_title("learning rate"); ax[2].legend()
    for a in ax:
        a.set_xlabel("epoch")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_confusion(cm: np.ndarray, names, path: Path, title: str = ""):
    plt = _plt()
    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * k, 0.8 + 0.6 * k))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), names, rotation=45, ha="right"); ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted"); ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{norm[i, j]:.2f}\n{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _stage_f1(row: dict, stage: str) -> float:
    """A size point's stage macro F1 under its decision rule (``f1_key``; sizes --point =balanced)."""
    return row["eval"]["stages"][stage][row.get("f1_key", "macro_f1")]


def plot_sizes(rows: list[dict], path: Path, title: str = ""):
    """Quality against cost: each row has ``name``, ``us_per_block`` and an
    ``evaluate`` result (``stages`` macro F1, ``topk_recall``,
    ``prior_topk_recall``); ``baseline`` rows are drawn as crosses, not
    joined. Left: macro F1 per stage; right: top-k recall, with the
    training-prior list as dashed lines."""
    plt = _plt()
    rows = sorted(rows, key=lambda r: r["us_per_block"])
    base = [r for r in rows if r.get("baseline")]
    rows = [r for r in rows if not r.get("baseline")]
    x = [r["us_per_block"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, s in enumerate(("stage1", "stage2", "stage3_rect", "stage3_ab")):
        ax[0].plot(x, [_stage_f1(r, s) for r in rows], "o-", color=f"C{i}", label=s)
        ax[0].plot([b["us_per_block"] for b in base], [_stage_f1(b, s) for b in base], "x",
                   color=f"C{i}", ms=9)
    for r in rows + base:
        ax[0].annotate(r["name"], (r["us_per_block"], _stage_f1(r, "stage1")),
                       textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax[0].set_xscale("log")
    ax[0].set_xlabel("µs per block (predict_frame, 1080p, 1 thread)")
    ax[0].set_ylabel("test macro F1")
    ax[0].legend(fontsize=8)
    for k, c in zip(("1", "2", "3", "5"), ("C0", "C1", "C2", "C3")):
        ax[1].plot(x, [r["eval"]["topk_recall"][k] for r in rows], "o-", color=c, label=f"top-{k}")
        ax[1].plot([b["us_per_block"] for b in base], [b["eval"]["topk_recall"][k] for b in base], "x", color=c, ms=9)
        ax[1].axhline(rows[0]["eval"]["prior_topk_recall"][k], color=c, ls="--", lw=0.8)
    ax[1].set_xscale("log")
    ax[1].set_xlabel("µs per block (predict_frame, 1080p, 1 thread)")
    ax[1].set_ylabel("recall of the true partition (dashed: prior list)")
    ax[1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
