"""Exporting a Keras model to a SavedModel with a fixed per-image input signature, the converters' input."""

from __future__ import annotations

from pathlib import Path

from .settings import QuantizeError


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


def export_saved_model(model, directory: Path, input_shape: tuple[int, ...] | None = None) -> Path:
    """Write `model` as a SavedModel at `directory` with a (batch, *input_shape) serving signature."""
    from ._tf import quiet_tensorflow

    tf = quiet_tensorflow()
    shape, dtype = model_input_spec(model, input_shape)
    signature = [tf.TensorSpec((None, *shape), dtype=dtype, name="pixels")]
    try:
        model.export(str(directory), format="tf_saved_model", input_signature=signature, verbose=False)
    except Exception as error:  # Keras raises many types here; the message is what the user needs
        raise QuantizeError(f"model {model.name!r} could not be exported for conversion: {error}") from error
    return Path(directory)
