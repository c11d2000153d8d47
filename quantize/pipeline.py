"""The one conversion entry point: checks, SavedModel export, then the format's converter."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .artifact import Artifact
from .checks import check_weights
from .export import export_for
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
        return convert_saved_model(Path(saved_model_dir), settings, calibration, sparsity)
    with tempfile.TemporaryDirectory(prefix="mobilepre-sm-") as tmp:
        directory = export_for(settings.format, model, Path(tmp) / "saved_model", input_shape)
        return convert_saved_model(directory, settings, calibration, sparsity)


def convert_saved_model(directory: Path, settings: QuantizationSettings, calibration=None, sparsity: float = 0.0) -> Artifact:
    """Convert a SavedModel export of a float Keras model (whose weights `convert` checked) into one
    artifact: what a conversion worker process runs."""
    if settings.format is Format.TFLITE:
        return convert_tflite(directory, settings, calibration, sparsity)
    return convert_tfjs(directory, settings, sparsity)
