"""`mobilepre quantize` and `mobilepre prune` end to end: what they write, and one line for every bad input."""

import json
import os

import numpy as np
import pytest

from mobilepre import demo
from tests.conftest import run_cli

FAST = {**os.environ, "MOBILEPRE_ISOLATE_LOADS": "0"}


def _one_line_error(result, *fragments):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mobilepre: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_quantize_int8_tflite_reports_what_it_wrote(tmp_path):
    out = tmp_path / "m.tflite"
    result = run_cli(
        "quantize", demo.model_path(), "--to", "tflite", "--mode", "int8", "--io-type", "uint8",
        "--calibration", demo.calibration_path(), "--out", out, "--json", env=FAST,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["bytes"] == out.stat().st_size and 0 < report["gzip_bytes"] < report["bytes"]
    assert report["io"]["inputs"][0]["dtype"] == "uint8" and report["io"]["outputs"][0]["dtype"] == "uint8"
    assert report["sparsity"] == 0 and len(report["source_identity"]) == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]  # no temporary files left


def test_quantize_names_the_engine_and_an_engine_can_be_chosen(tmp_path):
    args = ("quantize", demo.model_path(), "--to", "tflite", "--calibration", demo.calibration_path(), "--json")
    made = {}
    for mode, engine in (("dynamic", None), ("dynamic", "tflite-converter"), ("int4", None)):
        out = tmp_path / f"{mode}-{engine}.tflite"
        result = run_cli(*args, "--mode", mode, "--out", out, *(("--engine", engine) if engine else ()), env=FAST)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        made[(mode, engine)] = (report["engine"], report["artifact"], report["bytes"])
    assert made[("dynamic", None)][:2] == ("litert-quantizer", "tflite-dynamic")
    assert made[("dynamic", "tflite-converter")][:2] == ("tflite-converter", "tflite-dynamic-tflite-converter")
    assert made[("dynamic", None)][2] < made[("dynamic", "tflite-converter")][2]  # why the quantizer makes dynamic
    assert made[("int4", None)][2] < 0.7 * made[("dynamic", None)][2]
    refused = run_cli(*args, "--mode", "int4", "--engine", "tflite-converter", "--out", tmp_path / "x.tflite", env=FAST)
    assert refused.returncode == 2 and "does not make int4 models" in refused.stderr and not (tmp_path / "x.tflite").exists()
    uncalibrated = run_cli("quantize", demo.model_path(), "--to", "tflite", "--mode", "int16x8", "--out", tmp_path / "y.tflite", env=FAST)
    assert uncalibrated.returncode == 2 and "int16x8 quantization needs images" in uncalibrated.stderr


def test_quantize_tfjs_writes_a_folder(tmp_path):
    out = tmp_path / "web"
    result = run_cli("quantize", demo.model_path(), "--to", "tfjs", "--mode", "uint16", "--out", out, "--json", env=FAST)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert sorted(report["files"]) == sorted(p.name for p in out.iterdir())
    assert sum(report["files"].values()) == report["bytes"]
    assert "generatedBy" not in json.loads((out / "model.json").read_text())


def test_prune_cli_reaches_the_target(tmp_path):
    out = tmp_path / "p.keras"
    result = run_cli(
        "prune", demo.model_path(), "--sparsity", "0.5", "--epochs", "2", "--calibration", demo.calibration_path(),
        "--out", out, "--json", env=FAST,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert abs(report["sparsity"] - 0.5) <= 0.01 and report["fine_tuned"]
    assert report["tflite_gzip_bytes"] < report["tflite_bytes"] and report["top1_agreement"] > 0.9
    assert out.is_file() and set(report["per_layer"]) >= {"conv_1/kernel", "digit/kernel"}


@pytest.fixture(scope="module")
def grey_pngs(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("grey")
    for i in range(3):
        Image.new("L", (32, 32), i * 40).save(folder / f"img{i}.png")
    return folder


@pytest.fixture(scope="module")
def bad_arrays(tmp_path_factory):
    folder = tmp_path_factory.mktemp("arrays")
    np.save(folder / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    nan = np.zeros((2, 32, 32, 1), np.float32)
    nan[0, 0, 0, 0] = np.nan
    np.save(folder / "nan.npy", nan)
    (folder / "empty").mkdir()
    return folder


@pytest.mark.parametrize(
    "case",
    ["no-calibration", "wrong-mode", "io-type", "suffix", "missing-model", "grey-vs-rgb", "objects", "nan", "empty", "range"],
)
def test_bad_inputs_end_with_one_line_and_exit_2(tmp_path, grey_pngs, bad_arrays, case):
    model = demo.model_path()
    out = tmp_path / "out.tflite"
    base = ["quantize", model, "--to", "tflite", "--out", out]
    args, fragments = {
        "no-calibration": (base + ["--mode", "int8"], ["needs images", "--calibration"]),
        "wrong-mode": (base + ["--mode", "uint8"], ["not a tflite mode"]),
        "io-type": (base + ["--mode", "float16", "--io-type", "int8"], ["int8"]),
        "suffix": (["quantize", model, "--to", "tflite", "--mode", "float32", "--out", tmp_path / "m.bin"], ["*.tflite"]),
        "missing-model": (["quantize", tmp_path / "nope.keras", "--to", "tflite", "--mode", "float32", "--out", out], ["nope.keras", "does not exist"]),
        "grey-vs-rgb": (base + ["--mode", "int8", "--calibration", grey_pngs], ["img0.png", "1 channel", "expects 3"]),
        "objects": (base + ["--mode", "int8", "--calibration", bad_arrays / "objects.npy"], ["objects.npy"]),
        "nan": (base + ["--mode", "int8", "--calibration", bad_arrays / "nan.npy"], ["nan.npy"]),
        "empty": (base + ["--mode", "int8", "--calibration", bad_arrays / "empty"], ["empty"]),
        "range": (base + ["--mode", "int8", "--input-range", "1:0"], ["--input-range"]),
    }[case]
    _one_line_error(run_cli(*args, env=FAST), *fragments)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "m.tflite"
    out.write_bytes(b"notes, not a model")
    args = ["quantize", demo.model_path(), "--to", "tflite", "--mode", "float16", "--out", out]
    _one_line_error(run_cli(*args, env=FAST), "already exists", "--force")
    _one_line_error(run_cli(*args, "--force", env=FAST), "not a previous output", "not a .tflite file")
    assert out.read_bytes() == b"notes, not a model"
    out.write_bytes(b"\x1c\x00\x00\x00TFL3 an older artifact")
    assert run_cli(*args, "--force", env=FAST).returncode == 0
    assert out.read_bytes()[4:8] == b"TFL3" and b"an older artifact" not in out.read_bytes()


def test_a_model_keras_cannot_load_is_one_line_from_the_child_process(tmp_path):
    import zipfile

    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(demo.model_path()) as source, zipfile.ZipFile(bad, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                data = data.replace(b'"Flatten"', b'"NoSuchLayer"')
            target.writestr(item, data)
    result = run_cli("quantize", bad, "--to", "tflite", "--mode", "float32", "--out", tmp_path / "x.tflite")
    _one_line_error(result, "bad.keras")
    assert not (tmp_path / "x.tflite").exists()


@pytest.fixture(scope="module")
def other_formats(tmp_path_factory, keras):
    """The same tiny float model saved as legacy .h5 and as a SavedModel folder, and some PNGs for it."""
    from PIL import Image

    from tests.conftest import tiny_classifier

    root = tmp_path_factory.mktemp("formats")
    model = tiny_classifier(keras, input_shape=(12, 12, 3))
    model.save(root / "m.h5")
    model.export(str(root / "saved"), format="tf_saved_model", verbose=False)
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (20, 16, 3)).astype(np.uint8)).save(images / f"{i}.png")
    return root


@pytest.mark.parametrize("source", ["m.h5", "saved"])
def test_legacy_h5_and_saved_model_inputs_quantize_and_validate(other_formats, tmp_path, source):
    model = other_formats / source
    out = tmp_path / "m.tflite"
    result = run_cli("quantize", model, "--to", "tflite", "--mode", "int8", "--calibration", other_formats / "images", "--out", out, env=FAST)
    assert result.returncode == 0, result.stderr
    check = run_cli("validate", model, out, "--data", other_formats / "images", "--latency-runs", "0", "--json", env=FAST)
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["outputs"][0]["max_abs_error"] < 0.05


def test_pruning_a_saved_model_says_what_to_give_instead(other_formats, tmp_path):
    result = run_cli("prune", other_formats / "saved", "--sparsity", "0.5", "--epochs", "0", "--out", tmp_path / "p.keras", env=FAST)
    _one_line_error(result, "SavedModel has no Keras layers to prune", ".keras or .h5")
