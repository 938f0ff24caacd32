"""Multiply-accumulates per block that touch real data, and the spatial
size at every layer: "fit the network to the input" made measurable.

A convolution's taps that fall on zero padding cost time but carry no
information; on a 1x1 map a 3x3 kernel has 8 such taps out of 9. For each
Conv2d the count here is exact: the number of (output position, kernel tap)
pairs that land inside the input, times in/groups x out channels; the
"dense" count includes the padding taps. Linear layers count rows x in x
out. Modules with a ``macs(input) -> (real, dense)`` method (BlockNet's
grid convolutions) count themselves.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _valid_pairs(conv: nn.Conv2d, h: int, w: int) -> int:
    ones = torch.ones(1, 1, h, w)
    k = torch.ones(1, 1, *conv.kernel_size)
    return int(F.conv2d(ones, k, stride=conv.stride, padding=conv.padding, dilation=conv.dilation).sum())


@torch.no_grad()
def count_macs(module: nn.Module, *inputs) -> dict:
    """Runs ``module(*inputs)`` once (batch 1) and returns
    ``{"real": MACs on data, "dense": MACs incl. padding taps, "layers": [...]}``
    with one entry per Conv2d/Linear call (name, input and output size)."""
    layers, hooks = [], []
    names = {m: n for n, m in module.named_modules()}

    def conv_hook(m, inp, out):
        _, cin, h, w = inp[0].shape
        per_tap = (cin // m.groups) * m.out_channels
        dense = out.shape[2] * out.shape[3] * m.kernel_size[0] * m.kernel_size[1] * per_tap
        layers.append({"name": names.get(m, "?"), "kind": "conv", "in": [cin, h, w],
                       "out": list(out.shape[1:]), "real": _valid_pairs(m, h, w) * per_tap, "dense": dense})

    def linear_hook(m, inp, out):
        rows = inp[0].numel() // m.in_features          # e.g. 16 cells
        n = rows * m.in_features * m.out_features
        layers.append({"name": names.get(m, "?"), "kind": "linear", "in": list(inp[0].shape[1:]),
                       "out": list(out.shape[1:]), "real": n, "dense": n})

    def own_hook(m, inp, out):
        real, dense = m.macs(inp[0])
        layers.append({"name": names.get(m, "?"), "kind": type(m).__name__, "in": list(inp[0].shape[1:]),
                       "out": list(out.shape[1:]), "real": real, "dense": dense})

    owned = [m for m in module.modules() if hasattr(m, "macs")]
    inside = {c for m in owned for c in m.modules() if c is not m}
    for m in module.modules():
        if m in inside:
            continue
        if hasattr(m, "macs"):
            hooks.append(m.register_forward_hook(own_hook))
        elif isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was = module.training
    module.eval()
    try:
        module(*inputs)
    finally:
        module.train(was)
        for h in hooks:
            h.remove()
    return {"real": sum(l["real"] for l in layers), "dense": sum(l["dense"] for l in layers), "layers": layers}


def cascade_macs(stages: dict, in_chans: int, num_side: int, fused: bool) -> dict:
    """MACs per block of a whole exported cascade: the fused graph (trunk and
    shared layer3 once), or the schema 1 files (trunk once, each stage file
    with its own layer3+layer4)."""
    from .models.stage import FusedExport, STAGE_ORDER, StageExport, TrunkExport, ROOT

    x = torch.zeros(1, in_chans, 16, 16)
    side = torch.zeros(1, num_side) if num_side else None
    if fused:
        return count_macs(FusedExport(stages).eval(), x, side)
    trunk = TrunkExport(stages[ROOT][0].backbone).eval()
    parts = {"trunk": count_macs(trunk, x)}
    feats = trunk(x)
    for s in STAGE_ORDER:
        parts[s] = count_macs(StageExport(list(stages[s])).eval(), feats, side)
    return {"real": sum(p["real"] for p in parts.values()), "dense": sum(p["dense"] for p in parts.values()),
            "layers": [dict(l, name=f"{k}/{l['name']}") for k, p in parts.items() for l in p["layers"]]}
