"""`mobilepre copy` (a verified bundle into an app, never over the app's own files) and `mobilepre check-files`
(the pre-commit gate: the bundles some files belong to)."""

import json
import shutil

import pytest

from mobilepre.builder import build
from tests.conftest import run_cli, warm_options
from tests.test_build import write_profile

PHONE = 'formats = ["tflite"]\nquantization = ["float32"]\n[budget]\nmax_size = "1 MiB"\n'


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    """A build output with two bundles (the same candidate, measured once)."""
    root = tmp_path_factory.mktemp("deliver")
    write_profile(root / "profiles", "phone", PHONE)
    write_profile(root / "profiles", "tablet", PHONE)
    build(warm_options(out=root / "out", profiles=root / "profiles", cache=root / "cache", latency_runs=3))
    return root / "out"


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_copy_makes_an_exact_verified_copy_and_replaces_only_an_earlier_copy(output, tmp_path):
    dest = tmp_path / "app" / "src" / "main" / "assets" / "model"
    first = run_cli("copy", output, dest, "--profile", "phone", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["replaced"] is False
    assert files(dest) == files(output / "phone")
    assert run_cli("check", dest, "--no-measure").returncode == 0  # the copy is a whole bundle

    second = run_cli("copy", output, dest, "--profile", "tablet")
    assert second.returncode == 0 and second.stdout.startswith(f"replaced {dest}: bundle of profile tablet")
    assert files(dest) == files(output / "tablet")
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model"]  # no staging folder left beside it


def test_copy_never_replaces_the_apps_own_files(output, tmp_path):
    dest = tmp_path / "assets" / "model"
    assert run_cli("copy", output, dest, "--profile", "phone").returncode == 0
    (dest / "notes.txt").write_text("the app's own file")
    refused = run_cli("copy", output, dest, "--profile", "phone")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "holds notes.txt, which its bundle manifest does not list" in refused.stderr
    assert (dest / "notes.txt").read_text() == "the app's own file"

    other = tmp_path / "assets" / "fonts"
    other.mkdir()
    (other / "font.ttf").write_bytes(b"x")
    refused = run_cli("copy", output, other, "--profile", "phone")
    assert refused.returncode == 2 and "holds files but no intact bundle manifest" in refused.stderr
    assert files(other) == {"font.ttf": b"x"}


def test_copy_refuses_a_damaged_or_missing_bundle_and_keeps_the_last_good_copy(output, tmp_path):
    dest = tmp_path / "model"
    assert run_cli("copy", output, dest, "--profile", "phone").returncode == 0
    good = files(dest)
    damaged = tmp_path / "damaged"
    shutil.copytree(output, damaged)
    tflite = damaged / "phone" / "model.tflite"
    data = bytearray(tflite.read_bytes())
    data[len(data) // 2] ^= 1
    tflite.write_bytes(bytes(data))
    refused = run_cli("copy", damaged, dest, "--profile", "phone")
    assert refused.returncode == 1 and "failed its check: model.tflite" in refused.stderr and "nothing copied" in refused.stderr
    assert files(dest) == good

    assert run_cli("copy", output, dest, "--profile", "watch").returncode == 1
    several = run_cli("copy", output, dest)
    assert several.returncode == 2 and "name one with --profile" in several.stderr
    assert run_cli("copy", tmp_path / "nowhere", dest).returncode == 2
    assert files(dest) == good
    before = files(output)
    for inside in (output / "phone", output / "phone" / "again", output):
        overlap = run_cli("copy", output, inside, "--profile", "phone")
        assert overlap.returncode == 2, overlap.stderr
    assert files(output) == before


def test_check_files_checks_the_bundles_the_files_belong_to(output, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(output / "phone", repo / "android" / "assets" / "model")
    shutil.copytree(output / "tablet", repo / "ios" / "Resources" / "model")
    (repo / "public").mkdir()
    (repo / "public" / "manifest.json").write_text('{"name": "a web app manifest"}')
    write_profile(repo / "device_profiles", "phone", PHONE)
    write_profile(repo / "device_profiles", "tablet", PHONE)

    one = run_cli("check-files", "android/assets/model/model.tflite", "public/manifest.json", "README.md", cwd=repo)
    assert one.returncode == 0, one.stdout + one.stderr
    assert "PASS android/assets/model" in one.stdout and "ios/" not in one.stdout

    (repo / "pyproject.toml").write_text("[project]\n")
    none = run_cli("check-files", "public/manifest.json", "pyproject.toml", cwd=repo)  # not a profile
    assert none.returncode == 0 and "no mobilepre bundle among these files" in none.stdout

    tightened = repo / "device_profiles" / "tablet.toml"
    tightened.write_text(tightened.read_text().replace('"1 MiB"', '"10 KiB"'))
    every = run_cli("check-files", "device_profiles/tablet.toml", cwd=repo)  # a profile changed: every bundle
    assert every.returncode == 1
    assert "PASS android/assets/model" in every.stdout and "FAIL ios/Resources/model" in every.stdout
    assert every.stderr.startswith("mobilepre: failed: release fails: ios/Resources/model max_size")

    (repo / "android" / "assets" / "model" / "extra.bin").write_bytes(b"x")
    damaged = run_cli("check-files", "android/assets/model/extra.bin", cwd=repo)
    assert damaged.returncode == 1 and "extra.bin is not listed in manifest.json" in damaged.stdout
