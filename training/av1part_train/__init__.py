"""av1part_train: training path of av1part (models, training, export).

The dataset tool lives in ``av1part_train.data`` (owned separately); this
package reads the dataset format of docs/CONTRACTS.md through
``av1part_train.loader``.
"""

__version__ = "0.1.0"

# libaom PARTITION_TYPE numbering (docs/CONTRACTS.md).
PARTITION_NAMES = [
    "NONE", "HORZ", "VERT", "SPLIT", "HORZ_A", "HORZ_B",
    "VERT_A", "VERT_B", "HORZ_4", "VERT_4",
]
PARTITION_INDEX = {n: i for i, n in enumerate(PARTITION_NAMES)}
