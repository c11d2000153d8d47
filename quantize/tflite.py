"""TFLite conversion: float32, float16, dynamic-range and full-integer int8 from a SavedModel."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .artifact import Artifact
from .checks import check_calibration
from .runtime import tflite_interpreter
from .settings import Format, IOType, Mode, QuantizationSettings, QuantizeError, UnsupportedOpsError

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
    if mode is Mode.FLOAT16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode is Mode.DYNAMIC:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode is Mode.INT8:
        check_calibration(calibration)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(calibration)
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
    from ._tf import native_stderr_silenced, quiet_tensorflow

    if settings.format is not Format.TFLITE:
        raise QuantizeError(f"convert_tflite got {settings.format.value} settings")
    tf = quiet_tensorflow()
    converter = _converter(tf, saved_model_dir, settings, calibration)
    try:
        with native_stderr_silenced():
            if settings.float_layers:
                content = _selective_int8(tf, converter, settings, calibration)
            else:
                content = converter.convert()
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
    return Artifact(settings=settings, files={"model.tflite": bytes(content)}, sparsity=sparsity)


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
