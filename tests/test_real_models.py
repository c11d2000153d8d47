"""Models as users bring them: trained on a real task (scikit-learn's handwritten digits, 1,797 scanned
8x8 images, upscaled to 16x16), written the way a newcomer writes them (`keras.Sequential`), and built
end to end in the real converters and runtimes."""

import json
import os

import numpy as np
import pytest

from tests.conftest import warm_options
from tests.test_build import write_profile

from mobilepre import quantize
from mobilepre.builder import build


# Models trained here on real data, built end to end: the slow tier.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits():
    """(images float32 in [0, 1], shape (N, 16, 16, 1); labels) of scikit-learn's digits (shipped with it)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = np.kron(data.images / 16.0, np.ones((2, 2)))[..., None].astype(np.float32)
    return images, data.target.astype(np.int64)


def train(model, digits, epochs=3):
    images, labels = digits
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images[:1200], labels[:1200], epochs=epochs, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def sequential_cnn(keras, digits):
    """The first model most users try: a Sequential CNN, trained (about 0.9 accuracy on held-out digits)."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    model = keras.Sequential([
        keras.Input((16, 16, 1)),
        L.Conv2D(8, 3, activation="relu"),
        L.MaxPooling2D(),
        L.Conv2D(16, 3, activation="relu"),
        L.Flatten(),
        L.Dense(10, activation="softmax"),
    ], name="digits_sequential")
    return train(model, digits)


def test_quantization_aware_fine_tuning_works_on_sequential_models(keras, sequential_cnn, digits):
    images = digits[0][:256]
    result = quantize.quantization_aware(sequential_cnn, quantize.QATSettings(epochs=1), images)
    assert result.kernels == 3 and result.activations >= 5
    assert type(result.model).__name__ == "Sequential"  # the user's kind of model back, with learnt weights
    assert [w.shape for w in result.model.get_weights()] == [w.shape for w in sequential_cnn.get_weights()]
    agree = np.mean(result.model.predict(images, verbose=0).argmax(1) == sequential_cnn.predict(images, verbose=0).argmax(1))
    assert agree > 0.9


def test_quantization_aware_fine_tuning_reaches_layers_inside_nested_sequential_models(keras, sequential_cnn, digits):
    """A Sequential feature extractor inside a Functional model: its layers get fake quantization too."""
    inputs = keras.Input((16, 16, 1))
    outputs = sequential_cnn(inputs)
    nested = keras.Model(inputs, outputs, name="wrapped")
    result = quantize.quantization_aware(nested, quantize.QATSettings(epochs=1), digits[0][:128])
    assert result.kernels == 3 and result.activations >= 5


@pytest.fixture(scope="module")
def sequential_build(tmp_path_factory, sequential_cnn, digits):
    """A build of the Sequential model over three profiles: one whose drift budget full int8 misses (so
    int8-qat is tried), one that takes float16, one int16x8."""
    root = tmp_path_factory.mktemp("sequential")
    model = root / "digits.keras"
    sequential_cnn.save(model)
    images, labels = digits
    np.savez(root / "calibration.npz", images=images[:200])
    np.savez(root / "validation.npz", images=images[1200:1400], labels=labels[1200:1400])
    profiles = root / "profiles"
    write_profile(profiles, "npu", 'formats = ["tflite"]\nquantization = ["int8"]\n[budget]\nmax_size = "1 MiB"\n'
                                   "[drift]\nmax_abs_error = 0.0005\n")
    write_profile(profiles, "phone", 'formats = ["tflite"]\nquantization = ["float16"]\n[budget]\nmax_size = "1 MiB"\n')
    write_profile(profiles, "precise", 'formats = ["tflite"]\nquantization = ["int16x8"]\n[budget]\nmax_size = "1 MiB"\n')
    result = build(warm_options(out=root / "out", model=model, profiles=profiles, calibration=root / "calibration.npz",
                                validation=root / "validation.npz", latency_runs=3, rgb_input=False))
    return result, root / "out"


def test_a_sequential_model_builds_with_qat_tried_and_every_profile_written(sequential_build):
    result, out = sequential_build
    npu = result.profile("npu").format("tflite")
    assert [t.candidate for t in npu.tried] == ["tflite-int8", "tflite-int8-qat"]
    assert all(t.verdict.error is None for t in npu.tried)  # measured, not crashed: both miss this tight budget
    assert (out / "phone" / "model.tflite").is_file()
    assert json.loads((out / "phone" / "manifest.json").read_text())["artifacts"][0]["quantization"] == "float16"


def test_a_variant_that_fails_fails_its_candidates_not_the_build(tmp_path, monkeypatch, sequential_cnn, digits):
    """Whatever fine-tuning raises (here Keras's own error from a model it cannot rebuild) is that candidate's
    failure, said in one line; the other candidates and profiles are built."""
    def broken(*args, **kwargs):
        raise ValueError("`call_function` argument is not supported with Sequential models.\nIn a Sequential ...")

    monkeypatch.setattr(quantize, "quantization_aware", broken)
    model = tmp_path / "digits.keras"
    sequential_cnn.save(model)
    np.savez(tmp_path / "calibration.npz", images=digits[0][:100])
    profiles = tmp_path / "profiles"
    write_profile(profiles, "npu", 'formats = ["tflite"]\nquantization = ["int8"]\n[budget]\nmax_size = "1 MiB"\n'
                                   "[drift]\nmax_abs_error = 0.0005\n")
    write_profile(profiles, "phone", 'formats = ["tflite"]\nquantization = ["float16"]\n[budget]\nmax_size = "1 MiB"\n')
    result = build(warm_options(out=tmp_path / "out", model=model, profiles=profiles, calibration=tmp_path / "calibration.npz",
                                latency_runs=3, rgb_input=False, cache=None))
    tried = {t.candidate: t for t in result.profile("npu").format("tflite").tried}
    error = tried["tflite-int8-qat"].verdict.error
    assert error.startswith("quantization-aware fine-tuning failed on this model (ValueError:") and "\n" not in error
    assert (tmp_path / "out" / "phone" / "model.tflite").is_file()


def test_int16x8_is_made_by_both_engines_and_the_closer_file_kept_with_float_io(tmp_path, sequential_cnn, digits):
    """Neither engine's int16x8 is better on every model (on this digits CNN the converter's is about 4x
    closer): both files are run in LiteRT, the closer one kept; either way its I/O is float, as documented."""
    from mobilepre.quantize.export import INPUT_NAME, export_saved_model
    from mobilepre.quantize.runtime import tflite_interpreter

    images = digits[0]
    exported = export_saved_model(sequential_cnn, tmp_path / "saved_model", (16, 16, 1))
    artifact = quantize.convert_saved_model(exported, quantize.QuantizationSettings("tflite", "int16x8"), images[:200])
    choice = artifact.engine_choice
    errors = {name: m["relative_error"] for name, m in choice["engines"].items()}
    assert set(errors) == {"tflite-converter", "litert-quantizer"}
    assert str(artifact.engine) == choice["kept"] == min(errors, key=errors.get)
    for engine in quantize.Engine.TFLITE_CONVERTER, quantize.Engine.LITERT_QUANTIZER:
        made = quantize.convert_saved_model(exported, quantize.QuantizationSettings("tflite", "int16x8", engine=engine), images[:200])
        interpreter = tflite_interpreter(made.files["model.tflite"])
        assert [d["dtype"].__name__ for d in interpreter.get_input_details() + interpreter.get_output_details()] == ["float32"] * 2
        want = sequential_cnn.predict(images[1200:1300], verbose=0)
        run = interpreter.get_signature_runner()
        got = np.concatenate([next(iter(run(**{INPUT_NAME: images[i:i + 1]}).values())) for i in range(1200, 1300)])
        assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.97


def test_the_manifest_says_which_engine_made_int16x8_and_why(sequential_build):
    _, out = sequential_build
    (artifact,) = json.loads((out / "precise" / "manifest.json").read_text())["artifacts"]
    assert artifact["quantization"] == "int16x8" and artifact["io_type"] == "float32"
    assert artifact["engine"] == artifact["engine_choice"]["kept"]
    assert artifact["engine_choice"]["why"].startswith("measured ") and len(artifact["engine_choice"]["engines"]) == 2


@pytest.fixture(scope="module")
def signed_range_model(tmp_path_factory, keras, digits):
    """A classifier trained on inputs in [-1, 1] (as many face and MobileNet-style models are), saved with
    its data: `.npz` arrays in [-1, 1] and the same digits as raw 0..255 pixels."""
    root = tmp_path_factory.mktemp("signed")
    keras.utils.set_random_seed(2)
    L = keras.layers
    images, labels = digits
    model = keras.Sequential([keras.Input((16, 16, 1)), L.Conv2D(8, 3, activation="relu"), L.GlobalAveragePooling2D(),
                              L.Dense(10, activation="softmax")], name="signed_range")
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(images[:1200] * 2 - 1, labels[:1200], epochs=3, batch_size=64, verbose=0)
    model.save(root / "model.keras")
    np.savez(root / "signed.npz", images=images[1200:1400] * 2 - 1, labels=labels[1200:1400])
    np.savez(root / "pixels.npz", images=np.round(images[1200:1400] * 255).astype(np.float32))
    profiles = root / "profiles"
    write_profile(profiles, "npu", 'formats = ["tflite"]\nquantization = ["int8"]\nio_type = "uint8"\n[budget]\nmax_size = "1 MiB"\n')
    return root


@pytest.mark.parametrize("data, observed, suggested", [("signed.npz", "from -1 to 1", "--input-range -1:1"),
                                                       ("pixels.npz", "from 0 to 255", "--input-range 0:255")])
def test_data_outside_the_stated_input_range_is_refused_naming_what_it_holds(tmp_path, signed_range_model, data, observed, suggested):
    from tests.conftest import run_cli

    root = signed_range_model
    result = run_cli("build", root / "model.keras", "--calibration", root / data, "--profiles", root / "profiles",
                     "--no-frontend", "--gray-input", "--out", tmp_path / "out")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert observed in line and "outside the input range 0:1" in line and suggested in line
    assert not (tmp_path / "out").exists()


def test_the_contract_states_the_range_the_model_takes_in_each_tensors_units(tmp_path, signed_range_model):
    from tests.conftest import run_cli

    root = signed_range_model
    result = run_cli("build", root / "model.keras", "--calibration", root / "signed.npz", "--profiles", root / "profiles",
                     "--no-frontend", "--gray-input", "--input-range", "-1:1", "--out", tmp_path / "out", "--latency-runs", "3")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "npu" / "manifest.json").read_text())
    (artifact,) = manifest["artifacts"]
    (tensor,) = artifact["io"]["inputs"]
    assert artifact["io_type"] == "uint8" and tensor["dtype"] == "uint8"
    scale, zero = tensor["quantization"]
    assert abs(scale - 2 / 255) < 1e-3 and zero in (127, 128)  # calibrated on full-range images: about raw pixels
    assert tensor["real_range"] == [-1.0, 1.0]
    assert tensor["value_range"] == [round(-1 / scale + zero), min(255, round(1 / scale + zero))]  # as calibrated, e.g. [0, 254]


def test_a_photo_folder_of_every_image_mode_is_converted_and_said_once(tmp_path, keras):
    """Photos as phones and scanners save them: grey, grey + alpha, palette, RGBA, CMYK JPEG beside RGB."""
    from PIL import Image

    from tests.conftest import run_cli

    keras.utils.set_random_seed(3)
    L = keras.layers
    model = keras.Sequential([keras.Input((24, 24, 3)), L.Conv2D(4, 3, activation="relu"), L.GlobalAveragePooling2D(),
                              L.Dense(3, activation="softmax")])
    model.save(tmp_path / "rgb.keras")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    modes = {"L": "png", "LA": "png", "P": "png", "RGBA": "png", "CMYK": "jpg", "RGB": "jpg"}
    for i in range(12):
        mode, suffix = list(modes.items())[i % len(modes)]
        Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).convert(mode).save(photos / f"{i:02d}.{suffix}")
    profiles = tmp_path / "profiles"
    write_profile(profiles, "phone", 'formats = ["tflite"]\nquantization = ["float32"]\n[budget]\nmax_size = "1 MiB"\n')
    result = run_cli("build", tmp_path / "rgb.keras", "--calibration", photos, "--profiles", profiles, "--out", tmp_path / "out",
                     "--latency-runs", "3", "--allow-degenerate-reference")
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "converted to the model's 3 channels" in line]
    assert len(said) == 1 and "6 of 12 images (2 grayscale, 2 grayscale with alpha, 2 with alpha) in photos" in said[0]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert any("converted to the model's 3 channels" in w for w in json.dumps(report).split('"') if "converted" in w)


@pytest.fixture(scope="module")
def digit_detector(tmp_path_factory, keras, digits):
    """A fully convolutional detector's first stage, trained: 32x32 scenes, half holding one handwritten
    digit somewhere; an 8x8 heat map (sigmoid: is a digit centred in this cell) and an 8x8 box-offset map
    (linear: the digit's centre within the cell and its size)."""
    root = tmp_path_factory.mktemp("detector")
    rng = np.random.default_rng(4)
    images, _ = digits
    count = 800
    scenes = rng.uniform(0, 0.1, (count, 32, 32, 1)).astype(np.float32)
    heat = np.zeros((count, 8, 8, 1), np.float32)
    offsets = np.zeros((count, 8, 8, 4), np.float32)
    for i in range(0, count, 2):  # every other scene holds a digit
        y, x = rng.integers(0, 17, 2)
        scenes[i, y:y + 16, x:x + 16, 0] = np.maximum(scenes[i, y:y + 16, x:x + 16, 0], images[i % 1200, ..., 0])
        cy, cx = (y + 8) // 4, (x + 8) // 4
        heat[i, cy, cx, 0] = 1
        offsets[i, cy, cx] = [(y + 8) / 4 - cy, (x + 8) / 4 - cx, 1.0, 1.0]
    keras.utils.set_random_seed(5)
    L = keras.layers
    inputs = keras.Input((32, 32, 1))
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inputs)
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu")(x)
    model = keras.Model(inputs, [L.Conv2D(1, 1, activation="sigmoid", name="heat")(x), L.Conv2D(4, 1, name="offsets")(x)])
    model.compile("adam", ["binary_crossentropy", "mse"])
    model.fit(scenes[:600], [heat[:600], offsets[:600]], epochs=8, batch_size=32, verbose=0)
    model.save(root / "detector.keras")
    np.savez(root / "scenes.npz", images=scenes[600:])
    return model, root


def test_dense_maps_get_kinds_that_fit_them(digit_detector):
    from mobilepre.models import from_keras

    model, _ = digit_detector
    specs = {s.name: (str(s.kind), s.evidence) for s in from_keras(model).outputs}
    assert specs["heat"] == ("probability_map", "sigmoid over a rank-4 output, a 8x8 map of a 32x32 input")
    assert specs["offsets"] == ("regression", "rank-4 linear output, a 8x8 map of a 32x32 input")


def test_the_degenerate_guard_counts_images_not_pixels():
    """A mask is mostly background by nature: half the images holding an object is not degenerate."""
    from mobilepre.validate import degenerate_reason

    masks = np.zeros((40, 8, 8, 2), np.float32)
    masks[..., 0] = 1  # background everywhere ...
    masks[::2, 3, 3] = [0, 1]  # ... but one object pixel in every other image (98% of the pixels are background)
    assert degenerate_reason(masks, "segmentation") is None
    background = masks[1::2] + np.random.default_rng(0).uniform(0, 0.3, masks[1::2].shape).astype(np.float32)
    assert degenerate_reason(background, "segmentation") == "it gives class 0 at every pixel of 100% of the images"


def test_every_output_of_a_detector_is_judged_by_what_it_means(tmp_path, digit_detector):
    """The shipped profiles judge the heat map's probabilities and the offsets' relative error; a profile
    judging neither names both, in the table, the report and the manifest."""
    from tests.conftest import run_cli

    _, root = digit_detector
    result = run_cli("build", root / "detector.keras", "--calibration", root / "scenes.npz", "--profile", "npu-int8",
                     "--out", tmp_path / "shipped", "--latency-runs", "3")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "shipped" / "npu-int8" / "manifest.json").read_text())
    checks = {(c["output"], c["name"]) for c in manifest["verdict"]["tflite"]["checks"] if c.get("output")}
    assert checks == {("heat", "max_abs_error"), ("offsets", "max_relative_error")}, result.stderr
    assert "unjudged" not in manifest["verdict"]["tflite"]
    drift = {d["name"]: d for d in manifest["artifacts"][0]["drift"]}
    assert drift["heat"]["kind"] == "probability_map" and drift["offsets"]["kind"] == "regression"

    profiles = tmp_path / "profiles"
    write_profile(profiles, "bare", 'formats = ["tflite"]\nquantization = ["int8"]\n[budget]\nmax_size = "1 MiB"\n'
                                    "[drift]\nmin_top1_agreement = 0.97\n")
    result = run_cli("build", root / "detector.keras", "--calibration", root / "scenes.npz", "--profiles", profiles,
                     "--out", tmp_path / "bare", "--latency-runs", "3")
    assert result.returncode == 0, result.stderr
    assert "(no drift budget judges heat, offsets)" in result.stdout
    manifest = json.loads((tmp_path / "bare" / "bare" / "manifest.json").read_text())
    assert manifest["verdict"]["tflite"]["unjudged"] == ["heat", "offsets"]
    assert "no drift budget judges heat, offsets" in (tmp_path / "bare" / "report.md").read_text()


def test_per_op_errors_are_measured_at_int8_on_a_several_output_model(tmp_path, digit_detector):
    """The mixed search on an int8 base ranks every op (the quantizer's own validator looked an output up
    by a tensor name LiteRT had released: "Tensor data is null")."""
    from mobilepre.quantize.export import INPUT_NAME, export_saved_model
    from mobilepre.quantize.mixed import graph_ops, rank_tflite_ops

    model, root = digit_detector
    exported = export_saved_model(model, tmp_path / "saved_model", (32, 32, 1))
    float_file = quantize.convert_saved_model(exported, quantize.QuantizationSettings("tflite", "float32", strip_metadata=False)).files["model.tflite"]
    scenes = np.load(root / "scenes.npz")["images"][:8]
    ranked = rank_tflite_ops(float_file, quantize.Mode.INT8, scenes, INPUT_NAME)
    assert {e.name for e in ranked} == {op["output"] for op in graph_ops(float_file)}
    assert all(np.isfinite(e.error) for e in ranked) and ranked[0].error > ranked[-1].error


CUSTOM_LAYER = '''
import keras


@keras.saving.register_keras_serializable(package="acme")
class ScaledSwish(keras.layers.Layer):
    """A user's own activation: x * sigmoid(beta * x) with a learnt beta."""

    def build(self, input_shape):
        self.beta = self.add_weight(shape=(), initializer="ones", name="beta")

    def call(self, x):
        return x * keras.ops.sigmoid(self.beta * x)
'''


def test_a_model_with_its_own_layer_builds_with_its_code_brought_in(tmp_path, keras, digits):
    """A `.keras` whose layer is the user's own: refused untrusted, the missing class named when trusted
    without its code, built with `--custom-objects` (imported in the sandboxed child too) in a fresh process."""
    import importlib.util

    from tests.conftest import run_cli, run_cli_process

    (tmp_path / "acme_layers.py").write_text(CUSTOM_LAYER)
    spec = importlib.util.spec_from_file_location("acme_layers", tmp_path / "acme_layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    L = keras.layers
    model = keras.Sequential([keras.Input((16, 16, 1)), L.Conv2D(8, 3), module.ScaledSwish(), L.GlobalAveragePooling2D(),
                              L.Dense(10, activation="softmax")])
    train(model, digits, epochs=1)
    model.save(tmp_path / "own.keras")
    np.savez(tmp_path / "cal.npz", images=digits[0][:100])
    profiles = tmp_path / "profiles"
    write_profile(profiles, "phone", 'formats = ["tflite"]\nquantization = ["float16"]\n[budget]\nmax_size = "1 MiB"\n')
    args = ["build", tmp_path / "own.keras", "--calibration", tmp_path / "cal.npz", "--profiles", profiles, "--gray-input",
            "--latency-runs", "3"]

    untrusted = run_cli(*args, "--out", tmp_path / "a", "--custom-objects", "acme_layers")
    assert untrusted.returncode == 2 and untrusted.stderr.count("\n") == 1
    assert "--custom-objects imports and runs acme_layers: pass --trust-model" in untrusted.stderr

    without = run_cli_process(*args, "--out", tmp_path / "b", "--trust-model", "--quiet", env=dict(os.environ), cwd=tmp_path)
    assert without.returncode == 2 and "Traceback" not in without.stderr
    (line,) = without.stderr.strip().splitlines()
    assert "uses the class ScaledSwish, which no imported code defines: pass --custom-objects MODULE" in line and "--trust-model" in line

    built = run_cli_process(*args, "--out", tmp_path / "c", "--trust-model", "--custom-objects", "acme_layers", env=dict(os.environ), cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "c" / "phone" / "model.tflite").is_file()


@pytest.mark.parametrize("heads", [("cls", "box"), ("box", "cls")])
def test_mediapipe_reads_each_head_of_a_two_output_model_under_its_own_name(tmp_path, keras, digits, heads):
    """A class + box model, its heads in either Keras order (the .tflite's own output order is the
    converter's): MediaPipe Tasks must find the 10 class scores under `cls` and the 4 box numbers under
    `box`; the manifest says no Tasks API fits it as it is."""
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    from tests.conftest import run_cli

    images, labels = digits
    ink = images[..., 0] > 0.3
    rows, cols = ink.any(axis=2), ink.any(axis=1)
    boxes = np.stack([rows.argmax(1), cols.argmax(1), 15 - rows[:, ::-1].argmax(1), 15 - cols[:, ::-1].argmax(1)], 1) / 15.0
    keras.utils.set_random_seed(6)
    L = keras.layers
    inputs = keras.Input((16, 16, 1))
    x = L.GlobalAveragePooling2D()(L.Conv2D(16, 3, activation="relu")(L.Conv2D(8, 3, activation="relu")(inputs)))
    made = {"cls": L.Dense(10, activation="softmax", name="cls")(x), "box": L.Dense(4, name="box")(x)}
    model = keras.Model(inputs, [made[h] for h in heads])
    losses = {"cls": "sparse_categorical_crossentropy", "box": "mse"}
    targets = {"cls": labels[:1200], "box": boxes[:1200].astype(np.float32)}
    model.compile("adam", [losses[h] for h in heads])
    model.fit(images[:1200], [targets[h] for h in heads], epochs=3, batch_size=64, verbose=0)
    model.save(tmp_path / "two_heads.keras")
    np.savez(tmp_path / "cal.npz", images=images[1200:1400])
    profiles = tmp_path / "profiles"
    write_profile(profiles, "phone", 'formats = ["tflite"]\nquantization = ["float32"]\n[budget]\nmax_size = "1 MiB"\n')
    result = run_cli("build", tmp_path / "two_heads.keras", "--calibration", tmp_path / "cal.npz", "--profiles", profiles,
                     "--out", tmp_path / "out", "--latency-runs", "3")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "phone" / "manifest.json").read_text())
    (artifact,) = manifest["artifacts"]
    assert artifact["metadata"]["mediapipe_task"] is None

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(tmp_path / "out" / "phone" / "model.tflite")),
                                            max_results=-1)
    picture = np.ascontiguousarray(np.repeat(np.round(images[1500] * 255).astype(np.uint8), 3, axis=-1))
    with vision.ImageClassifier.create_from_options(options) as classifier:
        found = {c.head_name: c.categories for c in classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=picture)).classifications}
    assert len(found["cls"]) == 10 and len(found["box"]) <= 4  # (a head's negative values are not categories)
    from mobilepre.quantize.export import output_list

    want = output_list(model, model.predict(images[1500:1501], verbose=0))[heads.index("cls")][0]
    assert max(found["cls"], key=lambda c: c.score).index == int(want.argmax())


def test_a_model_with_dynamic_input_dimensions_is_told_the_flag_that_fixes_them(keras):
    from mobilepre.errors import MobilepreError
    from mobilepre.models import from_keras

    L = keras.layers
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, L.Dense(2, activation="softmax")(L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(inputs))))
    with pytest.raises(MobilepreError) as refused:
        from_keras(model, path="fcn.keras")
    assert refused.value.render({"input_shape": "--input-shape"}).endswith("give --input-shape H,W,C (e.g. 224,224,3) to fix them")
    assert from_keras(model, input_shape=(32, 32, 3)).input_shape == (32, 32, 3)
