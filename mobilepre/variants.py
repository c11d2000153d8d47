"""The model's variants a build converts from: pruned, clustered or fine-tuned for int8, each made once."""

from __future__ import annotations

from pathlib import Path

from mobilepre import quantize
from mobilepre.errors import one_line
from mobilepre.progress import as_reporter
from mobilepre.quantize.export import export_for
from mobilepre.quantize.pruning import PruneSettings, prune


class Variants:
    """Each variant of the model (Keras model, SavedModel export, reached sparsity), made and exported
    once per build; the float model is the variant with nothing done to it.

    Args:
        source (models.SourceModel): the model, with the stages the build put in front of it.
        calibration (np.ndarray | None): images the fine-tuning distils on.
        workdir (Path): where the SavedModel exports go.
        epochs (int): distillation epochs of each pruned or clustered variant.
        progress: a reporter or callable for what it is doing.
    """

    def __init__(self, source, calibration, workdir: Path, epochs: int = 30, progress=None):
        self.source = source
        self.calibration = calibration
        self.workdir = Path(workdir)
        self.epochs = epochs
        self.progress = as_reporter(progress)
        self._made: dict[tuple, tuple] = {}
        self._failed: dict[tuple, str] = {}  # variant -> why making it failed (said once, then the same again)
        self._cannot_prune: str | None = None  # why fine-tuning cannot work on this model (recurs at every level)

    def get(self, sparsity: float = 0.0, clusters: int = 0, qat: bool = False, fmt: str = "tflite") -> tuple:
        """(Keras model, SavedModel export for `fmt`, reached sparsity) of the model pruned to `sparsity`,
        clustered to `clusters` shared values per kernel or fine-tuned for int8 (`qat`); `CannotPruneError`
        (said once, then the same again) when the model cannot be fine-tuned. TFLite's export has a
        static batch of 1, TF.js's a dynamic one (`export.export_for`)."""
        key = (sparsity, clusters, qat)
        if key in self._made:
            model, directories, reached = self._made[key]
            if fmt not in directories:
                directories[fmt] = export_for(fmt, model, self.workdir / f"{self._name(key)}_{fmt}", self.source.input_shape)
            return model, directories[fmt], reached
        if key in self._failed:
            raise quantize.QuantizeError(self._failed[key])
        model, reached = self.source.model, 0.0
        if (sparsity or clusters or qat) and self._cannot_prune:
            raise quantize.CannotPruneError(self._cannot_prune)
        what = "pruning" if sparsity else "clustering" if clusters else "quantization-aware fine-tuning" if qat else "exporting"
        try:
            if sparsity:
                self.progress(f"pruning to {sparsity:.0%} and fine-tuning by distillation")
                result = prune(model, PruneSettings(sparsity, epochs=self.epochs), self.calibration)
                model, reached = result.model, result.sparsity
            elif clusters:
                self.progress(f"clustering to {clusters} shared values per kernel and fine-tuning by distillation")
                model = quantize.cluster(model, quantize.ClusterSettings(clusters, epochs=self.epochs), self.calibration).model
            elif qat:
                self.progress("fine-tuning for int8 with fake-quantized weights and activations (quantization-aware)")
                model = quantize.quantization_aware(model, quantize.QATSettings(), self.calibration).model
            directory = export_for(fmt, model, self.workdir / f"{self._name(key)}_{fmt}", self.source.input_shape)
        except quantize.CannotPruneError as error:
            self._cannot_prune = str(error)
            raise
        except quantize.QuantizeError as error:
            self._failed[key] = str(error)
            raise
        except Exception as error:  # noqa: BLE001 - one variant failing fails its candidates, never the build
            self._failed[key] = f"{what} failed on this model ({type(error).__name__}: {one_line(error)[:300]})"
            raise quantize.QuantizeError(self._failed[key]) from error
        self._made[key] = (model, {fmt: directory}, reached)
        return model, directory, reached

    @staticmethod
    def _name(key: tuple) -> str:
        sparsity, clusters, qat = key
        return f"saved_model_s{round(sparsity * 100):02d}" + (f"_c{clusters}" if clusters else "") + ("_qat" if qat else "")
