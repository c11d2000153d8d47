"""Drift and latency measured in the real runtimes: LiteRT for .tflite, TF.js on Node.js (wasm) for TF.js."""

import json
import os

import numpy as np
import pytest

from mobilepre import quantize
from mobilepre import demo
from mobilepre.errors import MobilepreError
from mobilepre.validate import PSNR_CAP_DB, output_drift, tolerance_failures, validate
from tests.conftest import run_cli, write_artifact

FAST = {**os.environ, "MOBILEPRE_ISOLATE_LOADS": "0"}


@pytest.fixture(scope="module")
def demo_artifacts(demo_source, demo_data, tmp_path_factory):
    calibration, _ = demo_data
    root = tmp_path_factory.mktemp("demo-artifacts")
    paths = {}
    for fmt, mode in (("tflite", "float32"), ("tflite", "int8"), ("tfjs", "float32")):
        artifact = quantize.convert(demo_source.model, quantize.QuantizationSettings(fmt, mode), calibration.images)
        paths[(fmt, mode)] = write_artifact(artifact, root / artifact.settings.key)
    return paths


def test_metrics_on_known_values():
    reference = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], np.float32)
    same = output_drift(reference, reference.copy(), kind="probabilities", name="cls")
    assert same.max_abs_error == 0 and same.psnr_db == PSNR_CAP_DB and same.cosine == pytest.approx(1.0)
    assert same.top1_agreement == 1.0
    flipped = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]], np.float32)
    drift = output_drift(reference, flipped, labels=np.array([1, 0]), kind="probabilities", name="cls")
    assert drift.top1_agreement == 0.5 and drift.max_abs_error == pytest.approx(0.5)
    assert drift.rmse == pytest.approx(np.sqrt(0.5 / 6))
    assert drift.accuracy_reference == 1.0 and drift.accuracy_candidate == 0.5 and drift.accuracy_drop == 0.5
    assert drift.top5_agreement == 1.0  # 3 classes: the reference's class is always in the top 3
    failures = tolerance_failures([drift], {"min_top1_agreement": 0.9, "max_abs_error": 1.0})
    # two images cannot show 0.5 below 0.9 at 95% (Wilson 0.09 to 0.91): the figure decides, the count that would is said
    assert failures == ["min_top1_agreement[cls]: 0.5 (95% 0.094531 to 0.905469) vs 0.9 (measured): inconclusive, "
                        "about 4 validation images would decide it"]
    as_regression = output_drift(reference, flipped, kind="regression", name="box")
    assert as_regression.top1_agreement is None and tolerance_failures([as_regression], {"min_top1_agreement": 0.9}) == []


@pytest.mark.parametrize("key", [("tflite", "float32"), ("tfjs", "float32")])
def test_float32_has_near_zero_drift_in_its_runtime(demo_source, demo_data, demo_artifacts, key):
    _, validation = demo_data
    result = validate(demo_source, demo_artifacts[key], validation.images, validation.labels, latency_runs=5)
    (drift,) = result.outputs
    assert drift.kind == "probabilities" and drift.max_abs_error < 1e-4 and drift.top1_agreement == 1.0
    assert drift.accuracy_drop == 0.0 and result.images == 360
    assert result.latency.median_ms > 0 and result.latency.runtime == {"tflite": "litert", "tfjs": "tfjs-wasm"}[key[0]]
    assert result.macs > 1_000_000 and not result.failures and result.exit_code == 0


def test_peak_memory_is_measured_in_each_runtime(keras, demo_data, demo_artifacts):
    from mobilepre.runtimes import run_tflite, run_tfjs

    images = demo_data[1].images[:2]
    content = demo_artifacts[("tflite", "float32")].read_bytes()
    small = run_tflite(content, images).peak_memory_bytes
    assert small > len(content)  # the model, its arena and the runtime's own buffers
    # 8 MB more float32 weights must show, whatever the runtime's own pages do (they move by a few
    # hundred kB between runs and hosts)
    inputs = keras.Input((1024,))
    wide = keras.Model(inputs, keras.layers.Dense(1024)(keras.layers.Dense(1024)(inputs)))
    large = quantize.convert(wide, quantize.QuantizationSettings("tflite", "float32")).files["model.tflite"]
    big = run_tflite(large, np.zeros((2, 1024), np.float32)).peak_memory_bytes
    assert big > small + 6_000_000, (big, small)
    tfjs = run_tfjs(demo_artifacts[("tfjs", "float32")], images)
    weights = sum(p.stat().st_size for p in demo_artifacts[("tfjs", "float32")].glob("*.bin"))
    activations = 32 * 32 * 32 * 4  # the largest feature map of one image, float32
    assert weights + activations <= tfjs.peak_memory_bytes < 2 * (weights + 4 * activations), (tfjs.peak_memory_bytes, weights)


def test_tfjs_and_tflite_agree_on_the_same_float_model(demo_data, demo_artifacts):
    from mobilepre.runtimes import run_tflite, run_tfjs

    images = demo_data[1].images[:64]
    litert = run_tflite(demo_artifacts[("tflite", "float32")].read_bytes(), images).outputs[0]
    tfjs = run_tfjs(demo_artifacts[("tfjs", "float32")], images).outputs[0]
    np.testing.assert_allclose(litert, tfjs, atol=1e-4)


def test_int8_drift_is_reported_against_the_labels(demo_artifacts):
    result = run_cli(
        "validate", demo.model_path(), demo_artifacts[("tflite", "int8")], "--data", demo.validation_path(),
        "--latency-runs", "5", "--json", env=FAST,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    summary = report["outputs"][0]
    assert 0.97 <= summary["top1_agreement"] <= 1.0 and abs(summary["accuracy_drop"]) <= 0.02
    assert 0 < summary["max_abs_error"] < 0.5 and report["latency"]["threads"] == 1 and report["passed"]


@pytest.fixture(scope="module")
def scrambled(demo_source, tmp_path_factory):
    """The demo model with every kernel's values shuffled, converted to TFLite and TF.js float32."""
    import keras

    damaged = keras.models.clone_model(demo_source.model)
    damaged.set_weights(demo_source.model.get_weights())
    rng = np.random.default_rng(0)
    for variable in damaged.weights:
        if variable.path.endswith("kernel"):
            value = np.asarray(variable.numpy()).ravel().copy()
            rng.shuffle(value)
            variable.assign(value.reshape(variable.shape))
    root = tmp_path_factory.mktemp("scrambled")
    return {
        fmt: write_artifact(quantize.convert(damaged, quantize.QuantizationSettings(fmt, "float32")), root / fmt)
        for fmt in ("tflite", "tfjs")
    }


def test_scrambled_weights_show_large_drift_and_exit_1(scrambled):
    args = ["validate", demo.model_path(), scrambled["tflite"], "--data", demo.validation_path(), "--latency-runs", "0"]
    loose = run_cli(*args, env=FAST)
    assert loose.returncode == 0, loose.stderr  # no tolerance given: drift is reported, not judged
    # the I/O contract, as a manifest states it: the output by its Keras name, under that name in the file
    assert "output  digits_cnn (probabilities) as digits_cnn, position 0, float32 [1, 10]" in loose.stdout, loose.stdout
    assert "no tolerance given: nothing judged" in loose.stdout and "within tolerance" not in loose.stdout
    strict = run_cli(*args, "--min-top1", "0.9", "--max-abs", "0.2", "--json", env=FAST)
    assert strict.returncode == 1, strict.stderr
    report = json.loads(strict.stdout)
    assert report["outputs"][0]["top1_agreement"] < 0.9 and not report["passed"]
    assert {f.split(":")[0] for f in report["failures"]} == {"min_top1_agreement[digits_cnn]", "max_abs_error[digits_cnn]"}


def test_scrambled_tfjs_weights_show_large_drift(demo_source, demo_data, scrambled):
    _, validation = demo_data
    result = validate(demo_source, scrambled["tfjs"], validation.images, latency_runs=0, tolerances={"min_top1_agreement": 0.9})
    assert result.outputs[0].top1_agreement < 0.9 and result.exit_code == 1


def test_candidate_with_another_input_shape_says_both_shapes(tiny_model, demo_source, demo_data, tmp_path):
    other = write_artifact(quantize.convert(tiny_model, quantize.QuantizationSettings("tflite", "float32")), tmp_path / "o")
    with pytest.raises(MobilepreError, match=r"takes images of shape \(16, 16, 3\), the data has \(32, 32, 3\)"):
        validate(demo_source, other, demo_data[1].images[:4], latency_runs=0)


def test_invalid_candidates_are_refused_before_loading(demo_artifacts, tmp_path):
    import shutil

    truncated = tmp_path / "t.tflite"
    truncated.write_bytes(demo_artifacts[("tflite", "float32")].read_bytes()[:1000])
    result = run_cli("validate", demo.model_path(), truncated, "--data", demo.validation_path(), env=FAST)
    assert result.returncode == 2 and "t.tflite" in result.stderr and "not a valid TFLite model" in result.stderr
    folder = tmp_path / "escape"
    shutil.copytree(demo_artifacts[("tfjs", "float32")], folder)
    model_json = json.loads((folder / "model.json").read_text())
    model_json["weightsManifest"][0]["paths"] = ["../../etc/passwd"]
    (folder / "model.json").write_text(json.dumps(model_json))
    result = run_cli("validate", demo.model_path(), folder, "--data", demo.validation_path(), env=FAST)
    assert result.returncode == 2 and "escape" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("validate", demo.model_path(), tmp_path / "x.onnx", "--data", demo.validation_path(), env=FAST)
    assert result.returncode == 2 and "neither a .tflite file nor a TF.js" in result.stderr


def test_missing_node_or_tfjs_packages_is_one_clear_line(demo_artifacts, tmp_path):
    args = ["validate", demo.model_path(), demo_artifacts[("tfjs", "float32")], "--data", demo.validation_path()]
    no_node = {**FAST, "PATH": str(tmp_path)}
    result = run_cli(*args, env=no_node)
    assert result.returncode == 2 and "Node.js" in result.stderr and "install" in result.stderr
    no_packages = {**FAST, "MOBILEPRE_TFJS_RUNNER": str(tmp_path)}
    result = run_cli(*args, env=no_packages)
    assert result.returncode == 2 and "npm ci" in result.stderr


def test_validate_of_an_endless_model_stops_at_the_time_limit(endless_tflite, tmp_path):
    import numpy as np

    from tests.conftest import run_cli

    data = tmp_path / "d.npz"
    np.savez(data, images=np.zeros((2, 32, 32, 3), np.uint8))
    result = run_cli("--run-timeout", "2", "validate", demo.model_path(), endless_tflite, "--data", data, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "did not finish within 2 s" in lines[0], result.stderr
