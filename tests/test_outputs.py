"""Drift judged per output by what the output means: kinds inferred from the model, per-output budgets in
profiles, and every output named in builds, reports and manifests."""

import json

import numpy as np
import pytest

from tests.conftest import run_cli, warm_options

from mobilepre.builder import build
from mobilepre.errors import MobilepreError
from mobilepre.models import from_keras
from mobilepre.profiles import load_profile
from mobilepre.validate import output_drift


@pytest.fixture(scope="module")
def detector(keras):
    """A face-detector-shaped model: box regression [4], landmarks [10], face/non-face softmax [2]."""
    keras.utils.set_random_seed(3)
    L = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = L.GlobalAveragePooling2D()(L.Conv2D(8, 3, activation="relu")(inputs))
    return keras.Model(inputs, [L.Dense(4, name="box")(x), L.Dense(10, name="landmarks")(x), L.Dense(2, activation="softmax", name="face")(x)])


def test_kinds_are_inferred_from_the_model(keras, detector):
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = L.GlobalAveragePooling2D()(inputs)
    zoo = keras.Model(inputs, [
        L.Conv2D(3, 1, activation="softmax", name="mask")(inputs),
        L.Conv2D(3, 1, activation="sigmoid", name="picture")(inputs),
        L.UnitNormalization(name="vector")(L.Dense(6)(x)),
        L.Softmax(name="scores")(L.Dense(5)(x)),
    ])
    kinds = {spec.name: str(spec.kind) for spec in from_keras(zoo).outputs}
    assert kinds == {"mask": "segmentation", "picture": "image", "vector": "embedding", "scores": "probabilities"}
    assert [(s.name, str(s.kind)) for s in from_keras(detector).outputs] == [("box", "regression"), ("landmarks", "regression"), ("face", "probabilities")]


def test_metrics_each_kind_has():
    rng = np.random.default_rng(0)
    masks = rng.uniform(size=(2, 4, 4, 3))
    shifted = masks.copy()
    shifted[0, 0, 0] = np.eye(3)[(masks[0, 0, 0].argmax() + 1) % 3]  # one pixel changes class
    seg = output_drift(masks, shifted, kind="segmentation", name="mask")
    assert seg.top1_agreement == 31 / 32 and 0 < seg.mean_iou < 1.0 and seg.top5_agreement is None
    vectors = rng.normal(size=(6, 8))
    emb = output_drift(vectors, vectors + 1e-6, kind="embedding", name="vector")
    assert emb.nn_agreement == 1.0 and emb.top1_agreement is None
    pictures = rng.uniform(size=(2, 8, 8, 3))
    image = output_drift(pictures, pictures, kind="image", name="picture")
    assert image.ssim == pytest.approx(1.0) and output_drift(pictures, pictures[::-1].copy(), kind="image").ssim < 0.9
    box = output_drift(vectors, vectors + 0.1, kind="regression", name="box")
    assert box.relative_error == pytest.approx(0.1 / (vectors.max() - vectors.min())) and box.top1_agreement is None


def test_a_detector_build_judges_top1_on_its_class_output_only(keras, detector, tmp_path):
    model = tmp_path / "detector.keras"
    detector.save(model)
    data = tmp_path / "images.npz"
    np.savez(data, images=np.random.default_rng(1).uniform(size=(24, 16, 16, 3)).astype(np.float32))
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "npu.toml").write_text(
        'name = "npu"\ndescription = "An int8 accelerator."\nformats = ["tflite"]\nquantization = ["int8"]\n'
        '[budget]\nmax_size = "1 MiB"\n[drift]\nmin_top1_agreement = 0.9\nmin_cosine = 0.5\n'
        '[drift.outputs.box]\nmax_relative_error = 0.5\n'
    )
    # random weights give one face class for every image: allowed here, the per-output judging is the point
    result = build(warm_options(out=tmp_path / "out", model=model, calibration=data, profiles=profiles, latency_runs=3,
                                allow_degenerate_reference=True))
    trial = result.profile("npu").format("tflite").tried[0]
    labels = sorted(c.label for c in trial.verdict.checks if c.output)
    assert labels == ["max_relative_error[box]", "min_cosine[box]", "min_cosine[face]", "min_cosine[landmarks]", "min_top1_agreement[face]"]
    assert [(d["name"], d["kind"]) for d in trial.drift] == [("box", "regression"), ("landmarks", "regression"), ("face", "probabilities")]
    assert "top1_agreement" not in trial.drift[0] and "top1_agreement" in trial.drift[2]
    if result.passed:
        manifest = json.loads((tmp_path / "out" / "npu" / "manifest.json").read_text())
        assert [(o["name"], o["kind"]) for o in manifest["source"]["outputs"]] == [("box", "regression"), ("landmarks", "regression"), ("face", "probabilities")]
        assert [d["name"] for d in manifest["artifacts"][0]["drift"]] == ["box", "landmarks", "face"]


def test_per_output_budgets_are_checked_before_any_conversion(keras, detector, tmp_path):
    model = tmp_path / "detector.keras"
    detector.save(model)
    data = tmp_path / "images.npz"
    np.savez(data, images=np.zeros((4, 16, 16, 3), np.float32))
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    text = 'name = "p"\ndescription = "x."\nformats = ["tflite"]\nquantization = ["float32"]\n[budget]\nmax_size = "1 MiB"\n'
    (profiles / "p.toml").write_text(text + "[drift.outputs.classes]\nmin_top1_agreement = 0.9\n")
    with pytest.raises(MobilepreError, match="names no output of the model: its outputs are box, landmarks, face"):
        build(warm_options(out=tmp_path / "out", model=model, calibration=data, profiles=profiles))
    (profiles / "p.toml").write_text(text + "[drift.outputs.box]\nmin_top1_agreement = 0.9\n")
    with pytest.raises(MobilepreError, match="drift.outputs.box.min_top1_agreement has no meaning for output box, a regression output"):
        build(warm_options(out=tmp_path / "out", model=model, calibration=data, profiles=profiles))
    (profiles / "p.toml").write_text(text + '[drift.outputs.box]\nkind = "regression"\nmin_top1_agreement = 0.9\n')
    with pytest.raises(MobilepreError, match="drift.outputs.box.min_top1_agreement has no meaning for a regression output"):
        load_profile(profiles / "p.toml")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_degenerate_reference_refuses_class_score_budgets_unless_allowed(keras, tmp_path):
    """A model that says class 0 for every image (what a wrong --input-range produces) passes any top-1
    budget whatever the candidate does: the build refuses it, and warns when allowed."""
    inputs = keras.Input((8, 8, 3))
    head = keras.layers.Dense(3, activation="softmax", name="scores")
    model = keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D()(inputs)))
    head.set_weights([np.zeros((3, 3), np.float32), np.array([5.0, 0.0, 0.0], np.float32)])
    path = tmp_path / "stuck.keras"
    model.save(path)
    data = tmp_path / "images.npz"
    np.savez(data, images=np.random.default_rng(0).uniform(size=(20, 8, 8, 3)).astype(np.float32))
    with pytest.raises(MobilepreError, match="scores output is degenerate.*the same for every image.*pass allow_degenerate_reference"):
        build(warm_options(out=tmp_path / "out", model=path, calibration=data, profile=("npu-int8",)))
    result = build(warm_options(out=tmp_path / "out", model=path, calibration=data, profile=("npu-int8",),
                                allow_degenerate_reference=True, latency_runs=3))
    assert "degenerate" in result.source["warnings"][0] and "warning:" in result.to_text()
    assert "Warning:" in (tmp_path / "out" / "report.html").read_text()
    # the warning names the parameter in the library's words in the reports, as the flag on the command line
    assert "a wrong input_range or" in result.source["warnings"][0]
    assert all("\u27e6" not in p.read_text() for p in (tmp_path / "out").rglob("*.json"))
    cli = run_cli("build", path, "--out", tmp_path / "cli", "--calibration", data, "--profile", "npu-int8",
                  "--allow-degenerate-reference", "--latency-runs", "3")
    assert cli.returncode == 0 and "a wrong --input-range or" in cli.stderr and "\u27e6" not in cli.stderr + cli.stdout, cli.stderr


def test_degenerate_reasons():
    from mobilepre.metrics import OutputKind
    from mobilepre.validate import degenerate_reason

    rng = np.random.default_rng(0)
    healthy = rng.dirichlet(np.ones(4), size=40)
    assert degenerate_reason(healthy, OutputKind.PROBABILITIES) is None
    one_class = healthy.copy()
    one_class[:, 2] += 5.0
    assert "class 2 for 100%" in degenerate_reason(one_class, OutputKind.PROBABILITIES)
    tied = np.tile([0.5, 0.5, 0.0], (40, 1)) + rng.normal(scale=1e-5, size=(40, 3))
    assert "within 0.001" in degenerate_reason(tied, OutputKind.LOGITS)
    assert degenerate_reason(one_class, OutputKind.REGRESSION) is None and degenerate_reason(one_class[:5], OutputKind.PROBABILITIES) is None


def test_the_manifest_states_the_io_contract_in_both_formats(keras, tmp_path):
    """A two-output model: each artifact's manifest entry maps the Keras outputs, in Keras order, to the
    format's own names and positions, and the shapes prove the mapping."""
    keras.utils.set_random_seed(5)
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = L.GlobalAveragePooling2D()(L.Conv2D(6, 3, activation="relu")(inputs))
    model = keras.Model(inputs, [L.Dense(3, activation="softmax", name="cls")(x), L.Dense(4, name="box")(x)])
    path = tmp_path / "two.keras"
    model.save(path)
    data = tmp_path / "images.npz"
    np.savez(data, images=np.random.default_rng(2).uniform(size=(12, 8, 8, 3)).astype(np.float32))
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "both.toml").write_text(
        'name = "both"\ndescription = "Phones and browsers."\nformats = ["tflite", "tfjs"]\nquantization = ["float32"]\n'
        '[budget]\nmax_size = "1 MiB"\n[drift]\nmax_abs_error = 0.001\n'
    )
    result = build(warm_options(out=tmp_path / "out", model=path, calibration=data, profiles=profiles, latency_runs=3,
                                allow_degenerate_reference=True))
    assert result.passed, result.to_text()
    manifest = json.loads((tmp_path / "out" / "both" / "manifest.json").read_text())
    by_format = {a["format"]: a["io"] for a in manifest["artifacts"]}
    for fmt, io in by_format.items():
        assert [(o["name"], o["kind"], o["shape"][-1]) for o in io["outputs"]] == [("cls", "probabilities", 3), ("box", "regression", 4)], fmt
        assert [o["signature_name"] for o in io["outputs"]] == ["cls", "box"], fmt
        (only,) = io["inputs"]
        assert only["shape"][-3:] == [8, 8, 3] and only["value_range"] == [0.0, 1.0]
    tflite = by_format["tflite"]["outputs"]
    assert all(o["dtype"] == "float32" and o["quantization"] == [0.0, 0] and isinstance(o["tensor_index"], int) for o in tflite)
    assert all(o["node"] for o in by_format["tfjs"]["outputs"])
    # what an app does: LiteRT's signature runner and TF.js `predict` hand the outputs back by Keras name
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tmp_path / "out" / "both" / "model.tflite"))
    answer = interpreter.get_signature_runner()(pixels=np.zeros((1, 8, 8, 3), np.float32))
    assert {name: value.shape for name, value in answer.items()} == {"cls": (1, 3), "box": (1, 4)}
    details = interpreter.get_output_details()
    assert [int(details[o["output_position"]]["shape"][-1]) for o in tflite] == [3, 4]
    model_json = json.loads((tmp_path / "out" / "both" / "tfjs" / "model.json").read_text())
    assert model_json["userDefinedMetadata"]["structuredOutputKeys"] == ["box", "cls"]
    tfjs = by_format["tfjs"]["outputs"]
    assert [(o["name"], o["output_position"]) for o in tfjs] == [("cls", 1), ("box", 0)]


def _segmenter(keras):
    """A tiny U-Net-shaped segmenter: per-pixel softmax over 3 classes."""
    keras.utils.set_random_seed(11)
    L = keras.layers
    inputs = keras.Input((16, 16, 3))
    down = L.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    pooled = L.Conv2D(12, 3, padding="same", activation="relu")(L.MaxPooling2D()(down))
    up = L.Concatenate()([L.UpSampling2D()(pooled), down])
    return keras.Model(inputs, L.Conv2D(3, 1, activation="softmax", name="mask")(up))


@pytest.mark.slow
@pytest.mark.parametrize("which", ["segmenter", "detector"])
def test_real_output_kinds_build_for_every_shipped_profile(keras, detector, tmp_path, which):
    """Every shipped profile judges these models by what their outputs mean: no budget is 'not measured',
    and each profile whose budgets the model can meet gets its bundle."""
    model = _segmenter(keras) if which == "segmenter" else detector
    path = tmp_path / f"{which}.keras"
    model.save(path)
    data = tmp_path / "images.npz"
    rng = np.random.default_rng(4)
    np.savez(data, images=rng.uniform(size=(32, 16, 16, 3)).astype(np.float32))
    result = build(warm_options(out=tmp_path / "out", model=path, calibration=data, latency_runs=3, allow_degenerate_reference=True))
    text = result.to_text()
    assert "not measured" not in text, text
    assert result.passed, text  # these budgets can be met: all six bundles
    assert len(list((tmp_path / "out").glob("*/manifest.json"))) == 6
    for profile in result.profiles:
        for fmt in profile.formats:
            for trial in fmt.tried:
                checked = {c.label for c in trial.verdict.checks if c.output}
                if which == "detector":  # class-score budgets only on the face output
                    assert not any(label.startswith(("min_top1", "max_accuracy")) and not label.endswith("[face]") for label in checked), checked
                else:
                    assert any(label.startswith("min_top1_agreement[mask]") for label in checked), checked


def test_a_model_that_returns_a_dict_keeps_its_keys_as_output_names(keras, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from mobilepre import quantize
    from mobilepre.runtimes import run_tflite

    keras.utils.set_random_seed(8)
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = L.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, {"zeta": L.Dense(3, activation="softmax", name="cls")(x), "alpha": L.Dense(4, name="box")(x)})
    assert [(s.name, str(s.kind)) for s in from_keras(model).outputs] == [("alpha", "regression"), ("zeta", "probabilities")]
    content = quantize.convert(model, quantize.QuantizationSettings("tflite", "float32")).files["model.tflite"]
    assert sorted(Interpreter(model_content=content).get_signature_list()["serving_default"]["outputs"]) == ["alpha", "zeta"]
    images = np.random.default_rng(3).uniform(size=(4, 8, 8, 3)).astype(np.float32)
    got = run_tflite(content, images, output_keys=["alpha", "zeta"]).outputs
    want = model.predict(images, verbose=0)
    np.testing.assert_allclose(got[0], want["alpha"], atol=1e-5)
    np.testing.assert_allclose(got[1], want["zeta"], atol=1e-5)
