"""The demo digit classifier shipped with mobilepre: its model, calibration and validation images, and facts."""

from __future__ import annotations

import json
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def model_path() -> Path:
    """The trained Keras model (front-end + CNN), uint8 RGB (32, 32, 3) pixels -> 10 digit probabilities
    (the front-end turns RGB into luma inside the model).

    A plain Keras 3 file: `keras.models.load_model(model_path())` needs no mobilepre import; it names
    only stock Keras objects and carries the Gaussian denoise kernel as weights.
    """
    return _HERE / "demo.keras"


def calibration_path() -> Path:
    """128 training images (`images` uint8 RGB (128, 32, 32, 3), `labels` int64) for int8 calibration."""
    return _HERE / "calibration.npz"


def validation_path() -> Path:
    """The whole held-out test split (`images` uint8 RGB (N, 32, 32, 3), `labels` int64)."""
    return _HERE / "validation.npz"


def class_names() -> tuple[str, ...]:
    """The name of each class index: the ten digits."""
    return tuple(str(digit) for digit in range(10))


def info() -> dict:
    """What `scripts/train_demo.py` recorded: test accuracy, split sizes, epochs, seed, parameters, versions."""
    return json.loads((_HERE / "demo.json").read_text())
