"""Tests for mobilepre/artifacts.py: real converted models pass, damaged or hostile ones are refused cleanly."""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobilepre.artifacts import tflite_io, verify_tflite, verify_tfjs_folder
from mobilepre.errors import MobilepreError


@pytest.fixture(scope="session")
def converted(tmp_path_factory) -> dict:
    """A tiny Keras model (Conv2D -> Flatten -> Dense) as float32 and int8 .tflite and two TF.js folders."""
    from mobilepre._tf import keras, quiet_tensorflow

    tf = quiet_tensorflow()
    k = keras()
    root = tmp_path_factory.mktemp("artifacts")
    inputs = k.Input((8, 8, 1))
    x = k.layers.Conv2D(2, 3)(inputs)
    x = k.layers.Flatten()(x)
    model = k.Model(inputs, k.layers.Dense(3)(x))
    saved = root / "saved_model"
    model.export(str(saved), format="tf_saved_model", verbose=False)

    f32 = tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.random((1, 8, 8, 1), dtype=np.float32)] for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    int8 = converter.convert()

    from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs

    tfjs.convert_tf_saved_model(str(saved), str(root / "tfjs"))
    tfjs.convert_tf_saved_model(str(saved), str(root / "tfjs_uint8"), quantization_dtype_map={"uint8": True})
    return {"float32": f32, "int8": int8, "tfjs": root / "tfjs", "tfjs_uint8": root / "tfjs_uint8"}


def _refused(data: bytes) -> str:
    with pytest.raises(MobilepreError) as info:
        verify_tflite(data, "bundle/model.tflite")
    assert info.value.message.startswith("bundle/model.tflite: ")
    assert info.value.exit_code == 2
    return info.value.message


def _pass_or_refuse(data: bytes) -> bool:
    """True when the verifier accepts `data`; a refusal must be our error, anything else fails the test."""
    try:
        verify_tflite(data, "m.tflite")
    except MobilepreError:
        return False
    return True


def _edited(data: bytes, edit) -> bytes:
    """Unpack with the generated TFLite schema, apply `edit` to the object tree, pack again."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(model)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# ----------------------------------------------------------------------------------------------- TFLite


@pytest.mark.parametrize("kind", ["float32", "int8"])
def test_real_tflite_models_pass(converted, kind):
    verify_tflite(converted[kind], f"{kind}.tflite")


@pytest.mark.parametrize("kind", ["float32", "int8"])
def test_tflite_io_matches_litert(converted, kind):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=converted[kind])
    io = tflite_io(converted[kind])
    for ours, theirs in ((io["inputs"], interpreter.get_input_details()), (io["outputs"], interpreter.get_output_details())):
        assert [t["name"] for t in ours] == [t["name"] for t in theirs]
        assert [t["index"] for t in ours] == [t["index"] for t in theirs]
        assert [t["shape"] for t in ours] == [t["shape"].tolist() for t in theirs]
        assert [t["dtype"] for t in ours] == [np.dtype(t["dtype"]).name for t in theirs]
        for a, b in zip(ours, theirs):
            assert a["quantization"] == pytest.approx(b["quantization"])
    assert io["inputs"][0]["shape"] == [1, 8, 8, 1]
    assert io["outputs"][0]["shape"] == [1, 3]
    assert io["inputs"][0]["dtype"] == io["outputs"][0]["dtype"] == kind


def test_repacked_model_passes(converted):
    """Our reader agrees with the generated schema's writer, not only with the converter's output."""
    repacked = _edited(converted["float32"], lambda model: None)
    verify_tflite(repacked, "repacked.tflite")
    assert tflite_io(repacked) == tflite_io(converted["float32"])


def test_every_truncation_is_refused(converted):
    data = converted["int8"]
    for cut in range(len(data)):
        _refused(data[:cut])
    assert "too short" in _refused(data[:10])


def test_wrong_identifier_is_refused(converted):
    data = bytearray(converted["float32"])
    data[4:8] = b"TFL2"
    assert "file identifier is b'TFL2', expected b'TFL3'" in _refused(bytes(data))


def test_root_offset_outside_file_is_refused(converted):
    data = bytearray(converted["float32"])
    data[0:4] = struct.pack("<I", len(data) + 100)
    assert "root table offset" in _refused(bytes(data))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_random_bytes_are_refused(blob):
    assert not _pass_or_refuse(blob)
    # The same bytes behind a valid header reach the table walk.
    assert not _pass_or_refuse(blob[:4] + b"TFL3" + blob[8:])


@pytest.mark.parametrize("kind", ["float32", "int8"])
def test_flipped_bytes_pass_or_are_refused(converted, kind):
    data = converted[kind]
    rng = random.Random(kind)
    refused = 0
    for pos in rng.sample(range(len(data)), 300):
        damaged = bytearray(data)
        damaged[pos] = rng.choice([0x00, 0xFF, data[pos] ^ 0x80, data[pos] ^ 0x01])
        refused += not _pass_or_refuse(bytes(damaged))
    # Many bytes are weights or padding, but a good share of any sample lands on structure.
    assert refused > 50


def _set(path: str, value):
    """An edit for `_edited` that sets one attribute, e.g. `subgraphs[0].tensors[1].buffer`."""

    def edit(model):
        *parents, last = path.split(".")
        obj = model
        for part in parents:
            name, _, index = part.partition("[")
            obj = getattr(obj, name)
            if index:
                obj = obj[int(index.rstrip("]"))]
        setattr(obj, last, value)

    return edit


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("subgraphs[0].tensors[1].buffer", 999, "subgraphs[0].tensors[1].buffer is 999, out of range"),
        ("subgraphs[0].tensors[1].shape", [3, -1], "subgraphs[0].tensors[1].shape [3, -1] has a negative"),
        ("subgraphs[0].tensors[1].type", 99, "subgraphs[0].tensors[1].type is 99, not a known TensorType"),
        ("subgraphs[0].operators[0].opcodeIndex", 50, "subgraphs[0].operators[0].opcode_index is 50, out of range"),
        ("subgraphs[0].operators[0].inputs", [0, 77], "subgraphs[0].operators[0].inputs[1] is 77, out of range"),
        ("subgraphs[0].operators[0].outputs", [-1], "subgraphs[0].operators[0].outputs[0] is -1, out of range"),
        ("subgraphs[0].inputs", [40], "subgraphs[0].inputs[0] is 40, out of range"),
        ("subgraphs[0].outputs", [-3], "subgraphs[0].outputs[0] is -3, out of range"),
        ("signatureDefs[0].subgraphIndex", 4, "signature_defs[0].subgraph_index is 4, out of range"),
        ("subgraphs[0].operators[-1].outputs", [0], "writes tensor 0, an input of the subgraph"),
        ("subgraphs[0].operators[-1].outputs", [1], "writes tensor 1, which holds constant data"),
        ("subgraphs[0].operators[0].outputs", [12], "writes tensor 12, already written by"),
        ("subgraphs", [], "the model has no subgraphs"),
        ("version", 2, "schema version 2, expected 3"),
    ],
)
def test_bad_indices_are_refused(converted, path, value, message):
    assert message in _refused(_edited(converted["float32"], _set(path, value)))


def test_optional_operator_input_passes(converted):
    def drop_an_input(model):
        op = model.subgraphs[0].operators[0]
        op.inputs = list(op.inputs) + [-1]

    verify_tflite(_edited(converted["float32"], drop_an_input), "m.tflite")


def test_constant_data_shorter_than_its_tensor_is_refused(converted):
    def shrink(model):
        data = [b.data for b in model.buffers]
        tensor = next(t for t in model.subgraphs[0].tensors if data[t.buffer] is not None and len(data[t.buffer]) > 8)
        model.buffers[tensor.buffer].data = np.zeros(8, np.uint8)

    assert "bytes of constant data" in _refused(_edited(converted["float32"], shrink))


def test_external_buffer_outside_file_is_refused(converted):
    def external(model):
        buffer = next(b for b in model.buffers if b.data is not None and len(b.data))
        buffer.data, buffer.offset, buffer.size = None, 1 << 40, 16

    assert "lies outside the file" in _refused(_edited(converted["float32"], external))


# ------------------------------------------------------------------------------------------------ TF.js


@pytest.fixture
def tfjs_copy(converted, tmp_path) -> Path:
    folder = tmp_path / "web"
    shutil.copytree(converted["tfjs"], folder)
    return folder


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "model.json").read_text())


def _write_manifest(folder: Path, model: dict) -> None:
    (folder / "model.json").write_text(json.dumps(model))


def _tfjs_refused(folder: Path) -> str:
    with pytest.raises(MobilepreError) as info:
        verify_tfjs_folder(folder, "bundle/web")
    assert info.value.message.startswith("bundle/web: ")
    return info.value.message


@pytest.mark.parametrize("kind", ["tfjs", "tfjs_uint8"])
def test_real_tfjs_folders_pass(converted, kind):
    model = verify_tfjs_folder(converted[kind], kind)
    assert model["format"] == "graph-model"
    quantized = [w for g in model["weightsManifest"] for w in g["weights"] if "quantization" in w]
    assert bool(quantized) == (kind == "tfjs_uint8")


@pytest.mark.parametrize(
    "path, message",
    [
        ("../x.bin", "has a '..' component"),
        ("/etc/passwd", "is absolute"),
        ("sub/../../x", "has a '..' component"),
        ("..\\x.bin", "contains a backslash"),
        ("x.bin\0.png", "contains NUL"),
        ("https://example.com/x.bin", "is not a plain file name"),
        ("%2e%2e/x.bin", "is not a plain file name"),
        ("C:/x.bin", "is absolute"),
        ("", "is not a non-empty string"),
    ],
)
def test_hostile_weight_paths_are_refused(tfjs_copy, path, message):
    model = _manifest(tfjs_copy)
    model["weightsManifest"][0]["paths"] = [path]
    _write_manifest(tfjs_copy, model)
    assert message in _tfjs_refused(tfjs_copy)


def _shard(folder: Path) -> Path:
    return folder / _manifest(folder)["weightsManifest"][0]["paths"][0]


def test_symlinked_shard_is_refused(tfjs_copy, tmp_path):
    shard = _shard(tfjs_copy)
    outside = tmp_path / "outside.bin"
    shutil.move(shard, outside)
    os.symlink(outside, shard)
    assert "is a symbolic link" in _tfjs_refused(tfjs_copy)


def test_shard_in_symlinked_folder_outside_is_refused(tfjs_copy, tmp_path):
    shard = _shard(tfjs_copy)
    (tmp_path / "elsewhere").mkdir()
    shutil.move(shard, tmp_path / "elsewhere" / shard.name)
    os.symlink(tmp_path / "elsewhere", tfjs_copy / "sub")
    model = _manifest(tfjs_copy)
    model["weightsManifest"][0]["paths"] = [f"sub/{shard.name}"]
    _write_manifest(tfjs_copy, model)
    assert "resolves outside the folder" in _tfjs_refused(tfjs_copy)


def test_missing_shard_is_refused(tfjs_copy):
    _shard(tfjs_copy).unlink()
    assert "is missing" in _tfjs_refused(tfjs_copy)


@pytest.mark.parametrize("change", [-1, +1])
def test_shard_of_wrong_size_is_refused(tfjs_copy, change):
    shard = _shard(tfjs_copy)
    data = shard.read_bytes()
    shard.write_bytes(data[:-1] if change < 0 else data + b"\0")
    assert f"the weight specs need {len(data)} bytes, the shards hold {len(data) + change}" in _tfjs_refused(tfjs_copy)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"{not json", "model.json is not JSON"),
        (b"\xff\xfe{}", "model.json is not UTF-8"),
        (b"[1, 2]", "model.json is not a JSON object"),
        (b'{"format": "layers-model", "modelTopology": {}, "weightsManifest": []}', "expected 'graph-model'"),
        (b'{"format": "graph-model", "weightsManifest": []}', "no modelTopology object"),
        (b'{"format": "graph-model", "modelTopology": {}}', "no weightsManifest list"),
        (b"[" * 100_000, "model.json is not JSON"),
    ],
    ids=["truncated", "not-utf8", "list", "layers-model", "no-topology", "no-manifest", "deeply-nested"],
)
def test_bad_model_json_is_refused(tfjs_copy, content, message):
    (tfjs_copy / "model.json").write_bytes(content)
    assert message in _tfjs_refused(tfjs_copy)


def test_symlinked_model_json_is_refused(tfjs_copy, tmp_path):
    shutil.move(tfjs_copy / "model.json", tmp_path / "model.json")
    os.symlink(tmp_path / "model.json", tfjs_copy / "model.json")
    assert "model.json is a symbolic link" in _tfjs_refused(tfjs_copy)


def test_unknown_dtype_and_bad_shape_are_refused(tfjs_copy):
    model = _manifest(tfjs_copy)
    model["weightsManifest"][0]["weights"][0]["dtype"] = "float128"
    _write_manifest(tfjs_copy, model)
    assert "unknown dtype 'float128'" in _tfjs_refused(tfjs_copy)
    model["weightsManifest"][0]["weights"][0].update(dtype="float32", shape=[3, -1])
    _write_manifest(tfjs_copy, model)
    assert "expected non-negative integers" in _tfjs_refused(tfjs_copy)


def test_quantized_sizes_count_the_quantized_dtype(converted, tmp_path):
    folder = tmp_path / "web"
    shutil.copytree(converted["tfjs_uint8"], folder)
    model = _manifest(folder)
    weight = next(w for w in model["weightsManifest"][0]["weights"] if "quantization" in w)
    weight["quantization"]["dtype"] = "uint16"
    _write_manifest(folder, model)
    assert "the weight specs need" in _tfjs_refused(folder)


def test_string_weights_are_measured_from_the_shard(tmp_path):
    strings = [b"cat", b"", b"zebra"]
    blob = b"".join(struct.pack("<I", len(s)) + s for s in strings) + b"\0" * 8
    (tmp_path / "w.bin").write_bytes(blob)
    model = {
        "format": "graph-model",
        "modelTopology": {},
        "weightsManifest": [
            {
                "paths": ["w.bin"],
                "weights": [
                    {"name": "labels", "shape": [3], "dtype": "string"},
                    {"name": "bias", "shape": [2], "dtype": "float32"},
                ],
            }
        ],
    }
    _write_manifest(tmp_path, model)
    verify_tfjs_folder(tmp_path, "web")
    model["weightsManifest"][0]["weights"][0]["shape"] = [1000]
    _write_manifest(tmp_path, model)
    assert "runs past the end of its shards" in _tfjs_refused(tmp_path)
