"""torch.distributed helpers. Launch with torchrun; one process per GPU
(nccl) or per CPU group (gloo). Rank 0 writes checkpoints, metrics, plots."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as tdist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda but CUDA is not available")
    if world > 1:
        rank = int(os.environ["RANK"])
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if not tdist.is_initialized():
            tdist.init_process_group(backend="nccl" if use_cuda else "gloo")
        if use_cuda:
            torch.cuda.set_device(local)
            dev = torch.device("cuda", local)
        else:
            dev = torch.device("cpu")
        return DistInfo(rank, world, local, dev)
    return DistInfo(0, 1, 0, torch.device("cuda" if use_cuda else "cpu"))


def all_reduce_sum(arr: np.ndarray, info: DistInfo) -> np.ndarray:
    if not info.enabled:
        return arr
    t = torch.as_tensor(np.asarray(arr, dtype=np.float64), device=info.device if info.device.type == "cuda" else "cpu")
    tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return t.cpu().numpy()


def barrier(info: DistInfo):
    if info.enabled:
        tdist.barrier()


def broadcast_object(obj, info: DistInfo):
    if not info.enabled:
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup(info: DistInfo):
    if info.enabled and tdist.is_initialized():
        tdist.destroy_process_group()
