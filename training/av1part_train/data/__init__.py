"""av1part dataset tool: videos -> labelled 16x16 block dataset (docs/CONTRACTS.md).

    python -m av1part_train.data fetch-content
    python -m av1part_train.data build OUT [VIDEO ...] [--recipe R.json] [--jobs N] ...
    python -m av1part_train.data report OUT
    python -m av1part_train.data verify OUT
    python -m av1part_train.data shard --stream S.ivf --source S.y4m --cq Q OUT_SHARD_DIR

See training/DATASET.md.
"""
from .errors import DataError  # noqa: F401
