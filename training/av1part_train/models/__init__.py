"""Model registry (timm style): ``create_model(name, **kw)``."""
from .registry import register_model, create_model, list_models, model_cfg
from . import resnet, blocknet, notrunk  # noqa: F401  (registers the variants)
from .stage import StageModel, STAGES, stage_classes, TrunkExport, StageExport, FusedExport

__all__ = ["register_model", "create_model", "list_models", "model_cfg", "StageModel", "STAGES",
           "stage_classes", "TrunkExport", "StageExport", "FusedExport"]
