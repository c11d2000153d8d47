"""Compression: pruning and quantization of a float Keras model into TFLite and TF.js artifacts.

One entry point, `convert`; settings are data (`QuantizationSettings`, `PruneSettings`). Importing this
package does not import TensorFlow.
"""

from .settings import (
    BYTES_PER_WEIGHT,
    MODES_BY_FORMAT,
    Format,
    IOType,
    Mode,
    QuantizationSettings,
    QuantizeError,
)

__all__ = [
    "BYTES_PER_WEIGHT",
    "MODES_BY_FORMAT",
    "Artifact",
    "Format",
    "IOType",
    "Mode",
    "PruneSettings",
    "QuantizationSettings",
    "QuantizeError",
    "convert",
    "prune",
]


def __getattr__(name):
    if name == "Artifact":
        from .artifact import Artifact

        return Artifact
    if name in ("prune", "PruneSettings", "PruneResult"):
        from . import pruning as module

        return getattr(module, name)
    if name == "convert":
        from .pipeline import convert

        return convert
    raise AttributeError(name)
