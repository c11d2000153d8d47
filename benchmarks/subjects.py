"""The models the in-process benchmarks share, demo and MobileNetV2-sized, each converted once per mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MOBILENET_CALIBRATION_IMAGES = 16  # enough for int8 size and latency; accuracy is not measured on random weights


class Subject:
    """A Keras model with its calibration images; converts each (format, mode) once and keeps the artifact.

    Attributes:
        name (str): how results name the model.
        model: the float Keras model.
        calibration (np.ndarray): images in model units, for int8 calibration.
        work (Path): folder for the SavedModel export and written artifacts.
    """

    def __init__(self, name: str, model, calibration: np.ndarray, work: Path):
        self.name = name
        self.model = model
        self.calibration = calibration
        self.work = Path(work)
        self._artifacts = {}
        self._saved_model = None

    @property
    def parameters(self) -> int:
        return int(self.model.count_params())

    def artifact(self, fmt: str, mode: str):
        """The artifact of one mode (float32 I/O for int8), as a build makes it."""
        from mobilepre import quantize

        return self.convert(quantize.QuantizationSettings(fmt, mode))

    def convert(self, settings):
        """The artifact `settings` describe, converted on first use from one SavedModel export."""
        from mobilepre import quantize
        from mobilepre.quantize.export import export_saved_model

        if settings not in self._artifacts:
            if self._saved_model is None:
                self._saved_model = export_saved_model(self.model, self.work / f"{self.name}-saved-model")
            self._artifacts[settings] = quantize.convert(
                self.model, settings, calibration=self.calibration, saved_model_dir=self._saved_model
            )
        return self._artifacts[settings]

    def written(self, fmt: str, mode: str) -> Path:
        """The artifact on disk: a `.tflite` file, or a TF.js graph-model folder."""
        folder = self.work / f"{self.name}-{fmt}-{mode}"
        if not folder.exists():
            folder.mkdir(parents=True)
            for name, data in self.artifact(fmt, mode).files.items():
                (folder / name).write_bytes(data)
        return folder / "model.tflite" if fmt == "tflite" else folder


def demo(work: Path) -> Subject:
    """The embedded demo model (uint8 32x32x1 digits) with its shipped calibration images."""
    from mobilepre import demo as shipped
    from mobilepre.models import load_model

    source = load_model(shipped.model_path(), isolate=False)
    calibration = np.load(shipped.calibration_path())["images"]
    return Subject("demo", source.model, calibration, work)


def mobilenet(work: Path) -> Subject:
    """keras.applications.MobileNetV2 at 224x224x3 with random weights (weights=None: nothing is downloaded)."""
    from mobilepre._tf import keras

    k = keras()
    k.utils.set_random_seed(0)
    model = k.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    rng = np.random.default_rng(0)
    calibration = rng.uniform(-1.0, 1.0, (MOBILENET_CALIBRATION_IMAGES, 224, 224, 3)).astype(np.float32)
    return Subject("mobilenet_v2", model, calibration, work)
