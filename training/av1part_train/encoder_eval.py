"""Encoder-level evaluation of an av1part bundle inside the libaom fork.

    python -m av1part_train.encoder_eval [--clips city,face] [--preset 1] [--cq 24,32,40,48]
        [--frames 30] [--configs prune:0.05,force,oracle] [--presets 0,1,2,3,4,5] [--reps 2]
        [--model onnx/default] [--jobs 2] [--out out/encoder-eval]

For every clip (real video no bundle was trained on, clips.py) and cq level it encodes
with stock aomenc at every stock preset, and with the fork at the evaluation preset in each
av1part configuration; all encodes are 1 thread, 2-pass good quality with alt-refs (aomenc's
defaults), --test-decode=fatal. Each stream is decoded with stock aomdec and with dav1d; the
per-frame MD5s must agree. Then:
  - BD-rate (PCHIP, bdrate.py) on PSNR-Y and PSNR-YUV ((6Y+U+V)/8, frame-averaged PSNR)
    against stock at the evaluation preset;
  - ΔT = 1 − T / T_stock, T the encoder process's CPU time (user+sys) summed over the cq
    levels, each the median of its repetitions; the av1part runs include the plugin's own
    time, which is also shown as a share of the encode;
  - how often the 16×16 partition equals stock's (labels from av1part-labels);
  - the stock presets on the same ΔT–BD-rate plane.
Writes ``encoder-eval.md``, ``encoder-eval.png`` and ``encoder-eval.json`` under --out.
Every encode is a job whose result is kept as JSON under ``--out/work``: a rerun skips what
is done (same command, binaries, source and model), so an interrupted run resumes.

Configurations: ``stock:P`` (stock aomenc, --cpu-used=P), ``off`` (the fork, av1part off:
must be bit-identical to stock), ``prune:T`` (threshold T), ``keep:K``, ``recall:R``,
``force`` (``+none`` / ``+square`` after a model configuration: NONE, or NONE and SPLIT,
always searched), ``oracle`` (types from the stock encode's own 16×16 labels: the ceiling),
``oracle-node`` (the same, and NONE only where stock coded a larger block: the ceiling of a
predictor that also tells when a 16×16 node is not used); a
suffix ``@block`` (e.g. ``prune:0.05@block``) makes the fork call av1part_predict_block per
node instead of av1part_predict_frame per frame.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bdrate import BdRateError, bd_rate
from .data.errors import DataError
from .data.tools import aom_root, aomenc_path, extract_labels, labels_path, read_labels, stamp_source
from .data.y4m import open_y4m
from .clips import CLIPS, DEFAULT_CLIPS, prepare_clip
from .hashing import sha256_file

REPO = Path(__file__).resolve().parents[2]


def stock_aomenc() -> Path:
    return aomenc_path()  # the dataset's encoder: stock libaom (build-enc)


def stock_aomdec() -> Path:
    return aom_root() / "build-enc" / "aomdec"


def fork_aomenc() -> Path:
    return aom_root() / "build-av1part" / "aomenc"


# --- configurations ------------------------------------------------------------------------
# Configurations that take the types from the reference encode's labels, not from a model.
ORACLES = ("oracle", "oracle-node")
# Configurations that ask the model.
MODEL_KINDS = ("force", "prune", "keep", "recall")

@dataclass(frozen=True)
class Config:
    spec: str

    @property
    def is_stock(self) -> bool:
        return self.spec.startswith("stock:")

    @property
    def preset(self) -> int | None:
        return int(self.spec.split(":")[1]) if self.is_stock else None

    @property
    def slug(self) -> str:
        return self.spec.replace(":", "-")

    def parts(self) -> tuple[str, str, str | None, bool]:
        """``KIND[:VAL][+none|+square][@block]`` -> (kind, val, always, at_block)."""
        spec, at_block = (self.spec[:-len("@block")], True) if self.spec.endswith("@block") else (self.spec, False)
        spec, plus, always = spec.partition("+")
        kind, _, val = spec.partition(":")
        return kind, val, always if plus else None, at_block

    @property
    def uses_model(self) -> bool:
        return not self.is_stock and self.parts()[0] in MODEL_KINDS

    def av1part_args(self, model: str, stats: Path) -> list[str]:
        kind, val, always, at_block = self.parts()
        common = [f"--av1part-stats={stats}"] + (["--av1part-call=block"] if at_block else [])
        if kind == "off":
            return ["--av1part-mode=off"]
        if kind in ORACLES:
            return [f"--av1part-mode={kind}"] + common
        args = [f"--av1part-model={model}"] + common
        if always:
            args.append(f"--av1part-always={ALWAYS[always]}")
        if kind == "force":
            return args + ["--av1part-mode=force"]
        if kind == "prune":
            return args + ["--av1part-mode=prune", f"--av1part-prune-threshold={val}"]
        if kind == "keep":
            return args + ["--av1part-mode=prune", f"--av1part-keep={val}"]
        if kind == "recall":
            return args + ["--av1part-mode=prune", f"--av1part-recall={val}"]
        raise DataError(f"unknown configuration '{self.spec}'")


# `+none` / `+square` after a model configuration: the types it always searches (libaom
# prunes the rest of a node's search from the NONE and SPLIT results; measured at cpu-used 3,
# keeping them saved less time, not more: encoder/RESULTS.md).
ALWAYS = {"none": "none", "square": "none,split"}


def parse_configs(text: str) -> list[Config]:
    out = []
    for s in filter(None, (t.strip() for t in text.split(","))):
        kind, val, always, at_block = Config(s).parts()
        ok = (kind in ("off", "force") + ORACLES and not val) or \
             (kind == "prune" and _is_prob(val, 0.0)) or (kind == "recall" and _is_prob(val, 1e-4)) or \
             (kind == "keep" and val.isdigit() and 1 <= int(val) <= 10)
        ok = ok and (always is None or (always in ALWAYS and kind in MODEL_KINDS))
        if not ok:
            raise DataError(f"bad configuration '{s}' (prune:T, keep:K, recall:R, force, oracle, oracle-node, off; "
                            "'+none' or '+square' after a model configuration always searches NONE, or NONE "
                            "and SPLIT; '@block' after one asks per block)")
        if at_block and kind not in MODEL_KINDS:
            raise DataError(f"'{s}': {kind} makes no predictions")
        out.append(Config(s))
    return out


def _is_prob(v: str, lo: float) -> bool:
    try:
        return lo <= float(v) <= 1.0
    except ValueError:
        return False


# --- one encode ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    clip: str
    config: Config
    cq: int
    rep: int


def ivf_payload_bytes(path: Path) -> tuple[int, int]:
    """(payload bytes, frame packets) of an IVF file (headers excluded)."""
    data = path.read_bytes()
    if data[:4] != b"DKIF":
        raise DataError(f"{path}: not an IVF file")
    hdr = struct.unpack_from("<H", data, 6)[0]
    off, total, n = hdr, 0, 0
    while off + 12 <= len(data):
        size = struct.unpack_from("<I", data, off)[0]
        off += 12 + size
        total += size
        n += 1
    if off != len(data):
        raise DataError(f"{path}: truncated IVF file")
    return total, n


def frame_md5s(raw: Path, frame_bytes: int) -> list[str]:
    out = []
    with open(raw, "rb") as f:
        while True:
            b = f.read(frame_bytes)
            if not b:
                break
            if len(b) != frame_bytes:
                raise DataError(f"{raw}: truncated decoded frame")
            out.append(hashlib.md5(b).hexdigest())
    return out


def psnr_planes(src_y4m: str, raw: Path, frames: int) -> dict:
    """Frame-averaged PSNR of Y, U, V (8-bit) and PSNR-YUV = (6Y + U + V) / 8."""
    src = open_y4m(src_y4m)
    w, h = src.width, src.height
    fb = w * h * 3 // 2
    dec = np.memmap(raw, dtype=np.uint8, mode="r")
    if dec.size != fb * frames:
        raise DataError(f"{raw}: {dec.size // fb} decoded frames, expected {frames}")
    per = {"y": [], "u": [], "v": []}
    for i in range(frames):
        planes = src.frame(i)
        d = dec[i * fb:(i + 1) * fb]
        parts = (d[:w * h].reshape(h, w), d[w * h:w * h + fb // 6].reshape(h // 2, w // 2),
                 d[w * h + fb // 6:].reshape(h // 2, w // 2))
        for k, a, b in zip("yuv", planes, parts):
            mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
            per[k].append(100.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse))
    out = {f"psnr_{k}": float(np.mean(v)) for k, v in per.items()}
    out["psnr_yuv"] = (6 * out["psnr_y"] + out["psnr_u"] + out["psnr_v"]) / 8
    return out


def run_timed(cmd: list[str], log: Path) -> tuple[int, float, float]:
    """(exit status, CPU seconds user+sys, wall seconds) of one process."""
    t0 = time.monotonic()
    with open(log, "wb") as lf:
        lf.write((" ".join(cmd) + "\n").encode())
        lf.flush()
        p = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, ru.ru_utime + ru.ru_stime, time.monotonic() - t0


def read_stats_summary(path: Path) -> dict:
    out = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if line.startswith("# summary "):
            for kv in line[len("# summary "):].split():
                k, _, v = kv.partition("=")
                try:
                    out[k] = float(v) if "." in v else int(v)
                except ValueError:
                    out[k] = v
        elif line.startswith("# first_error "):
            out["first_error"] = line[len("# first_error "):]
    return out


class Evaluation:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        self.work = self.out / "work"
        self.model = str(Path(args.model).resolve())
        self.lock = threading.Lock()
        self.done = 0
        self.total = 0
        self.t_start = time.monotonic()
        self.cpu_done = 0.0
        self._cached = 0
        self.sources: dict[str, str] = {}
        self.source_sha: dict[str, str] = {}
        self.binaries = {
            "stock_aomenc": sha256_file(stock_aomenc())[:16],
            "fork_aomenc": sha256_file(fork_aomenc())[:16],
            "aomdec": sha256_file(stock_aomdec())[:16],
        }
        self.model_sha = sha256_file(Path(self.model) / "manifest.json")[:16]

    def job_dir(self, job: Job) -> Path:
        return self.work / job.clip / job.config.slug

    def job_base(self, job: Job) -> Path:
        return self.job_dir(job) / f"cq{job.cq}-r{job.rep}"

    def reference(self) -> Config:
        return Config(f"stock:{self.args.preset}")

    def encode_cmd(self, job: Job, base: Path) -> list[str]:
        a = self.args
        c = job.config
        exe = stock_aomenc() if c.is_stock else fork_aomenc()
        preset = c.preset if c.is_stock else a.preset
        cmd = [str(exe), "--good", f"--cpu-used={preset}", "--threads=1", "--end-usage=q",
               f"--cq-level={job.cq}", f"--limit={a.frames}", "--passes=2", "--test-decode=fatal",
               "--ivf", "-o", str(base) + ".ivf"]
        if not c.is_stock:
            cmd += c.av1part_args(self.model, Path(str(base) + ".stats"))
            if c.spec in ORACLES:
                ref = self.job_base(Job(job.clip, self.reference(), job.cq, 0))
                cmd.append(f"--av1part-oracle={ref}.oracle")
        return cmd + [self.sources[job.clip]]

    def job_key(self, job: Job, cmd: list[str]) -> str:
        """What an encode's result depends on: its command (without paths), the binaries
        it runs (a stock encode does not depend on the fork), the source and the model."""
        enc = "stock_aomenc" if job.config.is_stock else "fork_aomenc"
        k = {"cmd": [Path(c).name if os.sep in c else c for c in cmd],
             "binaries": {enc: self.binaries[enc], "aomdec": self.binaries["aomdec"]},
             "source": self.source_sha[job.clip],
             "model": self.model_sha if job.config.uses_model else None}
        return hashlib.sha256(json.dumps(k, sort_keys=True).encode()).hexdigest()[:16]

    def run_job(self, job: Job) -> dict:
        """One encode; a failure is recorded (and reported at the end), not raised, so that
        the other jobs of the run go on."""
        try:
            return self._run_job(job)
        except (DataError, OSError, subprocess.SubprocessError) as e:
            with self.lock:
                self.done += 1
                print(f"[{self.done:3d}/{self.total}] {job.clip:<11} {job.config.spec:<12} cq{job.cq} "
                      f"r{job.rep}  FAILED: {str(e).strip().splitlines()[-1][:200]}", file=sys.stderr, flush=True)
            return {"error": str(e), "clip": job.clip, "config": job.config.spec, "cq": job.cq, "rep": job.rep}

    def _run_job(self, job: Job) -> dict:
        base = self.job_base(job)
        base.parent.mkdir(parents=True, exist_ok=True)
        result_path = Path(str(base) + ".json")
        cmd = self.encode_cmd(job, base)
        key = self.job_key(job, cmd)
        if result_path.exists():
            old = json.loads(result_path.read_text())
            if old.get("key") == key:
                # (a stock encode done as a plane point of an earlier run may be this run's reference)
                self._oracle_labels(job, base, fresh=False)
                self._progress(job, old, cached=True)
                return old
        rc, cpu, wall = run_timed(cmd, Path(str(base) + ".log"))
        if rc != 0:
            tail = Path(str(base) + ".log").read_text(errors="replace")[-800:]
            raise DataError(f"{job.clip} {job.config.spec} cq{job.cq}: encoder failed ({rc}):\n{tail}")
        ivf = Path(str(base) + ".ivf")
        payload, packets = ivf_payload_bytes(ivf)
        res = {"key": key, "clip": job.clip, "config": job.config.spec, "cq": job.cq, "rep": job.rep,
               "cpu_s": cpu, "wall_s": wall, "bytes": payload, "packets": packets,
               "stream_sha256": sha256_file(ivf), "cmd": " ".join(cmd)}
        res.update(self.check_stream(job, ivf))
        if not job.config.is_stock:
            res["av1part"] = read_stats_summary(Path(str(base) + ".stats"))
        # 16x16 labels: display order (match rate); the reference also in decode order (oracle).
        extract_labels(str(ivf), str(base) + ".labels")
        self._oracle_labels(job, base, fresh=True)
        tmp = result_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(res, indent=1))
        os.replace(tmp, result_path)
        self._progress(job, res, cached=False)
        return res

    def _oracle_labels(self, job: Job, base: Path, fresh: bool) -> None:
        """The reference's labels in decode order, which the oracle modes read, naming their
        clip (the fork refuses another clip's labels). Made again after every new reference
        encode (``fresh``); a cached one is kept only if it names its clip."""
        if job.config != self.reference() or job.rep != 0:
            return
        oracle = Path(str(base) + ".oracle")
        if not fresh and oracle.exists():
            with open(oracle) as f:
                if " source=" in f.readline():
                    return
        tmp = Path(str(oracle) + ".tmp")
        extract_labels(str(base) + ".ivf", str(tmp), all_decoded=True)
        stamp_source(str(tmp), self.sources[job.clip])
        os.replace(tmp, oracle)

    def check_stream(self, job: Job, ivf: Path) -> dict:
        """Decodes with stock aomdec and dav1d: per-frame MD5s must agree; PSNR from aomdec."""
        src = open_y4m(self.sources[job.clip])
        fb = src.width * src.height * 3 // 2
        with tempfile.TemporaryDirectory(dir=ivf.parent) as tmp:
            a, d = Path(tmp) / "aomdec.yuv", Path(tmp) / "dav1d.yuv"
            r1 = subprocess.run([str(stock_aomdec()), "--rawvideo", "-o", str(a), str(ivf)],
                                capture_output=True, text=True)
            r2 = subprocess.run(["dav1d", "-q", "--threads=1", "-i", str(ivf), "-o", str(d)],
                                capture_output=True, text=True)
            if r1.returncode != 0:
                raise DataError(f"{ivf}: stock aomdec failed: {r1.stderr.strip()[-300:]}")
            if r2.returncode != 0:
                raise DataError(f"{ivf}: dav1d failed: {r2.stderr.strip()[-300:]}")
            ma, md = frame_md5s(a, fb), frame_md5s(d, fb)
            out = psnr_planes(self.sources[job.clip], a, self.args.frames)
        out["decoded_frames"] = len(ma)
        out["aomdec_equals_dav1d"] = ma == md
        out["frame_md5"] = hashlib.sha256("".join(ma).encode()).hexdigest()[:16]
        if ma != md:
            raise DataError(f"{ivf}: stock aomdec and dav1d decode different frames")
        return out

    def _progress(self, job: Job, res: dict, cached: bool) -> None:
        with self.lock:
            self.done += 1
            if not cached:
                self.cpu_done += res["cpu_s"]
            el = time.monotonic() - self.t_start
            left = self.total - self.done
            rate = el / max(1, self.done - self._cached) if self.done > self._cached else 0
            eta = left * rate
            tag = "cached" if cached else f"{res['cpu_s']:7.1f} s cpu"
            print(f"[{self.done:3d}/{self.total}] {job.clip:<11} {job.config.spec:<12} cq{job.cq} "
                  f"r{job.rep}  {tag}   elapsed {el / 60:5.1f} min  eta {eta / 60:5.1f} min",
                  file=sys.stderr, flush=True)
            if cached:
                self._cached += 1

    def jobs(self) -> tuple[list[Job], list[Job]]:
        a = self.args
        ref = self.reference()
        first = [Job(c, ref, q, 0) for c in a.clips for q in a.cq]
        stock = [Config(f"stock:{p}") for p in a.presets if p != a.preset]
        rest = []
        for rep in range(a.reps):
            for c in a.clips:
                for q in a.cq:
                    # Every repetition after the first re-times the reference and the stock
                    # presets next to the av1part configurations (see summarise).
                    cfgs = ([ref] if rep else []) + list(a.configs) + stock
                    # Interleave av1part configurations with the stock reference.
                    rest += [Job(c, cfg, q, rep) for cfg in cfgs]
        return first, rest

    def run(self) -> dict:
        a = self.args
        for c in a.clips:
            if c in a.user_clips:
                path = a.user_clips[c]
                if open_y4m(path).frames < a.frames:
                    raise DataError(f"{path}: fewer than {a.frames} frames")
                self.sources[c] = path
            else:
                self.sources[c] = str(prepare_clip(c, a.frames))
            self.source_sha[c] = sha256_file(self.sources[c])
        first, rest = self.jobs()
        self.total = len(first) + len(rest)
        results = []
        with ThreadPoolExecutor(max_workers=a.jobs) as ex:
            results += list(ex.map(self.run_job, first))  # the oracle needs these labels
            results += list(ex.map(self.run_job, rest))
        self.failures = [r for r in results if "error" in r]
        return summarise([r for r in results if "error" not in r], a, self)


# --- summary --------------------------------------------------------------------------------
def _labels_map(path: Path) -> dict:
    """(display, x, y) -> partition of the nodes inside the frame of shown pictures."""
    n = read_labels(str(path)).nodes
    keep = (n[:, 7] == 0) & (n[:, 8] == 0)
    return {(int(d), int(x), int(y)): int(p) for d, x, y, p in n[keep][:, [0, 2, 3, 4]]}


def summarise(results: list[dict], a, ev: Evaluation) -> dict:
    by = {}
    for r in results:
        by.setdefault((r["clip"], r["config"], r["cq"]), []).append(r)
    ref = ev.reference().spec
    configs = [f"stock:{p}" for p in a.presets] + [c.spec for c in a.configs]
    rows = []
    for cfg in configs:
        per_clip = []
        for clip in a.clips:
            if not all((clip, cfg, q) in by and (clip, ref, q) in by for q in a.cq):
                continue
            pts = {q: by[(clip, cfg, q)] for q in a.cq}
            refs = {q: by[(clip, ref, q)] for q in a.cq}
            # Time from the interleaved repetitions only, when there are any: the first
            # reference encodes run before everything else, and this kind of VM changes speed
            # by up to 2x within minutes, so they are not comparable with later encodes.
            def timed(rs):
                later = [r for r in rs if r["rep"] >= 1]
                return statistics.median(r["cpu_s"] for r in (later or rs))
            t = sum(timed(pts[q]) for q in a.cq)
            t_ref = sum(timed(refs[q]) for q in a.cq)
            rate = [pts[q][0]["bytes"] for q in a.cq]
            rate_ref = [refs[q][0]["bytes"] for q in a.cq]
            row = {"clip": clip, "config": cfg, "cpu_s": t, "cpu_s_ref": t_ref, "dT": 1 - t / t_ref}
            for m in ("psnr_y", "psnr_yuv"):
                try:
                    row[f"bd_{m}"] = bd_rate(rate_ref, [refs[q][0][m] for q in a.cq],
                                             rate, [pts[q][0][m] for q in a.cq])
                except BdRateError as e:
                    row[f"bd_{m}"] = None
                    row["bd_error"] = str(e)
            plug = [r.get("av1part", {}).get("predict_ms") for q in a.cq for r in pts[q]]
            if all(p is not None for p in plug) and plug:
                row["plugin_share"] = sum(plug) / 1000 / sum(r["cpu_s"] for q in a.cq for r in pts[q])
                calls = sum(r["av1part"].get("predict_calls", 0) for q in a.cq for r in pts[q])
                if calls:
                    # Per 16x16 block: a frame call covers every block of the frame.
                    y4 = open_y4m(ev.sources[clip])
                    per_call = 1 if cfg.endswith("@block") else -(-y4.width // 16) * -(-y4.height // 16)
                    row["plugin_us_per_block"] = sum(plug) * 1000 / (calls * per_call)
                row["fallbacks"] = sum(r["av1part"].get("fallbacks", 0) for q in a.cq for r in pts[q])
                row["plugin_errors"] = sum(r["av1part"].get("frames_failed", 0) + r["av1part"].get("block_errors", 0)
                                           for q in a.cq for r in pts[q])
                row["oracle_mismatch"] = sum(r["av1part"].get("oracle_mismatch", 0) for q in a.cq for r in pts[q])
                # Share of the 16x16 node visits whose search the hook narrowed.
                nodes = sum(r["av1part"].get("nodes", 0) for q in a.cq for r in pts[q])
                row["restricted_share"] = (sum(r["av1part"].get("nodes_restricted", 0) for q in a.cq for r in pts[q])
                                           / nodes if nodes else None)
            same = total = 0
            for q in a.cq:
                lr = _labels_map(Path(str(ev.job_base(Job(clip, Config(ref), q, 0))) + ".labels"))
                lc = _labels_map(Path(str(ev.job_base(Job(clip, Config(cfg), q, 0))) + ".labels"))
                common = lr.keys() & lc.keys()
                total += len(common)
                same += sum(lr[k] == lc[k] for k in common)
            row["match_16x16"] = same / total if total else None
            row["identical_streams"] = all(pts[q][0]["stream_sha256"] == refs[q][0]["stream_sha256"] for q in a.cq)
            row["conformance"] = all(r["aomdec_equals_dav1d"] for q in a.cq for r in pts[q])
            per_clip.append(row)
        if per_clip:
            mean = {"clip": "mean", "config": cfg}
            for k in ("dT", "bd_psnr_y", "bd_psnr_yuv", "plugin_share", "plugin_us_per_block", "restricted_share",
                      "match_16x16"):
                vals = [r[k] for r in per_clip if r.get(k) is not None]
                mean[k] = sum(vals) / len(vals) if vals and len(vals) == len(per_clip) else None
            rows += per_clip + [mean]
    return {"rows": rows, "args": {k: (v if not isinstance(v, list) else [str(x.spec) if isinstance(x, Config) else x for x in v])
                                   for k, v in vars(a).items()},
            "binaries": ev.binaries, "model": ev.model, "model_manifest_sha256": ev.model_sha,
            "sources": {c: {"y4m_sha256": ev.source_sha[c],
                            "clip": vars(CLIPS[c]) if c in CLIPS else {"path": ev.sources[c]}}
                        for c in a.clips},
            "machine": machine_note()}


def machine_note() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores"


def _fmt(v, pct=False, digits=2):
    if v is None:
        return "–"
    return f"{v * 100:.{digits}f} %" if pct else f"{v:+.{digits}f} %"


def write_report(summary: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "encoder-eval.json").write_text(json.dumps(summary, indent=1, default=str))
    a = summary["args"]
    lines = [f"# Encoder evaluation: av1part in libaom 3.6.0 at --cpu-used={a['preset']}", "",
             f"Clips: {', '.join(a['clips'])} ({a['frames']} frames each); cq {a['cq']}; "
             f"model {summary['model']} (manifest {summary['model_manifest_sha256']}); "
             f"machine: {summary['machine']}.", "",
             f"Reference: stock aomenc --cpu-used={a['preset']}. BD-rate: PCHIP; negative is better. "
             "ΔT: CPU time saved (av1part's own time included). Plugin: share of the encode's CPU "
             "time spent in av1part. Narrowed: share of the 16×16 node visits whose search the hook "
             "narrowed. Match: 16×16 partitions equal to the reference's.", "",
             "| clip | configuration | ΔT | BD-rate PSNR-Y | BD-rate PSNR-YUV | plugin | plugin µs/block | narrowed | match 16×16 | fallbacks | conformance |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in summary["rows"]:
        conf = "" if r["clip"] == "mean" else ("ok" if r.get("conformance") else "FAIL")
        if r["clip"] != "mean" and r.get("identical_streams") and not r["config"].startswith("stock"):
            conf += ", bit-identical to stock"
        lines.append(f"| {r['clip']} | {r['config']} | {_fmt(r.get('dT'), pct=True, digits=1)} | "
                     f"{_fmt(r.get('bd_psnr_y'))} | {_fmt(r.get('bd_psnr_yuv'))} | "
                     f"{_fmt(r.get('plugin_share'), pct=True, digits=1)} | "
                     f"{'–' if r.get('plugin_us_per_block') is None else format(r['plugin_us_per_block'], '.1f')} | "
                     f"{_fmt(r.get('restricted_share'), pct=True, digits=1)} | "
                     f"{_fmt(r.get('match_16x16'), pct=True, digits=1)} | "
                     f"{r.get('fallbacks', '–')} | {conf} |")
    if summary.get("failures"):
        lines += ["", f"**{len(summary['failures'])} encodes failed** (rows missing above): " +
                  ", ".join(f"{f['clip']} {f['config']} cq{f['cq']}" for f in summary["failures"])]
    lines += ["", f"Command: `python -m av1part_train.encoder_eval {' '.join(sys.argv[1:])}`", ""]
    (out / "encoder-eval.md").write_text("\n".join(lines))
    plot_plane(summary, out / "encoder-eval.png")


def plot_plane(summary: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    means = [r for r in summary["rows"] if r["clip"] == "mean" and r.get("bd_psnr_yuv") is not None]
    fig, ax = plt.subplots(figsize=(7, 5))
    stock = sorted((r for r in means if r["config"].startswith("stock:")), key=lambda r: int(r["config"][6:]))
    ax.plot([r["bd_psnr_yuv"] for r in stock], [r["dT"] * 100 for r in stock], "o-", color="0.4",
            label="stock aomenc presets")
    for r in stock:
        ax.annotate(f"cpu-used={r['config'][6:]}", (r["bd_psnr_yuv"], r["dT"] * 100), fontsize=8,
                    xytext=(4, -10), textcoords="offset points")
    for r in means:
        if r["config"].startswith("stock:"):
            continue
        ax.plot(r["bd_psnr_yuv"], r["dT"] * 100, "s", label=f"av1part {r['config']}")
    ax.axhline(0, color="0.8", lw=0.8)
    ax.axvline(0, color="0.8", lw=0.8)
    ax.set_xlabel("BD-rate PSNR-YUV vs stock --cpu-used=%s (%%)" % summary["args"]["preset"])
    ax.set_ylabel("encode time saved, ΔT (%)")
    ax.set_title("av1part in libaom: time saved against quality cost (mean over clips)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m av1part_train.encoder_eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", default=None,
                   help=f"comma list of {', '.join(CLIPS)} (default: {','.join(DEFAULT_CLIPS)}, "
                        "or none when --y4m is given)")
    p.add_argument("--y4m", action="append", default=[],
                   help="your own clip (8-bit 4:2:0 Y4M; named after the file), repeatable")
    p.add_argument("--preset", type=int, default=1, help="the evaluation preset (--cpu-used)")
    p.add_argument("--presets", default="1,2,3,4,5", help="stock presets on the plane (0 is slow: add it for long runs)")
    p.add_argument("--cq", default="24,32,40,48")
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--configs", default="prune:0.05,force,oracle")
    p.add_argument("--reps", type=int, default=2, help="repetitions of the reference, av1part and stock runs; with 2 or more, ΔT is "
                        "timed from the repetitions after the first, where each reference encode runs next "
                        "to the configurations it is compared with")
    p.add_argument("--model", default=str(REPO / "onnx" / "default"))
    p.add_argument("--jobs", type=int, default=2, help="encodes run at once (each 1 thread)")
    p.add_argument("--out", default="out/encoder-eval")
    a = p.parse_args(argv)
    try:
        if a.clips is None:
            a.clips = "" if a.y4m else ",".join(DEFAULT_CLIPS)
        a.clips = [c for c in a.clips.split(",") if c]
        for c in a.clips:
            if c not in CLIPS:
                raise DataError(f"unknown clip '{c}' (known: {', '.join(CLIPS)})")
        a.user_clips = {}
        for path in a.y4m:
            name = Path(path).stem
            if name in CLIPS or name in a.user_clips:
                raise DataError(f"{path}: clip name '{name}' is taken; rename the file")
            if open_y4m(path).bit_depth != 8:
                raise DataError(f"{path}: the evaluation measures 8-bit PSNR; give an 8-bit clip")
            a.user_clips[name] = str(Path(path).resolve())
            a.clips.append(name)
        if not a.clips:
            raise DataError("no clips to evaluate")
        a.cq = [int(v) for v in a.cq.split(",")]
        a.presets = sorted({int(v) for v in a.presets.split(",")} | {a.preset})
        a.configs = parse_configs(a.configs)
        if len(a.cq) < 4:
            raise DataError("BD-rate needs at least 4 cq levels")
        if a.frames < 1 or a.reps < 1 or a.jobs < 1:
            raise DataError("--frames, --reps and --jobs must be positive")
        for exe in (stock_aomenc(), stock_aomdec(), fork_aomenc(), labels_path()):
            if not exe.exists():
                raise DataError(f"{exe} is missing: run make setup (encoder/build-libaom.sh)")
        ev = Evaluation(a)
        summary = ev.run()
        summary["failures"] = ev.failures
        write_report(summary, Path(a.out))
        print((Path(a.out) / "encoder-eval.md").read_text())
        for f in ev.failures:
            print(f"encoder_eval: {f['clip']} {f['config']} cq{f['cq']} r{f['rep']} failed:\n{f['error']}",
                  file=sys.stderr)
        return 1 if ev.failures else 0
    except DataError as e:
        print(f"encoder_eval: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
