"""Classification metrics (macro F1, per-class P/R/F1, confusion, ECE/MCE)
and the end-to-end cascade metrics with stage-wise error attribution."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from . import PARTITION_NAMES


def confusion_matrix(y_true, y_pred, k: int) -> np.ndarray:
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def prf_from_confusion(cm: np.ndarray, names: Sequence[str] | None = None) -> dict:
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    pred = cm.sum(0)
    true = cm.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(pred > 0, tp / pred, 0.0)
        rec = np.where(true > 0, tp / true, 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
    present = (true > 0) | (pred > 0)
    k = cm.shape[0]
    names = list(names) if names is not None else [str(i) for i in range(k)]
    return {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        # macro over the classes that occur in y_true or in the predictions (as scikit-learn);
        # a class that is neither true nor predicted anywhere is reported, not averaged
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {names[i]: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                                 "support": int(true[i])} for i in range(k)},
        "confusion": cm.astype(np.int64).tolist(),
        "n": int(cm.sum()),
    }


def calibration_bins(probs: np.ndarray, y_true, n_bins: int = 15) -> np.ndarray:
    """Accumulators [n_bins, 3]: count, sum confidence, sum correct (top-label)."""
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(1)
    correct = (probs.argmax(1) == np.asarray(y_true)).astype(np.float64)
    b = np.clip((conf * n_bins).astype(np.int64), 0, n_bins - 1)
    # a confidence of exactly i/n goes to bin i-1 (bins are (lo, hi])
    b = np.where((conf * n_bins == b) & (b > 0), b - 1, b)
    acc = np.zeros((n_bins, 3))
    np.add.at(acc[:, 0], b, 1.0)
    np.add.at(acc[:, 1], b, conf)
    np.add.at(acc[:, 2], b, correct)
    return acc


def ece_mce(bins: np.ndarray) -> tuple[float, float]:
    n = bins[:, 0].sum()
    if n == 0:
        return 0.0, 0.0
    nz = bins[:, 0] > 0
    gap = np.abs(bins[nz, 1] - bins[nz, 2]) / bins[nz, 0]
    return float((bins[nz, 0] / n * gap).sum()), float(gap.max())


def classification_metrics(probs: np.ndarray, y_true, names: Sequence[str], n_bins: int = 15) -> dict:
    k = len(names)
    cm = confusion_matrix(y_true, np.asarray(probs).argmax(1), k)
    out = prf_from_confusion(cm, names)
    out["ece"], out["mce"] = ece_mce(calibration_bins(probs, y_true, n_bins))
    return out


def cascade_metrics(result, labels, manifest: dict) -> dict:
    """End-to-end 10-way metrics of a cascade result (reference.CascadeResult)
    and where errors enter: for a wrong block, the first stage on the block's
    true path whose own argmax leaves that path; 'mixing' when every stage on
    the path chose right but the 10-way argmax still differs."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = result.probabilities
    pred = result.partition
    cm = confusion_matrix(labels, pred, 10)
    out = prf_from_confusion(cm, PARTITION_NAMES)
    out["ece"], out["mce"] = ece_mce(calibration_bins(probs, labels))
    stages = {s["name"]: s for s in manifest["stages"]}
    root = manifest["cascade"]["root"]

    def path_to(part_name):
        def walk(s, acc):
            for ci, c in enumerate(stages[s]["classes"]):
                if c.get("partition") == part_name:
                    return acc + [(s, ci)]
                if "next" in c:
                    r = walk(c["next"], acc + [(s, ci)])
                    if r:
                        return r
            return None
        return walk(root, [])

    paths = {i: path_to(PARTITION_NAMES[i]) for i in range(10)}
    entered = {s: 0 for s in stages}
    entered["mixing"] = 0
    entered["skipped"] = 0
    wrong = np.nonzero(pred != labels)[0]
    for i in wrong:
        where = "mixing"
        for s, ci in paths[labels[i]] or []:
            if not result.ran[s][i]:
                where = "skipped"
                break
            if int(np.argmax(result.stage_probs[s][i])) != ci:
                where = s
                break
        entered[where] += 1
    n = max(len(labels), 1)
    out["errors_enter_at"] = {k: {"count": v, "share_of_blocks": v / n,
                                  "share_of_errors": v / max(len(wrong), 1)} for k, v in entered.items()}
    return out
