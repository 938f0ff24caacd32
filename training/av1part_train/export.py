"""Bundle export (docs/CONTRACTS.md): trunk.onnx + one ONNX file per stage,
frozen weights stored once in ``backbone.data`` (ONNX external data, deduped
by content across files), manifest.json, golden.json.

Export is a tested step: every file is checked by the onnx checker, loaded by
onnxruntime *from disk* (so the external data is resolved as the plugin
resolves it), and compared with PyTorch (max abs diff <= tol, default 1e-4);
any failure raises ExportError and the bundle directory is not left behind
half-written (files go to a temp dir that is renamed at the end).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import PARTITION_NAMES
from .models.registry import model_cfg
from .models.stage import STAGES, STAGE_ORDER, ROOT, FusedExport, StageExport, StageModel, TrunkExport
from .reference import SCHEMA, SCHEMA_VERSION, SCHEMA_VERSION_FUSED, ReferenceBundle, golden_entry, sha256_file
from .tensor import InputSpec

OPSET = 17
DATA_FILE = "backbone.data"
FUSED_FILE = "model.onnx"
ALIGN = 64
MIN_EXTERNAL_BYTES = 1024  # smaller shared tensors stay inline


class ExportError(RuntimeError):
    pass


def _export_onnx(module: torch.nn.Module, args: tuple, input_names: list[str], output_name) -> "onnx.ModelProto":
    """``output_name``: one name, or a list for a module returning a tuple."""
    import onnx

    module = module.eval()
    output_names = [output_name] if isinstance(output_name, str) else list(output_name)
    dyn = {n: {0: "N"} for n in input_names}
    for o in output_names:
        dyn[o] = {0: "N"}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, args, buf, input_names=input_names, output_names=output_names,
                              dynamic_axes=dyn, opset_version=OPSET, do_constant_folding=True, dynamo=False)
            model = onnx.load_from_string(buf.getvalue())
        except Exception as legacy_err:  # the TorchScript exporter may be gone in a later torch
            with tempfile.TemporaryDirectory() as td:
                p = os.path.join(td, "m.onnx")
                shapes = tuple({0: torch.export.Dim("N", min=1)} for _ in args)
                try:
                    torch.onnx.export(module, args, p, input_names=input_names, output_names=output_names,
                                      dynamic_shapes=shapes, opset_version=18, dynamo=True, external_data=False)
                except Exception as e:
                    raise ExportError(f"ONNX export failed (legacy: {legacy_err!r}; dynamo: {e!r})") from e
                model = onnx.load(p)
    return model


def _tensor_key(t) -> str:
    from onnx import numpy_helper
    a = numpy_helper.to_array(t)
    h = hashlib.sha256()
    h.update(str(a.dtype).encode() + str(a.shape).encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def dedupe_external(models: dict[str, "onnx.ModelProto"], data_path: Path) -> bool:
    """Move initializers that occur (by content) in >= 2 files into one shared
    external-data file, each stored once. Returns whether anything moved."""
    from onnx import numpy_helper, TensorProto

    occ: dict[str, set] = {}
    for fname, m in models.items():
        for t in m.graph.initializer:
            occ.setdefault(_tensor_key(t), set()).add(fname)
    shared = {k for k, files in occ.items() if len(files) >= 2}
    offsets: dict[str, tuple[int, int]] = {}
    with open(data_path, "wb") as f:
        for fname, m in models.items():
            for t in m.graph.initializer:
                key = _tensor_key(t)
                if key not in shared:
                    continue
                raw = np.ascontiguousarray(numpy_helper.to_array(t)).tobytes()
                if len(raw) < MIN_EXTERNAL_BYTES:
                    continue
                if key not in offsets:
                    pos = f.tell()
                    pad = (-pos) % ALIGN
                    f.write(b"\0" * pad)
                    offsets[key] = (pos + pad, len(raw))
                    f.write(raw)
                off, ln = offsets[key]
                # little-endian raw layout is what numpy gives on x86/arm64
                t.ClearField("raw_data")
                for fld in ("float_data", "int32_data", "int64_data", "double_data"):
                    t.ClearField(fld)
                t.data_location = TensorProto.EXTERNAL
                del t.external_data[:]
                for k, v in (("location", data_path.name), ("offset", str(off)), ("length", str(ln))):
                    e = t.external_data.add()
                    e.key, e.value = k, v
    if not offsets:
        data_path.unlink()
    return bool(offsets)


def _io_shape(value_info) -> list[int]:
    dims = []
    for i, d in enumerate(value_info.type.tensor_type.shape.dim):
        dims.append(-1 if i == 0 else int(d.dim_value))
    return dims


def _max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if np.size(a) else 0.0


def export_bundle(out_dir, spec: InputSpec, stages: dict[str, Sequence[StageModel]], priors: dict[str, Sequence[float]],
                  name: str, description: str = "", recipe: dict | None = None, metrics: dict | None = None,
                  golden_blocks: list[dict] | None = None, skip_below: float = 0.0,
                  golden_skip_below: Sequence[float] = (), check_inputs: np.ndarray | None = None,
                  check_side: np.ndarray | None = None, tol: float = 1e-4, overwrite: bool = True,
                  max_bundle_bytes: int = 50_000_000, prior_corrected: Sequence[str] = (),
                  fused: bool | None = None, temperatures: dict | None = None) -> dict:
    """Write a bundle. ``stages`` maps each of the four stage names to a list of
    StageModel (one, or k members of an ensemble), all sharing the Stage 1
    backbone's stem..layer2 (checked). Stages named in ``prior_corrected``
    were trained on class-balanced batches: their logits get log(prior)
    added, so the exported probabilities follow the training distribution;
    ``temperatures`` (stage -> T) divides the logits before that
    (calibration.py). ``fused`` (default: the arch's ``fused`` setting) writes one graph with
    every stage's output (schema 2) instead of a trunk and stage files."""
    import onnx
    import onnxruntime as ort

    out_dir = Path(out_dir)
    missing = [s for s in STAGE_ORDER if s not in stages]
    if missing:
        raise ExportError(f"missing stages: {missing}")
    stage1 = stages[ROOT][0]
    if fused is None:
        fused = bool(model_cfg(stage1.arch).get("fused", False))
    if not fused and any(m.block_stats_cfg is not None for s in STAGE_ORDER for m in stages[s]):
        raise ExportError("heads with block statistics read the block tensor: only a fused bundle holds them")
    trunk_sd = {k: v for k, v in stage1.backbone.state_dict().items() if k.split(".")[0] in ("stem", "layer1", "layer2")}
    for s in STAGE_ORDER:
        for m in stages[s]:
            m.eval()
            if m.num_side != spec.num_side:
                raise ExportError(f"{s}: model has {m.num_side} side features, spec {spec.num_side}")
            sd = m.backbone.state_dict()
            for k, v in trunk_sd.items():
                if not torch.equal(sd[k], v):
                    raise ExportError(f"{s}: backbone {k} differs from Stage 1's; the trunk would not be shared")
    g = torch.Generator().manual_seed(1234)
    if check_inputs is None:
        check_inputs = torch.randn(37, spec.num_channels, 16, 16, generator=g).numpy()
        check_side = torch.rand(37, spec.num_side, generator=g).numpy()
    x_chk = torch.from_numpy(np.ascontiguousarray(check_inputs, dtype=np.float32))
    side_chk = torch.from_numpy(np.ascontiguousarray(check_side, dtype=np.float32))

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir.parent))
    os.chmod(tmp, 0o755)
    try:
        shifts = {}
        for s in prior_corrected:
            pr = np.asarray(priors[s], dtype=np.float64)
            if not np.all(pr > 0):
                raise ExportError(f"{s}: prior correction needs every class prior > 0, got {priors[s]}")
            shifts[s] = np.log(pr)
        if fused:
            manifest = _export_fused(tmp, spec, stages, priors, shifts, x_chk, side_chk, tol, name, description,
                                     recipe, metrics, skip_below, max_bundle_bytes, temperatures or {})
            _publish(tmp, out_dir, name, golden_blocks, golden_skip_below, overwrite)
            return manifest
        models, torch_out = {}, {}
        with torch.no_grad():
            trunk = TrunkExport(stage1.backbone).eval()
            ex = x_chk[:2]
            models["trunk.onnx"] = _export_onnx(trunk, (ex,), ["x"], "features")
            feats = trunk(x_chk)
            torch_out["trunk.onnx"] = feats.numpy()
            for s in STAGE_ORDER:
                mod = StageExport(list(stages[s]), shifts.get(s), (temperatures or {}).get(s, 1.0)).eval()
                if spec.num_side:
                    args, names = (feats[:2], side_chk[:2]), ["features", "side"]
                    torch_out[f"{s}.onnx"] = mod(feats, side_chk).numpy()
                else:
                    args, names = (feats[:2],), ["features"]
                    torch_out[f"{s}.onnx"] = mod(feats).numpy()
                models[f"{s}.onnx"] = _export_onnx(mod, args, names, "probs")
        has_data = dedupe_external(models, tmp / DATA_FILE)
        for fname, m in models.items():
            onnx.save_model(m, str(tmp / fname))
            onnx.checker.check_model(str(tmp / fname))

        total = sum(f.stat().st_size for f in tmp.iterdir())
        if total > max_bundle_bytes:
            raise ExportError(f"bundle is {total / 1e6:.1f} MB > {max_bundle_bytes / 1e6:.1f} MB; use a narrower "
                              f"backbone (arch resnet18_half or width_mult < 1) or fewer ensemble members")

        # ORT from disk vs torch
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        feeds = {"trunk.onnx": {"x": x_chk.numpy()}}
        for s in STAGE_ORDER:
            feeds[f"{s}.onnx"] = {"features": torch_out["trunk.onnx"]}
            if spec.num_side:
                feeds[f"{s}.onnx"]["side"] = side_chk.numpy()
        diffs = {}
        for fname in models:
            sess = ort.InferenceSession(str(tmp / fname), so, providers=["CPUExecutionProvider"])
            got = sess.run(None, feeds[fname])[0]
            diffs[fname] = _max_diff(got, torch_out[fname])
            if not diffs[fname] <= tol:
                raise ExportError(f"{fname}: onnxruntime vs PyTorch max abs diff {diffs[fname]:.3g} > {tol}")

        # manifest
        trunk_proto = models["trunk.onnx"]
        fshape = _io_shape(trunk_proto.graph.output[0])
        manifest = {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "name": name, "description": description,
            "input": spec.manifest(),
            "trunk": {"file": "trunk.onnx", "sha256": sha256_file(tmp / "trunk.onnx"),
                      "input": {"name": "x", "shape": spec.x_shape()},
                      "output": {"name": "features", "shape": fshape}},
            "stages": [],
            "data_files": [{"file": DATA_FILE, "sha256": sha256_file(tmp / DATA_FILE)}] if has_data else [],
            "cascade": {"root": ROOT, "skip_below": float(skip_below)},
            "training": {"recipe": {**(recipe or {}), "ensemble_members": {s: len(stages[s]) for s in STAGE_ORDER}},
                         "metrics": metrics or {},
                         "export_check": {"max_abs_diff_ort_vs_torch": diffs, "tolerance": tol}},
        }
        for s in STAGE_ORDER:
            inputs = [{"name": "features", "source": "trunk", "shape": fshape}]
            if spec.num_side:
                inputs.append({"name": "side", "source": "side", "shape": [-1, spec.num_side]})
            manifest["stages"].append({
                "name": s, "file": f"{s}.onnx", "sha256": sha256_file(tmp / f"{s}.onnx"),
                "inputs": inputs, "output": {"name": "probs", "shape": [-1, len(STAGES[s])]},
                "classes": STAGES[s], "prior": _normalised_prior(s, priors),
            })
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        _publish(tmp, out_dir, name, golden_blocks, golden_skip_below, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _publish(tmp: Path, out_dir: Path, name: str, golden_blocks, golden_skip_below, overwrite: bool):
    """Reloads the finished bundle in ``tmp`` like the plugin would, writes
    its golden set, then moves it to ``out_dir``."""
    ref = ReferenceBundle(tmp)
    if golden_blocks:
        write_golden(ref, tmp / "golden.json", name, golden_blocks, 0.0, golden_skip_below)
    if out_dir.exists():
        if not overwrite:
            raise ExportError(f"{out_dir} exists")
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


def _normalised_prior(s: str, priors) -> list[float]:
    pr = np.asarray(priors[s], dtype=np.float64)
    if pr.shape != (len(STAGES[s]),) or (pr < 0).any() or pr.sum() <= 0:
        raise ExportError(f"{s}: bad prior {priors[s]}")
    return [float(v) for v in pr / pr.sum()]


class _SideOnly(torch.nn.Module):
    """The fused graph of a bundle without trunk: ``side`` is its one input."""

    def __init__(self, fused):
        super().__init__()
        self.fused = fused

    def forward(self, side):
        return self.fused(None, side)


def _export_fused(tmp: Path, spec: InputSpec, stages, priors, shifts, x_chk, side_chk, tol, name, description,
                  recipe, metrics, skip_below, max_bundle_bytes, temperatures) -> dict:
    """One graph (model.onnx): (x[, side]) -> a softmax output per stage,
    weights inline; checked against PyTorch through onnxruntime from disk."""
    import onnx
    import onnxruntime as ort

    with torch.no_grad():
        mod = FusedExport(stages, shifts, temperatures).eval()
        # The graph's inputs, decided once: a bundle without trunk (models/notrunk.py) never
        # reads the block tensor, so its graph takes the side features alone and the plugin
        # builds no `x`. (name, manifest source, check tensor, manifest shape)
        io = ([("x", "block", x_chk, spec.x_shape())] if mod.takes_block else []) + \
             ([("side", "side", side_chk, [-1, spec.num_side])] if spec.num_side else [])
        if not io:
            raise ExportError("the graph would have no input: a bundle without trunk needs side features")
        want = mod(x_chk if mod.takes_block else None, side_chk if spec.num_side else None)
        proto = _export_onnx(mod if mod.takes_block else _SideOnly(mod), tuple(t[:2] for _, _, t, _ in io),
                             [n for n, _, _, _ in io], list(STAGE_ORDER))
    onnx.save_model(proto, str(tmp / FUSED_FILE))
    onnx.checker.check_model(str(tmp / FUSED_FILE))
    # Fold the weight-only subgraphs (BlockNet's dense grid matrices, the
    # folded BatchNorms) once here rather than in every session the plugin
    # creates: measured on blocknet24, 21 MiB less at load and 9 MiB less
    # per extra worker. Basic level: constant folding only, standard ops.
    folded = tmp / (FUSED_FILE + ".folded")
    fso = ort.SessionOptions()
    fso.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    fso.optimized_model_filepath = str(folded)
    ort.InferenceSession(str(tmp / FUSED_FILE), fso, providers=["CPUExecutionProvider"])
    onnx.checker.check_model(str(folded))
    os.replace(folded, tmp / FUSED_FILE)
    size = (tmp / FUSED_FILE).stat().st_size
    if size > max_bundle_bytes:
        raise ExportError(f"{FUSED_FILE} is {size / 1e6:.1f} MB > {max_bundle_bytes / 1e6:.1f} MB")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(tmp / FUSED_FILE), so, providers=["CPUExecutionProvider"])
    got = sess.run(list(STAGE_ORDER), {n: t.numpy() for n, _, t, _ in io})
    diffs = {s: _max_diff(g, w.numpy()) for s, g, w in zip(STAGE_ORDER, got, want)}
    for s, d in diffs.items():
        if not d <= tol:
            raise ExportError(f"{FUSED_FILE}: output {s}: onnxruntime vs PyTorch max abs diff {d:.3g} > {tol}")
    inputs = [{"name": n, "source": src, "shape": shape} for n, src, _, shape in io]
    manifest = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION_FUSED, "name": name, "description": description,
        "input": spec.manifest(),
        "graph": {"file": FUSED_FILE, "sha256": sha256_file(tmp / FUSED_FILE), "inputs": inputs},
        "stages": [{"name": s, "output": {"name": s, "shape": [-1, len(STAGES[s])]}, "classes": STAGES[s],
                    "prior": _normalised_prior(s, priors)} for s in STAGE_ORDER],
        "data_files": [],
        "cascade": {"root": ROOT, "skip_below": float(skip_below)},
        "training": {"recipe": {**(recipe or {}), "ensemble_members": {s: len(stages[s]) for s in STAGE_ORDER},
                                "shared_layer3": bool(mod.share_layer3)},
                     "metrics": metrics or {},
                     "export_check": {"max_abs_diff_ort_vs_torch": diffs, "tolerance": tol}},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def write_golden(ref: ReferenceBundle, path: Path, bundle_name: str, blocks: list[dict],
                 skip_below: float = 0.0, skip_runs: Sequence[float] = (), min_margin: float = 1e-3):
    """golden.json: the exact-mode (skip_below 0) cascade per block, plus
    ``skip_runs``: the same blocks under nonzero skip_below values, results
    index-aligned with ``blocks``. A skip threshold closer than ``min_margin``
    to any block's stage mass is refused (float rounding could flip it)."""
    res = ref.run_blocks(blocks, skip_below)
    out_blocks = []
    for i, b in enumerate(blocks):
        e = {"bit_depth": int(b["bit_depth"]), "y": [int(v) for v in np.ravel(b["y"])],
             "u": [int(v) for v in np.ravel(b["u"])], "v": [int(v) for v in np.ravel(b["v"])],
             "prev_y": None if b.get("prev_y") is None else [int(v) for v in np.ravel(b["prev_y"])],
             "qindex": int(b["qindex"]), "intra": bool(b["intra"])}
        e.update(golden_entry(res, i))
        out_blocks.append(e)
    doc = {"bundle": bundle_name, "skip_below": float(skip_below), "blocks": out_blocks}
    runs = []
    if skip_runs == "auto":
        skip_runs = [auto_skip_below(stage_masses(ref.manifest, res), min_margin)]
    for sb in skip_runs:
        masses = stage_masses(ref.manifest, res)
        close = np.abs(masses - sb) < min_margin
        if close.any():
            raise ExportError(f"golden skip_below {sb}: a stage mass lies within {min_margin} of it")
        r = ref.run_blocks(blocks, sb)
        skipped = int(sum((~r.ran[s]).sum() for s in r.ran))
        runs.append({"skip_below": float(sb), "skipped_stage_runs": skipped,
                     "results": [golden_entry(r, i) for i in range(len(blocks))]})
    if runs:
        doc["skip_runs"] = runs
    path.write_text(json.dumps(doc) + "\n")
    return doc


def auto_skip_below(masses: np.ndarray, min_margin: float = 1e-3, lo: float = 0.05, hi: float = 0.6) -> float:
    """A skip_below in [lo, hi] as far as possible from every stage mass (the
    middle of the widest gap, rounded to 4 decimals), so some stage runs are
    skipped and float rounding cannot flip any decision."""
    m = np.sort(np.clip(masses.ravel(), lo, hi))
    pts = np.concatenate([[lo], m, [hi]])
    gaps = np.diff(pts)
    i = int(np.argmax(gaps))
    sb = round(float((pts[i] + pts[i + 1]) / 2), 4)
    if gaps[i] / 2 < min_margin + 1e-4:
        raise ExportError(f"no skip_below in [{lo}, {hi}] keeps {min_margin} away from every stage mass")
    return sb


def stage_masses(manifest: dict, res) -> np.ndarray:
    """The mass reaching each non-root stage in exact mode, [N, stages-1]."""
    stages = {s["name"]: s for s in manifest["stages"]}
    out = []
    for s in stages.values():
        for ci, c in enumerate(s["classes"]):
            if "next" in c:
                # parent mass * p; in exact mode every parent ran
                parent_mass = _mass_of(manifest, res, s["name"])
                out.append(parent_mass * res.stage_probs[s["name"]][:, ci].astype(np.float64))
    return np.stack(out, axis=1)


def _mass_of(manifest, res, stage) -> np.ndarray:
    root = manifest["cascade"]["root"]
    if stage == root:
        return np.ones(res.probabilities.shape[0])
    for s in manifest["stages"]:
        for ci, c in enumerate(s["classes"]):
            if c.get("next") == stage:
                return _mass_of(manifest, res, s["name"]) * res.stage_probs[s["name"]][:, ci].astype(np.float64)
    raise KeyError(stage)


def synthetic_golden_blocks(n: int = 48, seed: int = 0) -> list[dict]:
    """Blocks covering 8/10/12-bit, with and without prev_y, key and inter
    frames, and textures from flat to edges (so the stages disagree)."""
    rng = np.random.default_rng(seed)
    blocks = []
    rr, cc = np.mgrid[0:16, 0:16]
    for i in range(n):
        bd = (8, 10, 12)[i % 3]
        mx = (1 << bd) - 1
        kind = i % 4
        base = rng.uniform(0.1, 0.9) * mx
        if kind == 0:
            y = base + rng.normal(0, 0.01 * mx, (16, 16))
        elif kind == 1:
            y = base + (rr >= rng.integers(4, 12)) * rng.uniform(-0.5, 0.5) * mx
        elif kind == 2:
            y = base + (cc >= rng.integers(4, 12)) * rng.uniform(-0.5, 0.5) * mx
        else:
            y = base + rng.normal(0, 0.2 * mx, (16, 16))
        y = np.clip(np.rint(y), 0, mx).astype(np.int64)
        u = np.clip(np.rint(rng.uniform(0.3, 0.7) * mx + rng.normal(0, 0.05 * mx, (8, 8))), 0, mx).astype(np.int64)
        v = np.clip(np.rint(rng.uniform(0.3, 0.7) * mx + rng.normal(0, 0.05 * mx, (8, 8))), 0, mx).astype(np.int64)
        with_prev = (i // 3) % 2 == 0
        prev = np.clip(y + rng.normal(0, 0.05 * mx, (16, 16)), 0, mx).astype(np.int64) if with_prev else None
        intra = (i // 6) % 2 == 0
        blocks.append({"bit_depth": bd, "y": y, "u": u, "v": v, "prev_y": prev,
                       "qindex": int(rng.integers(0, 256)), "intra": intra})
    return blocks
