"""`mobilepre merge`: parts of one build assembled byte-identical to the build done in one go; every mismatch refused."""

import json
import shutil

import numpy as np
import pytest

from mobilepre import demo
from mobilepre.builder import build
from mobilepre.check import check
from mobilepre.errors import MobilepreError
from mobilepre.merge import merge
from tests.conftest import run_cli, warm_options
from tests.test_build import write_profile

LITE = 'formats = ["tflite"]\nquantization = ["float32", "int8"]\nthreads = 2\n[budget]\nmax_size = "100 KiB"\nmax_latency_ms = 500.0\n[drift]\nmin_top1_agreement = 0.9\n'
WEB = 'formats = ["tfjs"]\nquantization = ["float16", "uint8"]\nprefer = "size"\n[budget]\nmax_size = "1 MiB"\nmax_latency_ms = 500.0\n'
NONE_FITS = 'formats = ["tflite"]\nquantization = ["float32"]\n[budget]\nmax_size = "10 KiB"\n'


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """One build of three profiles, and the same three built as two parts, sharing a cache with latencies."""
    root = tmp_path_factory.mktemp("merge")
    profiles = root / "profiles"
    write_profile(profiles, "lite", LITE)
    write_profile(profiles, "web", WEB)
    write_profile(profiles, "none-fits", NONE_FITS)
    options = dict(profiles=profiles, cache=root / "cache", cache_latency=True, latency_runs=5)
    whole = build(warm_options(out=root / "whole", **options))
    build(warm_options(out=root / "part-a", profile=("lite", "none-fits"), **options))
    build(warm_options(out=root / "part-b", profile=("web",), **options))
    return root, whole


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_merged_parts_are_byte_identical_to_one_build(parts, tmp_path):
    root, whole = parts
    merged = merge(tmp_path / "merged", [root / "part-b", root / "part-a"])
    assert files(tmp_path / "merged") == files(root / "whole")  # bundles, report.json/.html/.md, timings.json
    assert [p.name for p in merged.profiles] == ["lite", "none-fits", "web"]
    assert merged.exit_code == whole.exit_code == 1  # none-fits has no bundle, in both
    assert not check(tmp_path / "merged", measure=False).passed  # the release says so too


def test_the_merged_release_passes_check_when_every_profile_has_its_bundle(parts, tmp_path):
    root, _ = parts
    result = run_cli("merge", tmp_path / "m", root / "part-b", root / "part-a")
    assert result.returncode == 1 and "2 of 3 bundles written" in result.stdout
    assert check(tmp_path / "m", measure=False, only_present=True).passed


def _copy(root, name, tmp_path):
    target = tmp_path / name
    shutil.copytree(root / name, target)
    return target


def _refused(out, part_list, match):
    with pytest.raises(MobilepreError, match=match):
        merge(out, part_list)
    assert not out.exists()


def test_a_profile_in_two_parts_is_refused(parts, tmp_path):
    root, _ = parts
    _refused(tmp_path / "m", [root / "part-a", root / "whole"], r"profile lite is in part .*part-a and in part .*whole")


@pytest.mark.slow
def test_parts_of_other_images_or_toolchains_are_refused(parts, tmp_path):
    root, _ = parts
    with np.load(demo.validation_path()) as stored:
        np.save(tmp_path / "fewer.npy", stored["images"][:100])
    build(warm_options(out=tmp_path / "other-images", profiles=root / "profiles", profile=("web",), validation=tmp_path / "fewer.npy",
                       calibration=demo.calibration_path(), cache=root / "cache", latency_runs=5))
    _refused(tmp_path / "m", [root / "part-a", tmp_path / "other-images"], r"built with another images .*data.validation")
    older = _copy(root, "part-b", tmp_path)
    report = json.loads((older / "report.json").read_text())
    report["versions"]["tensorflow"] = "2.18.0"
    (older / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    _refused(tmp_path / "m", [root / "part-a", older], r"another toolchain .*versions.tensorflow")


def test_a_tampered_or_edited_part_is_refused(parts, tmp_path):
    root, _ = parts
    tampered = _copy(root, "part-b", tmp_path)
    weights = next((tampered / "web").rglob("*.bin"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    _refused(tmp_path / "m", [root / "part-a", tampered], r"bundle web: .*does not match its sha256")
    edited = tmp_path / "edited"
    shutil.copytree(root / "part-a", edited)
    report = json.loads((edited / "report.json").read_text())
    report["profiles"][0]["formats"][0]["tried"][0]["bytes"] = 1
    (edited / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    _refused(tmp_path / "m", [edited, root / "part-b"], "report.json and timings.json disagree")
    not_a_build = tmp_path / "folder"
    not_a_build.mkdir()
    _refused(tmp_path / "m", [not_a_build], "it has no report.json: give the output folder of a")


def test_signatures_are_verified_when_a_key_is_given(parts, tmp_path):
    root, _ = parts
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    public = tmp_path / "key.pub"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(MobilepreError, match="bundle lite: .*sign"):
        merge(tmp_path / "m", [root / "part-a", root / "part-b"], verify_key=public)
    assert not (tmp_path / "m").exists()


def test_merge_cli_refuses_in_one_line_and_keeps_an_existing_output(parts, tmp_path):
    root, _ = parts
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "mine.txt").write_text("keep")
    result = run_cli("merge", tmp_path / "m", root / "part-a", root / "part-b", "--force")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert (tmp_path / "m" / "mine.txt").read_text() == "keep"
