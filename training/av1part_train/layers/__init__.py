"""Layers library: adapters and heads live here, not inside the backbone."""
from .adapters import (ConvAdapter, ResidualAdapter, CellConvAdapter, CellResidualAdapter, create_adapter,
                       ADAPTER_KINDS)
from .block_stats import BlockStats, patchify
from .heads import MLPHead

__all__ = ["ConvAdapter", "ResidualAdapter", "CellConvAdapter", "CellResidualAdapter", "create_adapter", "ADAPTER_KINDS", "MLPHead",
           "BlockStats", "patchify"]
