"""CPU step-time measurement (forward + backward + AdamW step)."""
from __future__ import annotations

import time

import torch


def bench_step(arch="resnet18", stem="imagenet", batch=64, threads=1, steps=20, mode="full",
               channels_last=False, in_chans=3, num_side=2) -> dict:
    from .models.stage import StageModel
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    stage = "stage1" if mode == "full" else "stage2"
    m = StageModel(stage, arch, in_chans, num_side=num_side, stem=stem, mode=mode)
    m.train()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], 1e-3)
    x = torch.randn(batch, in_chans, 16, 16)
    if channels_last:
        m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    s = torch.randn(batch, num_side)
    y = torch.randint(0, m.num_classes, (batch,))
    times = []
    for i in range(steps + 3):
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(m(x, s), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t)
    times.sort()
    return {"arch": arch, "stem": stem, "mode": mode, "batch": batch, "threads": threads,
            "channels_last": channels_last, "median_ms": 1000 * times[len(times) // 2],
            "min_ms": 1000 * times[0], "params": sum(p.numel() for p in m.parameters()),
            "trainable": sum(p.numel() for p in m.parameters() if p.requires_grad)}


def bench_graph(bundle, batch: int = 256, threads: int = 1, seconds: float = 0.3, reps: int = 5) -> dict:
    """ONNX Runtime alone on a fused bundle's graph (schema 2): the best of
    ``reps`` runs of ``seconds`` each, random inputs of the manifest's shapes,
    ``threads`` intra-op threads. Separates the graph's cost from the
    plugin's (scripts/bench.sh measures the plugin)."""
    import json
    from pathlib import Path

    import numpy as np
    import onnxruntime as ort

    m = json.loads((Path(bundle) / "manifest.json").read_text())
    if "graph" not in m:
        raise ValueError(f"{bundle}: not a fused (schema 2) bundle")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(Path(bundle) / m["graph"]["file"]), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {i["name"]: rng.random((batch, *i["shape"][1:]), dtype=np.float32) for i in m["graph"]["inputs"]}
    sess.run(None, feed)
    best = float("inf")
    for _ in range(reps):
        t, n = time.perf_counter(), 0
        while time.perf_counter() - t < seconds:
            sess.run(None, feed)
            n += 1
        best = min(best, (time.perf_counter() - t) / n)
    return {"bundle": str(bundle), "batch": batch, "threads": threads, "us_per_run": best * 1e6,
            "us_per_block": best * 1e6 / batch}
