"""Conformance: one small instance of each architecture family mobile teams ship converts to every TFLite
and TF.js mode and runs in LiteRT and TF.js (Node, wasm); float32 matches Keras within 1e-4."""

import numpy as np
import pytest

from mobilepre import quantize
from mobilepre.quantize.export import export_saved_model, model_output_names, signature_output_keys
from mobilepre.quantize.mixed import MixedPrecision, graph_ops, rank_tfjs_weights
from mobilepre.runtimes import run_tflite, run_tfjs

pytestmark = pytest.mark.slow
SIZE = 32


def _families(keras):
    L = keras.layers
    apps = keras.applications
    from keras.src.applications import efficientnet  # the family's constructor, scaled (B0 is 1.0, 1.0)
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
        "mobilenetv2": lambda: apps.MobileNetV2(input_shape=(SIZE, SIZE, 3), alpha=0.35, weights=None, classes=4),
        "mobilenetv3small": lambda: apps.MobileNetV3Small(input_shape=(SIZE, SIZE, 3), alpha=0.75, weights=None, classes=4, include_preprocessing=True),
        # EfficientNet's every op (squeeze-and-excitation, swish, its in-model normalisation) at half B0's width
        # and depth: a quarter of B0's conversion and run time (B0 was this file's longest test, 115 s)
        "efficientnet": lambda: efficientnet.EfficientNet(0.5, 0.5, SIZE, input_shape=(SIZE, SIZE, 3), weights=None, classes=4,
                                                            name="efficientnet_half"),
        "resnet_style": residual,
        "densenet_style": dense,
        "unet": unet,
        "preprocessing": preprocessing_inside,
        "two_outputs": two_outputs,
    }


# LiteRT's int16x8 kernels refuse some layers at prepare time (a depthwise convolution whose rescale
# would overflow; an ADD whose inputs' scales differ too much), in both engines' files (the converter
# also refuses HARD_SWISH at 16x8): the conversion fails saying both, and a build reports that candidate
# as failed and goes on. The families where it happens here, with untrained weights:
INT16X8_REFUSED = {"mobilenetv2": "DEPTHWISE_CONV_2D", "mobilenetv3small": "ADD"}
FAMILIES = ["mobilenetv2", "mobilenetv3small", "efficientnet", "resnet_style", "densenet_style", "unet", "preprocessing", "two_outputs"]


def _one_layer_raised(model, fmt, exported):
    """A mixed plan: the lowest precision, and the first weighted layer one level up the ladder."""
    if fmt is quantize.Format.TFLITE:
        named = quantize.convert(model, quantize.QuantizationSettings(fmt, "float32", strip_metadata=False), saved_model_dir=exported)
        first = next(op["output"] for op in graph_ops(named.files["model.tflite"]) if op["weights"])
        return MixedPrecision(quantize.Mode.INT4, ((first, quantize.Mode.DYNAMIC),))
    float_files = quantize.convert(model, quantize.QuantizationSettings(fmt, "float32"), saved_model_dir=exported).files
    return MixedPrecision(quantize.Mode.UINT8, ((rank_tfjs_weights(float_files)[0].name, quantize.Mode.FLOAT16),))


@pytest.mark.parametrize("family", FAMILIES)
def test_every_mode_converts_and_runs_and_float32_matches_keras(keras, tmp_path, family):
    model = _families(keras)[family]()
    shape = tuple(model.inputs[0].shape[1:])
    rng = np.random.default_rng(0)
    scale = 255.0 if family == "mobilenetv3small" else 1.0  # its built-in preprocessing takes 0..255
    images = (rng.uniform(0, 1, (6, *shape)) * scale).astype(np.float32)
    want = model.predict(images, verbose=0)
    want = want if isinstance(want, list) else [want]
    exported = export_saved_model(model, tmp_path / "saved_model")
    keys = list(signature_output_keys(model_output_names(model)))
    for fmt, modes in quantize.MODES_BY_FORMAT.items():
        for mode in modes:
            settings = quantize.QuantizationSettings(fmt, mode, mixed=_one_layer_raised(model, fmt, exported) if mode is quantize.Mode.MIXED else None)
            if mode is quantize.Mode.INT16X8 and family in INT16X8_REFUSED:  # both engines' files measured, both refused
                with pytest.raises(quantize.QuantizeError, match=f"no engine could make a int16x8 model that LiteRT runs: .*{INT16X8_REFUSED[family]}.* failed to prepare"):
                    quantize.convert(model, settings, images, saved_model_dir=exported)
                continue
            artifact = quantize.convert(model, settings, images, saved_model_dir=exported)
            if fmt is quantize.Format.TFLITE:
                run = run_tflite(artifact.files["model.tflite"], images, where=f"{family} {settings.key}", output_keys=keys)
            else:
                folder = tmp_path / settings.key
                folder.mkdir()
                for name, data in artifact.files.items():
                    (folder / name).write_bytes(data)
                run = run_tfjs(folder, images, where=f"{family} {settings.key}", output_keys=keys)
            assert len(run.outputs) == len(want), settings.key
            for got, expected in zip(run.outputs, want):
                assert got.shape == expected.shape and np.isfinite(got).all(), settings.key
                if mode is quantize.Mode.FLOAT32:
                    assert np.abs(got - expected).max() < 1e-4, (settings.key, float(np.abs(got - expected).max()))
