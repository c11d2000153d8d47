"""`mobilepre check`, the release gate: integrity before parsing, budgets as the profiles are now."""

import hashlib
import json
import os
import re
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mobilepre.builder import build
from mobilepre.manifest import seal_manifest
from mobilepre.check import check
from mobilepre.facts import artifact_facts
from tests.conftest import run_cli, warm_options

FAST = {**os.environ, "MOBILEPRE_ISOLATE_LOADS": "0"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("gate") / "out"
    result = build(warm_options(out=out, profile=("npu-int8", "web-mobile"), latency_runs=20))
    why = [(p.name, e.closest) for p in result.profiles for e in p.formats if not p.passed]
    assert result.exit_code == 0, why
    return out


@pytest.fixture
def bundles(built, tmp_path):
    copy = tmp_path / "out"
    shutil.copytree(built, copy)
    return copy


def _failures(result):
    return [(b.bundle, f.name, f.message) for b in result.bundles for f in b.checks if not f.passed]


def _rehash(bundle: Path, relative: str) -> None:
    """Update manifest.json for a file changed on purpose, so a later check (not the hash) must catch it."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    data = (bundle / relative).read_bytes()
    for entry in manifest["files"]:
        if entry["path"] == relative:
            entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (bundle / "manifest.json").write_bytes(seal_manifest(manifest))


def test_clean_bundles_pass(bundles):
    result = check(bundles, measure=False)
    assert result.exit_code == 0 and [b.bundle for b in result.bundles] == ["npu-int8", "web-mobile"]
    names = {f.name for f in result.bundles[1].checks}
    assert {"integrity", "loads[tfjs]", "max_size", "max_compressed_size", "min_top1_agreement"} <= names
    assert check(bundles / "npu-int8", measure=False).exit_code == 0  # one bundle on its own


@pytest.mark.parametrize("relative", ["npu-int8/model.tflite", "npu-int8/manifest.json", "web-mobile/tfjs/model.json", "web-mobile/tfjs/group1-shard1of1.bin"])
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_one_flipped_byte_anywhere_fails_naming_the_bundle(bundles, relative, where):
    path = bundles / relative
    data = bytearray(path.read_bytes())
    index = {"start": 10, "middle": len(data) // 2, "end": len(data) - 2}[where]
    data[index] ^= 0x01
    path.write_bytes(bytes(data))
    result = check(bundles, measure=False)
    assert result.exit_code == 1
    bundle = relative.split("/")[0]
    failures = _failures(result)
    assert failures and all(b == bundle for b, _, _ in failures) and failures[0][1] == "integrity"
    named = "manifest.json" if relative.endswith("manifest.json") else relative.split("/", 1)[1]
    assert named in failures[0][2]


def test_missing_and_extra_files_fail(bundles):
    (bundles / "web-mobile" / "tfjs" / "group1-shard1of1.bin").unlink()
    (bundles / "npu-int8" / "notes.txt").write_text("not shipped")
    failures = dict(((b, m) for b, _, m in _failures(check(bundles, measure=False))))
    assert "group1-shard1of1.bin is listed in manifest.json but missing" in failures["web-mobile"]
    assert "notes.txt is not listed in manifest.json" in failures["npu-int8"]


def test_symlinks_and_escaping_weight_paths_are_refused(bundles, tmp_path):
    js = bundles / "web-mobile" / "tfjs"
    model = json.loads((js / "model.json").read_text())
    model["weightsManifest"][0]["paths"] = ["../../../etc/passwd"]
    (js / "model.json").write_text(json.dumps(model))
    _rehash(bundles / "web-mobile", "tfjs/model.json")
    (tmp_path / "outside").write_text("x")
    os.symlink(tmp_path / "outside", bundles / "npu-int8" / "link")
    failures = dict(((b, m) for b, _, m in _failures(check(bundles, measure=False))))
    assert "tfjs/model.json" in failures["web-mobile"] and "../../../etc/passwd" in failures["web-mobile"]
    assert "link is a symlink" in failures["npu-int8"]


def test_truncated_tflite_fails_in_the_verifier_before_the_interpreter(bundles):
    path = bundles / "npu-int8" / "model.tflite"
    path.write_bytes(path.read_bytes()[:5000])
    assert "model.tflite is 5000 bytes, the manifest says" in _failures(check(bundles, measure=False))[0][2]
    _rehash(bundles / "npu-int8", "model.tflite")
    failure = _failures(check(bundles, measure=False))[0]
    assert failure[1] == "integrity" and "model.tflite: not a valid TFLite model" in failure[2]


def test_a_tightened_size_budget_fails_old_bundles(bundles, tmp_path):
    profiles = tmp_path / "profiles"
    shutil.copytree(Path(__file__).resolve().parent.parent / "device_profiles", profiles)
    shipped = sum(p.stat().st_size for p in (bundles / "npu-int8").glob("model.tflite"))  # about 50 kB
    text = (profiles / "npu-int8.toml").read_text().replace('max_size = "8 MiB"', 'max_size = "48 KiB"')
    (profiles / "npu-int8.toml").write_text(text)
    result = check(bundles, profiles=profiles, measure=False)
    assert _failures(result) == [("npu-int8", "max_size", f"max_size: {shipped:,} B vs 49,152 B (recomputed)")]
    assert result.bundles[0].budgets_from == str(profiles)


def test_the_manifest_copy_of_the_profile_is_the_fallback(bundles, tmp_path):
    empty = tmp_path / "other-profiles"
    empty.mkdir()
    (empty / "someone-else.toml").write_text(
        'name = "someone-else"\ndescription = "x."\nformats = ["tflite"]\nquantization = ["float32"]\n[budget]\nmax_size = "1 MiB"\n'
    )
    result = check(bundles, profiles=empty, measure=False, only_present=True)
    assert result.exit_code == 0 and {b.budgets_from for b in result.bundles} == {"manifest"}
    assert _failures(check(bundles, profiles=empty, measure=False)) == []  # bundles pass; the release does not
    assert not check(bundles, profiles=empty, measure=False).passed


def test_latency_uses_the_source_the_profile_names(bundles, tmp_path):
    result = check(bundles)
    latency = {b.bundle: next(f for f in b.checks if f.name == "max_latency_ms") for b in result.bundles}
    assert latency["npu-int8"].source == "estimate" and latency["npu-int8"].value == pytest.approx(0.3861, abs=1e-3)
    assert latency["web-mobile"].source == "host" and latency["web-mobile"].value > 0
    low, high = latency["web-mobile"].interval  # the median of the timed runs, with its 95% interval
    assert low <= latency["web-mobile"].value <= high and latency["web-mobile"].outcome in ("pass", "inconclusive")
    assert latency["npu-int8"].interval is None  # an estimate has no spread
    profiles = tmp_path / "profiles"
    shutil.copytree(Path(__file__).resolve().parent.parent / "device_profiles", profiles)
    text = (profiles / "web-mobile.toml").read_text().replace('latency_source = "host"', 'latency_source = "device"')
    (profiles / "web-mobile.toml").write_text(text)
    timings = tmp_path / "timings.json"
    shipped = json.loads((bundles / "web-mobile" / "manifest.json").read_text())["artifacts"][0]["candidate"]
    timings.write_text(json.dumps({shipped: 450.0}))  # web-mobile prefers size: a pruned or clustered uint8
    result = check(bundles, profiles=profiles, device_timings=timings)
    assert _failures(result) == [("web-mobile", "max_latency_ms", "max_latency_ms: 450.000 ms vs 200.000 ms (device)")]


def test_check_repeat_judges_the_interval_of_its_rounds(bundles, tmp_path):
    profiles = tmp_path / "profiles"
    shutil.copytree(Path(__file__).resolve().parent.parent / "device_profiles", profiles)
    text = (profiles / "web-mobile.toml").read_text()  # a gate that must not pass by chance
    (profiles / "web-mobile.toml").write_text(re.sub(r'(?m)^prefer = "size"$', 'prefer = "size"\non_inconclusive = "fail"', text))
    result = run_cli("check", bundles / "web-mobile", "--profiles", profiles, "--repeat", "3", "--json", env=FAST)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = json.loads(result.stdout)["bundles"][0]["artifacts"][0]["verdict"]["checks"]
    latency = next(c for c in checks if c["name"] == "max_latency_ms")
    assert latency["outcome"] == "pass" and latency["interval"][0] <= latency["value"] <= latency["interval"][1]
    refused = run_cli("check", bundles / "web-mobile", "--repeat", "0", env=FAST)
    assert refused.returncode == 2 and "--repeat 0 is out of range" in refused.stderr and "Traceback" not in refused.stderr


def test_drift_is_revalidated_when_data_is_given(bundles):
    from mobilepre import demo

    result = check(bundles, data=demo.validation_path(), measure=False)
    drift = [f for b in result.bundles for f in b.checks if f.name == "min_top1_agreement"]
    assert drift and all(f.source == "validated" and f.passed for f in drift)


def test_cli_exit_codes_json_and_junit(bundles, tmp_path):
    path = bundles / "npu-int8" / "model.tflite"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    junit = tmp_path / "report.xml"
    result = run_cli("check", bundles, "--no-measure", "--json", "--junit", junit, env=FAST)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert not report["passed"] and [b["passed"] for b in report["bundles"]] == [False, True]
    suite = ET.parse(junit).getroot()
    failed = [case.get("classname") + ":" + case.get("name") for case in suite if case.find("failure") is not None]
    assert failed == ["mobilepre.npu-int8:integrity"] and int(suite.get("failures")) == 1
    assert "model.tflite" in suite.find("testcase/failure").get("message")
    assert run_cli("check", tmp_path / "nothing-here", env=FAST).returncode == 2


# --- a release is complete: every profile has its bundle, each allowed by its profile as it is now ---


def _release_failures(result):
    return [(f.name, f.message) for f in result.release if not f.passed]


def test_a_deleted_bundle_fails_the_release(bundles):
    shutil.rmtree(bundles / "web-mobile")
    result = check(bundles, measure=False)
    assert result.exit_code == 1 and [b.passed for b in result.bundles] == [True]
    assert _release_failures(result) == [("release[web-mobile]", "bundle web-mobile of profile web-mobile is missing")]
    assert "release FAILS" in result.to_text() and 'name="release[web-mobile]"' in result.junit_xml()
    assert check(bundles, measure=False, only_present=True).exit_code == 0


def test_every_current_profile_needs_a_bundle_when_profiles_are_given(bundles):
    shipped = Path(__file__).resolve().parent.parent / "device_profiles"
    result = check(bundles, profiles=shipped, measure=False)
    assert result.exit_code == 1
    assert sorted(n for n, _ in _release_failures(result)) == [
        "release[android-flagship]", "release[android-low-end]", "release[ios]", "release[web-desktop]"]
    assert check(bundles, profiles=shipped, measure=False, only_present=True).exit_code == 0


def test_a_build_that_found_no_candidate_is_not_a_release(bundles):
    report = json.loads((bundles / "report.json").read_text())
    report["profiles"].append({"name": "tiny-device", "bundle": None, "passed": False, "formats": []})
    (bundles / "report.json").write_text(json.dumps(report))
    result = check(bundles, measure=False)
    assert ("release[tiny-device]", "the build found no candidate within budget for profile tiny-device: no bundle") in _release_failures(result)
    (bundles / "report.json").unlink()
    assert "report.json is missing" in _release_failures(check(bundles, measure=False))[0][1]


@pytest.mark.parametrize("edit, fragment", [
    (('quantization = ["int8"]\nio_type = "uint8"', 'quantization = ["float32"]'), "no longer allows tflite int8"),
    (('io_type = "uint8"', 'io_type = "int8"'), "its I/O type is uint8, profile npu-int8 wants int8"),
    (("formats = [\"tflite\"]", "tfjs-only"), None),
])
def test_an_artifact_the_profile_no_longer_allows_fails(bundles, tmp_path, edit, fragment):
    profiles = tmp_path / "profiles"
    shutil.copytree(Path(__file__).resolve().parent.parent / "device_profiles", profiles)
    text = (profiles / "npu-int8.toml").read_text()
    assert edit[0] in text
    if fragment is None:  # a TF.js-only device: the profile needs TF.js modes too
        text = text.replace('formats = ["tflite"]', 'formats = ["tfjs"]').replace('quantization = ["int8"]', 'quantization = ["uint8"]').replace('io_type = "uint8"\n', "")
        fragment = "no longer allows the tflite format"
    else:
        text = text.replace(*edit)
    (profiles / "npu-int8.toml").write_text(text)
    result = check(bundles, profiles=profiles, measure=False, only_present=True)
    failures = [(b, n, m) for b, n, m in _failures(result)]
    assert result.exit_code == 1 and failures[0][0] == "npu-int8" and fragment in failures[0][2], failures


def test_a_bundle_without_artifacts_or_in_another_profile_s_folder_fails(bundles):
    manifest = json.loads((bundles / "npu-int8" / "manifest.json").read_text())
    manifest["artifacts"] = []
    (bundles / "npu-int8" / "manifest.json").write_bytes(seal_manifest(manifest))
    assert ("npu-int8", "artifacts", "manifest.json lists no artifact: a bundle without a model") in _failures(check(bundles, measure=False))
    shutil.rmtree(bundles / "npu-int8")
    shutil.copytree(bundles / "web-mobile", bundles / "npu-int8")
    result = check(bundles, measure=False)
    assert ("release[npu-int8]", "folder npu-int8 holds the bundle of profile web-mobile") in _release_failures(result)


def test_an_artifact_that_never_ends_is_one_line_and_exit_1_not_a_hang(bundles, endless_tflite, tmp_path):
    bundle = bundles / "npu-int8"
    (bundle / "model.tflite").write_bytes(endless_tflite.read_bytes())
    _rehash(bundle, "model.tflite")
    manifest = json.loads((bundle / "manifest.json").read_text())
    facts = artifact_facts(bundle, "model.tflite", ["model.tflite"])  # claims that agree with the file: the runtime is reached
    manifest["artifacts"][0].update(sha256=hashlib.sha256(endless_tflite.read_bytes()).hexdigest(), bytes=facts.size_bytes,
                                    gzip_bytes=facts.gzip_bytes, quantization=facts.mode, io_type=facts.io_type)
    manifest["artifacts"][0]["io"]["inputs"][0].update(dtype=facts.inputs[0][0], shape=list(facts.inputs[0][1]))
    (bundle / "manifest.json").write_bytes(seal_manifest(manifest))
    profiles = tmp_path / "profiles"  # the endless model is float: a profile that allows it, so its run is reached
    shutil.copytree(Path(__file__).resolve().parent.parent / "device_profiles", profiles)
    text = (profiles / "npu-int8.toml").read_text()
    (profiles / "npu-int8.toml").write_text(text.replace('quantization = ["int8"]', 'quantization = ["float32", "int8"]').replace('io_type = "uint8"\n', ""))
    started = time.monotonic()
    result = run_cli("--run-timeout", "3", "check", bundles, "--no-measure", "--only-present", "--profiles", profiles, env=FAST, timeout=120)
    assert result.returncode == 1 and time.monotonic() - started < 60, result.stderr
    assert "LiteRT did not finish within 3 s" in result.stdout and "Traceback" not in result.stderr, result.stdout


def _relabel(bundle: Path, relative: str, data: bytes) -> None:
    """Put `data` in as `relative` and re-seal the manifest as anyone can (file list and the artifact's
    sha256 updated), leaving the artifact's other claims as they were."""
    (bundle / relative).write_bytes(data)
    _rehash(bundle, relative)
    manifest = json.loads((bundle / "manifest.json").read_text())
    for artifact in manifest["artifacts"]:
        if artifact["path"] == relative:
            artifact["sha256"] = hashlib.sha256(data).hexdigest()
    (bundle / "manifest.json").write_bytes(seal_manifest(manifest))


def test_check_believes_the_artifact_not_the_manifest(bundles, demo_source):
    """A float32 model put into the int8 bundle, the manifest re-sealed and still claiming int8 with uint8
    I/O and the old byte counts: the claims are checked against the file and the bundle fails."""
    from mobilepre import quantize

    float32 = quantize.convert(demo_source.model, quantize.QuantizationSettings("tflite", "float32")).files["model.tflite"]
    _relabel(bundles / "npu-int8", "model.tflite", float32)
    result = check(bundles, measure=False)
    (claims,) = [m for b, n, m in _failures(result) if n == "claims[tflite]"]
    assert "its tensors are float32, the manifest says int8" in claims and "its I/O type is float32, the manifest says uint8" in claims
    assert f"its files are {len(float32):,} bytes, the manifest says 50," in claims and not result.passed
    cli = run_cli("check", bundles, "--no-measure", env=FAST)
    assert cli.returncode == 1 and "its tensors are float32" in cli.stderr


def test_a_dynamic_graph_in_a_bundle_that_says_static_fails(bundles, demo_source, tmp_path):
    """The same model with a dynamic batch put in (a static-shape accelerator refuses it), the manifest
    re-sealed: its claim of static shapes is checked against the file."""
    from mobilepre import quantize
    from mobilepre.quantize.export import export_saved_model

    assert json.loads((bundles / "npu-int8" / "manifest.json").read_text())["artifacts"][0]["io"]["shapes"] == "static"
    exported = export_saved_model(demo_source.model, tmp_path / "dynamic", dynamic_batch=True)
    dynamic = quantize.convert_saved_model(exported, quantize.QuantizationSettings("tflite", "float32")).files["model.tflite"]
    _relabel(bundles / "npu-int8", "model.tflite", dynamic)
    (claims,) = [m for b, n, m in _failures(check(bundles, measure=False)) if n == "claims[tflite]"]
    assert "its tensor shapes are dynamic, the manifest says static" in claims


@pytest.mark.parametrize("mode", ["float16", "dynamic", "int16x8", "int4"])
def test_each_tflite_mode_is_told_from_its_tensors(demo_source, demo_data, mode, tmp_path):
    from mobilepre import quantize
    from mobilepre.facts import artifact_facts

    calibration, _ = demo_data
    artifact = quantize.convert(demo_source.model, quantize.QuantizationSettings("tflite", mode), calibration.images[:16])
    (tmp_path / "model.tflite").write_bytes(artifact.files["model.tflite"])
    facts = artifact_facts(tmp_path, "model.tflite", ["model.tflite"])
    assert (facts.format, facts.mode, facts.io_type, facts.size_bytes) == ("tflite", mode, "float32", artifact.size_bytes)
