"""The preprocessing front-end: what each stage does to pixels, not just its shapes."""

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mobilepre.errors import MobilepreError
from mobilepre.frontend import (
    FeatureStage,
    FrontendSpec,
    attach,
    build_frontend,
    gaussian_kernel,
    parse_features,
    parse_input_shape,
)
from tests.conftest import litert_run, run_cli, tiny_classifier


def denoise_only(channels=3, sigma=1.0, size=64):
    return build_frontend(
        FrontendSpec(input_shape=(size, size, channels), uint8_input=False, sigma=sigma, features=(), normalize="none", rgb_input=False)
    )


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_gaussian_kernel_sums_to_one_per_channel_and_is_symmetric(keras, sigma):
    kernel = denoise_only(3, sigma).get_layer("denoise").get_weights()[0]
    assert kernel.shape == (3, 3, 3, 1)
    for c in range(3):
        k = kernel[:, :, c, 0]
        assert k.sum() == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(k, k.T, atol=1e-7)
        np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-7)
        assert k[1, 1] == k.max()
    np.testing.assert_allclose(kernel[:, :, 0, 0], gaussian_kernel(sigma), atol=1e-7)


def test_denoise_lowers_noise_variance_by_the_kernels_factor(keras):
    model = denoise_only(1, sigma=1.0, size=128)
    noise = np.random.default_rng(0).normal(0.5, 0.1, (4, 128, 128, 1)).astype(np.float32)
    out = np.asarray(model(noise))
    interior = (slice(None), slice(1, -1), slice(1, -1), 0)  # 'same' padding changes the border
    measured = out[interior].var() / noise[interior].var()
    predicted = float((gaussian_kernel(1.0) ** 2).sum())  # Var(sum k_i x_i) = sigma^2 sum k_i^2
    assert measured == pytest.approx(predicted, rel=0.05)
    assert predicted < 0.25  # the stage really denoises: a 4x lower variance at sigma 1


def test_denoise_keeps_channels_apart(keras):
    model = denoise_only(3)
    x = np.zeros((1, 64, 64, 3), np.float32)
    x[..., 1] = np.random.default_rng(1).random((64, 64))
    out = np.asarray(model(x))
    assert np.abs(out[..., 0]).max() == 0 and np.abs(out[..., 2]).max() == 0
    assert np.abs(out[..., 1]).max() > 0


def test_denoise_stage_is_trainable_and_regularised(keras):
    model = denoise_only(1)
    layer = model.get_layer("denoise")
    assert layer.trainable and layer.kernel_size == (3, 3) and layer.strides == (1, 1) and layer.padding == "same"
    assert layer.activation.__name__ == "linear" and not layer.use_bias
    assert model.losses, "the L2 kernel regulariser adds a loss term"
    assert float(model.losses[0]) == pytest.approx(0.01 * float((gaussian_kernel(1.0) ** 2).sum()), rel=1e-5)


def test_features_flag_produces_the_layers_it_names(keras):
    spec = FrontendSpec(input_shape=(8, 8, 3), features=parse_features("8:3,4:1,2:5"))
    model = build_frontend(spec)
    convs = [model.get_layer(f"features_{i}") for i in (1, 2, 3)]
    assert [(c.filters, c.kernel_size) for c in convs] == [(8, (3, 3)), (4, (1, 1)), (2, (5, 5))]
    assert all(c.activation.__name__ == "relu" and c.padding == "same" for c in convs)
    assert tuple(model.output.shape[1:]) == (8, 8, 2)


@pytest.mark.parametrize(
    "normalize, cls", [("batchnorm", "BatchNormalization"), ("sigmoid", "Conv2D"), ("none", None)]
)
def test_normalize_flag_produces_the_layer_it_names(keras, normalize, cls):
    model = build_frontend(FrontendSpec(input_shape=(8, 8, 1), normalize=normalize, rgb_input=False))
    names = {layer.name: type(layer).__name__ for layer in model.layers}
    assert names.get("normalize") == cls
    if normalize == "sigmoid":
        layer = model.get_layer("normalize")
        assert layer.kernel_size == (1, 1) and layer.activation.__name__ == "sigmoid"
        x = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 1)).astype(np.uint8)
        y = np.asarray(model(x))
        assert y.min() >= 0 and y.max() <= 1


def test_uint8_input_rescales_inside_the_model(keras):
    raw = build_frontend(FrontendSpec(input_shape=(8, 8, 1), features=(), normalize="none", rgb_input=False))
    scaled = build_frontend(FrontendSpec(input_shape=(8, 8, 1), features=(), normalize="none", uint8_input=False, rgb_input=False))
    assert raw.input.dtype == "uint8" and scaled.input.dtype == "float32"
    x = np.random.default_rng(2).integers(0, 256, (2, 8, 8, 1)).astype(np.uint8)
    np.testing.assert_allclose(np.asarray(raw(x)), np.asarray(scaled(x.astype(np.float32) / 255.0)), atol=1e-6)


def test_saved_frontend_round_trips(keras, tmp_path):
    model = build_frontend(FrontendSpec(input_shape=(8, 8, 3), sigma=1.7))
    model.save(tmp_path / "f.keras")
    loaded = keras.models.load_model(tmp_path / "f.keras")
    x = np.random.default_rng(3).integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(loaded(x)), atol=1e-6)
    kernel = loaded.get_layer("denoise").get_weights()[0]
    np.testing.assert_array_equal(kernel, np.broadcast_to(gaussian_kernel(1.7)[:, :, None, None], (3, 3, 3, 1)))


def test_grayscale_frontend_takes_rgb_and_sees_bt601_luma(keras):
    model = build_frontend(FrontendSpec(input_shape=(8, 8, 1), denoise=False, features=(), normalize="none"))
    assert tuple(model.input.shape) == (None, 8, 8, 3) and tuple(model.output.shape) == (None, 8, 8, 1)
    rgb = np.random.default_rng(5).integers(0, 256, (4, 8, 8, 3)).astype(np.uint8)
    want = (rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))[..., None] / 255.0
    np.testing.assert_allclose(model.predict(rgb, verbose=0), want, atol=1e-6)
    grey = np.repeat(rgb[..., :1], 3, axis=-1)  # a grey pixel (R = G = B) keeps its value
    np.testing.assert_allclose(model.predict(grey, verbose=0), grey[..., :1] / 255.0, atol=1e-6)
    luma = model.get_layer("luma")
    assert not luma.trainable and luma.kernel in model.non_trainable_weights  # pruning and fine-tuning leave it alone
    kept = build_frontend(FrontendSpec(input_shape=(8, 8, 1), rgb_input=False))
    assert tuple(kept.input.shape) == (None, 8, 8, 1) and "luma" not in [layer.name for layer in kept.layers]
    colour = build_frontend(FrontendSpec(input_shape=(8, 8, 3)))
    assert "luma" not in [layer.name for layer in colour.layers]


def test_attach_checks_shapes(keras):
    frontend = build_frontend(FrontendSpec(input_shape=(16, 16, 1)))
    with pytest.raises(MobilepreError, match=r"front-end outputs \(16, 16, 32\).*expects \(16, 16, 3\)"):
        attach(frontend, tiny_classifier(keras, input_shape=(16, 16, 3)))
    flexible = tiny_classifier(keras, input_shape=(None, None, 32))
    assert tuple(attach(frontend, flexible).output.shape) == (None, 4)


@pytest.mark.parametrize("attached", [False, True])
def test_frontend_runs_in_litert_as_in_keras(keras, tiny_model, tiny_images, attached):
    from mobilepre import quantize

    model = tiny_model if attached else build_frontend(FrontendSpec(input_shape=(16, 16, 1)))
    artifact = quantize.convert(model, quantize.QuantizationSettings("tflite", "float32"))
    got = litert_run(artifact.files["model.tflite"], tiny_images[:8])
    want = np.asarray(model.predict(tiny_images[:8], verbose=0))
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(input_shape=(0, 5, 3)), "input_shape"),
        (dict(sigma=0), "sigma"),
        (dict(sigma=float("nan")), "sigma"),
        (dict(l2=-1), "l2"),
        (dict(normalize="layernorm"), "normalize"),
    ],
)
def test_spec_refuses_bad_values(bad, message):
    with pytest.raises(MobilepreError, match=message):
        FrontendSpec(**bad)
    with pytest.raises(MobilepreError, match="filters"):
        FeatureStage(0, 3)


def test_parsers():
    assert parse_input_shape("32, 32,1") == (32, 32, 1)
    assert parse_features("16:5,32:3") == (FeatureStage(16, 5), FeatureStage(32, 3))
    assert parse_features("none") == ()
    for text in ("16", "16:", "a:3", "16:-1", "16:0,8:3"):
        with pytest.raises(MobilepreError, match="FILTERS:KERNEL"):
            parse_features(text)
    for text in ("0,5", "1,2", "a,b,c", "1,2,3,4", ""):
        with pytest.raises(MobilepreError, match="H,W,C"):
            parse_input_shape(text)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input-shape", "0,5"], "--input-shape '0,5'"),
        (["--features", "16:0"], "--features '16:0'"),
        (["--normalize", "layernorm"], "--normalize 'layernorm'"),
        (["--sigma", "-1"], "sigma"),
    ],
)
def test_cli_bad_arguments_give_one_line_and_exit_2(tmp_path, args, message):
    out = tmp_path / "f.keras"
    result = run_cli("frontend", "--out", out, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_the_library_names_its_parameter_and_the_cli_its_flag(tmp_path):
    """One mistake, two readers: a Python caller is told `input_shape`, a CLI user `--input-shape`."""
    problem = "'0,5': expected H,W,C as three positive integers, e.g. 224,224,3"
    with pytest.raises(MobilepreError) as info:
        parse_input_shape("0,5")
    assert str(info.value) == info.value.message == f"input_shape {problem}"
    result = run_cli("frontend", "--out", tmp_path / "f.keras", "--input-shape", "0,5")
    assert result.returncode == 2
    assert result.stderr.strip() == f"mobilepre: error: --input-shape {problem}"


def test_cli_frontend_writes_a_loadable_model(tmp_path, keras):
    out = tmp_path / "f.keras"
    result = run_cli("frontend", "--out", out, "--input-shape", "12,12,3", "--features", "4:3", "--normalize", "sigmoid", "--json")
    assert result.returncode == 0, result.stderr
    import json

    summary = json.loads(result.stdout)
    assert summary["output_shape"] == [12, 12, 4] and summary["input_dtype"] == "uint8"
    assert [layer["name"] for layer in summary["layers"]] == ["rescale", "denoise", "features_1", "normalize"]
    assert keras.models.load_model(out).count_params() == summary["parameters"]


def test_help_and_version_do_not_import_tensorflow():
    import subprocess

    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from mobilepre.cli import app\n"
        "r = CliRunner()\n"
        "for args in (['--help'], ['--version'], ['frontend', '--help']):\n"
        "    assert r.invoke(app, args).exit_code == 0, args\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- saved front-ends are plain Keras files --------------------------------------------------------

# Runs in a fresh interpreter that never imports mobilepre: loads each model with stock Keras and
# saves its predictions. argv: model, inputs.npy, outputs.npy, repeated.
PLAIN_KERAS_CHILD = """
import sys
import numpy as np
import keras
args = sys.argv[1:]
for model_path, x_path, y_path in zip(args[0::3], args[1::3], args[2::3]):
    model = keras.models.load_model(model_path)
    np.save(y_path, np.asarray(model.predict(np.load(x_path), verbose=0)))
loaded = sorted(m for m in sys.modules if m == "mobilepre" or m.startswith("mobilepre."))
assert not loaded, loaded
"""


def predict_in_plain_keras(tmp_path, *model_and_inputs):
    """Predict with each (model path, inputs) in a child process that never imports mobilepre."""
    args, outputs = [], []
    for i, (path, x) in enumerate(model_and_inputs):
        np.save(tmp_path / f"x{i}.npy", x)
        args += [str(path), str(tmp_path / f"x{i}.npy"), str(tmp_path / f"y{i}.npy")]
        outputs.append(tmp_path / f"y{i}.npy")
    child = tmp_path / "child"
    child.mkdir()  # not the repository: nothing on the child's path offers mobilepre by accident
    result = subprocess.run(
        [sys.executable, "-c", PLAIN_KERAS_CHILD, *args],
        capture_output=True, text=True, cwd=child, timeout=300, env=_child_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [np.load(y) for y in outputs]


def _child_env():
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def saved_config(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("config.json"))


def find_layers(config, class_name):
    found = []
    if isinstance(config, dict):
        if config.get("class_name") == class_name:
            found.append(config)
        for value in config.values():
            found += find_layers(value, class_name)
    elif isinstance(config, list):
        for value in config:
            found += find_layers(value, class_name)
    return found


STOCK_BOX_INITIALIZER = {
    "module": "keras.initializers",
    "class_name": "Constant",
    "config": {"value": pytest.approx(1 / 9)},
    "registered_name": None,
}


def test_written_frontends_load_and_predict_in_plain_keras_without_mobilepre(keras, tmp_path):
    from mobilepre.frontend import write_frontend

    written = tmp_path / "written.keras"
    write_frontend(FrontendSpec(input_shape=(12, 12, 3), sigma=1.7, features=parse_features("4:3")), written)
    cli = tmp_path / "cli.keras"
    result = run_cli("frontend", "--out", cli, "--input-shape", "10,10,1", "--normalize", "sigmoid")
    assert result.returncode == 0, result.stderr
    rng = np.random.default_rng(4)
    x_written = rng.integers(0, 256, (3, 12, 12, 3)).astype(np.uint8)
    x_cli = rng.integers(0, 256, (3, 10, 10, 3)).astype(np.uint8)  # a grayscale front-end takes RGB
    got = predict_in_plain_keras(tmp_path, (written, x_written), (cli, x_cli))
    for path, x, y in zip((written, cli), (x_written, x_cli), got):
        want = np.asarray(keras.models.load_model(path).predict(x, verbose=0))
        assert y.shape == want.shape
        np.testing.assert_allclose(y, want, atol=1e-6)


def test_shipped_demo_loads_and_predicts_in_plain_keras_without_mobilepre(keras, tmp_path):
    import mobilepre.layers  # noqa: F401  as mobilepre's own loader does; the file needs nothing from it
    from mobilepre import demo

    images = np.load(demo.validation_path())["images"][:64]
    (got,) = predict_in_plain_keras(tmp_path, (demo.model_path(), images))
    want = np.asarray(keras.models.load_model(demo.model_path()).predict(images, verbose=0))
    assert got.shape == (64, 10)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert "mobilepre" not in json.dumps(saved_config(demo.model_path()))
    (denoise,) = find_layers(saved_config(demo.model_path()), "DepthwiseConv2D")
    assert denoise["config"]["depthwise_initializer"] == STOCK_BOX_INITIALIZER


def test_saved_config_names_a_stock_initializer_and_the_file_keeps_the_gaussian(keras, tmp_path):
    from mobilepre.frontend import write_frontend

    out = tmp_path / "f.keras"
    write_frontend(FrontendSpec(input_shape=(8, 8, 2), sigma=0.7, l2=0.05), out)
    config = saved_config(out)
    assert "mobilepre" not in json.dumps(config)
    (denoise,) = find_layers(config, "DepthwiseConv2D")
    assert denoise["config"]["depthwise_initializer"] == STOCK_BOX_INITIALIZER
    assert denoise["config"]["depthwise_regularizer"]["config"] == {"l2": pytest.approx(0.05)}
    # The config says "box filter"; the weights in the file are still the sigma-0.7 Gaussian.
    kernel = keras.models.load_model(out).get_layer("denoise").get_weights()[0]
    np.testing.assert_array_equal(kernel, np.broadcast_to(gaussian_kernel(0.7)[:, :, None, None], (3, 3, 2, 1)))
    # Re-initialising from the config alone gives the documented low-pass: a mean filter summing to 1.
    fresh = keras.layers.DepthwiseConv2D.from_config(denoise["config"])
    fresh.build((None, 8, 8, 2))
    np.testing.assert_allclose(fresh.get_weights()[0], np.full((3, 3, 2, 1), 1 / 9, np.float32))


def test_files_from_earlier_versions_naming_gaussianblur_still_load_with_mobilepre(keras, tmp_path):
    from mobilepre.layers import GaussianBlur

    inputs = keras.Input((6, 6, 2))
    layer = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, depthwise_initializer=GaussianBlur(1.3))
    old = keras.Model(inputs, layer(inputs))
    old.save(tmp_path / "old.keras")
    assert "mobilepre>GaussianBlur" in json.dumps(saved_config(tmp_path / "old.keras"))
    loaded = keras.models.load_model(tmp_path / "old.keras")
    np.testing.assert_array_equal(
        loaded.layers[1].get_weights()[0], np.broadcast_to(gaussian_kernel(1.3)[:, :, None, None], (3, 3, 2, 1))
    )


def test_frontend_imports_neither_layers_nor_tensorflow():
    # One direction only: mobilepre.layers (Keras at import) may use the front-end, never the reverse.
    tree = ast.parse((Path(__file__).resolve().parents[1] / "mobilepre" / "frontend.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert not {m for m in imported if m and m.startswith("mobilepre.layers")}, imported
    code = (
        "import sys, mobilepre.frontend\n"
        "bad = {'tensorflow', 'keras', 'mobilepre.layers'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
