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
