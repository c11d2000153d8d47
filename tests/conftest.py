"""Shared fixtures: tiny models built in-process, real converters and runtimes, one warm candidate cache.

The suite shares its expensive work: every test that is not about the cache uses one candidate cache for
the whole session (`MOBILEPRE_CACHE`, the CLI's default, and `warm_options` for library builds), so the
demo's candidates are converted and validated once per session, not once per module. CLI commands run
in process (`run_cli`: the real `mobilepre.cli.main`, its exit code, stdout and stderr); a real child
process (`run_cli_process`) only where the process is the point (signals, start-up, isolation).
"""

import contextlib
import io
import os
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "mobilepre"]
# CI must not skip a guarantee: where a skip would hide one (no Landlock, no root), CI fails instead.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str):
    """Skip on a developer's machine that lacks what the test needs; fail under CI=true."""
    if IN_CI:
        pytest.fail(f"CI must run this test: {reason}")
    pytest.skip(reason)


def with_cache(env: dict | None) -> dict | None:
    """`env` (copied from os.environ when a test module was imported) with this test's cache."""
    return None if env is None else {**env, "MOBILEPRE_CACHE": os.environ["MOBILEPRE_CACHE"]}


def run_cli_process(*args, cwd=None, env=None, timeout=600):
    """Run the real `mobilepre` command in a child process; return the CompletedProcess."""
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=with_cache(env), timeout=timeout
    )


@contextlib.contextmanager
def _environment(env: dict | None, cwd):
    """os.environ replaced by `env` (when given) and the working folder by `cwd`, both restored after."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    try:
        if env is not None:
            env = with_cache(env)
            os.environ.clear()
            os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def run_cli(*args, cwd=None, env=None, timeout=600):
    """Run `mobilepre ARGS` in this process through the CLI's own entry point (`mobilepre.cli.main`):
    the exit code, stdout and stderr a user sees, as a CompletedProcess. An exception that escapes
    becomes a traceback on stderr and exit code 1, as Python shows it (so tests asserting "never a
    traceback" still catch it). `timeout` is for the child-process variant's signature."""
    from mobilepre.cli import main

    argv = ["mobilepre", *map(str, args)]
    out, err = io.StringIO(), io.StringIO()
    code = 0
    saved_argv = sys.argv
    with _environment(env, cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        sys.argv = argv
        try:
            main()
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        except Exception:  # noqa: BLE001 - what the user would see: a traceback and exit 1
            err.write(traceback.format_exc())
            code = 1
        finally:
            sys.argv = saved_argv
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


# The core tier: modules that test the tool's rules without TensorFlow (profiles, budgets, the judge, the
# search with a fake measure function, candidates), in seconds (`make test-core`).
CORE_MODULES = {"test_budgets", "test_candidates", "test_search", "test_profiles", "test_measured", "test_keys"}


# The longest test files first: the two workers take files in this order, so the last minutes are not
# one worker finishing a long file while the other waits (measured with --durations on a fresh clone).
LONGEST_FIRST = ("test_conformance", "test_integrations", "test_check", "test_cache", "test_build", "test_outputs",
                 "test_clients", "test_reliability", "test_safety")


# Test files whose tests share nothing: xdist spreads their tests over both workers (the conformance
# sweep, one architecture per test, was one worker's last six minutes; test_outputs' two builds over every
# shipped profile, 64 s each, ran one after the other on one worker).
SPREAD_MODULES = {"test_conformance", "test_outputs"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (it appends them to the node ids)
def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if module in CORE_MODULES:
            item.add_marker(pytest.mark.core)
        # `--dist loadgroup`: a file's tests run on one worker (its module fixtures are built once), but
        # those of a SPREAD_MODULES file each go where a worker is free
        item.add_marker(pytest.mark.xdist_group(item.nodeid if module in SPREAD_MODULES else module))
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rsplit(".", 1)[-1], len(rank)))  # stable: order within a file kept


def pytest_sessionfinish(session, exitstatus):
    """The core tier must stay free of TensorFlow: a core run that imported it fails."""
    if session.config.getoption("markexpr") == "core" and "tensorflow" in sys.modules:
        session.exitstatus = 1
        print("\ncore tier: a test imported TensorFlow; move it out of CORE_MODULES or keep the module TF-free")


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory) -> Path:
    """The one candidate cache of the session (the product's own), warm after the first build; set before
    any module's fixtures build, and the CLI's default (`MOBILEPRE_CACHE`)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker shares one cache (the cache is safe to share)
        folder = tmp_path_factory.getbasetemp().parent / "session-cache"
        folder.mkdir(exist_ok=True)
    else:
        folder = tmp_path_factory.mktemp("session-cache")
    saved = os.environ.get("MOBILEPRE_CACHE")
    os.environ["MOBILEPRE_CACHE"] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop("MOBILEPRE_CACHE", None)
    else:
        os.environ["MOBILEPRE_CACHE"] = saved


# Test files whose in-process builds load the model without the sandboxed child (MOBILEPRE_ISOLATE_LOADS=0,
# as their CLI runs already did): they test the search, the reports, merging and the gate, not loading,
# and each child is one more TensorFlow start (about 4 s of a core per build: 29 s of wall time, 61 s of
# CPU over test_build, test_report and test_merge). The sandbox's own tests, the cache's (whose records
# say how a model file was loaded), the clients', the real models' and the outputs' keep it, as users run it.
UNISOLATED_MODULES = {"test_build", "test_report", "test_merge", "test_mixed", "test_qat", "test_plan", "test_signing",
                      "test_deliver", "test_check", "test_pruning"}


@pytest.fixture(scope="module", autouse=True)
def model_loads(request):
    patch = pytest.MonkeyPatch()
    if request.module.__name__.rsplit(".", 1)[-1] in UNISOLATED_MODULES:
        patch.setenv("MOBILEPRE_ISOLATE_LOADS", "0")
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def own_cache(session_cache, monkeypatch):
    """The CLI's default cache is the session's: no test writes into the user's ~/.cache. Tests about the
    cache itself give their builds a cache of their own (`fresh_cache`)."""
    monkeypatch.setenv("MOBILEPRE_CACHE", str(session_cache))


@pytest.fixture
def fresh_cache(tmp_path_factory, monkeypatch) -> Path:
    """An empty cache for this test alone, also the CLI's default: for tests of what the cache does."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("MOBILEPRE_CACHE", str(folder))
    return folder


def warm_options(**options):
    """`BuildOptions` for an in-process build that shares the session's candidate cache."""
    from mobilepre.builder import BuildOptions

    options.setdefault("cache", Path(os.environ["MOBILEPRE_CACHE"]))
    return BuildOptions(**options)


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
