"""TFLite conversion from a SavedModel: TensorFlow's converter for float32, float16 and full-integer int8
(and every mode with layers kept in float); the LiteRT Quantizer over its float32 file for the rest."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from .artifact import Artifact
from .checks import check_calibration
from .recipes import quantize_tflite
from .export import INPUT_NAME
from .memo import Recent, saved_model_digest
from .runtime import signature_outputs, tflite_interpreter
from .settings import Engine, Format, IOType, Mode, QuantizationSettings, QuantizeError, UnsupportedOpsError

MAX_CALIBRATION_SAMPLES = 500


def _representative(images: np.ndarray):
    samples = images[:MAX_CALIBRATION_SAMPLES]

    def dataset():
        for i in range(len(samples)):
            yield [samples[i : i + 1]]

    return dataset


def _converter(tf, saved_model_dir: Path, settings: QuantizationSettings, calibration):
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    converter.exclude_conversion_metadata = settings.strip_metadata
    builtins = [tf.lite.OpsSet.TFLITE_BUILTINS]
    extra = [tf.lite.OpsSet.SELECT_TF_OPS] if settings.allow_select_tf_ops else []
    mode = settings.mode
    if mode is not Mode.FLOAT32:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode is Mode.FLOAT16:
        converter.target_spec.supported_types = [tf.float16]
    if settings.needs_calibration:
        check_calibration(calibration)
        converter.representative_dataset = _representative(calibration)
    if mode is Mode.INT16X8:
        builtins = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    elif mode is Mode.INT8:
        # Selectively float layers need float kernels beside the int8 ones.
        builtins = builtins if settings.float_layers else [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io = {IOType.INT8: tf.int8, IOType.UINT8: tf.uint8}.get(settings.io_type)
        if io is not None:
            converter.inference_input_type = io
            converter.inference_output_type = io
    converter.target_spec.supported_ops = builtins + extra
    return converter


def _unsupported_ops(message: str) -> list[str]:
    ops = set(re.findall(r"'tf\.(\w+)'", message)) | set(re.findall(r"\btf\.(\w+)\b", message))
    ops.discard("lite")
    return sorted(ops)


def convert_tflite(
    saved_model_dir: Path,
    settings: QuantizationSettings,
    calibration: np.ndarray | None = None,
    sparsity: float = 0.0,
) -> Artifact:
    """Convert the SavedModel at `saved_model_dir` to one `.tflite` artifact as `settings` ask."""
    if settings.format is not Format.TFLITE:
        raise QuantizeError(f"convert_tflite got {settings.format.value} settings")
    made_by, choice = None, None
    if settings.engine is None:  # both engines make it: the file measured closer to the float model is kept
        content, made_by, choice = _measured_choice(saved_model_dir, settings, calibration)
    elif settings.engine is Engine.LITERT_QUANTIZER:
        content = quantize_tflite(_float_model(saved_model_dir, settings), settings.mode, calibration, settings.mixed)
    elif settings.mode is Mode.FLOAT32 and not settings.float_layers:
        content = _float_model(saved_model_dir, settings)
    else:
        content = _convert(saved_model_dir, settings, calibration)
    content = strip_tensor_names(content) if settings.strip_metadata else share_vectors(content)
    return Artifact(settings=settings, files={"model.tflite": content}, sparsity=sparsity, made_by=made_by, engine_choice=choice)


def _float_model(saved_model_dir: Path, settings: QuantizationSettings) -> bytes:
    """The float32 file of a SavedModel, which the LiteRT Quantizer starts from (it reads the tensor names,
    stripped after): converted once per model and the settings that shape it (`memo`)."""
    float_settings = dataclasses.replace(settings, mode=Mode.FLOAT32, engine=None, mixed=None, float_layers=())
    key = (saved_model_digest(saved_model_dir), float_settings.strip_metadata, float_settings.allow_select_tf_ops)
    content = _FLOAT_FILES.get(key)
    if content is None:
        content = _convert(saved_model_dir, float_settings, None)
        _FLOAT_FILES.put(key, content)
    return content


_FLOAT_FILES = Recent()


def float_tflite(saved_model_dir: Path) -> bytes:
    """The float32 file of a SavedModel with its tensor names (what per-op ranking reads), the same the
    quantizer modes start from: made once per model (`memo`)."""
    return _float_model(saved_model_dir, QuantizationSettings(Format.TFLITE, Mode.FLOAT32))


# Calibration images each engine's file is run on when both make a mode: enough to rank two files whose
# errors differ by a factor (measured 4x on a digits CNN), few enough to cost well under a conversion.
CHOICE_IMAGES = 32


def _measured_choice(saved_model_dir: Path, settings: QuantizationSettings, calibration) -> tuple[bytes, Engine, dict]:
    """(file, engine, the measurement) for a mode both engines make: each file run in LiteRT on calibration
    images against the float32 file; the smaller worst relative error is kept (the converter's on a tie
    within 1%). Either engine may fail to make or run it; both failing is the mode's failure."""
    check_calibration(calibration)
    float_model = _float_model(saved_model_dir, settings)
    probe = np.asarray(calibration[:CHOICE_IMAGES])
    reference = signature_outputs(float_model, probe, INPUT_NAME)
    made, measured = {}, {}
    for engine in (Engine.TFLITE_CONVERTER, Engine.LITERT_QUANTIZER):
        try:
            if engine is Engine.TFLITE_CONVERTER:
                content = _convert(saved_model_dir, dataclasses.replace(settings, engine=engine), calibration)
            else:
                content = quantize_tflite(float_model, settings.mode, calibration)
        except QuantizeError as error:
            measured[str(engine)] = {"error": str(error)}
            continue
        try:
            outputs = signature_outputs(content, probe, INPUT_NAME)
        except Exception as error:  # noqa: BLE001 - LiteRT refusing the file (a 16x8 kernel's prepare) is this engine's result
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            measured[str(engine)] = {"error": f"LiteRT cannot run it: {first}"}
            continue
        error = _relative_error(outputs, reference)
        if not np.isfinite(error):
            measured[str(engine)] = {"error": "its outputs are not finite numbers"}
            continue
        made[engine] = content
        measured[str(engine)] = {"bytes": len(content), "relative_error": round(error, 6)}
    if not made:
        raise QuantizeError(f"no engine could make a {settings.mode} model that LiteRT runs: "
                            + "; ".join(f"{name}: {m['error']}" for name, m in measured.items()))
    errors = {engine: measured[str(engine)]["relative_error"] for engine in made}
    best = min(errors.values())
    kept = next(engine for engine in made if errors[engine] <= best * 1.01 + 1e-9)  # the converter first on a tie
    others = [e for e in made if e is not kept]
    why = (f"measured {errors[kept]:.4g} worst relative error against the float model on {len(probe)} calibration images"
           + (f", {others[0]} {errors[others[0]]:.4g}" if others else
              f"; {next(n for n in measured if n != str(kept))} could not make it"))
    return made[kept], kept, {"kept": str(kept), "why": why, "engines": measured}


def _relative_error(outputs: dict, reference: dict) -> float:
    """The worst output's max abs error over the float output's range (1 where the range is 0), by name."""
    worst = 0.0
    for name, want in reference.items():
        got = outputs[name]
        spread = float(want.max() - want.min()) or 1.0
        worst = max(worst, float(np.max(np.abs(got - want))) / spread if want.size else 0.0)
    return worst


def _convert(saved_model_dir: Path, settings: QuantizationSettings, calibration) -> bytes:
    """TensorFlow's converter, its failures said in one line (unsupported ops by name)."""
    from ._tf import native_stderr_silenced, quiet_tensorflow

    tf = quiet_tensorflow()
    converter = _converter(tf, saved_model_dir, settings, calibration)
    try:
        with native_stderr_silenced():
            if settings.float_layers:
                return bytes(_selective_int8(tf, converter, settings, calibration))
            return bytes(converter.convert())
    except QuantizeError:
        raise
    except Exception as error:
        text = str(error)
        ops = _unsupported_ops(text)
        if ops:
            raise UnsupportedOpsError(
                f"TFLite builtins cannot run these ops: {', '.join(ops)}; change the model or set "
                "allow_select_tf_ops (needs the Flex delegate on the device)"
            ) from error
        first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
        raise QuantizeError(f"TFLite conversion ({settings.key}) failed: {first}") from error


def strip_tensor_names(content: bytes) -> bytes:
    """The .tflite without what no runtime reads: the model description and the names of tensors other
    than the inputs and outputs. Signatures (with their input and output names) and metadata stay."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    model.description = None
    for subgraph in model.subgraphs:
        keep = set(subgraph.inputs.tolist() if subgraph.inputs is not None else []) | set(subgraph.outputs.tolist() if subgraph.outputs is not None else [])
        for index, tensor in enumerate(subgraph.tensors):
            if index not in keep:
                tensor.name = None
    return _packed(model)


def share_vectors(content: bytes) -> bytes:
    """The .tflite flatbuffer `content` with each run of numbers stored once, however many tables list it.
    A quantized file repeats the same vectors: every weight quantized per channel carries a zero point per
    channel (int64, all 0 for symmetric weights: 8 B each, and LiteRT refuses fewer zero points than
    scales), and tensors share shapes. A flatbuffer table may point at any vector, so one copy serves
    them all and LiteRT reads the same model (outputs bit-identical: tests/test_quantize.py). Raw byte
    vectors (weights, metadata, custom options) stay as they were. MobileNetV2's int8 file: 6% smaller."""
    from tensorflow.lite.tools import flatbuffer_utils

    return _packed(flatbuffer_utils.read_model_from_bytearray(bytearray(content)))


def _packed(model) -> bytes:
    """A TFLite `ModelT` serialised with identical numeric vectors stored once (`share_vectors`)."""
    import flatbuffers

    class SharingBuilder(flatbuffers.Builder):
        def __init__(self, size: int):
            super().__init__(size)
            self.stored: dict = {}

        def CreateNumpyVector(self, x):  # noqa: N802 (flatbuffers' name)
            if x.dtype == np.uint8 or x.dtype == np.int8:  # raw bytes: buffers, options, as written before
                return super().CreateNumpyVector(x)
            key = (x.dtype.str, x.tobytes())
            if key not in self.stored:
                self.stored[key] = super().CreateNumpyVector(x)
            return self.stored[key]

    builder = SharingBuilder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _selective_int8(tf, converter, settings: QuantizationSettings, calibration) -> bytes:
    """Quantize with the named Keras layers' ops kept in float, through TFLite's quantization debugger."""
    nodes = _nodes_of_layers(converter.saved_model_dir, settings.float_layers)
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=nodes)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=_representative(calibration[:8]), debug_options=options
    )
    return debugger.get_nondebug_quantized_model()


def _nodes_of_layers(saved_model_dir, layers: tuple[str, ...]) -> list[str]:
    """TFLite op output tensor names that belong to the named Keras layers (found in a float conversion)."""
    from ._tf import quiet_tensorflow

    tf = quiet_tensorflow()
    float_model = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir)).convert()
    names = [d["name"] for d in tflite_interpreter(float_model).get_tensor_details()]
    chosen = []
    for layer in layers:
        pattern = re.compile(rf"(^|/){re.escape(layer)}(_\d+)?/")
        hits = [n for n in names if any(pattern.search(part) for part in n.split(";"))]
        if not hits:
            raise QuantizeError(f"float_layers {layer!r}: no op of that Keras layer is in the converted model")
        chosen.extend(hits)
    return sorted(set(chosen))
