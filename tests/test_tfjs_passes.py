"""`mobilepre.quantize.tfjs_passes`: the pinned tensorflowjs turns any add after a convolution or matmul into
a fused bias; the corrected pass fuses only a real bias. Each pattern runs in TF.js (Node, wasm) and must
match Keras."""

import base64
import json

import numpy as np
import pytest

from mobilepre import quantize
from mobilepre.runtimes import run_tfjs


def _tfjs_matches_keras(model, tmp_path, images):
    artifact = quantize.convert(model, quantize.QuantizationSettings("tfjs", "float32"))
    folder = tmp_path / "tfjs"
    folder.mkdir()
    for name, data in artifact.files.items():
        (folder / name).write_bytes(data)
    run = run_tfjs(folder, images)
    want = model.predict(images, verbose=0)
    want = want if isinstance(want, list) else [want]
    for got, expected in zip(run.outputs, want):
        assert np.abs(got - expected).max() < 1e-4
    return json.loads(artifact.files["model.json"])


def _ops(model_json) -> list:
    """(op, fused ops) per node; model.json keeps string attributes base64-encoded."""
    return [(n["op"], [base64.b64decode(a).decode() for a in n.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])])
            for n in model_json["modelTopology"]["node"]]


@pytest.fixture
def images():
    return np.random.default_rng(0).uniform(0, 1, (4, 16, 16, 3)).astype(np.float32)


def test_scalar_add_after_a_convolution_hard_swish_style(keras, tmp_path, images):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.ReLU(6.0)(keras.layers.Conv2D(8, 3)(inputs) + 3.0)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    _tfjs_matches_keras(keras.Model(inputs, outputs), tmp_path, images)


def test_residual_add_after_convolution_and_batch_norm(keras, tmp_path, images):
    inputs = keras.Input((16, 16, 3))
    branch = keras.layers.Conv2D(8, 1, padding="same")(inputs)
    main = keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs))
    x = keras.layers.Add()([main, branch])
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    _tfjs_matches_keras(keras.Model(inputs, outputs), tmp_path, images)


def test_add_after_a_matmul(keras, tmp_path, images):
    inputs = keras.Input((16, 16, 3))
    flat = keras.layers.Flatten()(keras.layers.AveragePooling2D(4)(inputs))
    x = keras.layers.Add()([keras.layers.Dense(5, use_bias=False)(flat), keras.layers.Dense(5)(flat)])
    _tfjs_matches_keras(keras.Model(inputs, keras.layers.Dense(2)(x)), tmp_path, images)


def test_a_real_bias_is_still_fused(keras, tmp_path, images):
    inputs = keras.Input((16, 16, 3))
    conv = keras.layers.Conv2D(8, 3, activation="relu")
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(conv(inputs)))
    conv.bias.assign(np.linspace(-0.5, 0.5, 8).astype(np.float32))  # a zero bias is folded away before fusion
    model_json = _tfjs_matches_keras(keras.Model(inputs, outputs), tmp_path, images)
    fused = [ops for op, ops in _ops(model_json) if op == "_FusedConv2D"]
    assert fused and "BiasAdd" in fused[0]


def test_exact_gelu_is_named_with_its_fix_and_no_call_ops(keras):
    from mobilepre.quantize.tfjs import _unsupported_message

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="gelu")(keras.layers.Flatten()(inputs)))
    with pytest.raises(quantize.QuantizeError, match=r"cannot run these ops: Erfc; exact GELU: use .*approximate=True"):
        quantize.convert(model, quantize.QuantizationSettings("tfjs", "float32"))
    message = _unsupported_message("Unsupported Ops in the model before optimization\nStatefulPartitionedCall, Erfc")
    assert "StatefulPartitionedCall" not in message and "Erfc" in message


def test_an_unsupported_op_ends_the_format_after_one_conversion(keras, tmp_path):
    from mobilepre.candidates import Candidate
    from mobilepre.evaluate import make_evaluator
    from mobilepre.models import from_keras

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="gelu")(keras.layers.Flatten()(inputs)))
    images = np.zeros((2, 8, 8, 3), np.float32)
    said = []
    evaluator = make_evaluator(from_keras(model), images, images, None, tmp_path, said.append)
    candidates = [Candidate("tfjs", mode) for mode in ("float32", "float16", "uint16", "uint8")]
    measured = evaluator.measure_many(candidates)
    assert {m.error for m in measured.values()} == {measured[candidates[0]].error} and "Erfc" in measured[candidates[0]].error
    assert sum("no tfjs mode can be built" in line for line in said) == 1 and evaluator.conversions == 0


def test_grouped_convolutions_run_in_tfjs(keras, tmp_path):
    """Keras's TensorFlow backend runs `Conv2D(groups=...)` as an XLA function call, which TF.js cannot run
    (ConvNeXt's depthwise 7x7 failed as "StatefulPartitionedCall"); exported as a depthwise convolution
    (one channel per group, depth multiplier 1 or 2, strided) or per-group convolutions, it matches Keras."""
    L = keras.layers
    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 16, 8))
    x = L.Conv2D(8, 3, padding="same", groups=8)(inputs)
    x = L.Conv2D(16, 3, strides=2, padding="same", groups=8)(x)
    x = L.Conv2D(16, 3, groups=4)(x)
    model = keras.Model(inputs, L.GlobalAveragePooling2D()(x))
    images = np.random.default_rng(3).uniform(-1, 1, (4, 16, 16, 8)).astype(np.float32)
    ops = [op for op, _ in _ops(_tfjs_matches_keras(model, tmp_path, images))]
    assert ops.count("DepthwiseConv2dNative") == 2 and "StatefulPartitionedCall" not in ops
