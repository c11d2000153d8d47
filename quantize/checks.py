"""Checks on a float model before conversion: weights that would break or silently ruin an artifact."""

from __future__ import annotations

import numpy as np

from .settings import Mode, QuantizeError

FLOAT16_MAX = 65504.0


def iter_weights(model):
    """Yield (layer path, weight name, array) for every weight of a Keras model, sub-models included."""

    def walk(layer, prefix):
        children = getattr(layer, "layers", None)
        if children:
            for child in children:
                yield from walk(child, f"{prefix}{layer.name}/")
            return
        for variable in layer.weights:
            yield f"{prefix}{layer.name}", variable.path, np.asarray(variable.numpy())

    for layer in model.layers:
        yield from walk(layer, "")


def check_weights(model, mode: Mode) -> None:
    """Refuse NaN or Inf anywhere, and float16 conversion of weights beyond the float16 range."""
    for layer, name, value in iter_weights(model):
        if not np.issubdtype(value.dtype, np.floating):
            continue
        bad = ~np.isfinite(value)
        if bad.any():
            raise QuantizeError(
                f"layer {layer!r}: weight {name} has {int(bad.sum())} NaN/Inf values; retrain or repair the model first"
            )
        if mode is Mode.FLOAT16:
            peak = float(np.abs(value).max()) if value.size else 0.0
            if peak > FLOAT16_MAX:
                raise QuantizeError(
                    f"layer {layer!r}: weight {name} reaches {peak:.6g}, beyond float16's +-65504; "
                    "use float32, dynamic or int8 for this model"
                )


def check_calibration(images) -> None:
    if images is None or len(images) == 0:
        raise QuantizeError("quantizing activations (int8, int16x8) needs calibration images: pass at least one calibration image")
    if np.issubdtype(images.dtype, np.floating) and not np.isfinite(images).all():
        raise QuantizeError("the calibration images contain NaN or Inf values")
