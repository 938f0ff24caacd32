"""`build`: videos + recipe -> labelled 16x16 block dataset (docs/CONTRACTS.md).

Steps: resolve inputs (Y4M as is, other videos via ffmpeg) -> cut sequences (whole clips or
temporal segments) -> write each sequence's encoder input Y4M (at the recipe bit depth) ->
one job per (sequence, cq): aomenc -> av1part-labels -> shard -> manifest.json.

Resumable: a job whose shard is complete is skipped; streams, label files and shards are
written to temporary names and renamed, shard.json last; manifest.json is written only when
every job succeeded.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import PARTITION_NAMES
from .content import fetch_content, resolve_input
from .errors import DataError
from .shard import NUM_CLASSES, is_complete, write_json_atomic, write_shard
from .tools import aomenc_path, ensure_tools, extract_labels, sha256_file, tool_versions
from .y4m import open_y4m, write_y4m

try:
    from tqdm import tqdm
except ImportError:  # pragma: no cover
    tqdm = None

FORMAT_VERSION = 1

# The default recipe: the training set the lead builds from the default content.
# cpu-used 3 searches every 16x16 partition type (AB and 4-way are not searched at 16x16 from
# cpu-used 5 up); four cq levels across the range; up to 250 frames of each clip in segments of 24
# frames separated by 8-frame gaps (see DATASET.md for the leakage trade-off).
DEFAULT_RECIPE = {
    "encoder": "aomenc",
    "mode": "good",              # "good" (good quality, 2-pass) or "allintra"
    "cpu_used": 3,
    "cq_levels": [20, 32, 44, 56],
    "bit_depth": 8,               # 8 or 10: the encoder input (and stored pixels) bit depth
    "max_frames": 250,            # per input clip, from its first frame (null: all)
    "segment_frames": 24,         # >0: cut each clip into segments of this many frames
    "segment_gap": 8,             # frames skipped between segments
    "passes": 2,
    "extra_aomenc_args": [],
    "splits": "auto",             # "auto" or {"train": [...], "val": [...], "test": [...]}
}
# Optional keys, absent from the default (so that the build state of datasets built before
# they existed stays the same): "covered_as_none" (bool) also stores every 16x16 position that
# stock coded inside a larger block, labelled NONE (docs/CONTRACTS.md, "Dataset on disk").
OPTIONAL_RECIPE_KEYS = {"covered_as_none"}
RECIPE_KEYS = set(DEFAULT_RECIPE) | OPTIONAL_RECIPE_KEYS


def load_recipe(path: str | None, overrides: dict) -> dict:
    r = copy.deepcopy(DEFAULT_RECIPE)
    if path:
        try:
            user = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: cannot read recipe: {e}") from None
        unknown = set(user) - RECIPE_KEYS
        if unknown:
            raise DataError(f"{path}: unknown recipe keys {sorted(unknown)} (known: {sorted(RECIPE_KEYS)})")
        r.update(user)
    r.update({k: v for k, v in overrides.items() if v is not None})
    validate_recipe(r, path or "recipe")
    return r


def validate_recipe(r: dict, where: str) -> None:
    def bad(msg):
        raise DataError(f"{where}: {msg}")
    if r["mode"] not in ("good", "allintra"):
        bad(f"mode must be 'good' or 'allintra', not {r['mode']!r}")
    if not isinstance(r["cpu_used"], int) or not 0 <= r["cpu_used"] <= 9:
        bad("cpu_used must be an integer 0..9")
    if not r["cq_levels"] or any(not isinstance(q, int) or not 0 <= q <= 63 for q in r["cq_levels"]):
        bad("cq_levels must be a non-empty list of integers 0..63")
    if len(set(r["cq_levels"])) != len(r["cq_levels"]):
        bad("cq_levels has duplicates")
    if r["bit_depth"] not in (8, 10):
        bad("bit_depth must be 8 or 10")
    if r["max_frames"] is not None and (not isinstance(r["max_frames"], int) or r["max_frames"] < 1):
        bad("max_frames must be a positive integer or null")
    if r["segment_frames"] < 0 or r["segment_gap"] < 0:
        bad("segment_frames and segment_gap must be >= 0")
    if r["passes"] not in (1, 2):
        bad("passes must be 1 or 2")
    if "covered_as_none" in r and not isinstance(r["covered_as_none"], bool):
        bad("covered_as_none must be true or false")
    if r["splits"] != "auto" and not (isinstance(r["splits"], dict) and set(r["splits"]) <= {"train", "val", "test"}):
        bad("splits must be 'auto' or a dict with keys train/val/test")


# ----------------------------------------------------------------------------- sequences --
@dataclass
class Sequence:
    name: str
    clip: str
    source: Path          # the clip's Y4M
    start: int            # first frame in the clip
    frames: int
    width: int
    height: int
    source_bit_depth: int


def _clip_name(path: Path, used: set) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem).strip("-") or "clip"
    name, k = base, 2
    while name in used:
        name, k = f"{base}-{k}", k + 1
    used.add(name)
    return name


def make_sequences(inputs: list[tuple[str, Path]], recipe: dict) -> list[Sequence]:
    seqs = []
    for clip, path in inputs:
        y4m = open_y4m(str(path))
        total = y4m.frames if recipe["max_frames"] is None else min(y4m.frames, recipe["max_frames"])
        L, G = recipe["segment_frames"], recipe["segment_gap"]
        if L <= 0 or total <= L:
            ranges = [(0, total)]
        else:
            ranges, s = [], 0
            while s + L <= total:
                ranges.append((s, L))
                s += L + G
        for k, (s, n) in enumerate(ranges):
            name = clip if len(ranges) == 1 else f"{clip}_s{k}"
            seqs.append(Sequence(name, clip, path, s, n, y4m.width, y4m.height, y4m.bit_depth))
    return seqs


def auto_splits(seqs: list[Sequence]) -> dict:
    """Segments of one clip: the last -> test, the one before -> val, the rest -> train (a clip
    with 2 segments: train + test; 1: train). Whole clips (no segmentation): ordered by a hash of
    the name, 10% (at least one when there are >= 3) to test and to val."""
    splits = {"train": [], "val": [], "test": []}
    by_clip = {}
    for s in seqs:
        by_clip.setdefault(s.clip, []).append(s.name)
    singles = [names[0] for names in by_clip.values() if len(names) == 1]
    for names in by_clip.values():
        if len(names) == 1:
            continue
        if len(names) == 2:
            splits["train"].append(names[0]); splits["test"].append(names[1])
        else:
            splits["train"] += names[:-2]; splits["val"].append(names[-2]); splits["test"].append(names[-1])
    singles.sort(key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    if len(singles) >= 3:
        k = max(1, round(0.1 * len(singles)))
        splits["test"] += singles[:k]; splits["val"] += singles[k:2 * k]; splits["train"] += singles[2 * k:]
    else:
        splits["train"] += singles
    return splits


def resolve_splits(recipe: dict, seqs: list[Sequence]) -> dict:
    names = [s.name for s in seqs]
    if recipe["splits"] == "auto":
        return auto_splits(seqs)
    sp = {k: list(recipe["splits"].get(k, [])) for k in ("train", "val", "test")}
    seen = {}
    for k, lst in sp.items():
        for n in lst:
            if n not in names:
                raise DataError(f"recipe splits: unknown sequence {n!r} in {k} (sequences: {names})")
            if n in seen:
                raise DataError(f"recipe splits: sequence {n!r} is in both {seen[n]} and {k}")
            seen[n] = k
    sp["train"] += [n for n in names if n not in seen]  # unlisted sequences train
    return sp


def _splits_by_clip(seqs: list[Sequence], splits: dict) -> bool:
    """True when no clip has sequences in two splits (a hold-out of unseen clips)."""
    split_of = {n: k for k, names in splits.items() for n in names}
    per_clip = {}
    for s in seqs:
        per_clip.setdefault(s.clip, set()).add(split_of.get(s.name))
    return all(len(v) == 1 for v in per_clip.values())


# ----------------------------------------------------------------------------- encoding --
def convert_depth(plane: np.ndarray, src_bd: int, dst_bd: int) -> np.ndarray:
    """Exact up-shift (x << k) or rounded down-shift ((x + 2^(k-1)) >> k, clipped)."""
    if dst_bd == src_bd:
        return plane
    if dst_bd > src_bd:
        return plane.astype(np.uint16) << (dst_bd - src_bd)
    k = src_bd - dst_bd
    return np.minimum((plane.astype(np.uint32) + (1 << (k - 1))) >> k, (1 << dst_bd) - 1).astype(np.uint16)


def prepare_sequence_source(seq: Sequence, dst: Path, bit_depth: int) -> None:
    if dst.exists():
        return
    src = open_y4m(str(seq.source))
    if seq.start + seq.frames > src.frames:
        raise DataError(f"{seq.source}: has {src.frames} frames, sequence {seq.name} needs "
                        f"{seq.start + seq.frames}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    frames = ((convert_depth(p, src.bit_depth, bit_depth) for p in src.frame(i))
              for i in range(seq.start, seq.start + seq.frames))
    write_y4m(str(dst), (tuple(f) for f in frames), src.width, src.height, bit_depth, src.fps)


def aomenc_command(recipe: dict, cq: int, src: Path, out: Path) -> list[str]:
    bd = recipe["bit_depth"]
    cmd = [str(aomenc_path()), "--allintra" if recipe["mode"] == "allintra" else "--good",
           f"--cpu-used={recipe['cpu_used']}", "--threads=1", "--end-usage=q", f"--cq-level={cq}",
           f"--bit-depth={bd}", f"--input-bit-depth={bd}"]
    if recipe["mode"] == "good":
        cmd += [f"--passes={recipe['passes']}", "--auto-alt-ref=0", "--enable-keyframe-filtering=0"]
    cmd += list(recipe["extra_aomenc_args"]) + ["--ivf", "-o", str(out), str(src)]
    return cmd


_PROGRESS = re.compile(rb"Pass\s+(\d+)/(\d+)\s+frame\s+(\d+)/(\d+)")


def run_aomenc(cmd: list[str], log: Path, on_frames=None) -> None:
    """Runs aomenc, calls on_frames(n) with newly finished frames of the last pass."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    buf, done, tail = b"", 0, b""
    with open(log, "wb") as lf:
        lf.write((" ".join(cmd) + "\n").encode())
        while True:
            chunk = proc.stderr.read1(4096) if hasattr(proc.stderr, "read1") else proc.stderr.read(4096)
            if not chunk:
                break
            lf.write(chunk)
            tail = (tail + chunk)[-4000:]
            buf = (buf + chunk)[-400:]
            for m in _PROGRESS.finditer(buf):
                p, np_, _, fout = (int(g) for g in m.groups())
                if p == np_ and fout > done and on_frames:
                    on_frames(fout - done)
                    done = fout
            buf = buf[-80:]
    rc = proc.wait()
    if rc != 0:
        raise DataError(f"aomenc failed (exit {rc}) on {cmd[-1]}: "
                        f"{tail.decode(errors='replace').strip()[-800:]} (log: {log})")


# ----------------------------------------------------------------------------- the build --
class Progress:
    """One tqdm bar over all jobs, in megapixels encoded (frames x frame size), so that the ETA
    weighs a 720p frame like 36 frames of 176x144; the postfix counts finished jobs."""

    def __init__(self, total_mpx: float, jobs: int, enabled: bool):
        self.lock = threading.Lock()
        self.jobs, self.done = jobs, 0
        self.bar = (tqdm(total=total_mpx, unit="Mpx", desc="encoding", dynamic_ncols=True,
                         file=sys.stderr, smoothing=0.02, bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} "
                         "Mpx [{elapsed}<{remaining}{postfix}]")
                    if enabled and tqdm else None)
        if self.bar:
            self.bar.set_postfix_str(f"jobs 0/{jobs}")

    def add(self, frames: int, frame_px: int):
        if self.bar:
            with self.lock:
                self.bar.update(frames * frame_px / 1e6)

    def job_done(self):
        with self.lock:
            self.done += 1
            if self.bar:
                self.bar.set_postfix_str(f"jobs {self.done}/{self.jobs}")

    def write(self, msg):
        if self.bar:
            self.bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    def close(self):
        if self.bar:
            self.bar.close()


def _job_name(seq: str, cq: int) -> str:
    return f"{seq}__cq{cq}"


def run_job(out: Path, recipe: dict, seq: Sequence, cq: int, progress: Progress) -> dict:
    name = _job_name(seq.name, cq)
    shard_dir = out / "shards" / name
    work = out / "work"
    src_y4m = work / "sources" / f"{seq.name}.y4m"
    stream = out / "streams" / f"{name}.ivf"
    labels_txt = work / "labels" / f"{name}.txt"
    for d in (stream.parent, labels_txt.parent, work / "logs"):
        d.mkdir(parents=True, exist_ok=True)
    cmd = aomenc_command(recipe, cq, src_y4m, stream.with_name(stream.name + ".tmp"))
    t0 = time.time()
    reused = stream.exists()  # a finished stream of an interrupted run (renamed only when complete)
    if not reused:
        run_aomenc(cmd, work / "logs" / f"{name}.aomenc.log",
                   lambda n: progress.add(n, seq.width * seq.height))
        os.replace(stream.with_name(stream.name + ".tmp"), stream)
    else:
        progress.add(seq.frames, seq.width * seq.height)
    t1 = time.time()
    labels = extract_labels(str(stream), str(labels_txt))
    t2 = time.time()
    src = open_y4m(str(src_y4m))
    info = {
        "name": name, "sequence": seq.name,
        "stream": {"file": f"streams/{name}.ivf", "bytes": stream.stat().st_size,
                   "sha256": sha256_file(stream)},
        "encoder_command": [Path(cmd[0]).name] + cmd[1:-4] + ["--ivf", "-o", f"{name}.ivf", f"{seq.name}.y4m"],
        "encode_seconds": round(t1 - t0, 3), "extract_seconds": round(t2 - t1, 3),
        "stream_reused": reused,
    }
    shard = write_shard(shard_dir, labels, src, cq, info, str(stream),
                        covered_as_none=recipe.get("covered_as_none", False))
    labels_txt.unlink(missing_ok=True)
    return shard


def build(out: str, inputs: list[str], recipe: dict, jobs: int = 2, progress: bool = True,
          keep_work: bool = False, names: list[str] | None = None, sources: list[dict] | None = None) -> dict:
    """``names``: the clip name of each input (default: from the file name);
    ``sources``: where each input came from (registry, package, SHA-256,
    licence), recorded in the manifest."""
    t_start = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ensure_tools()
    # inputs
    used = set()
    if inputs:
        resolved = [(None, resolve_input(p)) for p in inputs]
        if names:
            if len(names) != len(inputs) or len(set(names)) != len(names):
                raise DataError("build: one distinct name per input needed")
            resolved = [(n, r) for n, (_, r) in zip(names, resolved)]
        else:
            resolved = [(_clip_name(Path(p), used), r) for p, (_, r) in zip(inputs, resolved)]
    else:
        resolved = [(n, p) for n, p in fetch_content().items()]
        used.update(n for n, _ in resolved)
    seqs = make_sequences(resolved, recipe)
    splits = resolve_splits(recipe, seqs)
    # the build state: a resumed build must use the same recipe and inputs
    state = {"recipe": recipe,
             "inputs": [{"clip": c, "path": str(p), "bytes": p.stat().st_size} for c, p in resolved]}
    state_path = out / "build-state.json"
    if state_path.exists():
        old = json.loads(state_path.read_text())
        if old != state:
            raise DataError(f"{out}: this dataset directory was started with a different recipe or "
                            f"inputs (see {state_path}); use a new directory or delete it")
    else:
        write_json_atomic(state_path, state)
    # sequence sources at the recipe bit depth
    for s in seqs:
        prepare_sequence_source(s, out / "work" / "sources" / f"{s.name}.y4m", recipe["bit_depth"])
    all_jobs = [(s, cq) for s in seqs for cq in recipe["cq_levels"]]
    todo = [(s, cq) for s, cq in all_jobs if not is_complete(out / "shards" / _job_name(s.name, cq))]
    done_before = len(all_jobs) - len(todo)
    # longest jobs first (pixels x frames, lower cq is slower)
    todo.sort(key=lambda j: (-(j[0].width * j[0].height * j[0].frames), j[1]))
    print(f"[av1part-data] {len(seqs)} sequences x {len(recipe['cq_levels'])} cq = {len(all_jobs)} jobs; "
          f"{done_before} already complete, {len(todo)} to run with {jobs} at once "
          f"(aomenc cpu-used {recipe['cpu_used']}, {recipe['mode']}, {recipe['bit_depth']}-bit)",
          file=sys.stderr, flush=True)
    prog = Progress(sum(s.frames * s.width * s.height for s, _ in todo) / 1e6, len(todo), progress)
    errors = []
    ex = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        futs = {ex.submit(run_job, out, recipe, s, cq, prog): (s, cq) for s, cq in todo}
        for fut in as_completed(futs):
            s, cq = futs[fut]
            prog.job_done()
            try:
                sh = fut.result()
                prog.write(f"[done] {sh['name']}: {s.frames} frames, {sh['count']} nodes, "
                           + ("stream reused" if sh.get("stream_reused") else f"encode {sh['encode_seconds']:.1f} s")
                           + f", labels {sh['extract_seconds']:.1f} s")
            except DataError as e:
                errors.append(str(e))
                prog.write(f"[FAILED] {_job_name(s.name, cq)}: {e}")
            except Exception as e:  # keep the other jobs going; report at the end
                errors.append(f"{_job_name(s.name, cq)}: {type(e).__name__}: {e}")
                prog.write(f"[FAILED] {_job_name(s.name, cq)}: {type(e).__name__}: {e}")
    except BaseException:  # Ctrl-C: start no new job; running ones end with their aomenc
        ex.shutdown(wait=False, cancel_futures=True)
        prog.close()
        raise
    ex.shutdown(wait=True)
    prog.close()
    if errors:
        raise DataError(f"{len(errors)} of {len(todo)} jobs failed (finished shards are kept; run "
                        "the same command again to resume):\n  " + "\n  ".join(errors))
    manifest = write_manifest(out, recipe, seqs, splits, resolved, sources)
    if not keep_work:
        shutil.rmtree(out / "work", ignore_errors=True)
    el = time.time() - t_start
    print(f"[av1part-data] done in {el:.1f} s: {manifest['total']} blocks in "
          f"{len(manifest['shards'])} shards -> {out / 'manifest.json'}", file=sys.stderr, flush=True)
    return manifest


def write_manifest(out: Path, recipe: dict, seqs: list[Sequence], splits: dict, resolved,
                   sources: list[dict] | None = None) -> dict:
    shards = []
    per_split = {k: [0] * NUM_CLASSES for k in splits}
    split_of = {n: k for k, names in splits.items() for n in names}
    total = 0
    for s in seqs:
        for cq in recipe["cq_levels"]:
            d = out / "shards" / _job_name(s.name, cq)
            info = json.loads((d / "shard.json").read_text())
            sj_hash = sha256_file(d / "shard.json")
            shards.append({"name": info["name"], "path": f"shards/{info['name']}", "sequence": s.name,
                           "cq": cq, "count": info["count"], "class_counts": info["class_counts"],
                           "shard_json_sha256": sj_hash,
                           "files": {f: v["sha256"] for f, v in info["files"].items()},
                           "stream": info["stream"]})
            sp = split_of.get(s.name)
            if sp:
                per_split[sp] = [a + b for a, b in zip(per_split[sp], info["class_counts"])]
            total += info["count"]
    cmd_example = json.loads((out / "shards" / shards[0]["name"] / "shard.json").read_text())["encoder_command"] if shards else []
    manifest = {
        "schema": "av1part-dataset",
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "recipe": recipe,
        "tools": {**tool_versions(), "encoder_command_example": cmd_example,
                  "label_extractor": "training/labels (av1part-labels), libaom inspection decoder"},
        "classes": PARTITION_NAMES,
        "sequences": [{"name": s.name, "clip": s.clip, "source": str(s.source),
                       "source_start_frame": s.start, "frames": s.frames, "width": s.width,
                       "height": s.height, "bit_depth": recipe["bit_depth"],
                       "source_bit_depth": s.source_bit_depth} for s in seqs],
        "splits": splits,
        "splits_by_clip": _splits_by_clip(seqs, splits),
        **({"sources": sources} if sources else {}),
        "class_counts": {k: {"total": sum(v), "per_class": v} for k, v in per_split.items()},
        "total": total,
        "shards": shards,
    }
    write_json_atomic(out / "manifest.json", manifest)
    return manifest
