"""The Python reference of the plugin: bundle loading (with the same checks
on hashes, names and shapes) and the cascade of docs/CONTRACTS.md, run with
onnxruntime. The export command writes golden.json with it; the Rust parity
test compares against that file.

Cascade: a block reaches the root with mass 1; stage s run with mass m gives
class k mass m*p_k; a leaf adds its mass to its partition; a class with
``next = t`` sends its mass to t, which runs only if that mass >= skip_below,
otherwise t's prior spreads the mass (recursively) and t is marked not run.
The partition is the argmax of the ten probabilities (lowest index on ties).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import PARTITION_INDEX
from .tensor import InputSpec, build_side, build_x
from .hashing import sha256_file  # noqa: F401  (re-exported)

SCHEMA = "av1part-bundle"
SCHEMA_VERSION = 1          # trunk + one ONNX file per stage
SCHEMA_VERSION_FUSED = 2    # one graph with every stage's output


class BundleError(ValueError):
    pass


def stage_topology(manifest: dict) -> list[str]:
    """Stage names in breadth-first order from the root; checks the tree."""
    stages = {s["name"]: s for s in manifest["stages"]}
    root = manifest["cascade"]["root"]
    if root not in stages:
        raise BundleError(f"cascade.root {root!r} is not a stage")
    order, seen, queue = [], set(), [root]
    leaves = []
    while queue:
        s = queue.pop(0)
        if s in seen:
            raise BundleError(f"stage {s!r} is reached twice: classes do not form a tree")
        seen.add(s)
        order.append(s)
        for c in stages[s]["classes"]:
            if ("partition" in c) == ("next" in c):
                raise BundleError(f"stage {s!r} class {c.get('name')!r}: exactly one of partition/next")
            if "next" in c:
                if c["next"] not in stages:
                    raise BundleError(f"stage {s!r} class {c['name']!r}: unknown next {c['next']!r}")
                queue.append(c["next"])
            else:
                if c["partition"] not in PARTITION_INDEX:
                    raise BundleError(f"stage {s!r}: unknown partition {c['partition']!r}")
                leaves.append(c["partition"])
    if len(set(leaves)) != len(leaves):
        raise BundleError("a partition appears as more than one leaf")
    if set(stages) - seen:
        raise BundleError(f"stages not reachable from the root: {sorted(set(stages) - seen)}")
    return order


@dataclass
class CascadeResult:
    probabilities: np.ndarray          # [N, 10] float64
    partition: np.ndarray              # [N] int
    stage_probs: dict                  # stage -> [N, K] float32 with NaN rows where not run
    ran: dict                          # stage -> [N] bool

    def subset(self, mask) -> "CascadeResult":
        return CascadeResult(self.probabilities[mask], self.partition[mask],
                             {k: v[mask] for k, v in self.stage_probs.items()},
                             {k: v[mask] for k, v in self.ran.items()})


def run_cascade(manifest: dict, n: int, stage_fn: Callable[[str, np.ndarray], np.ndarray],
                skip_below: float | None = None) -> CascadeResult:
    """Generic cascade. ``stage_fn(stage, idx)`` returns float32 probs [len(idx), K]
    for the blocks ``idx`` (only the blocks that reach the stage)."""
    if skip_below is None:
        skip_below = float(manifest["cascade"].get("skip_below", 0.0))
    stages = {s["name"]: s for s in manifest["stages"]}
    order = stage_topology(manifest)
    root = manifest["cascade"]["root"]
    probs = np.zeros((n, 10), dtype=np.float64)
    mass = {s: np.zeros(n, dtype=np.float64) for s in stages}
    forced_skip = {s: np.zeros(n, dtype=bool) for s in stages}
    mass[root][:] = 1.0
    out_probs, ran = {}, {}
    for s in order:
        st = stages[s]
        k = len(st["classes"])
        m = mass[s]
        run = (m >= skip_below) & ~forced_skip[s]
        idx = np.nonzero(run)[0]
        p = np.full((n, k), np.nan, dtype=np.float32)
        if idx.size:
            got = np.asarray(stage_fn(s, idx), dtype=np.float32)
            if got.shape != (idx.size, k):
                raise BundleError(f"stage {s!r} returned shape {got.shape}, expected {(idx.size, k)}")
            p[idx] = got
        prior = np.asarray(st["prior"], dtype=np.float64)
        eff = np.where(run[:, None], p.astype(np.float64), prior[None, :])
        for ci, c in enumerate(st["classes"]):
            cm = m * eff[:, ci]
            if "partition" in c:
                probs[:, PARTITION_INDEX[c["partition"]]] += cm
            else:
                mass[c["next"]] += cm
                forced_skip[c["next"]] |= ~run
        out_probs[s] = p
        ran[s] = run
    return CascadeResult(probs, np.argmax(probs, axis=1), out_probs, ran)


class ReferenceBundle:
    """A bundle loaded with onnxruntime, with the plugin's checks."""

    def __init__(self, bundle_dir, threads: int = 1):
        import onnxruntime as ort

        self.dir = Path(bundle_dir)
        mpath = self.dir / "manifest.json"
        if not mpath.exists():
            raise BundleError(f"{mpath}: missing")
        self.manifest = m = json.loads(mpath.read_text())
        if m.get("schema") != SCHEMA or m.get("schema_version") not in (SCHEMA_VERSION, SCHEMA_VERSION_FUSED):
            raise BundleError(f"{mpath}: schema/schema_version unsupported")
        self.fused = m["schema_version"] == SCHEMA_VERSION_FUSED
        self.spec = InputSpec.from_manifest(m["input"])
        # a bundle that takes the encoder preset lists the presets it was
        # trained for; blocks that state none get the first
        presets = m["input"].get("presets") or [-1]
        self.default_cpu_used = int(presets[0])
        for df in m.get("data_files", []):
            self._check_hash(df["file"], df["sha256"], "data_files")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.sessions = {}
        self.graph = m.get("graph") if self.fused else None
        if self.fused:
            g = self.graph
            self._check_hash(g["file"], g["sha256"], "graph")
            sess = ort.InferenceSession(str(self.dir / g["file"]), so, providers=["CPUExecutionProvider"])
            self._check_io(sess, g["inputs"], [st["output"] for st in m["stages"]], "graph")
            self.sessions["__graph__"] = sess
            for st in m["stages"]:
                self._check_stage(st)
            stage_topology(m)
            self.trunk = None
            return
        self.trunk = m.get("trunk")
        if self.trunk:
            self._check_hash(self.trunk["file"], self.trunk["sha256"], "trunk")
            sess = ort.InferenceSession(str(self.dir / self.trunk["file"]), so, providers=["CPUExecutionProvider"])
            self._check_io(sess, [self.trunk["input"]], [self.trunk["output"]], "trunk")
            self.sessions["__trunk__"] = sess
        for st in m["stages"]:
            self._check_hash(st["file"], st["sha256"], f"stages[{st['name']}]")
            sess = ort.InferenceSession(str(self.dir / st["file"]), so, providers=["CPUExecutionProvider"])
            self._check_io(sess, st["inputs"], [st["output"]], f"stages[{st['name']}]")
            self._check_stage(st)
            self.sessions[st["name"]] = sess
        stage_topology(m)

    @staticmethod
    def _check_stage(st):
        if st["output"]["shape"][1] != len(st["classes"]):
            raise BundleError(f"stages[{st['name']}].output: K != number of classes")
        if abs(sum(st["prior"]) - 1.0) > 1e-6 or len(st["prior"]) != len(st["classes"]):
            raise BundleError(f"stages[{st['name']}].prior: must have K entries summing to 1")

    def _check_hash(self, file, sha, field):
        p = self.dir / file
        if not p.exists():
            raise BundleError(f"{p}: missing ({field})")
        got = sha256_file(p)
        if got != sha:
            raise BundleError(f"{p}: sha256 mismatch in {field}: manifest {sha}, file {got}")

    @staticmethod
    def _check_io(sess, inputs, outputs, field):
        """``outputs``: the manifest's output declarations; the session must
        have exactly those (a fused graph one per stage)."""
        def dims(shape):
            return [d if isinstance(d, int) else -1 for d in shape]
        got_in = {i.name: i for i in sess.get_inputs()}
        if set(got_in) != {i["name"] for i in inputs}:
            raise BundleError(f"{field}.inputs: names {sorted(got_in)} != manifest")
        for i in inputs:
            gi = got_in[i["name"]]
            if gi.type != "tensor(float)" or dims(gi.shape) != list(i["shape"]):
                raise BundleError(f"{field}.inputs[{i['name']}]: {gi.type} {gi.shape} != manifest {i['shape']}")
        outs = {o.name: o for o in sess.get_outputs()}
        if set(outs) != {o["name"] for o in outputs}:
            raise BundleError(f"{field}.outputs: {sorted(outs)} != manifest {[o['name'] for o in outputs]}")
        for o in outputs:
            if dims(outs[o["name"]].shape) != list(o["shape"]):
                raise BundleError(f"{field}.output {o['name']}: {outs[o['name']].shape} != manifest {o['shape']}")

    def tensors(self, blocks: list[dict]):
        """blocks: dicts with bit_depth, y, u, v, prev_y (or None), qindex, intra."""
        y = np.array([np.asarray(b["y"]).reshape(16, 16) for b in blocks], dtype=np.uint16)
        u = np.array([np.asarray(b["u"]).reshape(8, 8) for b in blocks], dtype=np.uint16)
        v = np.array([np.asarray(b["v"]).reshape(8, 8) for b in blocks], dtype=np.uint16)
        has_prev = np.array([b.get("prev_y") is not None for b in blocks])
        prev = np.array([np.asarray(b["prev_y"]).reshape(16, 16) if b.get("prev_y") is not None
                         else np.asarray(b["y"]).reshape(16, 16) for b in blocks], dtype=np.uint16)
        bd = np.array([b["bit_depth"] for b in blocks])
        x = build_x(self.spec, y, u, v, prev, bd, has_prev)
        side = build_side(self.spec, np.array([b["qindex"] for b in blocks]),
                          np.array([bool(b["intra"]) for b in blocks]), has_prev,
                          np.array([b.get("cpu_used", self.default_cpu_used) for b in blocks]),
                          planes={"y": y, "u": u, "v": v, "prev_y": prev, "bit_depth": bd})
        return x, side

    def run_tensors(self, x: np.ndarray, side: np.ndarray, skip_below: float | None = None) -> CascadeResult:
        if self.fused:
            feed = {}
            for inp in self.graph["inputs"]:
                feed[inp["name"]] = {"block": x, "side": side}[inp["source"]]
            names = [st["output"]["name"] for st in self.manifest["stages"]]
            outs = dict(zip([st["name"] for st in self.manifest["stages"]],
                            self.sessions["__graph__"].run(names, feed)))
            return run_cascade(self.manifest, x.shape[0], lambda name, idx: outs[name][idx], skip_below)
        feats = self.sessions["__trunk__"].run(None, {"x": x})[0] if self.trunk else None
        stages = {s["name"]: s for s in self.manifest["stages"]}

        def stage_fn(name, idx):
            feed = {}
            for inp in stages[name]["inputs"]:
                src = {"block": x, "trunk": feats, "side": side}[inp["source"]]
                feed[inp["name"]] = np.ascontiguousarray(src[idx])
            return self.sessions[name].run(None, feed)[0]

        return run_cascade(self.manifest, x.shape[0], stage_fn, skip_below)

    def run_blocks(self, blocks: list[dict], skip_below: float | None = None) -> CascadeResult:
        x, side = self.tensors(blocks)
        return self.run_tensors(x, side, skip_below)


def golden_entry(res: CascadeResult, i: int) -> dict:
    return {
        "probabilities": [float(p) for p in res.probabilities[i]],
        "partition": int(res.partition[i]),
        "stages": {s: (None if not res.ran[s][i] else [float(v) for v in res.stage_probs[s][i]])
                   for s in res.stage_probs},
    }
