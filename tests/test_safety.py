"""Scanning model files before loading: one malicious fixture and one harmless near-miss per hazard."""

import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mobilepre import demo, safety
from mobilepre.errors import EXIT_BAD_INPUT, MobilepreError
from mobilepre.safety import scan_model
from tests.conftest import run_cli, skip_or_fail

ROOT = Path(__file__).resolve().parents[1]


# --- fixtures: tiny real models saved by Keras and TensorFlow --------------------------------------


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Baselines saved by Keras 3 itself: a Dense model (.keras, .h5), a nested one, a Lambda, our front-end."""
    from mobilepre._tf import keras
    from mobilepre.frontend import FrontendSpec, build_frontend

    k = keras()
    out = tmp_path_factory.mktemp("models")

    inputs = k.Input((4,), name="x")
    dense = k.Model(inputs, k.layers.Dense(2, name="dense")(inputs), name="dense_model")
    dense.compile(optimizer="adam", loss="mse", metrics=["mae"])
    dense.save(out / "dense.keras")
    dense.save(out / "dense.h5")

    inner = k.Sequential([k.Input((3, 2)), k.layers.Dense(2, name="inner_dense")], name="inner_model")
    seq = k.Input((3, 4), name="seq")
    y = k.layers.TimeDistributed(k.layers.Dense(2, name="td_dense"), name="td")(seq)
    nested = k.Model(seq, inner(y), name="nested")
    nested.compile(optimizer="sgd", loss="mse")
    nested.save(out / "nested.keras")

    lam = k.Sequential([k.Input((3,)), k.layers.Lambda(lambda t: t, name="lam")])
    lam.save(out / "lambda.keras")
    lam.save(out / "lambda.h5")

    build_frontend(FrontendSpec(input_shape=(8, 8, 1), features=())).save(out / "frontend.keras")
    return out


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory):
    """SavedModels written by tf.saved_model.save: plain (with a variable and a harmless string), py_function, read_file."""
    from mobilepre._tf import quiet_tensorflow

    tf = quiet_tensorflow()
    out = tmp_path_factory.mktemp("saved_models")
    spec = [tf.TensorSpec((None, 2), tf.float32)]

    class Plain(tf.Module):
        def __init__(self):
            self.w = tf.Variable([1.0, 2.0])

        @tf.function(input_signature=spec)
        def __call__(self, x):
            note = tf.constant("ReadFile is not called here, PyFunc neither")
            return x * self.w, note

    class PyCall(tf.Module):
        @tf.function(input_signature=spec)
        def __call__(self, x):
            return tf.py_function(lambda t: t, [x], tf.float32)

    class Reads(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((), tf.string)])
        def __call__(self, name):
            return tf.io.read_file(name)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, module in (("plain", Plain()), ("pyfunc", PyCall()), ("readfile", Reads())):
            tf.saved_model.save(module, str(out / name))
    return out


# --- helpers to forge files ------------------------------------------------------------------------


def refused(path, *fragments, trust=False) -> str:
    """Assert scan_model refuses `path` with exit code 2 and a message holding the file name and `fragments`."""
    with pytest.raises(MobilepreError) as info:
        scan_model(path, trust=trust)
    message = info.value.message
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert str(path) in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def read_config(keras_path: Path) -> dict:
    with zipfile.ZipFile(keras_path) as zf:
        return json.loads(zf.read("config.json"))


def with_config(src: Path, dst: Path, edit) -> Path:
    """Copy the .keras archive `src` to `dst`, with config.json passed through `edit(config)` (in place)."""
    config = read_config(src)
    edit(config)
    return rewrite_archive(src, dst, {"config.json": json.dumps(config).encode()})


def rewrite_archive(src: Path, dst: Path, replace=None, extra=()) -> Path:
    """Copy `src` member by member, replacing members named in `replace` and appending `extra` (ZipInfo, bytes)."""
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, replace.get(info.filename, zin.read(info)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # duplicate names warn
            for info, data in extra:
                zout.writestr(info, data)
    return dst


def find_layer(config, name: str) -> dict:
    """The serialised object anywhere in `config` whose config.name is `name`."""
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("config"), dict) and node["config"].get("name") == name:
                return node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    raise KeyError(name)


def layer_config(name: str):
    return lambda config: find_layer(config, name)["config"]


def set_in_layer(name: str, key: str, value):
    return lambda config: layer_config(name)(config).__setitem__(key, value)


def set_in_object(name: str, key: str, value):
    return lambda config: find_layer(config, name).__setitem__(key, value)


def h5_copy(src: Path, dst: Path, edit) -> Path:
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "r+") as h5:
        edit(h5, dst)
    return dst


# --- baselines -------------------------------------------------------------------------------------


def test_models_saved_by_keras_pass_and_name_their_format(models, saved_models):
    assert scan_model(models / "dense.keras") == "keras"
    assert scan_model(models / "nested.keras") == "keras"
    assert scan_model(models / "dense.h5") == "h5"
    assert scan_model(saved_models / "plain") == "saved_model"


def test_our_own_frontend_with_its_registered_initializer_passes(models):
    assert "mobilepre" not in json.dumps(read_config(models / "frontend.keras"))  # stock Keras only, no mobilepre>GaussianBlur
    assert scan_model(models / "frontend.keras") == "keras"


def test_scanning_imports_neither_tensorflow_nor_keras(models):
    code = (
        "import sys; from pathlib import Path; from mobilepre.safety import scan_model; "
        f"scan_model(Path({str(models / 'dense.keras')!r})); scan_model(Path({str(models / 'dense.h5')!r})); "
        "assert not {'tensorflow', 'keras'} & set(sys.modules), sorted(m for m in sys.modules if 'tens' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


# --- Lambda anywhere in the config -----------------------------------------------------------------


def test_a_real_lambda_model_is_refused_unless_trusted(models):
    refused(models / "lambda.keras", "Lambda", "config.layers[1].class_name", "if you trust this file, pass trust")
    assert scan_model(models / "lambda.keras", trust=True) == "keras"
    refused(models / "lambda.h5", "model_config", "Lambda", "if you trust this file, pass trust")
    assert scan_model(models / "lambda.h5", trust=True) == "h5"


@pytest.mark.parametrize(
    "model, layer, where",
    [
        ("dense.keras", "dense", "config.layers[1].class_name"),
        ("nested.keras", "inner_dense", "config.layers[2].config.layers[1].class_name"),
        ("nested.keras", "td_dense", "config.layers[1].config.layer.class_name"),
    ],
    ids=["top-level", "in-sub-model", "in-TimeDistributed"],
)
def test_lambda_is_refused_at_any_depth(models, tmp_path, model, layer, where):
    forged = with_config(models / model, tmp_path / "m.keras", set_in_object(layer, "class_name", "Lambda"))
    refused(forged, "Lambda", where)


def test_near_miss_layer_named_like_lambda_passes(models, tmp_path):
    forged = with_config(models / "nested.keras", tmp_path / "m.keras", set_in_layer("td_dense", "name", "lambda_like"))
    assert scan_model(forged) == "keras"


def test_lambda_inside_compile_config_is_refused(models, tmp_path):
    def edit(config):
        config["compile_config"]["loss"] = {"module": "keras.layers", "class_name": "Lambda", "config": {}}

    refused(with_config(models / "dense.keras", tmp_path / "m.keras", edit), "Lambda", "compile_config.loss.class_name")


def test_near_miss_builtin_loss_object_in_compile_config_passes(models, tmp_path):
    def edit(config):
        config["compile_config"]["loss"] = {
            "module": "keras.losses",
            "class_name": "MeanSquaredError",
            "config": {"name": "mean_squared_error", "reduction": "sum_over_batch_size"},
            "registered_name": None,
        }

    assert scan_model(with_config(models / "dense.keras", tmp_path / "m.keras", edit)) == "keras"


def test_serialised_function_under_another_class_name_is_refused(models, tmp_path):
    payload = {"class_name": "__lambda__", "config": {"code": "4wEAAAAA", "defaults": None, "closure": None}}
    forged = with_config(models / "dense.keras", tmp_path / "m.keras", set_in_layer("dense", "function", payload))
    refused(forged, "serialised Python function", "config.layers[1].config.function")


def test_near_miss_keras_function_reference_passes(models, tmp_path):
    relu = {"module": "keras.activations", "class_name": "function", "config": "relu", "registered_name": "relu"}
    forged = with_config(models / "dense.keras", tmp_path / "m.keras", set_in_layer("dense", "activation", relu))
    assert scan_model(forged) == "keras"


def test_builtins_function_naming_a_python_builtin_is_refused_but_a_keras_one_passes(models, tmp_path):
    def fn(name):
        return {"module": "builtins", "class_name": "function", "config": name, "registered_name": None}

    bad = with_config(models / "dense.keras", tmp_path / "bad.keras", set_in_layer("dense", "activation", fn("getattr")))
    refused(bad, "'builtins'", "config.layers[1].config.activation.module")
    good = with_config(models / "dense.keras", tmp_path / "good.keras", set_in_layer("dense", "activation", fn("relu")))
    assert scan_model(good) == "keras"


# --- module / class_name / registered_name allowlist -----------------------------------------------


@pytest.mark.parametrize("module", ["os", "mathutils", "keras_evil", "keras_evil.layers", "numpy", "builtins", "__main__"])
def test_module_outside_the_allowlist_is_refused(models, tmp_path, module):
    forged = with_config(models / "dense.keras", tmp_path / "m.keras", lambda c: find_layer(c, "dense").__setitem__("module", module))
    refused(forged, repr(module), "config.layers[1].module")


@pytest.mark.parametrize("module", ["keras", "keras.src.layers", "keras.layers.core", "tf_keras.layers", "mobilepre.layers"])
def test_near_miss_modules_inside_the_allowlist_pass(models, tmp_path, module):
    forged = with_config(models / "dense.keras", tmp_path / "m.keras", lambda c: find_layer(c, "dense").__setitem__("module", module))
    assert scan_model(forged) == "keras"


@pytest.mark.parametrize(
    "key, value",
    [("registered_name", "evil>Dense"), ("registered_name", "Custom>Dense"), ("registered_name", "os.system"),
     ("class_name", "os.system"), ("class_name", "evil>Dense")],
)
def test_names_outside_the_allowlist_are_refused(models, tmp_path, key, value):
    forged = with_config(models / "dense.keras", tmp_path / "m.keras", set_in_object("dense", key, value))
    refused(forged, f"config.layers[1].{key}")


@pytest.mark.parametrize(
    "key, value", [("registered_name", "mobilepre>GaussianBlur"), ("registered_name", "keras>Dense"), ("class_name", "mobilepre>Dense")]
)
def test_near_miss_names_in_allowed_packages_pass(models, tmp_path, key, value):
    forged = with_config(models / "dense.keras", tmp_path / "m.keras", set_in_object("dense", key, value))
    assert scan_model(forged) == "keras"


def test_tfsm_layer_is_refused(models, tmp_path):
    def edit(config):
        layer = find_layer(config, "dense")
        layer.update(class_name="TFSMLayer", module="keras.layers")
        layer["config"]["filepath"] = "exported"

    refused(with_config(models / "dense.keras", tmp_path / "m.keras", edit), "TFSMLayer", "config.layers[1]")


# --- suspicious strings ----------------------------------------------------------------------------

MALICIOUS_STRINGS = [
    "enable_unsafe_deserialization",
    "keras.config.enable_unsafe_deserialization",
    "keras.utils.get_file",
    "keras.models.load_model",
    "TFSMLayer",
    "__import__('os')",
    "os.system",
    "subprocess.run",
    "eval(x)",
    "exec",
    "/etc/passwd",
    "~/.ssh/id_rsa",
    "../secrets.h5",
    "weights/../../etc/shadow",
    "C:\\Windows\\win.ini",
    "\\\\server\\share\\w.h5",
    "file:///etc/passwd",
    "https://example.com/weights.h5",
    "see http://example.com",
]
NEAR_MISS_STRINGS = [
    "dense_unsafe",
    "deserialization_head",
    "get_filename_len",
    "load_model_v2",
    "tfsm_like",
    "import_head",
    "os_system_block",
    "subprocessor",
    "evaluation",
    "executor_1",
    "channels_last",
    "dense/kernel",
    "the filepath argument is documented in the README",
    "a..b",
    "http_head",
    "~tilde_name",
    "relu6",
]


@pytest.mark.parametrize("text", MALICIOUS_STRINGS)
def test_suspicious_string_in_a_layer_config_is_refused(models, tmp_path, text):
    forged = with_config(models / "nested.keras", tmp_path / "m.keras", set_in_layer("td_dense", "comment", text))
    message = refused(forged, "config.layers[1].config.layer.config.comment", "if you trust this file, pass trust")
    assert scan_model(forged, trust=True) == "keras"
    assert "value" in message


@pytest.mark.parametrize("text", NEAR_MISS_STRINGS)
def test_near_miss_strings_in_names_and_descriptions_pass(models, tmp_path, text):
    def edit(config):
        layer_config("td_dense")(config)["comment"] = text
        find_layer(config, "inner_dense")["config"]["name"] = text

    assert scan_model(with_config(models / "nested.keras", tmp_path / "m.keras", edit)) == "keras"


def test_suspicious_dict_key_is_refused(models, tmp_path):
    forged = with_config(models / "dense.keras", tmp_path / "m.keras", set_in_layer("dense", "/etc/passwd", 1))
    refused(forged, "key '/etc/passwd'", 'config.layers[1].config["/etc/passwd"]')


def test_file_path_inside_an_initializer_config_is_refused(models, tmp_path):
    def edit(config):
        layer_config("dense")(config)["kernel_initializer"]["config"]["seed"] = "/home/user/.keras/keras.json"

    refused(with_config(models / "dense.keras", tmp_path / "m.keras", edit), "file path", "kernel_initializer.config.seed")


# --- config limits ---------------------------------------------------------------------------------


def test_config_nested_too_deep_is_refused_and_shallower_passes(models, tmp_path):
    deep = with_config(models / "dense.keras", tmp_path / "deep.keras", set_in_layer("dense", "x", json.loads("[" * 300 + "]" * 300)))
    refused(deep, "nested deeper than 200", trust=True)
    shallow = with_config(models / "dense.keras", tmp_path / "ok.keras", set_in_layer("dense", "x", json.loads("[" * 150 + "]" * 150)))
    assert scan_model(shallow) == "keras"


def test_config_nested_beyond_the_json_parser_is_refused(models, tmp_path):
    forged = rewrite_archive(models / "dense.keras", tmp_path / "m.keras", {"config.json": b"[" * 100_000 + b"]" * 100_000})
    refused(forged, "nested deeper", trust=True)


def test_oversized_config_is_refused_and_one_under_the_limit_passes(models, tmp_path, monkeypatch):
    monkeypatch.setattr(safety, "MAX_CONFIG_BYTES", 20_000)
    big = with_config(models / "dense.keras", tmp_path / "big.keras", set_in_layer("dense", "pad", "a" * 30_000))
    refused(big, "config.json", "more than", trust=True)
    small = with_config(models / "dense.keras", tmp_path / "small.keras", set_in_layer("dense", "pad", "a" * 10_000))
    assert scan_model(small) == "keras"


def test_config_that_is_not_json_is_refused(models, tmp_path):
    forged = rewrite_archive(models / "dense.keras", tmp_path / "m.keras", {"config.json": b"{not json"})
    refused(forged, "not valid JSON", trust=True)


# --- .keras archive hazards: refused even when trusted ---------------------------------------------


def member(name: str, mode: int = 0o100644) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = mode << 16
    return info


@pytest.mark.parametrize(
    "bad, good",
    [("../x", "assets/a..b"), ("assets/../../x", "assets/..hidden"), ("/abs", "assets/abs"), ("C:/x", "assets/C_x"), ("\\abs", "assets/abs2")],
)
@pytest.mark.parametrize("trust", [False, True])
def test_member_names_that_climb_out_are_refused_and_near_misses_pass(models, tmp_path, bad, good, trust):
    forged = rewrite_archive(models / "dense.keras", tmp_path / "bad.keras", extra=[(member(bad), b"x")])
    refused(forged, repr(bad), "absolute path", trust=trust)
    fine = rewrite_archive(models / "dense.keras", tmp_path / "good.keras", extra=[(member(good), b"x")])
    assert scan_model(fine, trust=trust) == "keras"


@pytest.mark.parametrize("trust", [False, True])
def test_symlink_member_is_refused_and_a_regular_member_passes(models, tmp_path, trust):
    link = rewrite_archive(models / "dense.keras", tmp_path / "bad.keras", extra=[(member("assets/l", 0o120777), b"/etc/passwd")])
    refused(link, "'assets/l'", "symbolic link", trust=trust)
    regular = rewrite_archive(models / "dense.keras", tmp_path / "good.keras", extra=[(member("assets/l", 0o100755), b"/etc/passwd")])
    assert scan_model(regular, trust=True) == "keras"


def add_zeros(archive: Path, name: str, size_bytes: int) -> Path:
    """Append a deflated member of `size_bytes` zeros, written in chunks so memory stays low."""
    chunk = bytes(1024**2)
    with zipfile.ZipFile(archive, "a", compression=zipfile.ZIP_DEFLATED) as zf, zf.open(name, "w") as out:
        for start in range(0, size_bytes, len(chunk)):
            out.write(chunk[: size_bytes - start])
    return archive


@pytest.mark.parametrize("trust", [False, True])
def test_decompression_bomb_member_is_refused_and_a_small_compressible_member_passes(models, tmp_path, trust):
    bomb = add_zeros(rewrite_archive(models / "dense.keras", tmp_path / "bomb.keras"), "assets/zeros", 50 * 1024**2)
    assert bomb.stat().st_size < 1024**2
    refused(bomb, "'assets/zeros'", "decompression bomb", trust=trust)
    small = add_zeros(rewrite_archive(models / "dense.keras", tmp_path / "small.keras"), "assets/zeros", 512 * 1024)
    assert scan_model(small, trust=trust) == "keras"


def test_archive_over_the_total_size_is_refused_and_one_under_passes(models, tmp_path, monkeypatch):
    monkeypatch.setattr(safety, "MAX_UNCOMPRESSED_BYTES", 200_000)
    big = rewrite_archive(models / "dense.keras", tmp_path / "big.keras", extra=[(member("assets/w"), os.urandom(250_000))])
    refused(big, "expands to more than", trust=True)
    small = rewrite_archive(models / "dense.keras", tmp_path / "small.keras", extra=[(member("assets/w"), os.urandom(50_000))])
    assert scan_model(small, trust=True) == "keras"


def test_archive_with_too_many_members_is_refused_and_many_members_pass(models, tmp_path):
    many = [(member(f"assets/{i}"), b"") for i in range(10_001)]
    refused(rewrite_archive(models / "dense.keras", tmp_path / "bad.keras", extra=many), "10004 members", trust=True)
    some = many[:500]
    assert scan_model(rewrite_archive(models / "dense.keras", tmp_path / "good.keras", extra=some)) == "keras"


def test_duplicate_config_member_is_refused(models, tmp_path):
    forged = rewrite_archive(models / "dense.keras", tmp_path / "m.keras", extra=[(member("config.json"), b"{}")])
    refused(forged, "'config.json' appears twice", trust=True)


def test_archive_without_config_or_not_a_zip_is_refused(models, tmp_path):
    empty = tmp_path / "empty.keras"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("metadata.json", "{}")
    refused(empty, "no config.json", trust=True)
    not_zip = tmp_path / "plain.keras"
    not_zip.write_bytes(b"hello")
    refused(not_zip, "not a readable .keras", trust=True)


def test_weights_inside_a_keras_archive_get_the_hdf5_checks(models, tmp_path):
    with zipfile.ZipFile(models / "dense.keras") as zf:
        weights = tmp_path / "model.weights.h5"
        weights.write_bytes(zf.read("model.weights.h5"))
    with h5py.File(weights, "r+") as h5:
        h5["leak"] = h5py.ExternalLink("/etc/passwd", "/")
    forged = rewrite_archive(models / "dense.keras", tmp_path / "m.keras", {"model.weights.h5": weights.read_bytes()})
    refused(forged, "model.weights.h5", "'leak'", "another file", trust=True)


# --- HDF5 hazards: refused even when trusted -------------------------------------------------------


def first_dataset(h5) -> str:
    names = []
    h5.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names[0]


@pytest.mark.parametrize("trust", [False, True])
def test_hdf5_external_link_is_refused_and_a_hard_link_passes(models, tmp_path, trust):
    def external(h5, path):
        h5["model_weights/leak"] = h5py.ExternalLink("/etc/passwd", "/")

    def hard(h5, path):
        h5["model_weights/alias"] = h5[first_dataset(h5)]

    refused(h5_copy(models / "dense.h5", tmp_path / "bad.h5", external), "'model_weights/leak'", "another file", trust=trust)
    assert scan_model(h5_copy(models / "dense.h5", tmp_path / "good.h5", hard), trust=trust) == "h5"


@pytest.mark.parametrize("target", ["/nowhere", "../../etc", "dense/../..", "/model_weights/ext"])
def test_hdf5_soft_link_to_outside_is_refused(models, tmp_path, target):
    def soft(h5, path):
        if target == "/model_weights/ext":  # a soft link that leads on to another file
            h5["model_weights/ext"] = h5py.ExternalLink("other.h5", "/")
        h5["model_weights/a_soft"] = h5py.SoftLink(target)

    forged = h5_copy(models / "dense.h5", tmp_path / "bad.h5", soft)
    refused(forged, "soft link 'model_weights/a_soft'", "outside", trust=True)


def test_hdf5_soft_link_to_an_object_inside_passes(models, tmp_path):
    def soft(h5, path):
        h5["model_weights/absolute"] = h5py.SoftLink("/" + first_dataset(h5))
        h5["model_weights/dense/relative"] = h5py.SoftLink("dense/kernel")

    assert scan_model(h5_copy(models / "dense.h5", tmp_path / "good.h5", soft)) == "h5"


@pytest.mark.parametrize("trust", [False, True])
def test_hdf5_external_storage_dataset_is_refused_and_a_chunked_dataset_passes(models, tmp_path, trust):
    def external(h5, path):
        raw = path.with_name("raw.bin")
        raw.write_bytes(bytes(16))
        h5.create_dataset("model_weights/ext", shape=(4,), dtype="f4", external=[(str(raw), 0, 16)])

    def chunked(h5, path):
        h5.create_dataset("model_weights/chunked", data=np.zeros(64, "f4"), chunks=(16,), compression="gzip")

    refused(h5_copy(models / "dense.h5", tmp_path / "bad.h5", external), "'model_weights/ext'", "external files", trust=trust)
    assert scan_model(h5_copy(models / "dense.h5", tmp_path / "good.h5", chunked), trust=trust) == "h5"


@pytest.mark.parametrize("trust", [False, True])
def test_hdf5_virtual_dataset_is_refused_and_a_plain_dataset_passes(models, tmp_path, trust):
    source = tmp_path / "source.h5"
    with h5py.File(source, "w") as src:
        src["data"] = np.arange(4, dtype="f4")

    def virtual(h5, path):
        layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
        layout[:] = h5py.VirtualSource(str(source), "data", shape=(4,))
        h5.create_virtual_dataset("model_weights/virtual", layout)

    def plain(h5, path):
        h5["model_weights/plain"] = np.arange(4, dtype="f4")

    refused(h5_copy(models / "dense.h5", tmp_path / "bad.h5", virtual), "'model_weights/virtual'", "virtual", trust=trust)
    assert scan_model(h5_copy(models / "dense.h5", tmp_path / "good.h5", plain), trust=trust) == "h5"


def test_hdf5_training_config_is_scanned_too(models, tmp_path):
    def evil_loss(h5, path):
        training = json.loads(h5.attrs["training_config"])
        training["loss"] = {"module": "os", "class_name": "system", "config": "echo"}
        h5.attrs["training_config"] = json.dumps(training)

    refused(h5_copy(models / "dense.h5", tmp_path / "bad.h5", evil_loss), "training_config", "loss.module", "'os'")
    assert scan_model(tmp_path / "bad.h5", trust=True) == "h5"


def test_hdf5_model_config_module_injection_is_refused(models, tmp_path):
    def inject(h5, path):
        config = json.loads(h5.attrs["model_config"])
        find_layer(config, "dense")["module"] = "mathutils"
        h5.attrs["model_config"] = json.dumps(config)

    refused(h5_copy(models / "dense.h5", tmp_path / "bad.h5", inject), "model_config", "config.layers[1].module", "'mathutils'")


def test_hdf5_weights_only_file_is_refused(models, tmp_path):
    def strip(h5, path):
        del h5.attrs["model_config"]

    refused(h5_copy(models / "dense.h5", tmp_path / "w.h5", strip), "weights only", trust=True)


# --- SavedModel ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, op", [("pyfunc", "EagerPyFunc"), ("readfile", "ReadFile")])
def test_saved_model_running_python_or_reading_files_is_refused_unless_trusted(saved_models, name, op):
    refused(saved_models / name, f"op {op}", "if you trust this file, pass trust")
    assert scan_model(saved_models / name, trust=True) == "saved_model"


def test_near_miss_saved_model_with_saver_ops_and_op_names_in_a_string_passes(saved_models):
    graph = (saved_models / "plain" / "saved_model.pb").read_bytes()
    assert b"RestoreV2" in graph and b"ReadVariableOp" in graph and b"ReadFile is not called" in graph
    assert scan_model(saved_models / "plain") == "saved_model"


def test_bytes_appended_to_the_graph_are_refused_not_skipped(saved_models, tmp_path):
    forged = tmp_path / "sm"
    (forged / "variables").mkdir(parents=True)
    graph = (saved_models / "plain" / "saved_model.pb").read_bytes()
    (forged / "saved_model.pb").write_bytes(graph + b"\x12\x86\x80\x00PyFunc")
    refused(forged, "saved_model.pb")


# --- SavedModel ops outside the allowlist: each would do something, proven with trust, refused without


@pytest.fixture(scope="session")
def hostile_saved_models(tmp_path_factory):
    """SavedModels whose ops write a marker file when run (or, for the initializer, when loaded)."""
    from mobilepre._tf import quiet_tensorflow

    tf = quiet_tensorflow()
    out = tmp_path_factory.mktemp("hostile")
    markers = out / "markers"
    markers.mkdir()
    spec = [tf.TensorSpec((None, 4, 4, 3), tf.float32)]

    class Prints(tf.Module):
        @tf.function(input_signature=spec)
        def __call__(self, x):
            tf.print("pwned", output_stream=f"file://{markers / 'printed'}")
            return tf.reduce_mean(x, axis=[1, 2])

    class WritesRecords(tf.Module):
        @tf.function(input_signature=spec)
        def __call__(self, x):
            tf.data.experimental.TFRecordWriter(str(markers / "records")).write(tf.data.Dataset.from_tensors(tf.constant("pwned")))
            return tf.reduce_mean(x, axis=[1, 2])

    class Writer(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self):
            return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="mobilepre_test_writer")

        def _initialize(self):
            tf.io.write_file(str(markers / "initialized"), "pwned")

    class InitializerWrites(tf.Module):
        def __init__(self):
            self.resource = Writer()

        @tf.function(input_signature=spec)
        def __call__(self, x):
            return tf.reduce_mean(x, axis=[1, 2])

    class GraphInAString(tf.Module):
        @tf.function(input_signature=spec)
        def __call__(self, x):
            variant = tf.raw_ops.DatasetFromGraph(graph_def=tf.constant("not a graph"))
            return tf.reduce_mean(x, axis=[1, 2]) + 0.0 * tf.cast(tf.size(variant), tf.float32)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, module in (("prints", Prints()), ("records", WritesRecords()), ("initializer", InitializerWrites()),
                             ("graph-string", GraphInAString())):
            tf.saved_model.save(module, str(out / name))
    for marker in markers.iterdir():  # tracing may have run them once: the tests start clean
        marker.unlink()
    return out, markers


@pytest.mark.parametrize("name, op, marker", [
    ("prints", "PrintV2", "printed"),
    ("records", "DatasetToTFRecord", "records"),
    ("initializer", "WriteFile", "initialized"),
    ("graph-string", "DatasetFromGraph", None),
])
def test_a_saved_model_op_outside_the_allowlist_is_refused_and_runs_nothing(hostile_saved_models, tmp_path, name, op, marker):
    out, markers = hostile_saved_models
    message = refused(out / name, op, "if you trust this file, pass trust")
    assert "not a pure numeric op" in message
    result = run_cli("build", out / name, "--out", tmp_path / "o", "--calibration", demo.calibration_path(), "--profile", "npu-int8")
    assert result.returncode == 2 and op in result.stderr and "Traceback" not in result.stderr
    assert list(markers.iterdir()) == [] and not (tmp_path / "o").exists()
    if marker == "initialized":  # proof the fixture is real: loading it, as a trusted model would be, writes the file
        from mobilepre._tf import quiet_tensorflow

        quiet_tensorflow().saved_model.load(str(out / name))
        assert (markers / marker).read_text() == "pwned"
        (markers / marker).unlink()
    elif marker:
        from mobilepre._tf import quiet_tensorflow

        quiet_tensorflow().saved_model.load(str(out / name))(np.zeros((1, 4, 4, 3), np.float32))
        assert (markers / marker).exists()
        (markers / marker).unlink()


@pytest.mark.slow
def test_keras_exports_of_real_architectures_pass_the_allowlist(keras, tmp_path):
    from mobilepre.quantize.export import export_saved_model

    for name, model in (
        ("mobilenetv3", keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), alpha=0.75, weights=None, classes=4)),
        ("efficientnetb0", keras.applications.EfficientNetB0(input_shape=(32, 32, 3), weights=None, classes=4)),
    ):
        folder = export_saved_model(model, tmp_path / name)
        assert scan_model(folder) == "saved_model", name


@pytest.mark.parametrize("trust", [False, True])
def test_saved_model_symlink_to_outside_is_refused_and_one_inside_passes(saved_models, tmp_path, trust):
    import shutil

    bad = Path(shutil.copytree(saved_models / "plain", tmp_path / "bad"))
    os.symlink("/etc/passwd", bad / "assets" / "vocab.txt")
    refused(bad, "symbolic link", "outside the folder", trust=trust)
    good = Path(shutil.copytree(saved_models / "plain", tmp_path / "good"))
    os.symlink("../fingerprint.pb", good / "assets" / "fingerprint_copy.pb")
    assert scan_model(good, trust=trust) == "saved_model"


# --- formats ---------------------------------------------------------------------------------------


def test_unknown_format_names_the_accepted_ones(tmp_path):
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"\x80\x04")
    message = refused(weights, "'.pt'", ".keras", ".h5", "SavedModel", trust=True)
    assert "saved_model.pb" in message
    refused(tmp_path, "no saved_model.pb", trust=True)
    refused(tmp_path / "missing.keras", "no such file", trust=True)
    fake_h5 = tmp_path / "model.h5"
    fake_h5.write_bytes(b"PK\x03\x04")
    refused(fake_h5, "not a readable HDF5", trust=True)


# --- property: every config either passes or raises our own error ----------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
    | st.sampled_from(["Lambda", "keras.layers", "os", "/etc/x", "mobilepre>GaussianBlur", "eval(1)"]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["class_name", "module", "registered_name", "config", "function", "name"]) | st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=json_values)
def test_any_json_config_passes_or_raises_our_error(models, tmp_path, config):
    forged = rewrite_archive(models / "dense.keras", tmp_path / "p.keras", {"config.json": json.dumps(config).encode()})
    try:
        assert scan_model(forged) == "keras"
    except MobilepreError as e:
        assert e.exit_code == EXIT_BAD_INPUT and str(forged) in e.message


@pytest.mark.slow
def test_a_forged_loaded_record_in_a_shared_cache_never_skips_the_sandbox(hostile_saved_models, tmp_path):
    """Whoever can write a cache can write a "this file loaded safely in the sandbox" record; without this
    machine's mark (`keys.safety_mark`, its secret outside the cache) it counts for nothing: the trusted
    model's first load still runs in the sandboxed child, where its write is stopped."""
    from mobilepre.cache import CandidateCache
    from mobilepre.keys import loaded_key
    from mobilepre.sandbox import landlock_abi

    if landlock_abi() < 1:
        skip_or_fail("this kernel has no Landlock")
    out, markers = hostile_saved_models
    model = out / "initializer"
    cache = CandidateCache(tmp_path / "cache").open()
    key = loaded_key(model, None, True)
    for forged in ({"loaded": True}, {"loaded": True, "mark": "0" * 64}):  # no mark; a guessed one
        cache.put(key, forged, {}, {"loaded": str(model)})
        result = run_cli("build", model, "--out", tmp_path / "o", "--calibration", demo.calibration_path(), "--profile", "npu-int8",
                         "--trust-model", "--cache", tmp_path / "cache")
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        assert list(markers.iterdir()) == [] and not (tmp_path / "o").exists()
    # the proof that the record matters: with this machine's own mark the parent loads the file at once,
    # and the model's write happens (what a forged record would have allowed)
    from mobilepre.keys import machine_secret, safety_mark

    cache.discard(key)
    cache.put(key, {"loaded": True, "mark": safety_mark(machine_secret(tmp_path / "cache"), key)}, {}, {"loaded": str(model)})
    run_cli("build", model, "--out", tmp_path / "o2", "--calibration", demo.calibration_path(), "--profile", "npu-int8",
            "--trust-model", "--cache", tmp_path / "cache")
    assert (markers / "initialized").exists()
    (markers / "initialized").unlink()
