"""SHA-256 of files: the one helper behind every hash the training path
writes or checks (dataset shards, checkpoints' Stage 1 link, bundle files)."""

import hashlib


def sha256_file(path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of the file at ``path``, read in ``chunk``-byte pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return h.hexdigest()
            h.update(b)
