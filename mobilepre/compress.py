"""`mobilepre quantize` and `mobilepre prune` as library calls: load, compress, write, report."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobilepre import quantize
from mobilepre.artifacts import dynamic_shapes_problem, io_contract, io_lines
from mobilepre.data import DataOptions
from mobilepre.errors import MobilepreError, engine_errors, one_line, param
from mobilepre.fsutil import (
    atomic_file,
    check_output,
    keras_file_problem,
    tfjs_folder_problem,
    tflite_file_problem,
    write_files_atomically,
)
from mobilepre.models import load_model
from mobilepre.quantize.artifact import gzip_size
from mobilepre.quantize.debug import int8_layer_errors
from mobilepre.quantize.export import export_for
from mobilepre.quantize.pruning import (
    PruneSettings,
    measured_sparsity,
    prunable_kernels,
    prune,
)


@dataclass(frozen=True)
class QuantizeResult:
    """What `quantize_file` wrote."""

    path: str
    key: str
    files: dict  # name -> bytes
    size_bytes: int
    gzip_bytes: int
    sparsity: float
    source_identity: str
    io: dict = field(default_factory=dict)
    layer_errors: tuple = ()  # quantize.debug.LayerError, worst first, when asked for
    engine: str = ""  # what made the artifact (quantize.Engine)
    engine_choice: dict | None = None  # where both engines made it: each one's measured error, and why this one

    def to_dict(self) -> dict:
        return {
            "layer_errors": [e.to_dict() for e in self.layer_errors],
            "path": self.path,
            "artifact": self.key,
            "engine": self.engine,
            **({"engine_choice": self.engine_choice} if self.engine_choice else {}),
            "files": self.files,
            "bytes": self.size_bytes,
            "gzip_bytes": self.gzip_bytes,
            "sparsity": round(self.sparsity, 6),
            "source_identity": self.source_identity,
            "io": self.io,
        }

    def to_text(self) -> str:
        lines = [
            f"wrote {self.path} ({self.key}, made by {self.engine})",
            *([f"  {self.engine} kept: {one_line(self.engine_choice['why'])}"] if self.engine_choice else []),
            f"  bytes {self.size_bytes}, gzip {self.gzip_bytes}, sparsity {self.sparsity:.3f}",
        ]
        for name, size in sorted(self.files.items()):
            lines.append(f"  {name:<28} {size:>10} bytes")
        lines.extend(io_lines(self.io))
        if self.layer_errors:
            lines.append("  int8 error by layer, worst first (RMSE / scale; ~0.29 is rounding alone):")
            for e in self.layer_errors:
                lines.append(f"    {e.rmse_over_scale:8.3f}  {e.layer:<32} {e.tensor}")
        return "\n".join(lines)


def quantize_file(
    model_path: Path,
    fmt: str,
    mode: str,
    out: Path,
    data: DataOptions = DataOptions(),
    io_type: str = "float32",
    float_layers: tuple[str, ...] = (),
    shard_size_bytes: int = 4 * 1024 * 1024,
    allow_select_tf_ops: bool = False,
    input_shape: tuple | None = None,
    trust: bool = False,
    force: bool = False,
    layer_report: int = 0,
    engine: str | None = None,
    custom_objects: tuple[str, ...] = (),
    dynamic_batch: bool = False,
) -> QuantizeResult:
    """Load the model at `model_path`, convert it as asked, write the artifact to `out` atomically: with
    a static batch of 1, every tensor's size fixed (checked in the file), unless `dynamic_batch`."""
    with engine_errors():
        settings = quantize.QuantizationSettings(
            fmt, mode, io_type=io_type, float_layers=tuple(float_layers),
            shard_size_bytes=shard_size_bytes, allow_select_tf_ops=allow_select_tf_ops, engine=engine,
        )
    out = Path(out)
    if settings.format is quantize.Format.TFLITE and out.suffix != ".tflite":
        raise MobilepreError(f"{param('out')} {out}: a TFLite artifact is one file, name it *.tflite")
    replaceable = tflite_file_problem if settings.format is quantize.Format.TFLITE else tfjs_folder_problem
    check_output(out, force, param('out'), (model_path, data.path, data.labels), replaceable)
    source = load_model(model_path, trust=trust, input_shape=input_shape, custom_objects=custom_objects)
    dataset = data.load(source, f"{settings.mode} quantization" if settings.needs_calibration else None)
    calibration = dataset.images if dataset is not None else None
    kernels = prunable_kernels(source.model)
    sparsity = measured_sparsity(kernels)[0] if kernels else 0.0
    if layer_report and settings.mode is not quantize.Mode.INT8:
        raise MobilepreError(f"{param('layer_report')} explains int8 error: use it with {param('mode')} int8")
    with engine_errors(str(model_path)), tempfile.TemporaryDirectory(prefix="mobilepre-sm-") as tmp:
        exported = export_for(settings.format, source.model, Path(tmp) / "saved_model", source.input_shape, dynamic_batch=dynamic_batch)
        artifact = quantize.convert(source.model, settings, calibration, saved_model_dir=exported, sparsity=sparsity)
        if not dynamic_batch:
            static_problem = dynamic_shapes_problem(settings.format, artifact.files)
            if static_problem:
                raise MobilepreError(f"{model_path} as {settings.key}: {static_problem}; pass {param('dynamic_batch')} to accept it")
        layer_errors = tuple(int8_layer_errors(exported, settings, calibration)[:layer_report]) if layer_report else ()
    write_files_atomically(artifact.files, out, as_folder=settings.format is quantize.Format.TFJS)
    return QuantizeResult(
        path=str(out),
        key=settings.key,
        engine=str(artifact.engine),
        engine_choice=artifact.engine_choice,
        files={name: len(b) for name, b in sorted(artifact.files.items())},
        size_bytes=artifact.size_bytes,
        gzip_bytes=artifact.gzip_bytes,
        sparsity=sparsity,
        source_identity=source.identity,
        io=io_contract(settings.format, artifact.files, {"input_dtype": source.input_dtype, "outputs": [o.to_dict() for o in source.outputs]}, data.input_range),
        layer_errors=layer_errors,
    )


@dataclass(frozen=True)
class PruneFileResult:
    """What `prune_file` wrote."""

    path: str
    target_sparsity: float
    sparsity: float
    per_layer: dict
    fine_tuned: bool
    epochs: int
    size_bytes: int
    gzip_bytes: int
    tflite_bytes: int
    tflite_gzip_bytes: int
    top1_agreement: float | None
    images: int
    held_out_top1_agreement: float | None = None  # on --validation images, which fine-tuning never saw
    held_out_images: int = 0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["per_layer"] = {k: round(v, 6) for k, v in sorted(self.per_layer.items())}
        d["sparsity"] = round(self.sparsity, 6)
        return d

    def to_text(self) -> str:
        lines = [
            f"wrote {self.path}: sparsity {self.sparsity:.4f} (target {self.target_sparsity:.4f}), "
            + (f"fine-tuned {self.epochs} epochs by distillation" if self.fine_tuned else "one-shot"),
            f"  .keras {self.size_bytes:,} B (gzip {self.gzip_bytes:,} B); float32 .tflite {self.tflite_bytes:,} B (gzip {self.tflite_gzip_bytes:,} B)",
        ]
        if self.top1_agreement is not None:
            tuned = "it was fine-tuned on" if self.fine_tuned else "given"
            lines.append(f"  top-1 agreement with the float model on the {self.images} images {tuned}: {self.top1_agreement:.4f}"
                         + ("" if self.held_out_top1_agreement is not None else " (not held out: pass --validation DATA for a held-out figure)"))
        if self.held_out_top1_agreement is not None:
            lines.append(f"  top-1 agreement on {self.held_out_images} held-out --validation images: {self.held_out_top1_agreement:.4f}")
        for name, value in sorted(self.per_layer.items()):
            lines.append(f"  {name:<40} {value:.4f}")
        return "\n".join(lines)


def prune_file(
    model_path: Path,
    sparsity: float,
    out: Path,
    data: DataOptions = DataOptions(),
    epochs: int = 30,
    scope: str = "global",
    trust: bool = False,
    force: bool = False,
    validation: DataOptions | None = None,
    custom_objects: tuple[str, ...] = (),
) -> PruneFileResult:
    """Prune the model at `model_path`, fine-tune it by distillation on the calibration images, save it;
    with `validation`, also measure top-1 agreement on those held-out images."""
    with engine_errors():
        settings = PruneSettings(sparsity=sparsity, epochs=epochs, scope=scope)
    out = Path(out)
    if out.suffix != ".keras":
        raise MobilepreError(f"{param('out')} {out}: the pruned model is saved as a Keras model, name it *.keras")
    check_output(out, force, param('out'), (model_path, data.path, data.labels, validation.path if validation else None), keras_file_problem)
    source = load_model(model_path, trust=trust, custom_objects=custom_objects)
    dataset = data.load(source, "pruning with fine-tuning" if epochs else None)
    held_out = validation.load(source) if validation is not None else None
    images = dataset.images if dataset is not None else None
    labels = dataset.labels if dataset is not None else None
    with engine_errors(str(model_path)):
        result = prune(source.model, settings, images, labels)
        tflite = quantize.convert(result.model, quantize.QuantizationSettings("tflite", "float32"), input_shape=source.input_shape)
    agreement = _agreement(source.model, result.model, images) if images is not None else None
    held_out_agreement = _agreement(source.model, result.model, held_out.images) if held_out is not None else None
    with atomic_file(out) as tmp:
        result.model.save(tmp)
    raw = out.read_bytes()
    return PruneFileResult(
        path=str(out),
        target_sparsity=sparsity,
        sparsity=result.sparsity,
        per_layer=result.per_layer,
        fine_tuned=result.fine_tuned,
        epochs=epochs,
        size_bytes=len(raw),
        gzip_bytes=gzip_size(raw),
        tflite_bytes=tflite.size_bytes,
        tflite_gzip_bytes=tflite.gzip_bytes,
        top1_agreement=agreement,
        images=0 if images is None else len(images),
        held_out_top1_agreement=held_out_agreement,
        held_out_images=0 if held_out is None else len(held_out),
    )


def _agreement(reference, pruned, images) -> float | None:
    """Top-1 agreement of two classifiers on `images`; None for outputs that are not class scores."""
    want = np.asarray(reference.predict(images, verbose=0))
    got = np.asarray(pruned.predict(images, verbose=0))
    if want.ndim == 2 and want.shape[1] > 1:
        return float(np.mean(want.argmax(1) == got.argmax(1)))
    return None
