"""Shared fixtures: tiny models built in-process, real converters and runtimes."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "mobilepre"]


def with_cache(env: dict | None) -> dict | None:
    """`env` (copied from os.environ when a test module was imported) with this test's own cache."""
    return None if env is None else {**env, "MOBILEPRE_CACHE": os.environ["MOBILEPRE_CACHE"]}


def run_cli(*args, cwd=None, env=None, timeout=600):
    """Run the real `mobilepre` command in a child process; return the CompletedProcess."""
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=with_cache(env), timeout=timeout
    )


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch):
    """Every test gets an empty candidate cache (the CLI's default), as a fresh machine has: no test
    reads what another measured, and none writes into the user's ~/.cache."""
    monkeypatch.setenv("MOBILEPRE_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def tf():
    from mobilepre._tf import quiet_tensorflow

    return quiet_tensorflow()


@pytest.fixture(scope="session")
def keras(tf):
    import keras as k

    return k


def tiny_classifier(keras, input_shape=(16, 16, 32), classes=4, seed=0, name="tiny"):
    """A few-KB CNN classifier with deterministic weights."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture(scope="session")
def tiny_model(keras):
    """Front-end (a 16x16 grayscale core that takes RGB uint8 pixels, luma inside; 32 features)
    attached to a tiny classifier."""
    from mobilepre.frontend import FrontendSpec, attach, build_frontend

    keras.utils.set_random_seed(1)
    frontend = build_frontend(FrontendSpec(input_shape=(16, 16, 1)))
    return attach(frontend, tiny_classifier(keras))


@pytest.fixture(scope="session")
def tiny_images():
    return np.random.default_rng(0).integers(0, 256, (48, 16, 16, 3)).astype(np.uint8)


def litert_run(content: bytes, x: np.ndarray) -> np.ndarray:
    """Run a .tflite model in the LiteRT interpreter one image at a time, (de)quantizing I/O."""
    from mobilepre.quantize.runtime import tflite_interpreter

    interpreter = tflite_interpreter(content)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    results = []
    for i in range(len(x)):
        sample = x[i : i + 1]
        scale, zero = inp["quantization"]
        if scale:
            sample = np.round(sample / scale + zero)
        interpreter.set_tensor(inp["index"], sample.astype(inp["dtype"]))
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"]).astype(np.float32)
        scale, zero = out["quantization"]
        if scale:
            y = (y - zero) * scale
        results.append(y)
    return np.concatenate(results)


@pytest.fixture(scope="session")
def demo_source():
    from mobilepre import demo
    from mobilepre.models import load_model

    return load_model(demo.model_path(), isolate=False)


@pytest.fixture(scope="session")
def demo_data(demo_source):
    """(calibration Dataset, validation Dataset with labels) of the shipped demo."""
    from mobilepre import demo
    from mobilepre.data import ModelInput, load_dataset

    model_input = ModelInput(demo_source.input_shape, demo_source.input_dtype)
    return load_dataset(demo.calibration_path(), model_input), load_dataset(demo.validation_path(), model_input)


def write_artifact(artifact, folder: Path) -> Path:
    """Write an in-memory artifact; return the .tflite file or the TF.js folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in artifact.files.items():
        (folder / name).write_bytes(data)
    return folder / "model.tflite" if "model.tflite" in artifact.files else folder


@pytest.fixture(scope="session")
def endless_tflite(tf, tmp_path_factory):
    """A structurally valid .tflite (demo-shaped uint8 32x32x3 input) whose WHILE loop never ends."""

    @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.uint8)])
    def forever(pixels):
        start = tf.reduce_sum(tf.cast(pixels, tf.float32))
        end = tf.while_loop(lambda x: x > -1.0, lambda x: x + 1.0, [start])[0]  # x + 1 never goes below -1
        return tf.fill([1, 10], end)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([forever.get_concrete_function()], forever)
    path = tmp_path_factory.mktemp("endless") / "endless.tflite"
    path.write_bytes(converter.convert())
    return path
