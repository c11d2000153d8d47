"""Device profiles: the shipped files load, mistakes are named by file and key, parsers never crash."""

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mobilepre.errors import MobilepreError
from mobilepre.profiles import (
    Budget,
    Drift,
    Profile,
    default_profiles_dir,
    format_size,
    load_profile,
    load_profiles,
    parse_size,
)

SHIPPED = ("android-low-end", "android-flagship", "ios", "npu-int8", "web-mobile", "web-desktop")

VALID = """\
name = "{name}"
description = "A test device."
formats = ["tflite"]
quantization = ["float32", "int8"]

[budget]
max_size = "2 MiB"
max_latency_ms = 30.0

[drift]
min_top1_agreement = 0.98
"""


def write(tmp_path, text, name="test-device"):
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def valid_text(name="test-device"):
    return VALID.format(name=name)


def assert_error(path, *fragments):
    with pytest.raises(MobilepreError) as info:
        load_profile(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    assert "\n" not in message
    assert info.value.exit_code == 2
    return message


# ------------------------------------------------------------------------------------ shipped files


def test_every_shipped_profile_loads():
    profiles = load_profiles(default_profiles_dir())
    names = [p.name for p in profiles]
    assert names == sorted(names)
    assert set(SHIPPED) <= set(names)
    for profile in profiles:
        assert profile.description.strip()
        assert profile.budget.max_size >= 1024 * 1024  # MiB range, the demo model is ~100-250 KB


def test_shipped_profiles_cover_the_device_classes():
    by_name = {p.name: p for p in load_profiles(default_profiles_dir())}
    npu = by_name["npu-int8"]
    assert npu.quantization == ("int8",) and npu.io_type in ("int8", "uint8")
    # both web profiles weigh TF.js against LiteRT.js: by total download (mobile), by latency in Chromium (desktop)
    assert by_name["web-mobile"].formats == by_name["web-desktop"].formats == ("tfjs", "litertjs")
    assert by_name["web-mobile"].prefer == "size" and by_name["web-mobile"].budget.max_download is not None
    assert by_name["web-desktop"].prefer == "latency" and by_name["web-desktop"].budget.latency_source == "browser"
    assert any(p.budget.latency_source == "estimate" for p in by_name.values())


def test_shipped_profiles_say_where_their_numbers_come_from():
    for path in default_profiles_dir().glob("*.toml"):
        comments = [line for line in path.read_text().splitlines() if line.startswith("#")]
        assert comments, f"{path.name} has no comment on where its numbers come from"


# ------------------------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    "text, expected",
    [
        ("5MB", 5_000_000),
        ("5MiB", 5_242_880),
        ("5 MB", 5_000_000),
        ("5 MiB", 5_242_880),
        ("1.5 MiB", 1_572_864),
        ("300 KiB", 307_200),
        ("300 kB", 300_000),
        ("300 KB", 300_000),
        ("2 GB", 2_000_000_000),
        ("2 GiB", 2 * 1024**3),
        ("4096 B", 4096),
        ("1.0001 KiB", 1024),  # rounded down: a budget is never loosened
        ("0.5 B", 0),
        (" 7 MiB ", 7 * 1024**2),
    ],
)
def test_parse_size_is_exact_in_both_families(text, expected):
    assert parse_size(text, "here") == expected


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("5", "has no unit"),
        ("", "is empty"),
        ("   ", "is empty"),
        ("5 mb", "case-sensitive"),
        ("5 Mib", "case-sensitive"),
        ("5 b", "bits"),
        ("5 XB", "unknown unit"),
        ("-5 MiB", "negative"),
        ("nan MB", "not a size"),
        ("inf MiB", "not a size"),
        ("1e3 MB", "not a size"),
        ("5 M B", "not a size"),
        ("1" * 40 + " B", "too many digits"),
    ],
)
def test_parse_size_refuses_with_where(text, fragment):
    with pytest.raises(MobilepreError) as info:
        parse_size(text, "x.toml: budget.max_size")
    assert str(info.value).startswith("x.toml: budget.max_size")
    assert fragment in str(info.value)


def test_format_size():
    assert format_size(512) == "512 B"
    assert format_size(1_572_864) == "1.5 MiB"
    assert format_size(2 * 1024**2) == "2 MiB"
    assert format_size(-2048) == "-2 KiB"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789.+-eE kKMGiBbn a\t\u0665")), max_size=20) | st.text(max_size=20))
def test_parse_size_returns_bytes_or_raises_its_own_error(text):
    try:
        value = parse_size(text, "here")
    except MobilepreError as e:
        assert "\n" not in str(e)
    else:
        assert type(value) is int and value >= 0


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["B", "KB", "kB", "MB", "KiB", "MiB"]))
def test_parse_size_of_whole_numbers(number, unit):
    factor = {"B": 1, "KB": 1000, "kB": 1000, "MB": 1000**2, "KiB": 1024, "MiB": 1024**2}[unit]
    assert parse_size(f"{number}{unit}", "here") == number * factor


# ---------------------------------------------------------------------------------- strict schema


def test_valid_profile_and_defaults(tmp_path):
    profile = load_profile(write(tmp_path, valid_text()))
    assert profile.budget == Budget(max_size=2 * 1024**2, max_latency_ms=30.0)
    assert profile.drift == Drift(min_top1_agreement=0.98)
    assert (profile.io_type, profile.max_sparsity, profile.threads) == ("float32", 0.0, 1)
    assert profile.budget.latency_source == "host"
    assert profile.modes_for("tflite") == ("float32", "int8")
    assert profile.modes_for("tfjs") == ()


def test_modes_are_ordered_highest_fidelity_first(tmp_path):
    text = valid_text().replace('["tflite"]', '["tfjs", "tflite"]').replace(
        '["float32", "int8"]', '["uint8", "int8", "dynamic", "uint16", "float16", "float32"]'
    )
    profile = load_profile(write(tmp_path, text))
    assert profile.formats == ("tflite", "tfjs")
    assert profile.modes_for("tflite") == ("float32", "float16", "dynamic", "int8")
    assert profile.modes_for("tfjs") == ("float32", "float16", "uint16", "uint8")
    with pytest.raises(MobilepreError, match="unknown format"):
        profile.modes_for("onnx")


def test_unknown_key(tmp_path):
    assert_error(write(tmp_path, valid_text() + "colour = 'red'\n"), "unknown key 'drift.colour'")
    assert_error(write(tmp_path, 'colour = "red"\n' + valid_text()), "unknown key 'colour'", "valid keys")


def test_misspelt_key_suggests_the_closest(tmp_path):
    text = valid_text().replace("max_size", "max_sise")
    assert_error(write(tmp_path, text), "budget.max_sise", "did you mean 'budget.max_size'?")
    text = valid_text().replace("quantization", "quantisation")
    assert_error(write(tmp_path, text), "'quantisation'", "did you mean 'quantization'?")


def test_key_in_the_wrong_table_says_where_it_belongs(tmp_path):
    assert_error(write(tmp_path, valid_text() + "threads = 2\n"), "drift.threads", "top of the file")
    text = valid_text().replace("[budget]", 'max_rmse = 0.1\n[budget]')
    assert_error(write(tmp_path, text), "'max_rmse'", "[drift]")


def test_size_without_unit(tmp_path):
    text = valid_text().replace('max_size = "2 MiB"', "max_size = 5")
    assert_error(write(tmp_path, text), "budget.max_size", "has no unit", "'5 MiB'")
    text = valid_text().replace('max_size = "2 MiB"', 'max_size = "5"')
    assert_error(write(tmp_path, text), "budget.max_size", "has no unit")


def test_decimal_and_binary_megabytes_differ(tmp_path):
    mb = load_profile(write(tmp_path, valid_text().replace("2 MiB", "5MB")))
    mib = load_profile(write(tmp_path, valid_text().replace("2 MiB", "5MiB")))
    assert (mb.budget.max_size, mib.budget.max_size) == (5_000_000, 5_242_880)


@pytest.mark.parametrize(
    "old, new, key",
    [
        ('max_size = "2 MiB"', 'max_size = "-2 MiB"', "budget.max_size"),
        ('max_size = "2 MiB"', 'max_size = "0 B"', "budget.max_size"),
        ("max_latency_ms = 30.0", "max_latency_ms = -1.0", "budget.max_latency_ms"),
        ("max_latency_ms = 30.0", "max_latency_ms = 0", "budget.max_latency_ms"),
        ("max_latency_ms = 30.0", "max_latency_ms = nan", "budget.max_latency_ms"),
        ("min_top1_agreement = 0.98", "min_top1_agreement = 1.5", "drift.min_top1_agreement"),
        ("min_top1_agreement = 0.98", "max_rmse = -0.1", "drift.max_rmse"),
        ("[budget]", "max_sparsity = 0.99\n[budget]", "max_sparsity"),
        ("[budget]", "threads = 0\n[budget]", "threads"),
        ('max_size = "2 MiB"', 'max_size = "2 MiB"\nmax_peak_memory = "0 B"', "budget.max_peak_memory"),
        ('max_size = "2 MiB"', 'max_size = "2 MiB"\nmax_peak_memory = 64', "budget.max_peak_memory"),
    ],
)
def test_negative_or_out_of_range_budget(tmp_path, old, new, key):
    assert_error(write(tmp_path, valid_text().replace(old, new)), key)


@pytest.mark.parametrize(
    "old, new, key",
    [
        ("max_latency_ms = 30.0", 'max_latency_ms = "30 ms"', "budget.max_latency_ms must be a number"),
        ("max_latency_ms = 30.0", "max_latency_ms = true", "budget.max_latency_ms must be a number"),
        ('formats = ["tflite"]', 'formats = "tflite"', "formats must be a list"),
        ('formats = ["tflite"]', "formats = [1]", "formats must be a list"),
        ('formats = ["tflite"]', "formats = []", "formats must be a non-empty list"),
        ('formats = ["tflite"]', 'formats = ["tflite", "tflite"]', "twice"),
        ('formats = ["tflite"]', 'formats = ["tflight"]', "did you mean 'tflite'?"),
        ("[budget]", "threads = 2.0\n[budget]", "threads must be a whole number"),
        ("[budget]", "threads = 1979-05-27\n[budget]", "threads must be a whole number"),
        ('name = "test-device"', "name = 3", "name must be a string"),
        ('max_size = "2 MiB"', "max_size = true", "budget.max_size"),
        ("[budget]", 'latency_source = "host"\n[budget]', "it belongs in the [budget] table"),
    ],
)
def test_wrong_type(tmp_path, old, new, key):
    assert_error(write(tmp_path, valid_text().replace(old, new)), key)


def test_peak_memory_budget_reads_as_a_size(tmp_path):
    profile = load_profile(write(tmp_path, valid_text().replace('max_size = "2 MiB"', 'max_size = "2 MiB"\nmax_peak_memory = "64 MiB"')))
    assert profile.budget.max_peak_memory == 64 * 1024 * 1024
    assert profile.to_dict()["budget"]["max_peak_memory"] == 64 * 1024 * 1024
    assert Profile.from_dict(profile.to_dict()) == profile


def test_table_of_the_wrong_type(tmp_path):
    text = valid_text().replace("[drift]\nmin_top1_agreement = 0.98\n", "").replace("[budget]", "drift = 3\n[budget]")
    assert_error(write(tmp_path, text), "'drift' must be a [drift] table")


def test_missing_required_keys(tmp_path):
    assert_error(write(tmp_path, valid_text().replace('description = "A test device."\n', "")), "'description'")
    no_budget = valid_text().replace('[budget]\nmax_size = "2 MiB"\nmax_latency_ms = 30.0\n', "")
    assert_error(write(tmp_path, no_budget), "'budget'")
    assert_error(write(tmp_path, valid_text().replace('max_size = "2 MiB"\n', "")), "'budget.max_size'")


def test_name_must_match_file_and_pattern(tmp_path):
    assert_error(write(tmp_path, valid_text("other-device")), "name 'other-device'", "test-device.toml")
    assert_error(write(tmp_path, valid_text("Test_Device"), name="Test_Device"), "name 'Test_Device'")


def test_tfjs_mode_with_only_tflite_format(tmp_path):
    text = valid_text().replace('["float32", "int8"]', '["float32", "uint8"]')
    assert_error(write(tmp_path, text), "quantization", "'uint8'", "TF.js", "add 'tfjs' to formats")


def test_format_without_any_of_its_modes(tmp_path):
    text = valid_text().replace('["tflite"]', '["tflite", "tfjs"]').replace('["float32", "int8"]', '["int8"]')
    assert_error(write(tmp_path, text), "formats lists 'tfjs'")


def test_io_type_needs_int8_tflite(tmp_path):
    text = valid_text().replace('["float32", "int8"]', '["float32"]').replace("[budget]", 'io_type = "uint8"\n[budget]')
    assert_error(write(tmp_path, text), "io_type 'uint8'")
    ok = valid_text().replace("[budget]", 'io_type = "int8"\n[budget]')
    assert load_profile(write(tmp_path, ok)).io_type == "int8"


def test_litertjs_is_a_web_format_with_its_own_rules(tmp_path):
    """LiteRT.js runs the TFLite modes it has kernels and tensors for; it has no int8 tensors at the I/O
    (uint8 I/O is fine), no WebGL backend; `max_download` (model and runtime) needs a web format."""
    web = valid_text().replace('["tflite"]', '["tfjs", "litertjs"]').replace('["float32", "int8"]', '["float32", "uint8", "int8"]')
    profile = load_profile(write(tmp_path, web.replace("[budget]", 'io_type = "uint8"\n[budget]\nmax_download = "4 MiB"')))
    assert profile.formats == ("tfjs", "litertjs") and profile.modes_for("litertjs") == ("float32", "int8")
    assert profile.budget.max_download == 4 * 1024 * 1024 and profile.to_dict()["budget"]["max_download"] == 4 * 1024 * 1024
    assert_error(write(tmp_path, web.replace("[budget]", 'io_type = "int8"\n[budget]')), "LiteRT.js has no int8 tensors")
    int16 = web.replace('"int8"]', '"int16x8"]')
    assert_error(write(tmp_path, int16), "'int16x8'", "add 'tflite' to formats")
    browser = web.replace("max_latency_ms = 30.0", 'max_latency_ms = 30.0\nlatency_source = "browser"\nbrowser_backend = "webgl"')
    assert_error(write(tmp_path, browser), "'webgl' is a TF.js backend")
    assert_error(write(tmp_path, valid_text().replace("[budget]", '[budget]\nmax_download = "4 MiB"')), "max_download", "no web format")


def test_prefer_is_one_of_three_and_latency_needs_a_latency_budget(tmp_path):
    assert load_profile(write(tmp_path, valid_text())).prefer == "fidelity"
    assert "prefer" not in load_profile(write(tmp_path, valid_text())).to_dict()  # default left out
    size = load_profile(write(tmp_path, valid_text().replace("[budget]", 'prefer = "size"\n[budget]')))
    assert size.prefer == "size" and size.to_dict()["prefer"] == "size"
    assert_error(write(tmp_path, valid_text().replace("[budget]", 'prefer = "speed"\n[budget]')), "prefer", "use one of fidelity, latency, size")
    no_latency = valid_text().replace("[budget]", 'prefer = "latency"\n[budget]').replace("max_latency_ms = 30.0\n", "")
    assert_error(write(tmp_path, no_latency), "prefer = 'latency' needs", "max_latency_ms")


def test_new_tflite_modes_are_profile_modes(tmp_path):
    text = valid_text().replace('["float32", "int8"]', '["int4", "int16x8", "float32"]')
    assert load_profile(write(tmp_path, text)).quantization == ("float32", "int16x8", "int4")


def test_estimate_needs_device_gmacs(tmp_path):
    text = valid_text().replace("max_latency_ms = 30.0", 'max_latency_ms = 30.0\nlatency_source = "estimate"')
    assert_error(write(tmp_path, text), "budget.device_gmacs")
    fixed = text.replace('"estimate"', '"estimate"\ndevice_gmacs = 5')
    assert load_profile(write(tmp_path, fixed)).budget.device_gmacs == 5.0
    unused = valid_text().replace("max_latency_ms = 30.0", "device_gmacs = 5.0")
    assert_error(write(tmp_path, unused), "budget.device_gmacs is only used")
    assert_error(write(tmp_path, text.replace('"estimate"', '"measured"')), "budget.latency_source", "use one of host")


# ----------------------------------------------------------------------------------------- reading


def test_file_problems(tmp_path):
    assert_error(tmp_path / "missing.toml", "does not exist")
    bad_toml = write(tmp_path, valid_text().replace("max_latency_ms = 30.0", "max_latency_ms = "))
    assert_error(bad_toml, "not valid TOML", "line 8")
    latin1 = tmp_path / "test-device.toml"
    latin1.write_bytes(valid_text().replace("A test device.", "Caf\xe9 device.").encode("latin-1"))
    assert_error(latin1, "not UTF-8")
    huge = write(tmp_path, valid_text() + "# padding\n" * 7000)
    assert_error(huge, "over the 65,536-byte limit")
    assert_error(write(tmp_path, "a = " + "[" * 5000), "not valid TOML")
    bom = tmp_path / "test-device.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + valid_text().encode())
    assert load_profile(bom).name == "test-device"


def test_load_profiles_folder_rules(tmp_path):
    with pytest.raises(MobilepreError, match="no .toml profiles"):
        load_profiles(tmp_path)
    with pytest.raises(MobilepreError, match="no such profile file or folder"):
        load_profiles(tmp_path / "nowhere")
    write(tmp_path, valid_text("b-device"), name="b-device")
    write(tmp_path, valid_text("a-device"), name="a-device")
    assert [p.name for p in load_profiles(tmp_path)] == ["a-device", "b-device"]
    assert [p.name for p in load_profiles(tmp_path / "b-device.toml")] == ["b-device"]


# -------------------------------------------------------------------------------------- round trip


def test_round_trip_through_json():
    for profile in load_profiles(default_profiles_dir()):
        stored = json.loads(json.dumps(profile.to_dict()))
        assert stored == profile.to_dict()
        assert list(stored) == sorted(stored)
        assert isinstance(stored["budget"]["max_size"], int)
        assert Profile.from_dict(stored) == profile
        assert Profile.from_dict(stored, "manifest.json").to_dict() == stored


def test_from_dict_names_its_source():
    stored = load_profiles(default_profiles_dir())[0].to_dict()
    stored["budget"]["max_size"] = -1
    with pytest.raises(MobilepreError, match=r"^manifest.json: budget.max_size -1 is negative"):
        Profile.from_dict(stored, "manifest.json")
    with pytest.raises(MobilepreError, match="^manifest.json: a profile must be a table"):
        Profile.from_dict([], "manifest.json")


# ----------------------------------------------------------------------------- property: any file

KEYS = (
    "name", "description", "formats", "quantization", "io_type", "max_sparsity", "threads",
    "max_size", "max_compressed_size", "max_latency_ms", "latency_source", "device_gmacs",
    "min_top1_agreement", "max_rmse", "min_cosine", "nmae", "max_siz",
)
scalars = (
    st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.text(max_size=12)
    | st.sampled_from(["test-device", "tflite", "tfjs", "int8", "uint8", "float32", "2 MiB", "5", "estimate"])
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=6)
tables = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), values, max_size=6)
documents = st.fixed_dictionaries(
    {"": tables, "budget": tables, "drift": tables},
    optional={"extra": tables},
)


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    return "[" + ", ".join(toml_value(v) for v in value) + "]"


def toml_document(document):
    lines = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in document[""].items()]
    for section in ("budget", "drift", "extra"):
        if section in document:
            lines.append(f"[{section}]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in document[section].items()]
    return "\n".join(lines) + "\n"


def check_loads_or_refuses(path):
    try:
        profile = load_profile(path)
    except MobilepreError as e:
        assert str(path) in str(e) and "\n" not in str(e)
    else:
        assert Profile.from_dict(profile.to_dict()) == profile


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(documents)
def test_any_toml_document_loads_or_raises_its_own_error(tmp_path, document):
    check_loads_or_refuses(write(tmp_path, toml_document(document)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_valid_profile_with_one_value_replaced(tmp_path, data):
    lines = valid_text().splitlines()
    index = data.draw(st.sampled_from([i for i, line in enumerate(lines) if " = " in line]))
    key = lines[index].split(" = ")[0]
    lines[index] = f"{key} = {toml_value(data.draw(values))}"
    check_loads_or_refuses(write(tmp_path, "\n".join(lines) + "\n"))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200) | st.text(alphabet=string.printable, max_size=200) | st.binary(max_size=200))
def test_any_text_or_bytes_loads_or_raises_its_own_error(tmp_path, content):
    path = tmp_path / "test-device.toml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    check_loads_or_refuses(path)


def test_kind_defaults_judge_every_output_of_their_kind_and_are_checked(tmp_path):
    text = valid_text() + "[drift.kinds.regression]\nmax_relative_error = 0.1\n[drift.outputs.box]\nmax_relative_error = 0.02\n"
    drift = load_profile(write(tmp_path, text)).drift
    assert drift.limits_for("landmarks", "regression")["max_relative_error"] == 0.1  # the kind's default
    assert drift.limits_for("box", "regression")["max_relative_error"] == 0.02  # the output's own wins
    assert "max_relative_error" not in drift.limits_for("scores", "probabilities")  # other kinds untouched
    assert drift.to_dict()["kinds"] == {"regression": {"max_relative_error": 0.1}}
    assert_error(write(tmp_path, valid_text() + "[drift.kinds.regression]\nmin_top1_agreement = 0.9\n"),
                 "drift.kinds.regression.min_top1_agreement has no meaning for a regression output")
    assert_error(write(tmp_path, valid_text() + "[drift.kinds.boxes]\nmax_abs_error = 0.1\n"), "drift.kinds 'boxes' is not valid")
    assert_error(write(tmp_path, valid_text() + "[drift.kinds.image]\nmax_sharpness = 1\n"), "drift.kinds.image.max_sharpness")


def test_every_shipped_profile_judges_every_kind_of_output():
    from mobilepre.metrics import OutputKind
    from mobilepre.profiles import load_profiles
    from tests.conftest import REPO

    for profile in load_profiles(REPO / "device_profiles"):
        for kind in OutputKind:
            assert profile.drift.limits_for("any", kind), (profile.name, kind)
