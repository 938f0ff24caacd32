"""The hierarchy's stages: a backbone (Stage 1's, frozen for Stages 2/3),
optional adapters on layer3/layer4 and an MLP head.

Seams (timm style): forward_trunk (stem..layer2, exported as trunk.onnx),
forward_deep (layer3 + adapter + layer4 + adapter), forward_features,
forward_head(pre_logits), get_classifier/reset_classifier.
"""
from __future__ import annotations

import math

from typing import Sequence

import torch
import torch.nn as nn

from ..layers import BlockStats, MLPHead, create_adapter, patchify
from .registry import create_model, model_cfg

# The hierarchy: stage -> classes (name, leaf partition or next stage) and the
# mapping from a 10-way partition label to the stage's class (None = not
# routed to this stage).
STAGES: dict[str, list[dict]] = {
    "stage1": [{"name": "NONE", "partition": "NONE"}, {"name": "PARTITION", "next": "stage2"}],
    "stage2": [{"name": "SPLIT", "partition": "SPLIT"}, {"name": "RECT", "next": "stage3_rect"},
               {"name": "AB", "next": "stage3_ab"}],
    "stage3_rect": [{"name": "HORZ", "partition": "HORZ"}, {"name": "VERT", "partition": "VERT"},
                    {"name": "HORZ_4", "partition": "HORZ_4"}, {"name": "VERT_4", "partition": "VERT_4"}],
    "stage3_ab": [{"name": "HORZ_A", "partition": "HORZ_A"}, {"name": "HORZ_B", "partition": "HORZ_B"},
                  {"name": "VERT_A", "partition": "VERT_A"}, {"name": "VERT_B", "partition": "VERT_B"}],
}
STAGE_ORDER = ["stage1", "stage2", "stage3_rect", "stage3_ab"]
ROOT = "stage1"


def stage_classes(stage: str) -> list[str]:
    return [c["name"] for c in STAGES[stage]]


def _label_maps() -> dict[str, list[int]]:
    """For each stage, a 10-entry table: partition -> stage class or -1."""
    from .. import PARTITION_INDEX
    maps = {s: [-1] * 10 for s in STAGES}

    def leaves(stage):
        out = []
        for c in STAGES[stage]:
            out += [c["partition"]] if "partition" in c else leaves(c["next"])
        return out

    for s, classes in STAGES.items():
        for k, c in enumerate(classes):
            for p in ([c["partition"]] if "partition" in c else leaves(c["next"])):
                maps[s][PARTITION_INDEX[p]] = k
    return maps


LABEL_MAPS = _label_maps()

# Head pooling. "mean": global average (ResNet). "grid": global average plus
# the mean of each row, each column and each quadrant of the map, so that
# a head can tell a horizontal split from a vertical one and an AB corner
# from another (needs an even, square map: BlockNet's 4x4 cells).
POOLS = ("mean", "grid")


def _grid_factor(side: int = 4) -> int:
    return 1 + side + side + 4


POOL_FACTOR = {"mean": 1, "grid": _grid_factor()}


def _make_cell_pool_matrix() -> torch.Tensor:
    """[13, 16]: the global mean, the 4 row means, the 4 column means and the
    4 quadrant means of a 4x4 grid of cells (raster order)."""
    m = torch.zeros(13, 16)
    m[0] = 1 / 16
    for r in range(4):
        for c in range(4):
            k = r * 4 + c
            m[1 + r, k] = 1 / 4
            m[5 + c, k] = 1 / 4
            m[9 + (r // 2) * 2 + c // 2, k] = 1 / 4
    return m


# Built once at import, so that a traced export sees one constant (built
# inside the trace, each assignment would become a graph node).
_CELL_POOL = _make_cell_pool_matrix()


def pool_features(h: torch.Tensor, pool: str) -> torch.Tensor:
    """``h``: an NCHW map, or cell features ``[N, 16, C]`` (4x4 raster)."""
    if h.dim() == 3:
        # one MatMul with a constant averaging matrix: ONNX Runtime runs it
        # far faster than 4 ReduceMeans and a Concat on small tensors
        n, cells, c = h.shape
        if pool == "mean":
            return h.mean(dim=1)
        if cells != 16:
            raise ValueError(f"grid pooling needs 16 cells, got {cells}")
        pooled = h.transpose(1, 2).reshape(-1, 16) @ _CELL_POOL.t().to(h.dtype)
        return pooled.reshape(-1, c * 13)
    if pool == "mean":
        return h.mean(dim=(2, 3))
    n, c, hh, ww = h.shape
    if hh != 4 or ww != 4:
        raise ValueError(f"grid pooling needs a 4x4 map, got {hh}x{ww}")
    rows = h.mean(dim=3).reshape(n, c * hh)        # one value per row of cells
    cols = h.mean(dim=2).reshape(n, c * ww)        # one per column
    quads = torch.nn.functional.avg_pool2d(h, 2).reshape(n, c * 4)
    return torch.cat([h.mean(dim=(2, 3)), rows, cols, quads], dim=1)


def _batchnorm_affine(bn: nn.BatchNorm1d, z: torch.Tensor) -> torch.Tensor:
    """``bn(z)``; in eval mode written as Mul + Add, an affine map that ``compact``
    folds into the head's first layer (an exported BatchNormalization node it would not)."""
    if bn.training:
        return bn(z)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return z * scale + (bn.bias - bn.running_mean * scale)


class StageModel(nn.Module):
    """One stage of the hierarchy.

    mode:
      * "full"     : backbone trainable (Stage 1; or the Stage 2 fine-tuning baseline)
      * "frozen"   : backbone frozen, head only
      * "adapter"  : backbone frozen + adapters on ``adapter_layers``
    bn_mode ("eval" | "train"): for a frozen backbone, whether its BatchNorm
    layers stay in eval mode (default; notes 04) while the rest trains.
    block_stats ({"channels", "mean", "std"} of the input spec, or None): the
    head also sees the block statistics of ``layers.block_stats`` computed
    from the block tensor, each normalised by a BatchNorm of this stage's
    head (trainable in every mode: it is not part of the frozen backbone).
    """

    def __init__(self, stage: str, arch: str, in_chans: int, num_side: int = 0, stem: str = "imagenet",
                 mode: str = "full", adapter: str = "conv", adapter_reduction: int = 4,
                 adapter_bottleneck: int = 64, adapter_layers: Sequence[str] = ("layer3", "layer4"),
                 head_hidden: Sequence[int] | None = None, head_dropout: Sequence[float] | float = (0.1, 0.2),
                 bn_mode: str = "eval", arch_kwargs: dict | None = None, backbone: nn.Module | None = None,
                 pool: str | None = None, block_stats: dict | None = None, side_norm: bool = False):
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        if mode not in ("full", "frozen", "adapter"):
            raise ValueError(f"unknown mode {mode!r}")
        if bn_mode not in ("eval", "train"):
            raise ValueError(f"unknown bn_mode {bn_mode!r}")
        self.stage = stage
        self.arch = arch
        self.arch_kwargs = dict(arch_kwargs or {})
        self.mode = mode
        self.bn_mode = bn_mode
        self.backbone = backbone if backbone is not None else create_model(
            arch, in_chans=in_chans, stem=stem, **(arch_kwargs or {}))
        self.num_classes = len(STAGES[stage])
        if head_hidden is None:
            head_hidden = model_cfg(arch).get("head_hidden", [256, 128])
        self.pool = pool or model_cfg(arch).get("pool", "mean")
        if self.pool not in POOLS:
            raise ValueError(f"unknown pool {self.pool!r}; known: {POOLS}")
        self.adapters = nn.ModuleDict()
        self.has_trunk = getattr(self.backbone, "has_trunk", True)
        if mode == "adapter" and not self.has_trunk:
            raise ValueError(f"arch {arch!r} has no trunk to adapt: train its Stages 2/3 in mode 'frozen'")
        if not self.has_trunk and not num_side:
            raise ValueError(f"arch {arch!r} has no trunk: its heads need side features")
        if mode == "adapter":
            for name in adapter_layers:
                if name not in ("layer3", "layer4"):
                    raise ValueError("adapters go on layer3/layer4 only (the trunk stem..layer2 is shared)")
                ch = getattr(self.backbone, name)[-1].bn2.num_features
                self.adapters[name] = create_adapter(adapter, ch, reduction=adapter_reduction,
                                                     bottleneck=adapter_bottleneck,
                                                     layout=getattr(self.backbone, "layout", "nchw"))
        self.block_stats_cfg = None if block_stats is None else {
            "channels": list(block_stats["channels"]), "mean": [float(v) for v in block_stats["mean"]],
            "std": [float(v) for v in block_stats["std"]]}
        n_stats = 0
        if block_stats is not None:
            if len(self.block_stats_cfg["channels"]) != in_chans:
                raise ValueError(f"block_stats names {len(self.block_stats_cfg['channels'])} channels, "
                                 f"the model takes {in_chans}")
            self.block_stats = BlockStats(**self.block_stats_cfg)
            n_stats = self.block_stats.num_features
            self.stats_norm = nn.BatchNorm1d(n_stats)
        self.head = MLPHead(self.backbone.num_features * POOL_FACTOR[self.pool] + n_stats, self.num_classes,
                            hidden=head_hidden, dropout=head_dropout, num_side=num_side)
        self.num_side = num_side
        # side features of several scales (qindex in [0, 1], the block_stats side
        # feature's log-variances up to ~10): a BatchNorm of the head normalises them
        self.side_norm = nn.BatchNorm1d(num_side) if side_norm and num_side else None
        if mode != "full":
            for p in self.backbone.parameters():
                p.requires_grad_(False)

    # -- train/eval: a frozen backbone keeps BN statistics frozen ---------------
    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.mode != "full" and self.bn_mode == "eval":
            self.backbone.eval()
        return self

    # -- seams -------------------------------------------------------------------
    def forward_trunk(self, x):
        return self.backbone.forward_trunk(x)

    def forward_deep(self, f):
        return self.forward_after_layer3(self.backbone.layer3(f))

    def forward_after_layer3(self, h):
        """Adapters, layer4 and its adapter on layer3's output (the frozen
        layer3 is the same for every stage of a bundle)."""
        if "layer3" in self.adapters:
            h = self.adapters["layer3"](h)
        h = self.backbone.layer4(h)
        if "layer4" in self.adapters:
            h = self.adapters["layer4"](h)
        return h

    def forward_features(self, x):
        return self.forward_deep(self.forward_trunk(x))

    def compute_stats(self, x):
        """The raw block statistics of ``x`` (planar or cell-major), or None without them."""
        if self.block_stats_cfg is None:
            return None
        return self.block_stats(patchify(x, self.backbone.in_chans) if x.dim() == 4 else x)

    def forward_head(self, h, side=None, pre_logits: bool = False, stats=None):
        # no trunk (models/notrunk.py): the head sees the side features alone
        pooled = pool_features(h, self.pool) if self.has_trunk else None
        if self.block_stats_cfg is not None:
            if stats is None:
                raise ValueError("this head needs the block statistics (compute_stats of the block tensor)")
            z = _batchnorm_affine(self.stats_norm, stats)
            pooled = z if pooled is None else torch.cat([pooled, z], dim=1)
        if self.side_norm is not None and side is not None:
            side = _batchnorm_affine(self.side_norm, side)
        return self.head(pooled, side, pre_logits=pre_logits)

    def forward(self, x, side=None):
        return self.forward_head(self.forward_features(x), side, stats=self.compute_stats(x))

    def get_classifier(self):
        return self.head.fc

    def reset_classifier(self, num_classes: int):
        self.head.fc = nn.Linear(self.head.fc.in_features, num_classes)
        self.num_classes = num_classes

    # -- parameter groups ----------------------------------------------------------
    def trainable_state_dict(self) -> dict:
        """What a Stage 2/3 checkpoint stores: adapters + head (full: everything)."""
        sd = self.state_dict()
        if self.mode == "full":
            return sd
        # a frozen backbone whose BN runs in train mode changes its running
        # statistics: those buffers belong to this checkpoint then
        keep_buffers = self.bn_mode == "train"
        buffers = {n for n, _ in self.backbone.named_buffers()} if keep_buffers else set()
        return {k: v for k, v in sd.items()
                if not k.startswith("backbone.") or k[len("backbone."):] in buffers}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {"backbone": [], "adapter": [], "head": []}
        for n, p in self.named_parameters():
            if not p.requires_grad:
                continue
            key = n.split(".", 1)[0]
            # the statistics' normalisation is part of the head
            groups[{"adapters": "adapter", "stats_norm": "head", "side_norm": "head"}.get(key, key)].append(p)
        return groups


class TrunkExport(nn.Module):
    """trunk.onnx: x -> features (stem..layer2 of the Stage 1 backbone)."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return self.backbone.forward_trunk(x)


class FusedExport(nn.Module):
    """model.onnx of a fused bundle (docs/CONTRACTS.md, schema 2):
    (x[, side]) -> one softmax output per stage, in STAGE_ORDER.

    The trunk (stem..layer2) and, when every stage's copy of the frozen
    backbone holds the same layer3, layer3 too, run once; each stage then
    runs its adapters, layer4 and head on the shared features. Ensemble
    members are averaged; ``logit_shifts`` (stage -> log prior) and
    ``temperatures`` (stage -> T) apply the calibration of StageExport."""

    def __init__(self, stages: dict, logit_shifts: dict | None = None, temperatures: dict | None = None):
        super().__init__()
        self.order = list(STAGE_ORDER)
        self.stage1 = stages[ROOT][0]
        ref = self.stage1.backbone.layer3.state_dict()
        # (no trunk: nothing to share, and all() of nothing would say True)
        self.share_layer3 = self.stage1.has_trunk and all(
            all(torch.equal(m.backbone.layer3.state_dict()[k], v) for k, v in ref.items())
            for s in self.order for m in stages[s])
        self.heads = nn.ModuleDict({s: StageExport(list(stages[s]), (logit_shifts or {}).get(s),
                                                   (temperatures or {}).get(s, 1.0))
                                    for s in self.order})

        # block statistics: computed once from the cell-major view, which a BlockNet
        # trunk then reads too (one patchify in the graph; `compact --layout cells` removes it)
        cfgs = [m.block_stats_cfg for s in self.order for m in stages[s] if m.block_stats_cfg is not None]
        if any(c != cfgs[0] for c in cfgs):
            raise ValueError("the stages' block statistics differ (they must come from one input spec)")
        self.stats = BlockStats(**cfgs[0]) if cfgs else None
        # without a trunk and without in-graph statistics nothing reads the block tensor
        self.takes_block = self.stage1.has_trunk or self.stats is not None

    def forward(self, x, side=None):
        trunk_in, stats = x, None
        if self.stats is not None:
            cells = patchify(x, self.stage1.backbone.in_chans)
            stats = self.stats(cells)
            if getattr(self.stage1.backbone, "layout", "nchw") == "cells":
                trunk_in = cells
        feats = self.stage1.forward_trunk(trunk_in)
        h3 = self.stage1.backbone.layer3(feats) if self.share_layer3 else None
        return tuple(self.heads[s].from_trunk(feats, side, h3, stats) for s in self.order)


class StageExport(nn.Module):
    """<stage>.onnx: (features[, side]) -> softmax probs. An ensemble of k
    members (e.g. AB specialists) averages their probabilities."""

    def __init__(self, members: Sequence[StageModel], logit_shift: Sequence[float] | None = None,
                 temperature: float = 1.0):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.num_side = members[0].num_side
        # Prior correction for a stage trained on class-balanced batches: its
        # softmax estimates p(y|x) under a uniform class prior. Adding
        # log(prior) to the logits turns that into p(y|x) under the real
        # training distribution (Bayes' rule for a label shift), which the
        # cascade's products, skip_below and an encoder's pruning thresholds
        # assume.
        shift = torch.zeros(0) if logit_shift is None else torch.as_tensor(list(logit_shift), dtype=torch.float32)
        self.register_buffer("logit_shift", shift)
        # Temperature scaling (calibration.py), before the prior shift: the
        # balanced stage's likelihood ratios are softened or sharpened, then
        # the prior is applied. T = 1 leaves the graph as it was.
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be finite and > 0, got {temperature}")
        self.inv_temperature = float(1.0 / temperature)

    def forward(self, features, side=None):
        return self.from_trunk(features, side, None)

    def from_trunk(self, features, side=None, h3=None, stats=None):
        """Probabilities from the trunk features; ``h3``, when given, is the
        shared frozen layer3 output (so layer3 is not recomputed); ``stats``
        the raw block statistics, for heads that take them."""
        probs = None
        for m in self.members:
            h = m.forward_deep(features) if h3 is None else m.forward_after_layer3(h3)
            # stats only for heads that take them (a member may be any module with forward_head)
            logits = m.forward_head(h, side) if stats is None else m.forward_head(h, side, stats=stats)
            if self.inv_temperature != 1.0:
                logits = logits * self.inv_temperature
            if self.logit_shift.numel():
                logits = logits + self.logit_shift
            p = torch.softmax(logits, dim=1)
            probs = p if probs is None else probs + p
        if len(self.members) > 1:
            probs = probs / float(len(self.members))
        return probs
