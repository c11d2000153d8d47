"""Signed releases (`mobilepre.signing`, OpenSSF model-signing): a re-sealed edit fails where signatures
are required; an unsigned bundle, a wrong key or any file changed after signing fails `check`."""

import json
import os
import shutil

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mobilepre.builder import build
from mobilepre.check import check
from mobilepre.sign import sign_bundles
from mobilepre.manifest import seal_manifest
from tests.conftest import run_cli, warm_options

FAST = {**os.environ, "MOBILEPRE_ISOLATE_LOADS": "0"}


def _keypair(folder, name):
    key = ec.generate_private_key(ec.SECP256R1())
    private = folder / f"{name}.pem"
    public = folder / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    return _keypair(folder, "release"), _keypair(folder, "someone-else")


@pytest.fixture(scope="module")
def signed_build(tmp_path_factory, keys):
    (private, _), _ = keys
    out = tmp_path_factory.mktemp("signed") / "out"
    result = build(warm_options(out=out, profile=("npu-int8",), latency_runs=3, sign_key=private))
    assert result.passed
    return out


@pytest.fixture
def release(signed_build, tmp_path):
    return shutil.copytree(signed_build, tmp_path / "out")


def test_a_signed_build_passes_with_its_public_key(release, keys):
    (_, public), _ = keys
    assert (release / "npu-int8" / "signature.sig").is_file()
    result = check(release, measure=False, verify_key=public)
    assert result.passed and any(f.name == "signature" and f.passed for f in result.bundles[0].findings)
    assert check(release, measure=False).passed  # without the key, the signature file is simply allowed


def test_a_resealed_edit_passes_the_seal_but_not_the_signature(release, keys):
    (_, public), _ = keys
    manifest_path = release / "npu-int8" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["profile"]["budget"]["max_size"] = 10**9  # a deliberate edit, re-sealed as anyone can
    manifest_path.write_bytes(seal_manifest(manifest))
    unverified = check(release, measure=False)
    assert unverified.passed and unverified.bundles[0].signature == "unsigned"  # said, not silent
    result = check(release, measure=False, verify_key=public)
    assert not result.passed and result.bundles[0].findings[0].name == "signature"
    assert "does not verify" in result.bundles[0].findings[0].message


def test_unsigned_wrong_key_and_changed_file_fail(release, keys):
    (private, public), (_, other) = keys
    assert "does not verify" in check(release, measure=False, verify_key=other).bundles[0].findings[0].message
    (release / "npu-int8" / "signature.sig").unlink()
    assert "unsigned" in check(release, measure=False, verify_key=public).bundles[0].findings[0].message
    assert sign_bundles(release, private).signed == ("npu-int8",)
    assert check(release, measure=False, verify_key=public).passed
    model = release / "npu-int8" / "model.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte of the model changed
    model.write_bytes(bytes(data))
    assert not check(release, measure=False, verify_key=public).passed


def test_sign_refuses_a_damaged_bundle_and_the_cli_says_so(release, keys, tmp_path):
    (private, public), _ = keys
    (release / "npu-int8" / "extra.txt").write_text("not listed")
    result = run_cli("sign", release, "--key", private, env=FAST)
    assert result.returncode == 1 and "NOT SIGNED" in result.stdout and "extra.txt" in result.stdout
    (release / "npu-int8" / "extra.txt").unlink()
    assert run_cli("sign", release, "--key", private, env=FAST).returncode == 0
    assert run_cli("check", release, "--no-measure", "--verify-key", public, env=FAST).returncode == 0
    bad_key = tmp_path / "not-a-key.pem"
    bad_key.write_text("hello")
    result = run_cli("sign", release, "--key", bad_key, env=FAST)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "elliptic-curve private key" in result.stderr


def test_without_a_key_every_bundle_says_unsigned_and_a_required_signature_fails(release, keys, tmp_path):
    (_, public), _ = keys
    junit = tmp_path / "check.xml"
    table = run_cli("check", release, "--no-measure", "--junit", junit, env=FAST)
    assert table.returncode == 0 and ", unsigned)" in table.stdout.splitlines()[1], table.stdout
    assert 'name="signature"' in junit.read_text() and "unsigned: no verify key was given" in table.stdout
    as_json = json.loads(run_cli("check", release, "--no-measure", "--json", env=FAST).stdout)
    assert [b["signature"] for b in as_json["bundles"]] == ["unsigned"]
    signed = json.loads(run_cli("check", release, "--no-measure", "--json", "--verify-key", public, env=FAST).stdout)
    assert [b["signature"] for b in signed["bundles"]] == ["verified"]
    forgotten = run_cli("check", release, "--no-measure", "--require-signature", env=FAST)
    assert forgotten.returncode == 2 and len(forgotten.stderr.strip().splitlines()) == 1
    assert "--require-signature needs --verify-key" in forgotten.stderr
    assert run_cli("check", release, "--no-measure", "--require-signature", "--verify-key", public, env=FAST).returncode == 0


def test_a_profile_that_requires_signatures_fails_an_unverified_bundle(release, keys, tmp_path):
    (_, public), _ = keys
    manifest = json.loads((release / "npu-int8" / "manifest.json").read_text())
    profile = manifest["profile"]
    lines = [f'name = "{profile["name"]}"', f'description = "{profile["description"]}"', f'formats = {json.dumps(profile["formats"])}',
             f'quantization = {json.dumps(profile["quantization"])}', f'io_type = "{profile["io_type"]}"', "require_signature = true",
             "[budget]", f'max_size = "{profile["budget"]["max_size"]} B"']
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "npu-int8.toml").write_text("\n".join(lines) + "\n")
    unverified = check(release, profiles=tmp_path / "profiles", measure=False, only_present=True)
    assert not unverified.passed and "profile npu-int8 requires a signature" in unverified.failure()
    assert check(release, profiles=tmp_path / "profiles", measure=False, only_present=True, verify_key=public).passed
