"""An artifact in memory: its files as bytes, with sizes the way users pay for them (raw and gzip)."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field

from .settings import Engine, QuantizationSettings


def gzip_size(data: bytes) -> int:
    """Bytes after gzip -9 with a zero timestamp: what a download of the file costs."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


@dataclass(frozen=True)
class Artifact:
    """One converted model.

    Attributes:
        settings (QuantizationSettings): how it was made.
        files (dict[str, bytes]): file name (relative, '/'-separated) -> content. A TFLite artifact is
            one `model.tflite`; a TF.js graph model is `model.json` plus weight shards.
        sparsity (float): fraction of zero weights in the prunable kernels of the source model.
        made_by (Engine | None): the engine that made it, where the settings left the choice to a
            measurement (int16x8); else the settings' engine.
        engine_choice (dict | None): that measurement: per engine, the file's error against the float
            model in LiteRT (or why it could not be made or run), and why the kept one was kept.
    """

    settings: QuantizationSettings
    files: dict[str, bytes]
    sparsity: float = 0.0
    notes: tuple[str, ...] = field(default=())
    made_by: Engine | None = None
    engine_choice: dict | None = None

    @property
    def engine(self) -> Engine | None:
        return self.made_by or self.settings.engine

    @property
    def size_bytes(self) -> int:
        return sum(len(b) for b in self.files.values())

    @property
    def gzip_bytes(self) -> int:
        return sum(gzip_size(b) for b in self.files.values())

    def sha256(self) -> dict[str, str]:
        return {name: hashlib.sha256(data).hexdigest() for name, data in sorted(self.files.items())}
