"""What mobilepre must survive (shared/RELIABILITY.md), end to end through the real CLI and processes.

The per-hazard scanner, data, profile and artifact cases are in test_safety, test_data, test_profiles
and test_artifacts; interruptions and the build lock in test_build; bundle tampering in test_gate.
"""

import json
import os
import signal
import threading
import time
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mobilepre import demo
from mobilepre.errors import MobilepreError
from tests.conftest import run_cli

FAST = {**os.environ, "MOBILEPRE_ISOLATE_LOADS": "0"}


@pytest.fixture(scope="module")
def lambda_model(tmp_path_factory):
    import keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    path = tmp_path_factory.mktemp("lambda") / "lambda.keras"
    model.save(path)
    return path


def test_a_lambda_model_is_refused_by_the_cli_and_trust_lifts_it(lambda_model, tmp_path):
    out = tmp_path / "m.tflite"
    refused = run_cli("quantize", lambda_model, "--to", "tflite", "--mode", "float32", "--out", out, env=FAST)
    assert refused.returncode == 2 and not out.exists()
    line = refused.stderr.strip()
    assert len(line.splitlines()) == 1 and "lambda.keras" in line and "Lambda" in line and "--trust-model" in line
    trusted = run_cli("quantize", lambda_model, "--to", "tflite", "--mode", "float32", "--out", out, "--trust-model", env=FAST)
    assert trusted.returncode == 0, trusted.stderr
    assert out.read_bytes()[4:8] == b"TFL3"


def test_a_traversal_archive_is_refused_even_when_trusted(tmp_path):
    evil = tmp_path / "evil.keras"
    with zipfile.ZipFile(demo.model_path()) as source, zipfile.ZipFile(evil, "w") as target:
        for item in source.infolist():
            target.writestr(item, source.read(item))
        target.writestr("../../outside.txt", b"x")
    result = run_cli("build", evil, "--out", tmp_path / "out", "--calibration", demo.calibration_path(), "--trust-model", env=FAST)
    assert result.returncode == 2 and "evil.keras" in result.stderr and "../../outside.txt" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.keras"]


def test_a_crash_in_the_native_loader_is_an_error_not_a_crash(tmp_path):
    """The trial load runs in a child process; kill it with SIGSEGV, as a native crash would."""
    import psutil

    from mobilepre.models import load_model

    outcome = {}

    def load():
        try:
            load_model(demo.model_path(), isolate=True)
            outcome["result"] = "loaded"
        except MobilepreError as error:
            outcome["result"] = error.message

    worker = threading.Thread(target=load)
    worker.start()
    me = psutil.Process()
    deadline = time.monotonic() + 60
    child = None
    while child is None and time.monotonic() < deadline:
        children = me.children()
        child = children[0] if children else None
        time.sleep(0.05)
    assert child is not None, "the model was not trial-loaded in a child process"
    child.send_signal(signal.SIGSEGV)
    worker.join(timeout=120)
    assert "crashed TensorFlow's native loader (SIGSEGV)" in outcome["result"]
    assert "demo.keras" in outcome["result"]


@pytest.fixture(scope="module")
def hostile_images(tmp_path_factory):
    import struct
    import zlib

    root = tmp_path_factory.mktemp("hostile")
    bomb = root / "bomb"
    bomb.mkdir()
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    (bomb / "huge.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )
    truncated = root / "truncated"
    truncated.mkdir()
    from PIL import Image

    Image.new("L", (32, 32), 128).save(truncated / "a.png")
    (truncated / "a.png").write_bytes((truncated / "a.png").read_bytes()[:40])
    nan = root / "nan.npz"
    images = np.zeros((2, 32, 32, 1), np.float32)
    images[1, 3, 3, 0] = np.inf
    np.savez(nan, images=images)
    return {"bomb": (bomb, "huge.png"), "truncated": (truncated, "a.png"), "nan": (nan, "nan.npz")}


@pytest.mark.parametrize("case", ["bomb", "truncated", "nan"])
def test_hostile_calibration_data_is_one_line_naming_the_file(hostile_images, tmp_path, case):
    path, name = hostile_images[case]
    out = tmp_path / "m.tflite"
    result = run_cli("quantize", demo.model_path(), "--to", "tflite", "--mode", "int8", "--calibration", path, "--out", out, env=FAST)
    assert result.returncode == 2 and not out.exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "Traceback" not in result.stderr


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    document=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
        max_leaves=30,
    ),
    raw=st.binary(max_size=200),
    use_raw=st.booleans(),
)
def test_any_manifest_is_an_integrity_failure_or_our_error_never_a_crash(tmp_path_factory, document, raw, use_raw):
    from mobilepre.check import check

    bundle = tmp_path_factory.mktemp("fuzz") / "b"
    bundle.mkdir()
    (bundle / "manifest.json").write_bytes(raw if use_raw else json.dumps(document).encode())
    try:
        result = check(bundle, measure=False)
    except MobilepreError:
        return
    assert result.exit_code == 1 and result.bundles[0].checks[0].name == "integrity"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mutation=st.sampled_from(["files", "artifacts", "profile", "schema", "source"]),
    value=st.none() | st.integers() | st.text(max_size=10) | st.lists(st.dictionaries(st.text(max_size=6), st.text(max_size=12), max_size=3), max_size=3),
)
def test_a_sealed_manifest_with_nonsense_fields_is_refused_cleanly(tmp_path_factory, mutation, value):
    """Re-sealed on purpose, so the schema checks (not the seal) must hold."""
    from mobilepre.manifest import seal_manifest
    from mobilepre.check import check

    bundle = tmp_path_factory.mktemp("sealed") / "b"
    bundle.mkdir()
    (bundle / "model.tflite").write_bytes(b"x" * 16)
    manifest = {
        "schema": "mobilepre.manifest/1",
        "files": [{"path": "model.tflite", "bytes": 16, "sha256": "0" * 64}],
        "artifacts": [{"format": "tflite", "path": "model.tflite", "candidate": "tflite-float32"}],
        "profile": {"name": "x"},
        "source": {},
    }
    manifest[mutation] = value
    (bundle / "manifest.json").write_bytes(seal_manifest(manifest))
    try:
        result = check(bundle, measure=False)
    except MobilepreError:
        return
    assert result.exit_code == 1
