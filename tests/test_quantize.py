"""The quantize package: every mode converts and runs in its real runtime; unsafe inputs stop early."""

import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from mobilepre import quantize
from mobilepre.quantize import QuantizationSettings as QS
from mobilepre.quantize import QuantizeError
from mobilepre.quantize.runtime import tflite_interpreter
from tests.conftest import litert_run, write_artifact

TFLITE_MODES = ["float32", "float16", "dynamic", "int16x8", "int8", "int4"]
TFJS_MODES = ["float32", "float16", "uint16", "uint8"]


@pytest.fixture(scope="session")
def tiny_artifacts(tiny_model, tiny_images):
    artifacts = {}
    for mode in TFLITE_MODES:
        artifacts[("tflite", mode)] = quantize.convert(tiny_model, QS("tflite", mode), calibration=tiny_images)
    for mode in TFJS_MODES:
        artifacts[("tfjs", mode)] = quantize.convert(tiny_model, QS("tfjs", mode))
    return artifacts


@pytest.mark.parametrize("mode", TFLITE_MODES)
def test_every_tflite_mode_runs_in_litert_close_to_keras(tiny_model, tiny_images, tiny_artifacts, mode):
    got = litert_run(tiny_artifacts[("tflite", mode)].files["model.tflite"], tiny_images[:16])
    want = np.asarray(tiny_model.predict(tiny_images[:16], verbose=0))
    tolerance = {"float32": 1e-5, "float16": 5e-3, "dynamic": 5e-2, "int16x8": 5e-2, "int8": 5e-2, "int4": 0.2}[mode]
    assert np.abs(got - want).max() < tolerance


def test_each_mode_is_made_by_its_engine_and_int4_halves_the_weights(tiny_model, tiny_artifacts):
    engines = {mode: str(tiny_artifacts[("tflite", mode)].engine) for mode in TFLITE_MODES}
    assert engines == {"float32": "tflite-converter", "float16": "tflite-converter", "dynamic": "litert-quantizer",
                       "int16x8": "litert-quantizer", "int8": "tflite-converter", "int4": "litert-quantizer"}
    # int16x8 is made by both and measured; on this uint8-input model only the quantizer can make it
    choice = tiny_artifacts[("tflite", "int16x8")].engine_choice
    assert choice["kept"] == "litert-quantizer" and "error" in choice["engines"]["tflite-converter"]
    assert "tflite-converter could not make it" in choice["why"]
    size = {mode: tiny_artifacts[("tflite", mode)].size_bytes for mode in TFLITE_MODES}
    weights = tiny_model.count_params()
    # each weight's bytes: 4, 2, 1, then half a byte, over the same graph
    assert size["float32"] > size["float16"] > size["dynamic"] > size["int4"]
    assert (size["dynamic"] - size["int4"]) > 0.4 * weights
    assert conv_weight_types(tflite_interpreter(tiny_artifacts[("tflite", "int16x8")].files["model.tflite"])) == {"int8"}


def test_stripping_drops_tensor_names_and_keeps_the_signature(tiny_model, tiny_images):
    from ai_edge_litert.interpreter import Interpreter

    kept = quantize.convert(tiny_model, QS("tflite", "dynamic", strip_metadata=False)).files["model.tflite"]
    stripped = quantize.convert(tiny_model, QS("tflite", "dynamic")).files["model.tflite"]
    assert len(stripped) < len(kept)
    interpreter = Interpreter(model_content=stripped)
    io = {d["index"] for d in interpreter.get_input_details() + interpreter.get_output_details()}
    assert all(not d["name"] for d in interpreter.get_tensor_details() if d["index"] not in io)
    assert interpreter.get_signature_list() == Interpreter(model_content=kept).get_signature_list()
    (name,) = interpreter.get_signature_list()["serving_default"]["outputs"]
    runner = interpreter.get_signature_runner()
    np.testing.assert_array_equal(runner(pixels=tiny_images[:1])[name], litert_run(kept, tiny_images[:1]))


@pytest.mark.parametrize("mode", TFJS_MODES)
def test_every_tfjs_mode_runs_in_node_close_to_keras(tiny_model, tiny_images, tiny_artifacts, tmp_path, mode):
    from mobilepre.runtimes import run_tfjs

    folder = write_artifact(tiny_artifacts[("tfjs", mode)], tmp_path / mode)
    got = run_tfjs(folder, tiny_images[:16]).outputs[0]
    want = np.asarray(tiny_model.predict(tiny_images[:16], verbose=0))
    tolerance = {"float32": 1e-5, "float16": 5e-3, "uint16": 5e-3, "uint8": 5e-2}[mode]
    assert np.abs(got - want).max() < tolerance


def test_sizes_shrink_with_the_mode(tiny_artifacts):
    tflite = [tiny_artifacts[("tflite", m)].size_bytes for m in TFLITE_MODES]
    assert tflite[0] > tflite[1] > tflite[2]  # float32 > float16 > int8 weights
    tfjs = {m: sum(len(b) for n, b in tiny_artifacts[("tfjs", m)].files.items() if n.endswith(".bin")) for m in TFJS_MODES}
    assert tfjs["float32"] > tfjs["float16"] == tfjs["uint16"] > tfjs["uint8"]


def test_tfjs_weights_carry_their_quantization(tiny_artifacts):
    for mode, dtype in (("float16", "float16"), ("uint16", "uint16"), ("uint8", "uint8")):
        manifest = json.loads(tiny_artifacts[("tfjs", mode)].files["model.json"])["weightsManifest"]
        quantized = {w["quantization"]["dtype"] for group in manifest for w in group["weights"] if "quantization" in w}
        assert quantized == {dtype}


@pytest.mark.parametrize("io_type, dtype", [("float32", "float32"), ("int8", "int8"), ("uint8", "uint8")])
def test_int8_has_int8_weights_and_the_io_type_asked(keras, tiny_images, io_type, dtype):
    from mobilepre.artifacts import tflite_io
    from mobilepre.quantize.runtime import tflite_interpreter
    from tests.conftest import tiny_classifier

    model = tiny_classifier(keras, input_shape=(8, 8, 3))  # float input, so the I/O type applies
    images = np.random.default_rng(0).random((32, 8, 8, 3)).astype(np.float32)
    content = quantize.convert(model, QS("tflite", "int8", io_type=io_type), calibration=images).files["model.tflite"]
    io = tflite_io(content)
    assert io["inputs"][0]["dtype"] == dtype and io["outputs"][0]["dtype"] == dtype
    interpreter = tflite_interpreter(content)
    weight_types = conv_weight_types(interpreter)
    assert "int8" in weight_types and "float32" not in weight_types
    got = litert_run(content, images[:8])
    assert np.abs(got - np.asarray(model.predict(images[:8], verbose=0))).max() < 0.05


def test_uint8_frontend_keeps_raw_pixel_input_in_int8(tiny_artifacts):
    from mobilepre.artifacts import tflite_io

    io = tflite_io(tiny_artifacts[("tflite", "int8")].files["model.tflite"])
    assert io["inputs"][0]["dtype"] == "uint8" and io["inputs"][0]["quantization"] == (0.0, 0)


def test_selective_quantization_keeps_a_layer_in_float(tiny_model, tiny_images):
    from mobilepre.quantize.runtime import tflite_interpreter

    # tensor names kept (strip_metadata=False), to find the head's tensors by name
    plain = quantize.convert(tiny_model, QS("tflite", "int8", strip_metadata=False), calibration=tiny_images).files["model.tflite"]
    keep = quantize.convert(tiny_model, QS("tflite", "int8", float_layers=("head",), strip_metadata=False), calibration=tiny_images)
    content = keep.files["model.tflite"]

    def head_types(model):
        return {d["dtype"].__name__ for d in tflite_interpreter(model).get_tensor_details() if "head" in d["name"]}

    assert head_types(plain) == {"int8"} and head_types(content) == {"float32"}
    assert litert_run(content, tiny_images[:4]).shape == (4, 4)
    with pytest.raises(QuantizeError, match="no_such_layer"):
        quantize.convert(tiny_model, QS("tflite", "int8", float_layers=("no_such_layer",)), calibration=tiny_images)


def test_stripping_metadata_saves_bytes_and_still_runs(tiny_model, tiny_images, tmp_path):
    from mobilepre.runtimes import run_tfjs

    stripped = {}
    for fmt in ("tflite", "tfjs"):
        full = quantize.convert(tiny_model, QS(fmt, "float32", strip_metadata=False))
        stripped[fmt] = quantize.convert(tiny_model, QS(fmt, "float32"))
        assert stripped[fmt].size_bytes < full.size_bytes, fmt
    want = np.asarray(tiny_model.predict(tiny_images[:2], verbose=0))
    np.testing.assert_allclose(litert_run(stripped["tflite"].files["model.tflite"], tiny_images[:2]), want, atol=1e-5)
    got = run_tfjs(write_artifact(stripped["tfjs"], tmp_path / "js"), tiny_images[:2]).outputs[0]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_int8_layer_report_names_layers(tiny_model, tiny_images, tmp_path):
    from mobilepre.quantize.debug import int8_layer_errors
    from mobilepre.quantize.export import export_saved_model

    directory = export_saved_model(tiny_model, tmp_path / "sm")
    errors = int8_layer_errors(directory, QS("tflite", "int8"), tiny_images, samples=8)
    assert errors and all(e.rmse_over_scale >= 0 for e in errors if e.rmse_over_scale == e.rmse_over_scale)
    layers = {e.layer for e in errors}
    assert {"tiny/head", "tiny/conv", "frontend/features_1"} <= layers, layers


def test_nan_weights_name_the_layer(keras, tiny_images):
    from tests.conftest import tiny_classifier

    model = tiny_classifier(keras, input_shape=(8, 8, 3))
    kernel = model.get_layer("conv").kernel
    value = kernel.numpy()
    value[0, 0, 0, 0] = np.nan
    kernel.assign(value)
    with pytest.raises(QuantizeError, match="layer 'conv'.*NaN"):
        quantize.convert(model, QS("tflite", "float32"))


def test_float16_refuses_weights_beyond_its_range_naming_the_layer(keras):
    from tests.conftest import tiny_classifier

    model = tiny_classifier(keras, input_shape=(8, 8, 3))
    model.get_layer("head").bias.assign(np.full((4,), 1e6, np.float32))
    with pytest.raises(QuantizeError, match="layer 'head'.*65504"):
        quantize.convert(model, QS("tflite", "float16"))
    assert quantize.convert(model, QS("tflite", "float32")).size_bytes > 0  # float32 holds it


@pytest.mark.parametrize("calibration", [None, np.zeros((0, 16, 16, 1), np.uint8)])
def test_int8_without_calibration_stops_before_converting(tiny_model, calibration):
    with pytest.raises(QuantizeError, match="calibration"):
        quantize.convert(tiny_model, QS("tflite", "int8"), calibration=calibration)


def test_dynamic_input_needs_a_shape(keras):
    from tests.conftest import tiny_classifier

    model = tiny_classifier(keras, input_shape=(None, None, 3))
    with pytest.raises(QuantizeError, match="dynamic input dimensions.*input_shape"):
        quantize.convert(model, QS("tflite", "float32"))
    artifact = quantize.convert(model, QS("tflite", "float32"), input_shape=(8, 8, 3))
    assert litert_run(artifact.files["model.tflite"], np.zeros((1, 8, 8, 3), np.float32)).shape == (1, 4)


def test_ops_outside_tflite_builtins_are_listed_by_name(keras):
    class Determinant(keras.layers.Layer):
        def call(self, x):
            import tensorflow as tf

            return tf.reshape(tf.linalg.det(tf.reshape(x, (-1, 2, 2))), (-1, 1))

    inputs = keras.Input((2, 2, 1))
    model = keras.Model(inputs, Determinant()(inputs))
    with pytest.raises(QuantizeError, match="MatrixDeterminant"):
        quantize.convert(model, QS("tflite", "float32"))
    with pytest.raises(QuantizeError, match="MatrixDeterminant"):
        quantize.convert(model, QS("tfjs", "float32"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(format="tflite", mode="uint8"), "not a tflite mode"),
        (dict(format="tfjs", mode="int8"), "not a tfjs mode"),
        (dict(format="onnx", mode="float32"), "not one of tflite, tfjs"),
        (dict(format="tflite", mode="float16", io_type="int8"), "needs the full-integer int8"),
        (dict(format="tflite", mode="float32", float_layers=("x",)), "int8 and dynamic"),
    ],
)
def test_settings_refuse_what_cannot_be_made(kwargs, message):
    with pytest.raises(QuantizeError, match=message):
        QS(**kwargs)


_HASH_SCRIPT = """
import hashlib, json
from mobilepre import quantize
from mobilepre import demo
from mobilepre.data import ModelInput, load_dataset
from mobilepre.models import load_model
source = load_model(demo.model_path(), isolate=False)
cal = load_dataset(demo.calibration_path(), ModelInput(source.input_shape, source.input_dtype))
out = {}
for fmt, mode in [("tflite", m) for m in ("float32", "float16", "dynamic", "int8")] + [("tfjs", m) for m in ("float32", "float16", "uint16", "uint8")]:
    artifact = quantize.convert(source.model, quantize.QuantizationSettings(fmt, mode), calibration=cal.images)
    out[artifact.settings.key] = artifact.sha256()
print(json.dumps(out, sort_keys=True))
"""


@pytest.mark.slow
def test_artifacts_are_byte_identical_across_processes():
    runs = [
        subprocess.run([sys.executable, "-c", _HASH_SCRIPT], capture_output=True, text=True, timeout=600) for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    first, second = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    assert len(first) == 8 and first == second


def conv_weight_types(interpreter) -> set:
    """The dtypes of the convolution kernels (a conv op's second input): tensor names are stripped."""
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    return {details[op["inputs"][1]]["dtype"].__name__ for op in ops if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")}


def _op_names(content: bytes) -> list[str]:
    """The builtin op of every operator in subgraph 0, by name (RESHAPE, SHAPE, ...)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return [codes[max(model.operatorCodes[op.opcodeIndex].builtinCode, model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode)]
            for op in model.subgraphs[0].operators]


def test_every_tflite_is_a_static_graph_unless_a_dynamic_batch_is_asked(keras, tmp_path):
    """A batch of 1 in the file itself, so Flatten is one constant RESHAPE (a dynamic batch computes its
    shape at run time: SHAPE, STRIDED_SLICE, PACK) and static-shape accelerators take it; the contract
    says which, read from the file."""
    from tests.conftest import run_cli

    from mobilepre.tflite_reader import tflite_dynamic_tensors

    L = keras.layers
    model = keras.Sequential([keras.Input((16, 16, 3)), L.Conv2D(4, 3), L.Flatten(), L.Dense(3, activation="softmax")])
    model.save(tmp_path / "flat.keras")
    np.save(tmp_path / "cal.npy", np.random.default_rng(0).uniform(0, 1, (16, 16, 16, 3)).astype(np.float32))
    made = {}
    for mode, extra in (("float32", ()), ("int8", ()), ("float32", ("--dynamic-batch",))):
        out = tmp_path / f"{mode}{len(extra)}.tflite"
        result = run_cli("quantize", tmp_path / "flat.keras", "--to", "tflite", "--mode", mode, "--out", out,
                         "--calibration", tmp_path / "cal.npy", "--json", *extra)
        assert result.returncode == 0, result.stderr
        made[(mode, bool(extra))] = (out.read_bytes(), json.loads(result.stdout)["io"])
    for key in (("float32", False), ("int8", False)):
        content, io = made[key]
        assert tflite_dynamic_tensors(content) == [] and io["shapes"] == "static" and io["inputs"][0]["shape"] == [1, 16, 16, 3]
        ops = _op_names(content)
        assert "RESHAPE" in ops and not {"SHAPE", "STRIDED_SLICE", "PACK"} & set(ops), ops
    content, io = made[("float32", True)]
    assert io["shapes"] == "dynamic" and tflite_dynamic_tensors(content)[0][1][0] == -1
    assert {"SHAPE", "PACK"} <= set(_op_names(content))


@pytest.mark.parametrize("mode", ["float32", "float16", "dynamic", "int8", "int4", "int16x8"])
def test_every_tflite_stores_identical_vectors_once_and_runs_bit_identically(tiny_model, tiny_images, mode):
    """The per-channel zero points (int64, all 0 for symmetric weights) and repeated shapes are stored once:
    the file LiteRT reads is the same model (outputs bit-identical to the one-copy-per-table file), the
    quantized ones smaller, and the byte breakdown counts a shared vector once."""
    from tensorflow.lite.tools import flatbuffer_utils

    from mobilepre.tflite_reader import tflite_bytes

    shared = quantize.convert(tiny_model, QS("tflite", mode), tiny_images).files["model.tflite"]
    plain = bytes(flatbuffer_utils.convert_object_to_bytearray(flatbuffer_utils.read_model_from_bytearray(bytearray(shared))))
    assert np.array_equal(litert_run(shared, tiny_images[:8]), litert_run(plain, tiny_images[:8]))
    assert len(shared) <= len(plain)
    spent, unshared = tflite_bytes(shared), tflite_bytes(plain)
    assert spent["weights"] == unshared["weights"] and spent["biases"] == unshared["biases"]
    assert spent["quantization"] <= unshared["quantization"] and spent["graph"] >= 0
    if mode in ("int8", "int16x8", "dynamic"):  # zero points of kernels with as many channels, of activations
        assert spent["quantization"] < unshared["quantization"] and len(shared) < len(plain)


def test_the_metadata_populator_s_copies_are_shared_again_and_its_labels_still_read(tiny_model, tiny_images, tmp_path):
    """MediaPipe's populator writes the flatbuffer out again one vector per table; the file mobilepre ships
    is shared again, its labels zip after it, and MediaPipe Tasks classifies with its class names."""
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions
    from tensorflow.lite.tools import flatbuffer_utils

    from mobilepre.sdk_metadata import SdkContract, tflite_with_metadata

    model = quantize.convert(tiny_model, QS("tflite", "int8"), tiny_images).files["model.tflite"]
    contract = SdkContract("tiny", "uint8", (16, 16, 3), outputs=((tiny_model.output_names[0], "probabilities"),),
                           class_names=("a", "b", "c", "d"), luma=True)
    written = tflite_with_metadata(model, contract)
    assert "classification output with class names" in written.carries
    with zipfile.ZipFile(io.BytesIO(written.data)) as archive:  # the labels, after the flatbuffer
        start = min(entry.header_offset for entry in archive.infolist())
        assert archive.read("labels.txt").decode().split() == ["a", "b", "c", "d"]
    plain = bytes(flatbuffer_utils.convert_object_to_bytearray(flatbuffer_utils.read_model_from_bytearray(bytearray(written.data))))
    assert start < len(plain)  # the flatbuffer part, vectors shared, against one copy per table
    path = tmp_path / "model.tflite"
    path.write_bytes(written.data)
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=1)
    with vision.ImageClassifier.create_from_options(options) as classifier:
        top = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(tiny_images[0]))).classifications[0].categories[0]
    assert top.category_name in ("a", "b", "c", "d")
