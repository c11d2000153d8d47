"""`mobilepre check`: re-verify bundles against their manifests and the profiles' budgets, for CI."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from mobilepre.errors import EXIT_FAILED, MobilepreError

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
_SAFE_PART = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass
class Finding:
    """One check of one bundle: integrity, or one budget."""

    name: str  # "integrity", "max_size", "min_top1_agreement", ...
    passed: bool
    message: str
    value: object = None
    limit: object = None
    source: str | None = None  # where the value came from: recomputed, host, estimate, device, manifest, validated

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None or k in ("passed",)}


@dataclass
class BundleVerdict:
    bundle: str
    profile: str | None
    findings: list = field(default_factory=list)
    budgets_from: str | None = None  # the profiles folder the budgets came from, or "manifest"

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.findings)

    def to_dict(self) -> dict:
        return {
            "bundle": self.bundle,
            "budgets_from": self.budgets_from,
            "checks": [f.to_dict() for f in self.findings],
            "passed": self.passed,
            "profile": self.profile,
        }


@dataclass
class CheckResult:
    root: str
    bundles: list

    @property
    def exit_code(self) -> int:
        return 0 if all(b.passed for b in self.bundles) else EXIT_FAILED

    def to_dict(self) -> dict:
        return {"root": self.root, "passed": self.exit_code == 0, "bundles": [b.to_dict() for b in self.bundles]}

    def to_text(self) -> str:
        lines = []
        for b in self.bundles:
            origin = f", budgets from {b.budgets_from}" if b.budgets_from else ""
            lines.append(f"{'PASS' if b.passed else 'FAIL'} {b.bundle} (profile {b.profile or '?'}{origin})")
            for f in b.findings:
                lines.append(f"  {'ok  ' if f.passed else 'FAIL'} {f.name:<22} {f.message}")
        passed = sum(b.passed for b in self.bundles)
        lines.append(f"{passed} of {len(self.bundles)} bundles pass")
        return "\n".join(lines)

    def junit_xml(self) -> str:
        from xml.sax.saxutils import escape, quoteattr

        cases, failures = [], 0
        for b in self.bundles:
            for f in b.findings:
                body = ""
                if not f.passed:
                    failures += 1
                    body = f"<failure message={quoteattr(f.message)}>{escape(f.message)}</failure>"
                cases.append(f"  <testcase classname={quoteattr('mobilepre.' + b.bundle)} name={quoteattr(f.name)}>{body}</testcase>")
        head = f'<testsuite name="mobilepre check" tests="{len(cases)}" failures="{failures}">'
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + head + "\n" + "\n".join(cases) + "\n</testsuite>\n"


class IntegrityError(Exception):
    """The bundle is not what its manifest says (exit 1, not bad input)."""


# ------------------------------------------------------------------------------------------ integrity


def _safe_relative(path: str) -> bool:
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    parts = path.split("/")
    return all(p not in ("", ".", "..") and set(p) <= _SAFE_PART for p in parts)


def _read_manifest(bundle: Path) -> dict:
    path = bundle / "manifest.json"
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise IntegrityError("manifest.json is missing") from None
    if not stat.S_ISREG(info.st_mode):
        raise IntegrityError("manifest.json is not a regular file")
    if info.st_size > MAX_MANIFEST_BYTES:
        raise IntegrityError(f"manifest.json is {info.st_size} bytes, over the {MAX_MANIFEST_BYTES} limit")
    raw = path.read_bytes()
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise IntegrityError(f"manifest.json is not valid JSON: {error}") from None
    _check_schema(manifest)
    from mobilepre.manifest import manifest_seal_problem

    problem = manifest_seal_problem(raw, manifest)
    if problem:
        raise IntegrityError(problem)
    return manifest


def _check_schema(manifest) -> None:
    from mobilepre.manifest import MANIFEST_SCHEMA

    if not isinstance(manifest, dict):
        raise IntegrityError("manifest.json is not a JSON object")
    if manifest.get("schema") != MANIFEST_SCHEMA:
        raise IntegrityError(f"manifest.json schema is {manifest.get('schema')!r}, expected {MANIFEST_SCHEMA!r}")
    for key, kind in (("files", list), ("artifacts", list), ("profile", dict), ("source", dict)):
        if not isinstance(manifest.get(key), kind):
            raise IntegrityError(f"manifest.json: {key} is missing or not a {kind.__name__}")
    for i, entry in enumerate(manifest["files"]):
        if not (
            isinstance(entry, dict)
            and _safe_relative(entry.get("path"))
            and isinstance(entry.get("bytes"), int)
            and isinstance(entry.get("sha256"), str)
            and len(entry["sha256"]) == 64
        ):
            raise IntegrityError(f"manifest.json: files[{i}] is not a safe relative path with bytes and sha256")
    listed = [e["path"] for e in manifest["files"]]
    if len(set(listed)) != len(listed) or listed != sorted(listed) or "manifest.json" in listed:
        raise IntegrityError("manifest.json: the file list must be sorted, without duplicates or manifest.json itself")
    for i, artifact in enumerate(manifest["artifacts"]):
        if not (
            isinstance(artifact, dict)
            and artifact.get("format") in ("tflite", "tfjs")
            and artifact.get("path") in listed
            and isinstance(artifact.get("candidate"), str)
        ):
            raise IntegrityError(f"manifest.json: artifacts[{i}] has no format, listed path and candidate")


def _verify_files(bundle: Path, manifest: dict) -> None:
    """Every listed file exists, is regular, has its size and sha256; nothing else is in the bundle."""
    listed = {e["path"]: e for e in manifest["files"]}
    root = bundle.resolve()
    seen = set()
    for dirpath, dirnames, filenames in os.walk(bundle):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            relative = path.relative_to(bundle).as_posix()
            if path.is_symlink():
                raise IntegrityError(f"{relative} is a symlink; bundles hold regular files only")
            if name in filenames:
                seen.add(relative)
    extra = sorted(seen - set(listed) - {"manifest.json"})
    if extra:
        raise IntegrityError(f"{extra[0]} is not listed in manifest.json (an unlisted file)")
    for relative, entry in sorted(listed.items()):
        path = bundle / relative
        if relative not in seen:
            raise IntegrityError(f"{relative} is listed in manifest.json but missing")
        if root not in path.resolve().parents:
            raise IntegrityError(f"{relative} leads outside the bundle")
        data = path.read_bytes()
        if len(data) != entry["bytes"]:
            raise IntegrityError(f"{relative} is {len(data)} bytes, the manifest says {entry['bytes']}")
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise IntegrityError(f"{relative} does not match its sha256 in manifest.json (modified or damaged)")


def _verify_artifacts(bundle: Path, manifest: dict) -> None:
    """Artifacts parse in a verifier before any runtime sees them, then load in their runtime."""
    from mobilepre.artifacts import verify_tflite, verify_tfjs_folder

    for artifact in manifest["artifacts"]:
        path = bundle / artifact["path"]
        try:
            if artifact["format"] == "tflite":
                verify_tflite(path.read_bytes(), artifact["path"])
            else:
                verify_tfjs_folder(path.parent, artifact["path"])
        except MobilepreError as error:
            raise IntegrityError(error.message) from None


# ------------------------------------------------------------------------------------------ budgets


def _profile_now(manifest: dict, profiles_arg) -> tuple[object, str]:
    """The profile as it is now in the repo (tightened budgets fail old bundles), else the manifest's copy."""
    from mobilepre.profiles import Profile, default_profiles_dir, load_profiles

    name = manifest["profile"].get("name")
    source = Path(profiles_arg) if profiles_arg else default_profiles_dir()
    if source.exists():
        for profile in load_profiles(source):
            if profile.name == name:
                return profile, str(source)
    return Profile.from_dict(manifest["profile"], "manifest.json profile"), "manifest"


def _size_findings(profile, bundle: Path, artifact: dict) -> list[Finding]:
    from mobilepre.quantize.artifact import gzip_size

    files = [bundle / f for f in artifact.get("files", [artifact["path"]])]
    size = sum(p.stat().st_size for p in files)
    found = [
        Finding("max_size", size <= profile.budget.max_size, f"{size} B vs {profile.budget.max_size} B", size, profile.budget.max_size, "recomputed")
    ]
    if profile.budget.max_compressed_size is not None:
        compressed = sum(gzip_size(p.read_bytes()) for p in files)
        limit = profile.budget.max_compressed_size
        found.append(Finding("max_compressed_size", compressed <= limit, f"{compressed} B gzip vs {limit} B", compressed, limit, "recomputed"))
    return found


def _latency_finding(profile, bundle: Path, artifact: dict, manifest: dict, measure: bool, device_timings, images) -> Finding | None:
    limit = profile.budget.max_latency_ms
    if limit is None:
        return None
    source = profile.budget.latency_source
    if source == "estimate":
        macs = manifest["source"].get("macs")
        if not isinstance(macs, int):
            return Finding("max_latency_ms", False, "the manifest has no MAC count to estimate latency from", None, limit, "estimate")
        from mobilepre.macs import estimated_latency_ms

        value = estimated_latency_ms(macs, profile.budget.device_gmacs)
    elif source == "device":
        value = (device_timings or {}).get(artifact["candidate"])
        if value is None:
            return Finding("max_latency_ms", False, f"no device timing for {artifact['candidate']}: pass --device-timings FILE", None, limit, "device")
    else:
        if not measure:
            return Finding("max_latency_ms", True, "not measured (--no-measure)", None, limit, "host")
        from mobilepre.validate import run_candidate

        path = bundle / artifact["path"]
        target = path if artifact["format"] == "tflite" else path.parent
        _, run = run_candidate(target, images[:1], threads=profile.threads, latency_runs=50)
        value = run.latency.median_ms
    return Finding("max_latency_ms", value <= limit, f"{value:.3f} ms ({source}) vs {limit:g} ms", round(value, 4), limit, source)


def _drift_findings(profile, artifact: dict, measured: dict | None, has_labels: bool) -> list[Finding]:
    from mobilepre.validate import TOLERANCES, tolerance_failures

    drift = measured if measured is not None else artifact.get("drift", {})
    source = "validated" if measured is not None else "manifest"
    found = []
    for name, (metric, _kind) in sorted(TOLERANCES.items()):
        limit = getattr(profile.drift, name)
        if limit is None or (name == "max_accuracy_drop" and not has_labels and metric not in drift):
            continue
        failures = tolerance_failures(drift, {name: limit})
        value = drift.get(metric)
        message = failures[0] if failures else f"{metric} {value:.6g} vs {limit:g}"
        found.append(Finding(name, not failures, f"{message} ({source})", value, limit, source))
    return found


# ------------------------------------------------------------------------------------------ the check


def find_bundles(root: Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise MobilepreError(f"{root} is not a folder: give a build output folder or one bundle")
    if (root / "manifest.json").exists() or (root / "manifest.json").is_symlink():
        return [root]
    bundles = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and (p / "manifest.json").exists())
    if not bundles:
        raise MobilepreError(f"{root} holds no bundle (no manifest.json in it or its sub-folders)")
    return bundles


def check(
    root: Path,
    profiles: Path | None = None,
    data: Path | None = None,
    reference: Path | None = None,
    measure: bool = True,
    device_timings: Path | None = None,
    input_range: tuple[float, float] = (0.0, 1.0),
    trust: bool = False,
) -> CheckResult:
    """Check every bundle under `root` (or `root` itself when it is one)."""
    from mobilepre.search import parse_device_timings

    bundles = find_bundles(root)
    timings = parse_device_timings(device_timings) if device_timings else None
    if profiles is not None and not Path(profiles).exists():
        raise MobilepreError(f"--profiles {profiles} does not exist")
    if data is not None and reference is None:
        reference = _demo_reference_for(bundles)
    validation = _Validation(reference, data, input_range, trust) if data is not None else None
    verdicts = []
    for bundle in bundles:
        verdicts.append(_check_bundle(bundle, profiles, measure, timings, validation))
    return CheckResult(str(root), verdicts)


def _demo_reference_for(bundles) -> Path:
    """`--data` without `--reference` is fine for bundles of the embedded demo model, and only those."""
    from mobilepre import demo

    for bundle in bundles:
        try:
            manifest = json.loads((bundle / "manifest.json").read_text())
            if manifest.get("source", {}).get("name") != "demo.keras":
                raise ValueError
        except (OSError, ValueError, AttributeError):
            raise MobilepreError("--data re-validates drift against the float model: pass --reference MODEL too") from None
    return demo.model_path()


class _Validation:
    """The reference model and data, loaded once for all bundles."""

    def __init__(self, reference, data, input_range, trust):
        from mobilepre.compress import DataOptions
        from mobilepre.models import load_model
        from mobilepre.validate import reference_outputs

        self.source = load_model(reference, trust=trust)
        self.dataset = DataOptions(Path(data), input_range, limit=None).load(self.source)
        self.reference = reference_outputs(self.source, self.dataset.images)[0]

    def drift(self, bundle: Path, artifact: dict) -> dict:
        from mobilepre.validate import compare, run_candidate, worst

        path = bundle / artifact["path"]
        _, run = run_candidate(path if artifact["format"] == "tflite" else path.parent, self.dataset.images)
        return worst(compare(self.reference, run, self.dataset.labels))


def _check_bundle(bundle: Path, profiles, measure: bool, timings, validation) -> BundleVerdict:
    verdict = BundleVerdict(bundle.name, None)
    try:
        manifest = _read_manifest(bundle)
        verdict.profile = manifest["profile"].get("name")
        _verify_files(bundle, manifest)
        _verify_artifacts(bundle, manifest)
    except IntegrityError as error:
        verdict.findings.append(Finding("integrity", False, f"{bundle.name}: {error}"))
        return verdict
    verdict.findings.append(Finding("integrity", True, f"{len(manifest['files'])} files match manifest.json; artifacts verified"))
    if validation is not None and manifest["source"].get("identity") != validation.source.identity:
        verdict.findings.append(Finding("reference", False, "--reference is not the model this bundle was built from (identity differs)"))
        return verdict
    profile, where = _profile_now(manifest, profiles)
    images = validation.dataset.images if validation else _sample_input(manifest)
    for artifact in manifest["artifacts"]:
        try:
            runtime = _runtime_loads(bundle, artifact, images)
        except MobilepreError as error:
            verdict.findings.append(Finding("runtime", False, error.message))
            continue
        verdict.findings.append(Finding(f"loads[{artifact['format']}]", True, runtime))
        verdict.findings += _size_findings(profile, bundle, artifact)
        latency = _latency_finding(profile, bundle, artifact, manifest, measure, timings, images)
        if latency:
            verdict.findings.append(latency)
        measured = validation.drift(bundle, artifact) if validation else None
        has_labels = bool(validation and validation.dataset.labels is not None) or manifest.get("data", {}).get("validation", {}).get("labels", False)
        verdict.findings += _drift_findings(profile, artifact, measured, has_labels)
    verdict.profile, verdict.budgets_from = profile.name, where
    return verdict


def _sample_input(manifest: dict):
    import numpy as np

    shape = tuple(manifest["source"].get("input_shape", ()))
    dtype = manifest["source"].get("input_dtype", "float32")
    if len(shape) != 3 or dtype not in ("uint8", "float32"):
        raise MobilepreError("manifest.json: source.input_shape / input_dtype are missing or invalid")
    return np.zeros((1, *shape), dtype=dtype)


def _runtime_loads(bundle: Path, artifact: dict, images) -> str:
    """Run one image through the artifact in its real runtime: it must load and produce outputs."""
    from mobilepre.validate import run_candidate

    path = bundle / artifact["path"]
    fmt, run = run_candidate(path if artifact["format"] == "tflite" else path.parent, images[:1])
    shapes = ", ".join(str(tuple(o.shape[1:])) for o in run.outputs)
    return f"runs in {'LiteRT' if fmt == 'tflite' else 'TF.js (Node, wasm)'}: outputs {shapes}"
