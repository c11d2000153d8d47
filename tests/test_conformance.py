"""Conformance: one small instance of each architecture family mobile teams ship converts to every TFLite
and TF.js mode and runs in LiteRT and TF.js (Node, wasm); float32 matches Keras within 1e-4.

Two sweeps: models written here, one per pattern (residual, dense, U-Net, preprocessing layers inside,
two heads), untrained; and Keras's own application families (Xception, ResNet50V2, InceptionV3,
MobileNetV3Large, EfficientNetV2B0, DenseNet121, ConvNeXtTiny), each built by Keras's own
constructor at a fraction of its width or depth and trained a few steps on a real task (scikit-learn's
handwritten digits), so its reference is not one class for every image."""

import numpy as np
import pytest

from mobilepre import quantize
from mobilepre.quantize.export import export_for, model_output_names, signature_output_keys
from mobilepre.quantize.mixed import MixedPrecision, graph_ops, rank_tfjs_weights
from mobilepre.runtimes import run_tflite, run_tfjs

pytestmark = pytest.mark.slow
SIZE = 32


def _families(keras):
    L = keras.layers
    keras.utils.set_random_seed(0)

    def residual():
        i = keras.Input((SIZE, SIZE, 3))
        x = L.Conv2D(8, 3, padding="same", activation="relu")(i)
        for _ in range(2):
            y = L.BatchNormalization()(L.Conv2D(8, 3, padding="same", use_bias=False)(x))
            x = L.ReLU()(L.Add()([x, y]))
        return keras.Model(i, L.Dense(4, activation="softmax")(L.GlobalAveragePooling2D()(x)), name="resnet_style")

    def dense():
        i = keras.Input((SIZE, SIZE, 3))
        x = L.Conv2D(8, 3, padding="same")(i)
        for _ in range(3):
            y = L.Conv2D(4, 3, padding="same", activation="relu")(L.ReLU()(L.BatchNormalization()(x)))
            x = L.Concatenate()([x, y])
        x = L.AveragePooling2D(2)(L.Conv2D(8, 1)(x))
        return keras.Model(i, L.Dense(4, activation="softmax")(L.GlobalAveragePooling2D()(x)), name="densenet_style")

    def unet():
        i = keras.Input((SIZE, SIZE, 3))
        d1 = L.Conv2D(8, 3, padding="same", activation="relu")(i)
        d2 = L.Conv2D(16, 3, padding="same", activation="relu")(L.MaxPooling2D()(d1))
        u1 = L.Conv2DTranspose(8, 2, strides=2)(d2)
        u2 = L.Conv2D(8, 1)(L.UpSampling2D()(d2))
        x = L.Concatenate()([d1, u1, u2])
        return keras.Model(i, L.Conv2D(3, 1, activation="softmax")(x), name="unet")

    def preprocessing_inside():
        i = keras.Input((SIZE + 8, SIZE + 8, 3))
        x = L.Resizing(SIZE, SIZE)(i)
        x = L.Normalization(mean=[0.5, 0.4, 0.3], variance=[0.04, 0.05, 0.06])(x)
        x = L.Conv2D(8, 3, activation="relu")(x)
        return keras.Model(i, L.Dense(4, activation="softmax")(L.GlobalAveragePooling2D()(x)), name="preprocessing")

    def two_outputs():
        i = keras.Input((SIZE, SIZE, 3))
        x = L.GlobalAveragePooling2D()(L.Conv2D(8, 3, activation="relu")(i))
        return keras.Model(i, [L.Dense(3, activation="softmax", name="cls")(x), L.Dense(4, name="box")(x)], name="two_outputs")

    return {
        "resnet_style": residual,
        "densenet_style": dense,
        "unet": unet,
        "preprocessing": preprocessing_inside,
        "two_outputs": two_outputs,
    }


FAMILIES = ["resnet_style", "densenet_style", "unet", "preprocessing", "two_outputs"]


def _one_layer_raised(model, fmt, exported):
    """A mixed plan: the lowest precision, and the first weighted layer one level up the ladder."""
    if fmt is quantize.Format.TFLITE:
        first = next(op["output"] for op in graph_ops(quantize.float_tflite(exported)) if op["weights"])
        return MixedPrecision(quantize.Mode.INT4, ((first, quantize.Mode.DYNAMIC),))
    float_files = quantize.convert(model, quantize.QuantizationSettings(fmt, "float32"), saved_model_dir=exported).files
    return MixedPrecision(quantize.Mode.UINT8, ((rank_tfjs_weights(float_files)[0].name, quantize.Mode.FLOAT16),))


def _every_mode(model, calibration, images, tmp_path, family) -> dict:
    """{settings: outputs} of `images` through `model` converted to every TFLite and TF.js mode (from each
    format's own export, as a build converts), run in LiteRT and TF.js (Node, wasm); each output checked
    to have the reference's shape and finite values."""
    # a LiteRT.js model is the .tflite itself (run in Chromium by tests/test_clients.py): converted as tflite
    converted = {fmt: modes for fmt, modes in quantize.MODES_BY_FORMAT.items() if fmt is not quantize.Format.LITERTJS}
    exports = {fmt: export_for(fmt, model, tmp_path / f"saved_model_{fmt}") for fmt in converted}
    keys = list(signature_output_keys(model_output_names(model)))
    found = {}
    for fmt, modes in converted.items():
        for mode in modes:
            settings = quantize.QuantizationSettings(fmt, mode, mixed=_one_layer_raised(model, fmt, exports[fmt]) if mode is quantize.Mode.MIXED else None)
            artifact = quantize.convert(model, settings, calibration, saved_model_dir=exports[fmt])
            if fmt is quantize.Format.TFLITE:
                run = run_tflite(artifact.files["model.tflite"], images, where=f"{family} {settings.key}", output_keys=keys)
            else:
                folder = tmp_path / settings.key
                folder.mkdir()
                for name, data in artifact.files.items():
                    (folder / name).write_bytes(data)
                run = run_tfjs(folder, images, where=f"{family} {settings.key}", output_keys=keys)
            assert len(run.outputs) == len(model.outputs) and all(np.isfinite(o).all() for o in run.outputs), settings.key
            found[settings] = run.outputs
    return found


@pytest.mark.parametrize("family", FAMILIES)
def test_every_mode_converts_and_runs_and_float32_matches_keras(keras, tmp_path, family):
    model = _families(keras)[family]()
    shape = tuple(model.inputs[0].shape[1:])
    images = np.random.default_rng(0).uniform(0, 1, (6, *shape)).astype(np.float32)
    want = model.predict(images, verbose=0)
    want = want if isinstance(want, list) else [want]
    for settings, outputs in _every_mode(model, images, images, tmp_path, family).items():
        assert [o.shape for o in outputs] == [w.shape for w in want], settings.key
        if settings.mode is quantize.Mode.FLOAT32:
            assert max(np.abs(o - w).max() for o, w in zip(outputs, want)) < 1e-4, settings.key

class _Edited:
    """Keras's `layers` module as one application module sees it, with every convolution's filters divided
    by `narrow` (Xception, InceptionV3 and ResNet have no width knob, and at full width each mode's
    conversion takes most of a minute) and, with `approximate_gelu`, GELU in its tanh form (TF.js has no
    Erf: ConvNeXt's exact GELU is refused for TF.js, as tested below). Every other layer, connection and
    shape rule is Keras's own."""

    def __init__(self, layers, narrow: int = 1, approximate_gelu: bool = False):
        self._layers, self._narrow, self._approximate_gelu = layers, narrow, approximate_gelu

    def __getattr__(self, name):
        real = getattr(self._layers, name)
        if name in ("Conv2D", "SeparableConv2D") and self._narrow > 1:
            return lambda filters, *args, **kwargs: real(max(4, filters // self._narrow), *args, **kwargs)
        if name == "Activation" and self._approximate_gelu:
            from keras import activations

            return lambda fn, **kwargs: real((lambda x: activations.gelu(x, approximate=True)) if fn == "gelu" else fn, **kwargs)
        return real


def _keras_family(keras, monkeypatch, name):
    """(model, input side, pixel scale) of one Keras application family, small: its own constructor,
    narrowed or with fewer blocks per stage."""
    from keras.src.applications import convnext, densenet, efficientnet_v2, inception_v3, mobilenet_v3, resnet, xception

    keras.utils.set_random_seed(0)
    top = dict(weights=None, classes=10)
    if name == "xception":  # its smallest input, every convolution at an eighth of its filters
        monkeypatch.setattr(xception, "layers", _Edited(xception.layers, narrow=8))
        return xception.Xception(input_shape=(71, 71, 3), **top), 71, 1.0
    if name == "inceptionv3":
        monkeypatch.setattr(inception_v3, "layers", _Edited(inception_v3.layers, narrow=8))
        return inception_v3.InceptionV3(input_shape=(75, 75, 3), **top), 75, 1.0
    if name == "resnet50v2":  # ResNet50V2's pre-activation blocks, two per stage, an eighth of the width
        monkeypatch.setattr(resnet, "layers", _Edited(resnet.layers, narrow=8))

        def stages(x):
            for i, filters in enumerate((64, 128, 256)):
                x = resnet.stack_residual_blocks_v2(x, filters, 2, name=f"conv{i + 2}")
            return resnet.stack_residual_blocks_v2(x, 512, 2, stride1=1, name="conv5")

        return resnet.ResNet(stages, True, True, name="resnet50v2", input_shape=(32, 32, 3), **top), 32, 1.0
    if name == "mobilenetv3large":  # hard-swish, squeeze-and-excitation, its in-model rescaling (pixels 0..255)
        return mobilenet_v3.MobileNetV3Large(input_shape=(32, 32, 3), alpha=0.35, include_preprocessing=True, **top), 32, 255.0
    if name == "efficientnetv2b0":  # B0's fused and squeeze-and-excitation blocks at a quarter of its width and depth
        return efficientnet_v2.EfficientNetV2(0.25, 0.25, 32, input_shape=(32, 32, 3), name="efficientnetv2-b0",
                                              include_preprocessing=True, **top), 32, 255.0
    if name == "densenet121":  # DenseNet121's dense blocks and transitions, two layers per block
        return densenet.DenseNet([2, 2, 2, 2], input_shape=(32, 32, 3), name="densenet121", **top), 32, 1.0
    if name == "convnexttiny":  # ConvNeXtTiny's blocks (LayerNormalization, layer scale, GELU), one per stage
        monkeypatch.setattr(convnext, "layers", _Edited(convnext.layers, approximate_gelu=True))
        return convnext.ConvNeXt([1, 1, 1, 1], [16, 32, 64, 128], default_size=32, name="convnext_tiny",
                                 input_shape=(32, 32, 3), **top), 32, 255.0
    raise KeyError(name)


# MobileNetV2 is not swept here: its ops (depthwise, ReLU6, the inverted residual's add) are all in
# MobileNetV3Large, and `python -m benchmarks` converts it at 224x224.
KERAS_FAMILIES = ["xception", "resnet50v2", "inceptionv3", "mobilenetv3large", "efficientnetv2b0", "densenet121", "convnexttiny"]


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images / 16.0).astype(np.float32), data.target.astype(np.int64)


@pytest.mark.parametrize("family", KERAS_FAMILIES)
def test_keras_families_trained_convert_to_every_mode_and_run(keras, tf, tmp_path, monkeypatch, digits, family):
    model, side, scale = _keras_family(keras, monkeypatch, family)
    images = np.repeat(tf.image.resize(digits[0][..., None], (side, side)).numpy(), 3, axis=-1) * scale
    for layer in model._flatten_layers():  # moving statistics that settle within a few steps (MobileNets' is 0.999)
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.5
    # 12 steps, eagerly (tracing a 150-layer training step costs more than the steps): 10-90% on held-out digits
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", run_eagerly=True)
    model.fit(images[:768], digits[1][:768], epochs=1, batch_size=64, verbose=0)
    held = images[1536:1560]
    want = model.predict(held, verbose=0)
    assert len(set(want.argmax(1))) >= 3, f"{family}: the trained reference gives one class to nearly every image"
    # 8 calibration images: int8's ranges and int16x8's engine choice (each engine's file run on them, in
    # LiteRT's int16 reference kernels) on what a conformance check needs, not what a build would use
    for settings, (got,) in _every_mode(model, images[:8], held, tmp_path, family).items():
        assert got.shape == want.shape, settings.key
        if settings.mode is quantize.Mode.FLOAT32:
            # trained, 100-300 ops deep: TF.js's XNNPACK sums in another order than TensorFlow (InceptionV3 1.02e-4)
            assert np.abs(got - want).max() < 5e-4, (settings.key, float(np.abs(got - want).max()))

