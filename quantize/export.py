"""Exporting a Keras model to a SavedModel with a fixed per-image input signature, the converters' input."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from .settings import QuantizeError

# The serving signature's one input: what apps feed raw or float pixels to.
INPUT_NAME = "pixels"
# A signature key that every runtime keeps as it is: TF.js object keys that look like integers would be
# reordered by JavaScript, and TFLite tensor names use ':' and '/' for their own purposes.
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")


def is_signature_key(name: str) -> bool:
    """A name every runtime keeps as it is (`_KEY`)."""
    return bool(_KEY.fullmatch(name))


def signature_output_keys(output_names) -> tuple[str, ...]:
    """The serving signature's output names: the model's own output names where they make usable, unique
    keys, else `output_0`, `output_1`, ... (what Keras itself exports)."""
    names = [str(name) for name in output_names]
    if names and len(set(names)) == len(names) and all(is_signature_key(name) for name in names):
        return tuple(names)
    return tuple(f"output_{i}" for i in range(len(names)))


def model_output_names(model) -> list[str]:
    """The Keras model's output names, in the order of `model.outputs`: the keys of a model that returns
    a dict (Keras flattens it by sorted key), else the output layers' names."""
    struct = getattr(model, "_outputs_struct", None)
    if isinstance(struct, dict) and len(struct) == len(model.outputs):
        return sorted(str(key) for key in struct)
    names = getattr(model, "output_names", None)
    if names and len(names) == len(model.outputs):
        return [str(n) for n in names]
    return [t._keras_history[0].name for t in model.outputs]


def output_list(model, outputs) -> list:
    """What `model(x)` or `model.predict(x)` returned, as a list in the order of `model_output_names`."""
    if isinstance(outputs, dict):
        return [outputs[name] for name in model_output_names(model)]
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def model_input_spec(model, input_shape: tuple[int, ...] | None = None) -> tuple[tuple[int, ...], str]:
    """The per-image input shape and dtype of a one-input Keras model; `input_shape` fills unknown sizes."""
    if len(model.inputs) != 1:
        raise QuantizeError(f"model {model.name!r} has {len(model.inputs)} inputs; mobilepre handles one image input")
    tensor = model.inputs[0]
    shape = tuple(tensor.shape[1:])
    dtype = str(tensor.dtype)
    if input_shape is not None:
        input_shape = tuple(input_shape)
        if len(input_shape) != len(shape) or any(s is not None and s != g for s, g in zip(shape, input_shape)):
            raise QuantizeError(f"input_shape {input_shape} does not fit the model's input {shape}")
        shape = input_shape
    if any(d is None for d in shape):
        raise QuantizeError(
            f"model {model.name!r} has dynamic input dimensions {shape}: give input_shape (H, W, C) to fix them"
        )
    return tuple(int(d) for d in shape), dtype


def export_saved_model(model, directory: Path, input_shape: tuple[int, ...] | None = None, dynamic_batch: bool = False) -> Path:
    """Write `model` as a SavedModel at `directory` with a (1, *input_shape) serving signature whose
    outputs are named after the model's outputs (`signature_output_keys`), so that the TFLite signature
    and the TF.js model carry the names an app developer knows from Keras.

    The batch is static, 1 (an app runs one camera frame at a time): every shape in the converted graph
    is then known, `Flatten` and friends fold to a constant reshape, and accelerators that need static
    shapes (LiteRT's GPU and NPU delegates, LiteRT.js) take the file. `dynamic_batch` gives a batch of
    any size instead (the graph then computes shapes at run time)."""
    from ._tf import keras, quiet_tensorflow

    tf = quiet_tensorflow()
    shape, dtype = model_input_spec(model, input_shape)
    signature = [tf.TensorSpec((None if dynamic_batch else 1, *shape), dtype=dtype, name=INPUT_NAME)]
    keys = signature_output_keys(model_output_names(model))

    def serve(pixels):
        return dict(zip(keys, output_list(model, model(pixels, training=False))))

    try:
        with _portable_grouped_convolutions(tf):
            archive = keras().export.ExportArchive()
            archive.track(model)
            archive.add_endpoint("serve", serve, input_signature=signature)
            archive.write_out(str(directory), verbose=False)
    except Exception as error:  # Keras raises many types here; the message is what the user needs
        raise QuantizeError(f"model {model.name!r} could not be exported for conversion: {error}") from error
    return Path(directory)


def export_for(fmt, model, directory: Path, input_shape: tuple[int, ...] | None = None, dynamic_batch: bool = False) -> Path:
    """The SavedModel a format is converted from: TFLite's with a static batch of 1 (unless
    `dynamic_batch`); TF.js's with a dynamic batch, as TF.js runs it (the pinned tensorflowjs turns a
    static batch's `Add` of two matmuls into a `Squeeze` without dimensions, which TF.js cannot run)."""
    static = str(fmt) == "tflite" and not dynamic_batch
    return export_saved_model(model, directory, input_shape, dynamic_batch=not static)


@contextlib.contextmanager
def _portable_grouped_convolutions(tf):
    """While exporting: Keras's TensorFlow backend runs a grouped convolution (`Conv2D(groups=...)`:
    ConvNeXt's and RegNet's depthwise 7x7, ResNeXt's) as an XLA-compiled function, which stays a
    function call in the SavedModel that TF.js cannot run ("StatefulPartitionedCall"). Here it is traced
    as ops every runtime has: a depthwise convolution when each group is one input channel, else one
    convolution per group and a concatenation. Same arithmetic; only the graph's form changes."""
    from keras.src.backend.tensorflow import nn

    original = nn.conv

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        channels, per_group = inputs.shape[-1], kernel.shape[-2]
        if (len(inputs.shape) != 4 or data_format not in (None, "channels_last") or channels is None
                or per_group == channels or channels % per_group):
            return original(inputs, kernel, strides, padding, data_format, dilation_rate)
        groups = channels // per_group
        if per_group == 1:  # (kh, kw, 1, C*m) -> depthwise (kh, kw, C, m): output c*m + j reads input c in both
            kh, kw, _, filters = kernel.shape
            pair = (lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v))
            sh, sw = pair(strides)
            return tf.nn.depthwise_conv2d(inputs, tf.reshape(kernel, (kh, kw, channels, filters // channels)), (1, sh, sw, 1),
                                          padding.upper(), dilations=pair(dilation_rate))
        parts = [original(x, k, strides, padding, data_format, dilation_rate)
                 for x, k in zip(tf.split(inputs, groups, axis=-1), tf.split(kernel, groups, axis=-1))]
        return tf.concat(parts, axis=-1)

    nn.conv = conv
    try:
        yield
    finally:
        nn.conv = original
