"""Training configuration: defaults here, overridden by a JSON config file,
then by ``--set key=value`` on the command line. The resolved config is
saved to the run directory (config.json) and into every checkpoint."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .tensor import InputSpec


@dataclass
class TrainConfig:
    # data
    data: str = ""                      # dataset root (docs/CONTRACTS.md format)
    out: str = "runs/default"           # run directory
    stage: str = "stage1"               # stage1 | stage2 | stage3_rect | stage3_ab
    exclude_edge: bool = False          # drop blocks that reach past the frame edge
    train_max_blocks: Optional[int] = None
    val_max_blocks: Optional[int] = None
    balanced_sampling: bool = False     # class-balanced sampling (with replacement)
    allow_missing_classes: bool = False  # train even if the training split lacks a class of the stage
                                         # (its head output then only learns "never"; prior 0)
    num_workers: int = 0                # DataLoader workers (0: in-process, no worker storms)
    # input
    channels: list = field(default_factory=lambda: ["y", "u", "v"])
    side_features: list = field(default_factory=lambda: ["qindex", "intra"])
    mean: float = 0.5
    std: float = 0.25
    # model
    arch: str = "resnet18"              # registered arch: resnet18 | resnet18_half | tiny
    stem: str = "imagenet"              # imagenet (7x7/2 + maxpool) | small (3x3/1)
    width_mult: float = 1.0             # resnet18 only
    mode: str = "adapter"               # stage2/3: adapter | frozen | finetune (stage1: always full)
    adapter: str = "conv"               # conv | residual
    adapter_reduction: int = 4          # gamma of the Conv-Adapter
    adapter_bottleneck: int = 64        # residual adapter bottleneck
    bn_mode: str = "eval"               # frozen backbone BN: eval (frozen stats) | train
    head_hidden: Optional[list] = None  # None: the arch's default (resnet18: [256, 128])
    head_dropout: list = field(default_factory=lambda: [0.1, 0.2])
    block_stats: bool = False           # heads also see the block statistics (layers/block_stats.py)
    side_norm: bool = False             # a head BatchNorm on the side features (for side feature block_stats)
    augment: str = "none"               # training blocks mirrored/transposed, labels mapped (augment.py): none|flips|dihedral
    ensemble_k: int = 1                 # stage3_ab: k specialists (seeds seed..seed+k-1)
    unfreeze_epoch: int = 2             # finetune mode: epochs with the backbone frozen first
    stage1_ckpt: str = ""               # stage2/3: the Stage 1 checkpoint
    # loss
    loss: str = "cb_focal"              # ce | cb_focal | poly1 | asymmetric | focal_ls
    gamma: float = 2.0
    beta: float = 0.9999
    poly_epsilon: float = 1.0
    gamma_pos: float = 2.0
    gamma_neg: float = 4.0
    smoothing: float = 0.1
    class_weights: str = "auto"         # auto (only cb_focal weighted) | cb (every loss, beta) | none
    # optimisation
    epochs: int = 30
    max_steps_per_epoch: Optional[int] = None
    batch_size: int = 128
    lr: float = 1e-3                    # backbone (stage1 / finetune)
    lr_adapter: float = 1e-3
    lr_head: float = 1e-4
    weight_decay: float = 0.01
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    early_stop_patience: int = 15
    grad_clip: Optional[float] = None
    # runtime
    seed: int = 42
    device: str = "auto"                # auto | cpu | cuda
    threads: int = 0                    # torch CPU threads (0: all cores)
    channels_last: bool = False
    validate_subset: int = 512          # fixed val blocks re-scored after each checkpoint save
    reload_tolerance: float = 1e-5
    progress: bool = True               # tqdm bars
    resume: bool = False                # continue from <out>/checkpoints/last.pt when it exists
    plots: bool = True

    def spec(self) -> InputSpec:
        return InputSpec.create(self.channels, self.side_features, self.mean, self.std)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown config keys: {unknown}")
        return cls(**d)

    def replace(self, **kw) -> "TrainConfig":
        return self.from_dict({**self.to_dict(), **kw})


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


CONFIG_DIR = Path(__file__).parent / "configs"


def resolve_config_path(path: str | None) -> str | None:
    """A file path, or the name of a packaged config (default, smoke)."""
    if not path:
        return None
    if Path(path).exists():
        return path
    named = CONFIG_DIR / f"{path}.json"
    if named.exists():
        return str(named)
    raise FileNotFoundError(f"config {path!r}: no such file, and no packaged config of that name "
                            f"(have {sorted(p.stem for p in CONFIG_DIR.glob('*.json'))})")


def load_config(path: str | None = None, overrides: list[str] | None = None, base: dict | None = None,
                section: str | None = None) -> TrainConfig:
    """defaults <- base <- JSON file (top level, then [section]) <- key=value overrides."""
    d = dict(base or {})
    path = resolve_config_path(path)
    if path:
        raw = json.loads(Path(path).read_text())
        common = {k: v for k, v in raw.items() if not isinstance(v, dict) and not k.startswith("_")}
        d.update(common)
        if section and isinstance(raw.get(section), dict):
            d.update({k: v for k, v in raw[section].items() if not k.startswith("_")})
    for o in overrides or []:
        if "=" not in o:
            raise ValueError(f"--set expects key=value, got {o!r}")
        k, v = o.split("=", 1)
        d[k.strip()] = parse_value(v)
    return TrainConfig.from_dict(d)
