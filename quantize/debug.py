"""Per-layer error of a full-integer model against float, from TFLite's QuantizationDebugger."""

from __future__ import annotations

from dataclasses import dataclass
import re
from pathlib import Path

import numpy as np

from .tflite import _converter, _representative


@dataclass(frozen=True)
class LayerError:
    """Quantization error at one op's output tensor.

    Attributes:
        tensor (str): the op's output tensor name (holds the Keras layer path).
        layer (str): the Keras layer path read from the tensor name, e.g. "digits_cnn/digit".
        rmse_over_scale (float): root-mean-square error divided by the tensor's quantization scale;
            about 0.29 (1/sqrt(12)) is pure rounding, much larger means the layer loses information.
        max_abs_error (float), mean_squared_error (float).
    """

    tensor: str
    layer: str
    rmse_over_scale: float
    max_abs_error: float
    mean_squared_error: float

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def int8_layer_errors(saved_model_dir: Path, settings, calibration: np.ndarray, samples: int = 32) -> list[LayerError]:
    """Run float and int8 side by side on `samples` images; layers sorted by error, worst first."""
    from ._tf import native_stderr_silenced, quiet_tensorflow

    tf = quiet_tensorflow()
    converter = _converter(tf, saved_model_dir, settings, calibration)
    with native_stderr_silenced():
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=_representative(calibration[:samples])
        )
        debugger.run()
    errors = []
    for tensor, stats in debugger.layer_statistics.items():
        scale = _scale_of(debugger, tensor)
        mse = float(stats.get("mean_squared_error", 0.0))
        name = _clean(tensor)
        errors.append(
            LayerError(
                tensor=name,
                layer=_layer_of(name),
                rmse_over_scale=float(np.sqrt(mse) / scale) if scale else float("nan"),
                max_abs_error=float(stats.get("max_abs_error", 0.0)),
                mean_squared_error=mse,
            )
        )
    return sorted(errors, key=lambda e: -np.nan_to_num(e.rmse_over_scale, nan=-1.0))


def _details(debugger):
    return {d["name"]: d for d in debugger._quant_interpreter.get_tensor_details()}


def _scale_of(debugger, tensor: str) -> float:
    detail = _details(debugger).get(tensor)
    return float(detail["quantization"][0]) if detail else 0.0


def _clean(tensor: str) -> str:
    """'NumericVerify/model_1/conv_1/Relu;model_1/conv_1/BiasAdd1:43' -> 'model_1/conv_1/Relu'."""
    name = tensor.split(";")[0]
    name = re.sub(r"^NumericVerify/", "", name)
    return re.sub(r"\d:\d+$", "", name)  # the debugger appends "<output index>:<op index>"


def _layer_of(name: str) -> str:
    """Keras layer path: the name's folders without the model's own prefix and Keras's call suffix."""
    parts = [re.sub(r"_\d+$", "", p) for p in name.split("/")[:-1]]
    if not parts:
        return "(model output)"
    return "/".join(parts[1:]) if len(parts) > 1 else parts[0]
