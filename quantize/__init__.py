"""Compression: pruning and quantization of a float Keras model into TFLite and TF.js artifacts.

One entry point, `convert`; settings are data (`QuantizationSettings`, `PruneSettings`). Importing this
package does not import TensorFlow.
"""

from .artifact import Artifact
from .clustering import ClusterResult, ClusterSettings, cluster
from .pipeline import convert, convert_saved_model
from .tflite import float_tflite
from .pruning import PruneResult, PruneSettings, prune
from .qat import QATResult, QATSettings, quantization_aware
from .settings import (
    BYTES_PER_WEIGHT,
    MODES_BY_FORMAT,
    CannotPruneError,
    Engine,
    Format,
    IOType,
    Mode,
    QuantizationSettings,
    QuantizeError,
    UnsupportedOpsError,
)

__all__ = [
    "BYTES_PER_WEIGHT",
    "MODES_BY_FORMAT",
    "Artifact",
    "CannotPruneError",
    "ClusterResult",
    "ClusterSettings",
    "Engine",
    "Format",
    "IOType",
    "Mode",
    "PruneResult",
    "PruneSettings",
    "QATResult",
    "QATSettings",
    "QuantizationSettings",
    "QuantizeError",
    "UnsupportedOpsError",
    "cluster",
    "float_tflite",
    "convert",
    "convert_saved_model",
    "prune",
    "quantization_aware",
]
