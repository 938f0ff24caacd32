"""A baseline that a learnt backbone has to beat: hand-made block features
(the statistics an encoder's own pruning uses: variances of the block, its
halves, quadrants and 4-strips, gradient energies, chroma variance, the
difference from the previous frame's block, qindex, key/inter) and a small
classifier on them (multinomial logistic regression or a 2-layer MLP),
trained on the train split's blocks of one stage with class-balanced
weights, scored on the other splits (unseen clips).

Why: the class-frequency list says whether a model knows anything; this says
whether a CNN on the pixels knows more than the few numbers an encoder
already computes. If it does not, the model is limited by its input (what a
16x16 block and its co-located predecessor can tell about an RD search), not
by its architecture or recipe.
"""
from __future__ import annotations

import numpy as np
import torch

from .loader import BlockDataset
from .metrics import confusion_matrix, prf_from_confusion
from .tensor import InputSpec, is_intra_frame_type

FEATURE_NAMES: list[str] = []


def _lvar(x: np.ndarray, axes) -> np.ndarray:
    return np.log1p(x.var(axis=axes))


def block_features(a: dict) -> np.ndarray:
    """[N, F] float32 features of the raw block arrays of ``BlockDataset.arrays``."""
    bd = np.asarray(a["bit_depth"], np.int64)
    scale = (255.0 / ((1 << bd) - 1)).reshape(-1, 1, 1)
    y = a["y"].astype(np.float64) * scale
    p = a["prev_y"].astype(np.float64) * scale
    u = a["u"].astype(np.float64) * scale
    v = a["v"].astype(np.float64) * scale
    has_prev = np.asarray(a["has_prev"]).astype(bool)
    p = np.where(has_prev[:, None, None], p, y)
    f = {}
    f["mean"] = y.mean(axis=(1, 2)) / 255.0
    f["lvar"] = _lvar(y, (1, 2))
    q = y.reshape(-1, 2, 8, 2, 8)
    quads = np.log1p(q.var(axis=(2, 4))).reshape(-1, 4)
    for i in range(4):
        f[f"lvar_q{i}"] = quads[:, i]
    f["split_gain"] = f["lvar"] - quads.mean(axis=1)
    f["quad_spread"] = quads.max(axis=1) - quads.min(axis=1)
    top, bottom = _lvar(y[:, :8], (1, 2)), _lvar(y[:, 8:], (1, 2))
    left, right = _lvar(y[:, :, :8], (1, 2)), _lvar(y[:, :, 8:], (1, 2))
    f.update(lvar_top=top, lvar_bottom=bottom, lvar_left=left, lvar_right=right,
             horz_gain=f["lvar"] - (top + bottom) / 2, vert_gain=f["lvar"] - (left + right) / 2)
    hs = np.log1p(y.reshape(-1, 4, 4, 16).var(axis=(2, 3)))     # 16x4 strips
    vs = np.log1p(y.reshape(-1, 16, 4, 4).var(axis=(1, 3)))     # 4x16 strips
    f["horz4_gain"] = f["lvar"] - hs.mean(axis=1)
    f["vert4_gain"] = f["lvar"] - vs.mean(axis=1)
    gx = np.abs(np.diff(y, axis=2)).mean(axis=(1, 2))
    gy = np.abs(np.diff(y, axis=1)).mean(axis=(1, 2))
    f.update(lgx=np.log1p(gx), lgy=np.log1p(gy), gx_share=gx / (gx + gy + 1e-6))
    f["lvar_u"], f["lvar_v"] = _lvar(u, (1, 2)), _lvar(v, (1, 2))
    d = np.abs(y - p)
    f["lmad"] = np.log1p(d.mean(axis=(1, 2)))
    dq = np.log1p(d.reshape(-1, 2, 8, 2, 8).mean(axis=(2, 4))).reshape(-1, 4)
    for i in range(4):
        f[f"lmad_q{i}"] = dq[:, i]
    f["lvar_diff"] = _lvar(y - p, (1, 2))
    f["has_prev"] = has_prev.astype(np.float64)
    f["qindex"] = np.asarray(a["base_qindex"], np.float64) / 255.0
    f["intra"] = is_intra_frame_type(a["frame_type"]).astype(np.float64)
    FEATURE_NAMES[:] = list(f)
    return np.stack([f[k] for k in f], axis=1).astype(np.float32)


def dataset_features(ds: BlockDataset, chunk: int = 8192, bundle=None, stage: str | None = None) -> np.ndarray:
    """Features of every block of ``ds``; with ``bundle`` (a ReferenceBundle whose input spec
    ``ds`` was built with), the log probabilities of its ``stage`` appended (does a CNN add to
    the statistics?)."""
    out = []
    for i in range(0, len(ds), chunk):
        a = ds.arrays(np.arange(i, min(i + chunk, len(ds))))
        f = block_features(a)
        if bundle is not None:
            p = bundle.run_tensors(*ds.tensors(a), 0.0).stage_probs[stage]
            f = np.concatenate([f, np.log(np.clip(p, 1e-6, 1.0)).astype(np.float32)], axis=1)
        out.append(f)
    return np.concatenate(out)


def _net(n_in: int, k: int, model: str) -> torch.nn.Module:
    if model == "linear":
        return torch.nn.Linear(n_in, k)
    if model == "mlp":
        return torch.nn.Sequential(torch.nn.Linear(n_in, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                                   torch.nn.ReLU(), torch.nn.Linear(64, k))
    raise ValueError(f"unknown baseline model {model!r}; known: linear, mlp")


def fit(x: np.ndarray, y: np.ndarray, k: int, model: str = "mlp", steps: int = 3000, seed: int = 0):
    """Class-balanced cross-entropy, Adam, minibatches of 1024; returns a predict(x) -> probs."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    xt = torch.from_numpy((x - mu) / sd)
    yt = torch.from_numpy(y.astype(np.int64))
    counts = np.bincount(y, minlength=k).astype(np.float64)
    w = torch.tensor(np.where(counts > 0, counts.sum() / (k * np.maximum(counts, 1)), 0.0), dtype=torch.float32)
    net = _net(x.shape[1], k, model)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    lossf = torch.nn.CrossEntropyLoss(weight=w)
    for _ in range(steps):
        idx = torch.randint(0, xt.shape[0], (1024,), generator=g)
        loss = lossf(net(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    net.eval()

    def predict(xs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(net(torch.from_numpy((xs - mu) / sd)), dim=1).numpy()
    return predict


def run_baseline(data, stage: str = "stage1", model: str = "mlp", splits=("val", "test"), steps: int = 3000,
                 seed: int = 0, max_train: int | None = 300_000, with_bundle=None) -> dict:
    """Fit on the train split of ``stage``'s blocks (edge blocks excluded, as the
    recipes train), score macro F1 on ``splits``, overall and per clip. ``with_bundle``:
    a bundle directory whose ``stage`` log probabilities join the features."""
    spec, ref = InputSpec.create(("y",)), None
    if with_bundle is not None:
        from .reference import ReferenceBundle
        ref = ReferenceBundle(with_bundle)
        spec = ref.spec
    tr = BlockDataset(data, "train", spec, stage=stage, exclude_edge=True, max_blocks=max_train, seed=seed)
    k = len(tr.class_names)
    predict = fit(dataset_features(tr, bundle=ref, stage=stage), tr.targets, k, model, steps, seed)
    out = {"stage": stage, "model": model, "features": list(FEATURE_NAMES), "train_blocks": len(tr),
           "steps": steps, "seed": seed, "with_bundle": None if with_bundle is None else str(with_bundle),
           "splits": {}}
    for split in splits:
        ds = BlockDataset(data, split, spec, stage=stage, exclude_edge=False, require_all_classes=False)
        pred = predict(dataset_features(ds, bundle=ref, stage=stage)).argmax(axis=1)
        res = {"blocks": len(ds), "macro_f1": _macro_f1(ds.targets, pred, k, tr.class_names), "clips": {}}
        seq = ds.groups()["sequence"]
        for s in sorted(set(seq.tolist())):
            m = seq == s
            res["clips"][s] = {"blocks": int(m.sum()), "macro_f1": _macro_f1(ds.targets[m], pred[m], k, tr.class_names)}
        out["splits"][split] = res
    return out


def _macro_f1(y, pred, k, names) -> float:
    return float(prf_from_confusion(confusion_matrix(y, pred, k), names)["macro_f1"])
