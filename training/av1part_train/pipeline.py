"""Export from checkpoints, bundle evaluation on a dataset split, and the
train-all pipeline (Stage 1 -> Stage 2 -> Stage 3 RECT/AB -> export -> test)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CheckpointError, load_stage_models, read_checkpoint, sha256_file
from .config import TrainConfig, load_config
from .export import ExportError, export_bundle, synthetic_golden_blocks
from .loader import BlockDataset
from .metrics import cascade_metrics, classification_metrics
from .models.stage import STAGE_ORDER, stage_classes
from .reference import ReferenceBundle
from .tensor import InputSpec, is_intra_frame_type


def load_hierarchy(ckpts: dict[str, str]) -> tuple[dict, InputSpec, dict]:
    """Load the four stages' checkpoints; all must sit on the same Stage 1."""
    missing = [s for s in STAGE_ORDER if not ckpts.get(s)]
    if missing:
        raise CheckpointError(f"missing checkpoints for {missing}")
    s1_path = ckpts["stage1"]
    stages, cks = {}, {}
    for s in STAGE_ORDER:
        models, ck = load_stage_models(ckpts[s], None if s == "stage1" else s1_path)
        if ck["stage"] != s:
            raise CheckpointError(f"{ckpts[s]}: is a {ck['stage']} checkpoint, expected {s}")
        stages[s], cks[s] = models, ck
    spec = InputSpec.from_manifest(cks["stage1"]["spec"])
    for s in STAGE_ORDER:
        if cks[s]["spec"] != cks["stage1"]["spec"]:
            raise CheckpointError(f"{ckpts[s]}: input spec differs from Stage 1's")
    return stages, spec, cks


def real_golden_blocks(data: str, n: int = 16, seed: int = 0) -> list[dict]:
    ds = BlockDataset(data, "test", InputSpec.create(), None, require_all_classes=False)
    idx = np.sort(np.random.default_rng(seed).choice(len(ds), min(n, len(ds)), replace=False))
    a = ds.arrays(idx)
    intra = is_intra_frame_type(a["frame_type"])
    return [{"bit_depth": int(a["bit_depth"][i]), "y": a["y"][i].astype(np.int64), "u": a["u"][i].astype(np.int64),
             "v": a["v"][i].astype(np.int64), "prev_y": a["prev_y"][i].astype(np.int64) if a["has_prev"][i] else None,
             "qindex": int(a["base_qindex"][i]), "intra": bool(intra[i])} for i in range(len(idx))]


def evaluate_bundle(bundle: str, data: str, split: str = "test", skip_below: float | None = 0.0,
                    max_blocks: int | None = None, batch: int = 4096, threads: int = 0, exclude_edge: bool = False) -> dict:
    """End-to-end 10-way metrics of a bundle (onnxruntime, the reference
    cascade) on a dataset split, with error attribution and per-stage metrics."""
    ref = ReferenceBundle(bundle, threads=threads or (os.cpu_count() or 1))
    ds = BlockDataset(data, split, ref.spec, None, exclude_edge, max_blocks, require_all_classes=False)
    probs, stage_p, ran = [], {s: [] for s in STAGE_ORDER}, {s: [] for s in STAGE_ORDER}
    for s0 in range(0, len(ds), batch):
        b = ds.batch(np.arange(s0, min(s0 + batch, len(ds))))
        r = ref.run_tensors(b["x"].numpy(), b["side"].numpy(), skip_below)
        probs.append(r.probabilities)
        for s in STAGE_ORDER:
            stage_p[s].append(r.stage_probs[s])
            ran[s].append(r.ran[s])
    from .reference import CascadeResult
    P = np.concatenate(probs)
    res = CascadeResult(P, P.argmax(1), {s: np.concatenate(v) for s, v in stage_p.items()},
                        {s: np.concatenate(v) for s, v in ran.items()})
    out = {"split": split, "n": len(ds), "skip_below": skip_below if skip_below is not None else
           ref.manifest["cascade"]["skip_below"]}
    prior_p = prior_leaf_distribution(ref.manifest)
    greedy = {"greedy": greedy_partitions(ref.manifest, res.stage_probs),   # once; subsets index them
              "balanced": greedy_partitions(ref.manifest, res.stage_probs, balanced=True)}
    out.update(_block_metrics(ref.manifest, res, ds.labels10, prior_p, greedy, full=True))
    # the same, per test clip (sequence), per encoder preset and key vs inter frames
    g = ds.groups()
    breakdown = {}
    keys = [("sequence", g["sequence"]), ("cpu_used", g["cpu_used"]),
            ("frame", np.where(g["intra"], "key", "inter"))]
    if g["covered"].any():  # a covered_as_none dataset: the stream's nodes apart from the rest
        keys.append(("node", np.where(g["covered"], "covered", "node")))
    for key, vals in keys:
        breakdown[key] = {}
        for v in sorted(set(vals.tolist()), key=str):
            m = vals == v
            breakdown[key][str(v)] = _block_metrics(ref.manifest, res.subset(m), ds.labels10[m], prior_p,
                                                    {k: v[m] for k, v in greedy.items()})
    out["breakdown"] = breakdown
    return out


def _block_metrics(manifest: dict, res, labels10: np.ndarray, prior_p: np.ndarray, greedy: dict,
                   full: bool = False) -> dict:
    """Every figure the bundle is judged by, on one set of blocks: per-stage
    macro F1, ECE and NLL (blocks that reach the stage by their true label),
    the ten probabilities' ECE and NLL, flat, greedy and balanced 10-way, top-k recall
    against the prior list and the prune sets."""
    from . import PARTITION_NAMES
    from .metrics import confusion_matrix, prf_from_confusion
    from .models.stage import LABEL_MAPS
    P = res.probabilities
    n = len(labels10)
    priors = {st["name"]: np.asarray(st["prior"], np.float64) for st in manifest["stages"]}
    casc = cascade_metrics(res, labels10, manifest)
    casc["nll"] = _nll(P, labels10)
    per_stage = {}
    for s in STAGE_ORDER:
        t = np.asarray(LABEL_MAPS[s])[labels10]
        sel = (t >= 0) & res.ran[s]
        if sel.any():
            m = classification_metrics(res.stage_probs[s][sel], t[sel], stage_classes(s))
            m["nll"] = _nll(res.stage_probs[s][sel], t[sel])
            m["n"] = int(sel.sum())
            m["macro_f1_balanced"] = _balanced_macro_f1(res.stage_probs[s][sel], t[sel], priors[s], stage_classes(s))
            per_stage[s] = m if full else {k: m[k] for k in ("macro_f1", "macro_f1_balanced", "accuracy", "ece",
                                                             "nll", "n")}
    pol = {k: prf_from_confusion(confusion_matrix(np.asarray(labels10, np.int64), v, 10), PARTITION_NAMES)
           for k, v in greedy.items()}
    out = {"n": int(n),
           "cascade": casc if full else {k: casc[k] for k in ("accuracy", "macro_f1", "ece", "nll")},
           "stages": per_stage,
           "topk_recall": topk_recall(P, labels10),
           "prior_topk_recall": topk_recall(np.tile(prior_p, (n, 1)), labels10),
           "policies": {"flat": {"accuracy": casc["accuracy"], "macro_f1": casc["macro_f1"]},
                        **{k: {"accuracy": v["accuracy"], "macro_f1": v["macro_f1"]} for k, v in pol.items()},
                        "prune": {str(r): prune_set_stats(P, labels10, r) for r in (0.8, 0.9, 0.95, 0.99)}}}
    if full:
        out["stage_run_fraction"] = {s: float(res.ran[s].mean()) for s in STAGE_ORDER}
    return out


def _prior_ratio(probs: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """The balanced policy's scores: each probability over its class prior,
    -inf for a class with prior 0 (never chosen); NaN rows stay NaN."""
    return np.where(prior > 0, np.asarray(probs, np.float64) / np.where(prior > 0, prior, 1.0), -np.inf)


def _balanced_macro_f1(probs: np.ndarray, y: np.ndarray, prior: np.ndarray, names) -> float:
    """Macro F1 of the decision argmax p(c) / prior(c): for probabilities that
    follow the training prior (a calibrated bundle), the class that gained
    most over its prior; the rule that suits a class-averaged score (a plain
    argmax of calibrated probabilities favours the frequent class). Classes
    with prior 0 are never chosen."""
    from .metrics import confusion_matrix, prf_from_confusion
    pred = _prior_ratio(probs, prior).argmax(1)
    return float(prf_from_confusion(confusion_matrix(np.asarray(y, np.int64), pred, len(names)), names)["macro_f1"])


def _nll(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood (natural log) of the true class."""
    y = np.asarray(y, np.int64)
    return float(-np.log(np.clip(np.asarray(probs, np.float64)[np.arange(len(y)), y], 1e-12, None)).mean()) if len(y) else 0.0


def greedy_partitions(manifest: dict, stage_probs: dict, balanced: bool = False) -> np.ndarray:
    """The greedy policy (docs/CONTRACTS.md): down the tree, each stage's most
    probable class (lowest index on a tie; a stage that did not run, NaN
    rows, contributes its prior's argmax). ``balanced``: the balanced policy,
    each row that ran divided by the stage's prior first (prior 0: never)."""
    from . import PARTITION_INDEX
    stages = {s["name"]: s for s in manifest["stages"]}
    pick = {}
    for name, st in stages.items():
        rows = np.asarray(stage_probs[name], np.float64)
        prior = np.asarray(st["prior"], np.float64)
        ran = ~np.isnan(rows).any(axis=1)
        if balanced:
            rows = _prior_ratio(rows, prior)
        pick[name] = np.where(ran, np.argmax(np.where(np.isnan(rows), -np.inf, rows), axis=1), int(np.argmax(prior)))
    n = len(next(iter(stage_probs.values())))
    out = np.full(n, -1, dtype=np.int64)
    todo = [(manifest["cascade"]["root"], np.arange(n))]
    while todo:   # the tree is acyclic (checked at load)
        s, idx = todo.pop()
        for k, c in enumerate(stages[s]["classes"]):
            sel = idx[pick[s][idx] == k]
            if "partition" in c:
                out[sel] = PARTITION_INDEX[c["partition"]]
            elif sel.size:
                todo.append((c["next"], sel))
    return out


def prune_set_stats(probs: np.ndarray, labels: np.ndarray, target: float) -> dict:
    """The prune set for a target recall (the fewest types by decreasing
    probability whose sum reaches ``target``): the recall it achieves and its
    mean size."""
    order = np.argsort(-probs, axis=1, kind="stable")
    csum = np.cumsum(np.take_along_axis(probs, order, 1), axis=1)
    size = np.minimum((csum < target).sum(1) + 1, probs.shape[1])
    inside = (order == np.asarray(labels)[:, None]) & (np.arange(probs.shape[1])[None, :] < size[:, None])
    return {"recall": float(inside.any(1).mean()), "mean_size": float(size.mean())}


def topk_recall(probs: np.ndarray, labels: np.ndarray, ks=(1, 2, 3, 4, 5)) -> dict:
    """Fraction of blocks whose true partition is among the k most probable
    (ties broken by the lower partition number, as the plugin does)."""
    order = np.argsort(-probs, axis=1, kind="stable")
    return {str(k): float((order[:, :k] == np.asarray(labels)[:, None]).any(1).mean()) for k in ks}


def prior_leaf_distribution(manifest: dict) -> np.ndarray:
    """The ten partition probabilities of the priors alone: the fixed list
    of types by training frequency a pruner must beat."""
    from .reference import run_cascade
    pri = {st["name"]: np.asarray(st["prior"], np.float32) for st in manifest["stages"]}
    return run_cascade(manifest, 1, lambda s, idx: np.tile(pri[s], (len(idx), 1)), 0.0).probabilities[0]


def export_from_checkpoints(ckpts: dict[str, str], out: str, name: str, data: str | None = None,
                            description: str = "", skip_below: float = 0.0, test_max_blocks: int | None = None,
                            golden_skip_below="auto", prior_correction: bool = False,
                            calibrate: bool = False) -> dict:
    """``calibrate`` (needs ``data``): prior correction of every stage trained
    on balanced batches and a temperature per stage fitted on the validation
    split (calibration.py), both folded into the graph."""
    stages, spec, cks = load_hierarchy(ckpts)
    priors = {}
    for s in STAGE_ORDER:
        c = np.asarray(cks[s]["class_counts"], dtype=np.float64)
        if c.sum() <= 0:
            raise ExportError(f"{s}: no training class counts in its checkpoint")
        priors[s] = (c / c.sum()).tolist()
    recipe = {"stages": {s: {k: cks[s]["config"][k] for k in (
        "arch", "stem", "width_mult", "mode", "adapter", "adapter_reduction", "adapter_bottleneck", "bn_mode",
        "loss", "gamma", "beta", "lr", "lr_adapter", "lr_head", "weight_decay", "batch_size", "epochs",
        "seed", "balanced_sampling", "exclude_edge", "ensemble_k")} | {
        "epoch": cks[s]["epoch"], "val_macro_f1": cks[s]["metric"], "checkpoint_sha256": sha256_file(ckpts[s]),
        "block_stats": stages[s][0].block_stats.names if stages[s][0].block_stats_cfg else None,
        "augment": cks[s]["config"].get("augment", "none")}
        for s in STAGE_ORDER},
        "stage1_sha256": sha256_file(ckpts["stage1"]), "train_class_counts": {s: cks[s]["class_counts"] for s in STAGE_ORDER}}
    val_metrics = {s: {"macro_f1": cks[s]["metric"]} for s in STAGE_ORDER}
    if "cpu_used" in spec.side_features and not data:
        raise ExportError("a model that takes cpu_used needs --data (the presets it was trained for)")
    if data:
        # the presets the labels came from: an input for a model that takes
        # cpu_used, information (input.presets) for one bundle per preset
        from dataclasses import replace
        from .loader import dataset_cpu_used, dataset_roots
        presets = tuple(sorted({dataset_cpu_used(r) for r in dataset_roots(data)} - {-1}))
        spec = replace(spec, presets=presets)
    blocks = synthetic_golden_blocks(48, 0)
    if data:
        recipe["dataset"] = _dataset_identity(data)
        try:
            blocks += real_golden_blocks(data, 16)
        except Exception as e:  # no test split: synthetic golden blocks only
            recipe["golden_note"] = f"no real test blocks: {e}"
    # Stages trained on class-balanced batches learned a uniform class prior;
    # the export puts the real one back (see StageExport).
    if calibrate and not data:
        raise ExportError("calibration needs the dataset (its validation split)")
    prior_correction = prior_correction or calibrate
    corrected = [s for s in STAGE_ORDER if cks[s]["config"].get("balanced_sampling")] if prior_correction else []
    for s in STAGE_ORDER:
        recipe["stages"][s]["prior_correction"] = s in corrected
    temperatures = {}
    if calibrate:
        from .calibration import calibrate_stage
        for s in STAGE_ORDER:
            c = cks[s]["config"]
            val = BlockDataset(data, "val", spec, s, bool(c.get("exclude_edge", False)), None,
                               require_all_classes=False)
            shift = np.log(np.asarray(priors[s], np.float64)) if s in corrected else None
            cal = calibrate_stage(stages[s], val, shift)
            temperatures[s] = cal["temperature"]
            recipe["stages"][s]["calibration"] = cal
            print(f"[export] {s}: temperature {cal['temperature']:.3f}, val NLL {cal['val_nll_before']:.4f} -> "
                  f"{cal['val_nll_after']:.4f}, ECE {cal['val_ece_before']:.4f} -> {cal['val_ece_after']:.4f}",
                  flush=True)
    manifest = export_bundle(out, spec, stages, priors, name=name, description=description, recipe=recipe,
                             metrics={"val": val_metrics}, golden_blocks=blocks, skip_below=skip_below,
                             golden_skip_below=golden_skip_below, prior_corrected=corrected,
                             temperatures=temperatures)
    if data:
        excl = bool(cks["stage1"]["config"].get("exclude_edge", False))
        test = evaluate_bundle(out, data, "test", 0.0, test_max_blocks, exclude_edge=excl)
        manifest["training"]["metrics"]["test"] = {**_compact_test(test), "exclude_edge": excl}
        tmp = Path(out) / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, Path(out) / "manifest.json")
        (Path(out).parent / f"{Path(out).name}.test-metrics.json").write_text(json.dumps(test, indent=1) + "\n")
    return manifest


def _compact_test(t: dict) -> dict:
    c = t["cascade"]
    return {"split": t["split"], "n": t["n"], "accuracy_10way": c["accuracy"], "macro_f1_10way": c["macro_f1"],
            "ece": c["ece"], "mce": c["mce"], "nll": c["nll"],
            "macro_f1_10way_greedy": t["policies"]["greedy"]["macro_f1"],
            "macro_f1_10way_balanced": t["policies"]["balanced"]["macro_f1"],
            "topk_recall": t["topk_recall"], "prior_topk_recall": t["prior_topk_recall"],
            "stage_ece": {s: m["ece"] for s, m in t["stages"].items()},
            "stage_nll": {s: m["nll"] for s, m in t["stages"].items()},
            "per_class_f1": {k: v["f1"] for k, v in c["per_class"].items()},
            "errors_enter_at": {k: v["share_of_errors"] for k, v in c["errors_enter_at"].items()},
            "stage_macro_f1": {s: m["macro_f1"] for s, m in t["stages"].items()},
            "stage_macro_f1_balanced": {s: m["macro_f1_balanced"] for s, m in t["stages"].items()}}


def _dataset_identity(data) -> dict:
    from .loader import dataset_roots
    roots = dataset_roots(data)
    if len(roots) > 1:
        return {"datasets": [_dataset_identity(str(r)) for r in roots]}
    mp = Path(data) / "manifest.json"
    if not mp.exists():
        return {"path": str(data)}
    m = json.loads(mp.read_text())
    return {"manifest_sha256": sha256_file(mp), "format_version": m.get("format_version"),
            "splits": m.get("splits"), "recipe": m.get("recipe")}


def train_all(config_path: str | None, overrides: list[str], out_root: str, bundle_out: str, name: str = "default",
              skip_stages=(), calibrate: bool = True) -> dict:
    """Stage 1 -> Stage 2 -> Stage 3 RECT -> Stage 3 AB -> export -> test metrics.
    The JSON config has common keys at the top level and optional per-stage
    sections ("stage1": {...}, "stage2": {...}, ...)."""
    from .train import train_stage
    out_root = Path(out_root)
    ckpts = {}
    # pre-flight: every stage's training split (labels only, cheap) before hours of Stage 1
    for s in STAGE_ORDER:
        c = load_config(config_path, overrides, section=s)
        ds = BlockDataset(c.data, "train", c.spec(), s, c.exclude_edge, c.train_max_blocks, seed=c.seed,
                          require_all_classes=not c.allow_missing_classes)
        BlockDataset(c.data, "val", c.spec(), s, c.exclude_edge, c.val_max_blocks, seed=c.seed,
                     require_all_classes=False)
        print(f"[train-all] {s}: {len(ds)} training blocks {dict(zip(stage_classes(s), ds.counts.tolist()))}",
              flush=True)
    for s in STAGE_ORDER:
        cfg = load_config(config_path, overrides, section=s)
        cfg = cfg.replace(stage=s, out=str(out_root / s),
                          stage1_ckpt=str(out_root / "stage1" / "checkpoints" / "best.pt") if s != "stage1" else "")
        best = out_root / s / "checkpoints" / "best.pt"
        if s in skip_stages and best.exists():
            print(f"[train-all] {s}: reusing {best}")
        else:
            print(f"[train-all] training {s} -> {cfg.out}", flush=True)
            train_stage(cfg)
        ckpts[s] = str(best)
    data = load_config(config_path, overrides).data
    print(f"[train-all] exporting {bundle_out}", flush=True)
    m = export_from_checkpoints(ckpts, bundle_out, name, data, description=f"av1part bundle {name}",
                                calibrate=calibrate)
    print(json.dumps(m["training"]["metrics"].get("test", {}), indent=1))
    return m
