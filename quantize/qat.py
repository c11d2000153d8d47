"""Quantization-aware fine-tuning for full-integer int8: the model is fine-tuned by distillation from the
float model while its weights and activations are rounded as int8 will round them (fake quantization,
straight-through gradients); the calibrated int8 converter then quantizes the weights it learnt."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .distil import check_fine_tuning, check_keras_layers, clone, distil
from .pruning import prunable_kernels
from .settings import QuantizeError


@dataclass(frozen=True)
class QATSettings:
    """How to fine-tune for int8.

    Attributes:
        epochs (int): fine-tuning epochs over the calibration images. Default 5.
        batch_size (int): Default 32.
        learning_rate (float): Adam learning rate. Default 3e-5, a tenth of pruning's: the weights only
            need to settle into int8's grid (measured on the demo: 1e-4 for 10 epochs moved the float
            model further than int8 rounding does).
        seed (int): shuffling seed. Default 0.
    """

    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 3e-5
    seed: int = 0

    def __post_init__(self):
        check_fine_tuning(self.epochs, self.batch_size, min_epochs=1)


@dataclass(frozen=True)
class QATResult:
    """The fine-tuned float model (the int8 converter quantizes it) and what the fine-tuning saw.

    Attributes:
        model: a plain Keras model of the same architecture with the fine-tuned weights.
        activations (int): layer outputs fake-quantized during the fine-tuning.
        kernels (int): kernels fake-quantized (per output channel, symmetric int8, as TFLite does).
        distillation_loss (float): the last epoch's mean loss.
    """

    model: object
    activations: int
    kernels: int
    distillation_loss: float


def fake_quantize_kernel(value: np.ndarray) -> np.ndarray:
    """`value` rounded to symmetric int8 per output channel (the last axis), as TFLite quantizes
    Conv/Dense kernels: scale = max |w| / 127 per channel."""
    axes = tuple(range(value.ndim - 1))
    scale = np.max(np.abs(value), axis=axes, keepdims=True) / 127.0
    scale = np.where(scale == 0, 1.0, scale)
    return (np.clip(np.round(value / scale), -127, 127) * scale).astype(value.dtype)


def _fake_quant_layer(keras, tf):
    class ActivationFakeQuant(keras.layers.Layer):
        """Observes its input's range (eager calls), then rounds it to 8 bits over that range."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.low, self.high, self.observing = 0.0, 0.0, True

        def compute_output_shape(self, input_shape):
            return input_shape

        def call(self, x):
            if self.observing:
                if not tf.executing_eagerly():
                    return x
                value = np.asarray(x)
                if value.size:
                    self.low, self.high = min(self.low, float(value.min())), max(self.high, float(value.max()))
                return x
            if self.high <= self.low:
                return x
            return tf.quantization.fake_quant_with_min_max_args(x, min=self.low, max=self.high, num_bits=8)

    return ActivationFakeQuant


def functional_graph(model):
    """`model`'s own layers (its weights, in its order) as a Functional graph: a `keras.Sequential` model,
    at the top or nested in another, lists its layers without calling them, so Keras cannot hand each
    layer call to a `call_function`; the same layers called in order can."""
    from ._tf import keras

    k = keras()

    def as_functional(layer):
        if isinstance(layer, k.Sequential):
            source = layer.inputs[0]
            inputs = k.Input(batch_shape=tuple(source.shape), dtype=source.dtype, name=f"{layer.name}_input")
            x = inputs
            for inner in layer.layers:
                x = as_functional(inner)(x)
            return k.Model(inputs, x, name=layer.name)
        if isinstance(layer, k.Model) and any(isinstance(inner, k.Model) for inner in layer.layers):
            return k.models.clone_model(layer, clone_function=as_functional)  # nested models unrolled, layers shared
        return layer

    return as_functional(model)


def quantization_aware(model, settings: QATSettings, images: np.ndarray, labels: np.ndarray | None = None) -> QATResult:
    """Fine-tune a copy of `model` for full-integer int8 on `images` by distillation from `model`.

    Every float layer output gets a fake-quantization op over the range it reaches on `images` (int8's
    per-tensor activations); every Conv/Dense kernel is rounded per channel before each step and the
    step's update goes to its float value (straight-through). The result is a plain copy of `model`
    with the learnt weights: nothing of the fake quantization stays in it.
    """
    from ._tf import keras, quiet_tensorflow

    tf = quiet_tensorflow()
    k = keras()
    check_keras_layers(model)
    if images is None or len(images) == 0:
        raise QuantizeError("quantization-aware fine-tuning needs images: pass calibration images")
    layer_class = _fake_quant_layer(k, tf)
    observers = []

    def call_function(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        if isinstance(layer, k.Model) or type(layer).__name__ == "InputLayer" or not hasattr(out, "dtype"):
            return out
        if not str(out.dtype).endswith(("float32", "float16")):
            return out
        observer = layer_class(name=f"{layer.name}_fake_quant")
        observers.append(observer)
        return observer(out)

    student = k.models.clone_model(functional_graph(model), call_function=call_function, recursive=True)
    if [w.shape for w in student.get_weights()] != [np.shape(w) for w in model.get_weights()]:
        raise QuantizeError("quantization-aware fine-tuning could not rebuild this model layer by layer")
    student.set_weights(model.get_weights())
    for start in range(0, min(len(images), 256), 32):  # observe activation ranges, eagerly
        student(images[start : start + 32], training=False)
    for observer in observers:
        observer.observing = False
    kernels = prunable_kernels(student, include_depthwise=True)
    shadows = [np.asarray(kernel.numpy()) for kernel in kernels]
    rounded = [None] * len(kernels)

    def before_step() -> None:
        for i, kernel in enumerate(kernels):
            rounded[i] = fake_quantize_kernel(shadows[i])
            kernel.assign(rounded[i])

    def after_step() -> None:
        for i, kernel in enumerate(kernels):
            shadows[i] = shadows[i] + (np.asarray(kernel.numpy()) - rounded[i])  # the update, onto the float value
            kernel.assign(shadows[i])

    loss = distil(model, student, images, labels, epochs=settings.epochs, batch_size=settings.batch_size,
                  learning_rate=settings.learning_rate, seed=settings.seed, before_step=before_step, after_step=after_step)
    plain = clone(model)
    plain.set_weights(student.get_weights())
    return QATResult(plain, len(observers), len(kernels), loss)
