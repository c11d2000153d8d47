"""The convolutional preprocessing front-end: its spec, the Keras model it builds, and attaching it.

Imports only plain-Python siblings; TensorFlow and Keras are imported inside the functions that build
models, so importing this module (and `mobilepre --help`) stays fast and TensorFlow-free. The models
built here refer to stock Keras objects only, so a saved front-end loads without mobilepre installed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

from mobilepre.errors import MobilepreError, param
from mobilepre.fsutil import atomic_file, check_output, keras_file_problem


class Normalization(str, Enum):
    """How the front-end normalises its features.

    `batchnorm` is the default and the better choice: it learns a per-channel scale and shift and folds
    into the preceding convolution at conversion. `sigmoid` (a 1x1 convolution followed by a sigmoid)
    only approximates normalisation by squashing into [0, 1]; it saturates and costs an extra layer.
    """

    BATCHNORM = "batchnorm"
    SIGMOID = "sigmoid"
    NONE = "none"


@dataclass(frozen=True)
class FeatureStage:
    """One feature-extraction convolution: `filters` outputs, a `kernel_size` square kernel, ReLU."""

    filters: int
    kernel_size: int

    def __post_init__(self):
        _positive_int("filters", self.filters)
        _positive_int("kernel_size", self.kernel_size)


@dataclass(frozen=True)
class FrontendSpec:
    """Everything that defines a front-end. Validated on construction.

    Attributes:
        input_shape (tuple[int, int, int]): height, width, channels of one image. Default (224, 224, 3).
        uint8_input (bool): the model takes raw 0..255 pixels and rescales to [0, 1] inside. Default True.
        denoise (bool): include the 3x3 Gaussian noise-reduction stage. Default True.
        sigma (float): standard deviation, in pixels, of the initial Gaussian kernel. Default 1.0.
        l2 (float): L2 regularisation factor on the denoise kernel (0 disables it). Default 0.01.
        features (tuple[FeatureStage, ...]): feature-extraction convolutions in order.
            Default 16 filters 5x5, then 32 filters 3x3.
        normalize (Normalization): the normalisation stage. Default batchnorm.
        rescale_range (tuple[float, float]): with `uint8_input`, pixels 0..255 map linearly to this
            range inside the model. Default (0, 1).
        rgb_input (bool): when `input_shape` has one channel (a grayscale model), the front-end still
            takes 3-channel RGB pixels, as a camera gives them, and turns them into luma inside the model:
            a fixed 1x1 convolution with the ITU-R BT.601 weights (0.299, 0.587, 0.114). False keeps a
            one-channel input. Default True; no effect on a 3-channel `input_shape`.
    """

    input_shape: tuple[int, int, int] = (224, 224, 3)
    uint8_input: bool = True
    denoise: bool = True
    sigma: float = 1.0
    l2: float = 0.01
    features: tuple[FeatureStage, ...] = field(
        default_factory=lambda: (FeatureStage(16, 5), FeatureStage(32, 3))
    )
    normalize: Normalization = Normalization.BATCHNORM
    rescale_range: tuple[float, float] = (0.0, 1.0)
    rgb_input: bool = True

    def __post_init__(self):
        shape = tuple(self.input_shape)
        if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise MobilepreError(
                f"Expected input_shape to be three positive ints (height, width, channels), got {self.input_shape!r}"
            )
        object.__setattr__(self, "input_shape", shape)
        if not (isinstance(self.sigma, (int, float)) and math.isfinite(self.sigma) and self.sigma > 0):
            raise MobilepreError(f"Expected sigma to be a positive number of pixels, got {self.sigma!r}")
        if not (isinstance(self.l2, (int, float)) and math.isfinite(self.l2) and self.l2 >= 0):
            raise MobilepreError(f"Expected l2 to be a number >= 0, got {self.l2!r}")
        low, high = (tuple(self.rescale_range) + (None, None))[:2]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (low, high)) or not low < high:
            raise MobilepreError(f"Expected rescale_range to be (low, high) with low < high, got {self.rescale_range!r}")
        object.__setattr__(self, "rescale_range", (float(low), float(high)))
        object.__setattr__(self, "features", tuple(self.features))
        for stage in self.features:
            if not isinstance(stage, FeatureStage):
                raise MobilepreError(f"Expected features to hold FeatureStage values, got {stage!r}")
        try:
            object.__setattr__(self, "normalize", Normalization(self.normalize))
        except ValueError:
            choices = ", ".join(n.value for n in Normalization)
            raise MobilepreError(f"Expected normalize to be one of {choices}, got {self.normalize!r}") from None

    @property
    def luma(self) -> bool:
        """The front-end converts RGB pixels to one luma channel."""
        return bool(self.rgb_input) and self.input_shape[2] == 1

    @property
    def pixel_shape(self) -> tuple[int, int, int]:
        """The shape of one image as the front-end takes it (3 channels when it converts to luma)."""
        height, width, channels = self.input_shape
        return (height, width, 3) if self.luma else (height, width, channels)

    @property
    def output_channels(self) -> int:
        return self.features[-1].filters if self.features else self.input_shape[2]


def _positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise MobilepreError(f"Expected {name} to be a positive int, got {value!r}")


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """`"224,224,3"` -> (224, 224, 3); anything else is a MobilepreError naming the text."""
    parts = [p.strip() for p in text.split(",")]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise MobilepreError(f"{param('input_shape')} {text!r}: expected H,W,C as three positive integers, e.g. 224,224,3") from None
    if len(shape) != 3 or any(d <= 0 for d in shape):
        raise MobilepreError(f"{param('input_shape')} {text!r}: expected H,W,C as three positive integers, e.g. 224,224,3")
    return shape  # type: ignore[return-value]


def parse_features(text: str) -> tuple[FeatureStage, ...]:
    """`"16:5,32:3"` -> two stages; `""` or `"none"` -> no feature extraction."""
    if text.strip().lower() in ("", "none"):
        return ()
    stages = []
    for item in text.split(","):
        filters, sep, kernel = item.strip().partition(":")
        try:
            f, k = int(filters), int(kernel)
        except ValueError:
            f = k = 0
        if not sep or f <= 0 or k <= 0:
            raise MobilepreError(
                f"{param('features')} {text!r}: {item.strip()!r} is not FILTERS:KERNEL with two positive integers, e.g. 16:5"
            )
        stages.append(FeatureStage(f, k))
    return tuple(stages)


def gaussian_kernel(sigma: float, size: int = 3):
    """A normalised 2-D Gaussian of the given sigma, `size` x `size`, as float32 (sums to 1)."""

    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2.0 * sigma**2))
    return (g / g.sum()).astype(np.float32)


DENOISE_KERNEL_SIZE = 3
# ITU-R BT.601 luma: Y = 0.299 R + 0.587 G + 0.114 B. The weights sum to 1, so the stage commutes with
# the rescaling before it and a grey pixel (R = G = B) keeps its value exactly.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def luma_layer(k, name: str = "luma"):
    """The fixed RGB -> luma stage: a 1x1 convolution, 3 channels in, 1 out, no bias, not trainable (so
    pruning, clustering and fine-tuning leave it alone). Call `set_luma_weights` once it is built."""
    return k.layers.Conv2D(1, 1, use_bias=False, trainable=False, name=name,
                           kernel_initializer=k.initializers.Constant(1.0 / 3.0))


def set_luma_weights(layer) -> None:
    layer.set_weights([np.array(LUMA_WEIGHTS, dtype=np.float32).reshape(1, 1, 3, 1)])


def build_frontend(spec: FrontendSpec | None = None, name: str = "frontend"):
    """Build the front-end described by `spec` as a functional `keras.Model`.

    The denoise kernel starts as `gaussian_kernel(spec.sigma)` for every channel, but the layer's
    config names only stock Keras objects, so a saved front-end is a plain Keras file.
    """

    from mobilepre._tf import keras

    spec = spec or FrontendSpec()
    k = keras()
    inputs = k.Input(shape=spec.pixel_shape, dtype="uint8" if spec.uint8_input else "float32", name="pixels")
    x = inputs
    if spec.uint8_input:
        low, high = spec.rescale_range
        x = k.layers.Rescaling((high - low) / 255.0, offset=low, name="rescale")(x)
    if spec.luma:
        luma = luma_layer(k)
        x = luma(x)
        set_luma_weights(luma)
    if spec.denoise:
        size = DENOISE_KERNEL_SIZE
        denoise = k.layers.DepthwiseConv2D(
            kernel_size=size,
            strides=1,
            padding="same",
            depth_multiplier=1,
            activation="linear",
            use_bias=False,
            # Only what the saved config says: the Gaussian itself is set just below and travels as
            # the kernel's weights. A stock initialiser keeps the file loadable by any Keras 3, the
            # stock TFLite/TF.js converters and a user's training script without mobilepre; if the
            # layer is ever re-initialised from its config, a 1/k^2 box (mean) filter is still a
            # sensible low-pass that sums to 1.
            depthwise_initializer=k.initializers.Constant(1.0 / size**2),
            depthwise_regularizer=k.regularizers.L2(spec.l2) if spec.l2 > 0 else None,
            name="denoise",
        )
        x = denoise(x)
        shape = tuple(int(d) for d in denoise.kernel.shape)  # (k, k, channels, 1): one filter per channel
        denoise.set_weights([np.broadcast_to(gaussian_kernel(spec.sigma, size)[:, :, None, None], shape).copy()])
    for i, stage in enumerate(spec.features, start=1):
        x = k.layers.Conv2D(
            stage.filters, stage.kernel_size, strides=1, padding="same", activation="relu", name=f"features_{i}"
        )(x)
    if spec.normalize is Normalization.BATCHNORM:
        x = k.layers.BatchNormalization(name="normalize")(x)
    elif spec.normalize is Normalization.SIGMOID:
        channels = spec.output_channels
        x = k.layers.Conv2D(channels, 1, activation="sigmoid", name="normalize")(x)
    return k.Model(inputs, x, name=name)


def _static_shape(shape) -> tuple:
    return tuple(None if d is None else int(d) for d in shape)


def attach(frontend, model, name: str | None = None):
    """Fuse `frontend` in front of `model`: one Keras model from raw pixels to the model's outputs.

    The front-end's output shape must fit the model's input shape (a `None` in the model accepts any
    size); otherwise a MobilepreError says both shapes.
    """
    from mobilepre._tf import keras

    k = keras()
    if len(model.inputs) != 1:
        raise MobilepreError(
            f"model {model.name!r} has {len(model.inputs)} inputs; a front-end attaches to a model with exactly one image input"
        )
    produced = _static_shape(frontend.outputs[0].shape[1:])
    expected = _static_shape(model.inputs[0].shape[1:])
    fits = len(produced) == len(expected) and all(e is None or e == p for p, e in zip(produced, expected))
    if not fits:
        raise MobilepreError(
            f"front-end outputs {produced} per image but model {model.name!r} expects {expected}: "
            f"change the front-end's {param('features')} (last FILTERS sets the channels) or {param('input_shape')}"
        )
    source = frontend.inputs[0]
    inputs = k.Input(shape=tuple(source.shape[1:]), dtype=source.dtype, name="pixels")
    outputs = model(frontend(inputs))
    return k.Model(inputs, _named_as(k, model, outputs, {"pixels", frontend.name, model.name}), name=name or f"{model.name}_with_frontend")


def _named_as(k, model, outputs, taken: set):
    """`model`'s outputs called from outside keep the names the user knows (a profile's
    [drift.outputs.NAME], the manifest, MediaPipe's heads): each passes through an identity layer of its
    name, which no converter keeps as an op. A model that returns a dict keeps its keys as they are;
    a name the wrapper itself uses is left as Keras names it."""
    from mobilepre.quantize.export import model_output_names

    if isinstance(outputs, dict):
        return outputs
    listed = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    names = model_output_names(model)
    if len(names) != len(listed) or len(set(names)) != len(names) or taken & set(names):
        return outputs
    named = [k.layers.Identity(name=n)(t) for n, t in zip(names, listed)]
    return named if isinstance(outputs, (list, tuple)) else named[0]


@dataclass(frozen=True)
class FrontendResult:
    """What `write_frontend` made: the file, its bytes, and the layers in order."""

    path: str
    size_bytes: int
    input_shape: tuple
    input_dtype: str
    output_shape: tuple
    parameters: int
    layers: tuple[tuple[str, str, int], ...]  # (name, class, parameters)

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "size_bytes": self.size_bytes,
            "input_shape": list(self.input_shape),
            "input_dtype": self.input_dtype,
            "output_shape": list(self.output_shape),
            "parameters": self.parameters,
            "layers": [{"name": n, "class": c, "parameters": p} for n, c, p in self.layers],
        }

    def to_text(self) -> str:
        lines = [f"wrote {self.path} ({self.size_bytes} bytes)"]
        lines.append(f"input  {self.input_dtype} {self.input_shape}  ->  output float32 {self.output_shape}")
        for name, cls, params in self.layers:
            lines.append(f"  {name:<12} {cls:<20} {params:>8} params")
        lines.append(f"  {'total':<12} {'':<20} {self.parameters:>8} params")
        return "\n".join(lines)


def write_frontend(spec: FrontendSpec, out, force: bool = False) -> FrontendResult:
    """Build the front-end for `spec` and save it atomically as a `.keras` file at `out`; an existing
    file is replaced only with `force`, and only when it is a Keras archive."""
    out = Path(out)
    if out.suffix != ".keras":
        raise MobilepreError(f"{param('out')} {str(out)!r}: the front-end is saved as a Keras 3 model, name it *.keras")
    if out.is_dir():
        raise MobilepreError(f"{param('out')} {str(out)!r} is a folder: give a file name ending in .keras")
    check_output(out, force, param('out'), (), keras_file_problem)
    model = build_frontend(spec)
    with atomic_file(out) as tmp:
        model.save(tmp)
    layers = tuple(
        (layer.name, type(layer).__name__, int(layer.count_params())) for layer in model.layers[1:]
    )
    return FrontendResult(
        path=str(out),
        size_bytes=out.stat().st_size,
        input_shape=spec.pixel_shape,
        input_dtype="uint8" if spec.uint8_input else "float32",
        output_shape=tuple(int(d) for d in model.outputs[0].shape[1:]),
        parameters=int(model.count_params()),
        layers=layers,
    )
