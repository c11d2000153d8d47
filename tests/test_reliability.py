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
from tests.conftest import run_cli, with_cache, skip_or_fail

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

    me = psutil.Process()
    # processes this one already has (multiprocessing's resource tracker, left by an earlier test's
    # worker pool) are not the trial load
    before = {p.pid for p in me.children()}
    worker = threading.Thread(target=load)
    worker.start()
    deadline = time.monotonic() + 60
    child = None
    while child is None and time.monotonic() < deadline:
        children = [p for p in me.children() if p.pid not in before]
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


# --- outputs: --force loses nothing, --out never holds an input, no staging copy is left for ever ---


def _one_line(result, *fragments, code=2):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_force_refuses_a_folder_that_is_not_a_previous_build(tmp_path):
    project = tmp_path / "proj"
    (project / ".git").mkdir(parents=True)
    (project / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (project / "notes.txt").write_text("mine")
    model = project / "model.keras"
    model.write_bytes(demo.model_path().read_bytes())
    result = run_cli("build", model, "--out", project, "--force", "--calibration", demo.calibration_path(), env=FAST)
    _one_line(result, "would replace", "model.keras")
    result = run_cli("build", "--out", project, "--force", "--profile", "npu-int8", env=FAST)
    _one_line(result, "not a previous output of mobilepre", "--force replaces only those")
    assert sorted(p.name for p in project.iterdir()) == [".git", "model.keras", "notes.txt"]
    assert (project / "notes.txt").read_text() == "mine" and (project / ".git" / "HEAD").exists()


@pytest.mark.parametrize("where", ["cwd", "parent-of-cwd", "data-folder", "a-file"])
def test_out_is_never_an_input_or_the_working_directory(tmp_path, where):
    work = tmp_path / "work"
    data = tmp_path / "data"
    data.mkdir()
    (data / "images.npz").write_bytes(demo.calibration_path().read_bytes())
    work.mkdir()
    out, extra = {"cwd": (".", ()), "parent-of-cwd": (str(tmp_path), ()), "data-folder": (str(data), ("--calibration", data / "images.npz")),
                  "a-file": (str(data / "images.npz"), ())}[where]
    result = run_cli("build", "--out", out, "--force", "--profile", "npu-int8", *extra, cwd=work, env=FAST)
    line = _one_line(result)
    assert "would replace" in line or "not a previous output" in line
    assert sorted(p.name for p in data.iterdir()) == ["images.npz"] and work.is_dir()


def test_a_stale_staging_folder_is_removed_and_a_live_one_kept(tmp_path):
    import fcntl

    from mobilepre.fsutil import remove_stale_staging, staging_folder

    out = tmp_path / "out"
    dead = tmp_path / ".out.work.abandoned.tmp"
    (dead / "saved_model_s00").mkdir(parents=True)
    (dead / "saved_model_s00" / "saved_model.pb").write_bytes(b"a copy of the user's model")
    unrelated = tmp_path / ".other.work.x.tmp"
    unrelated.mkdir()
    with staging_folder(out, "work") as live:
        assert remove_stale_staging(out) == [dead]
        assert live.is_dir() and unrelated.is_dir() and not dead.exists()
        fd = os.open(live, os.O_RDONLY)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # its owner holds it
        os.close(fd)
    assert not live.exists()


@pytest.mark.slow
def test_a_killed_build_leaves_a_copy_the_next_build_removes(tmp_path, fresh_cache):
    """(An empty cache: a build whose candidates are all cached exports nothing to kill it during.)"""
    import subprocess
    import sys

    out = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-m", "mobilepre", "build", "--out", str(out), "--profile", "web-mobile"],
                             env=with_cache(FAST), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".out.work.*.tmp/saved_model_s00_*/saved_model.pb")):
        time.sleep(0.2)
    child.kill()
    child.wait()
    left = list(tmp_path.glob(".out.work.*.tmp"))
    assert left, "the build was killed before it staged anything"
    result = run_cli("build", "--out", out, "--profile", "npu-int8", "--latency-runs", "3", env=FAST)
    assert result.returncode == 0, result.stderr
    assert "did not finish" in result.stderr and not any(p.exists() for p in left)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 1 MiB tmpfs (root can mount here); skipped where mounting is not allowed."""
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        skip_or_fail("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_line_before_any_conversion(tiny_filesystem):
    result = run_cli("build", "--out", tiny_filesystem / "out", "--profile", "npu-int8", env=FAST)
    _one_line(result, str(tiny_filesystem / "out"), "free on its filesystem", "free some space")
    assert list(tiny_filesystem.iterdir()) == []


@pytest.mark.parametrize("flag", ["--config", "--device-timings", "--calibration", "--profiles"])
def test_a_fifo_or_device_as_input_is_refused_not_read(tmp_path, flag):
    fifo = tmp_path / ("input.npy" if flag == "--calibration" else "input.toml")
    os.mkfifo(fifo)
    args = ["build", "--out", tmp_path / "out", flag, fifo]
    result = run_cli(*args, env=FAST, timeout=120)
    _one_line(result, str(fifo))
    result = run_cli("build", "--out", tmp_path / "out", flag, "/dev/zero", env=FAST, timeout=120)
    _one_line(result, "/dev/zero")


def test_an_npz_declaring_gigabytes_is_refused_before_allocation(tmp_path):
    """A few-MB .npz of zeros that expands to 3,000,000 x 32 x 32 x 1 (3 GB) is refused from its header."""
    import io

    bomb = tmp_path / "bomb.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (3_000_000, 32, 32, 1)})
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("images.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())  # magic, version and header: the array's declared shape
            chunk = bytes(1 << 20)
            for _ in range(64):  # enough to be a real member; the header is what is read
                member.write(chunk)
    assert bomb.stat().st_size < 3 * 1024 * 1024
    result = run_cli("build", "--out", tmp_path / "out", "--calibration", bomb, "--profile", "npu-int8", env=FAST, timeout=120)
    line = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(line) == 1 and "3,072,000,000 bytes" in line[0] and "MOBILEPRE_MAX_DATA_BYTES" in line[0], result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["bad\n::error title=x::pwned\nwarning: y.png", "bad\r\x1b[2Kok\u2028.png"])
def test_a_file_name_with_control_characters_stays_one_line(tmp_path, name):
    """A name from a user's files can start no new log line, workflow command or build tool warning."""
    images = tmp_path / "images"
    images.mkdir()
    (images / name).write_bytes(b"not an image at all")
    result = run_cli("build", "--out", tmp_path / "out", "--calibration", images, "--profile", "npu-int8", env=FAST)
    line = _one_line(result, "neither a PNG nor a JPEG", "\\n" if "\n" in name else "\\x1b")
    assert all(not out.startswith(("::", "warning:")) for out in (result.stdout + result.stderr).splitlines())
    assert line.startswith("mobilepre: error:") and not (tmp_path / "out").exists()
    library = pytest.raises(MobilepreError)
    with library as raised:
        from mobilepre.builder import build
        from mobilepre.options import BuildOptions

        build(BuildOptions(out=tmp_path / "lib-out", calibration=images, profile=("npu-int8",)))
    assert "\n" not in str(raised.value) and "\r" not in str(raised.value)
