"""The one conversion entry point: checks, SavedModel export, then the format's converter."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .artifact import Artifact
from .checks import check_weights
from .export import export_saved_model
from .settings import Format, QuantizationSettings
from .tfjs import convert_tfjs
from .tflite import convert_tflite


def convert(
    model,
    settings: QuantizationSettings,
    calibration: np.ndarray | None = None,
    input_shape: tuple[int, ...] | None = None,
    saved_model_dir: Path | None = None,
    sparsity: float = 0.0,
) -> Artifact:
    """Convert a float Keras `model` into one artifact.

    `saved_model_dir`, when given, is an export of this same model to reuse (a build converts one model
    into many artifacts); otherwise the model is exported to a temporary folder.
    """
    check_weights(model, settings.mode)
    if saved_model_dir is not None:
        return _dispatch(Path(saved_model_dir), settings, calibration, sparsity)
    with tempfile.TemporaryDirectory(prefix="mobilepre-sm-") as tmp:
        directory = export_saved_model(model, Path(tmp) / "saved_model", input_shape)
        return _dispatch(directory, settings, calibration, sparsity)


def _dispatch(directory: Path, settings: QuantizationSettings, calibration, sparsity: float) -> Artifact:
    if settings.format is Format.TFLITE:
        return convert_tflite(directory, settings, calibration, sparsity)
    return convert_tfjs(directory, settings, sparsity)
