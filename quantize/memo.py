"""What several conversions of one SavedModel share, computed once per process: each quantization mode of a
model starts from the same float TFLite file or the same optimised TF.js graph, and on a 300-op model each
costs seconds. Kept by the SavedModel's content (never its path: a folder may be rewritten), the last few."""

from __future__ import annotations

import collections
import hashlib
import threading
from pathlib import Path


def saved_model_digest(folder: Path) -> str:
    """sha256 over every file's relative path and bytes (a SavedModel: its graph and its variables)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


class Recent:
    """The last `kept` values by key (a build's model and its current pruned or clustered variant)."""

    def __init__(self, kept: int = 2):
        self._values: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()
        self._kept = kept

    def get(self, key):
        with self._lock:
            if key not in self._values:
                return None
            self._values.move_to_end(key)
            return self._values[key]

    def put(self, key, value) -> None:
        with self._lock:
            self._values[key] = value
            while len(self._values) > self._kept:
                self._values.popitem(last=False)
