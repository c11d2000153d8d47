"""`mobilepre check`: re-verify bundles against their manifests and the profiles' budgets, for CI."""

from __future__ import annotations

import hashlib
import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobilepre import demo
from mobilepre.facts import artifact_facts, claim_problems
from mobilepre.formats import FORMATS, download_bytes
from mobilepre.budgets import Measurement, Verdict, judge
from mobilepre.data import DataOptions
from mobilepre.errors import EXIT_FAILED, MobilepreError, param
from mobilepre.latency import latency_figure, parse_device_timings
from mobilepre.runtimes import Latency
from mobilepre.candidates import allowed_problem
from mobilepre.output import NotAnOutput, read_output
from mobilepre.manifest import IntegrityError, Manifest, ManifestArtifact, read_manifest
from mobilepre.metrics import OutputKind
from mobilepre.models import OutputSpec, load_model, with_stages
from mobilepre.profiles import Profile, default_profiles_dir, load_profiles
from mobilepre.signing import SIGNATURE_FILE, signature_problem
from mobilepre.validate import compare, reference_outputs, run_candidate




@dataclass(frozen=True)
class Finding:
    """One check of a bundle that is not a budget: its integrity, or an artifact loading in its runtime.

    Attributes:
        name (str): "integrity", "reference", "runtime", "loads[tflite]", ...
        passed (bool).
        message (str): one line for people.
    """

    name: str
    passed: bool
    message: str

    def to_dict(self) -> dict:
        return {"message": self.message, "name": self.name, "passed": self.passed}

    @classmethod
    def from_dict(cls, data: dict) -> Finding:
        return cls(data["name"], data["passed"], data["message"])


@dataclass(frozen=True)
class ArtifactCheck:
    """One artifact of a bundle: it loads and runs (a `Finding`), and its budgets (a `Verdict`)."""

    path: str
    candidate: str
    loads: Finding
    verdict: Verdict | None  # None when it did not load

    @property
    def passed(self) -> bool:
        return self.loads.passed and self.verdict is not None and self.verdict.passed

    def to_dict(self) -> dict:
        return {
            "candidate": self.candidate,
            "loads": self.loads.to_dict(),
            "passed": self.passed,
            "path": self.path,
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ArtifactCheck:
        verdict = None if data["verdict"] is None else Verdict.from_dict(data["verdict"])
        return cls(data["path"], data["candidate"], Finding.from_dict(data["loads"]), verdict)


@dataclass(frozen=True)
class BundleResult:
    """One bundle's check.

    Attributes:
        bundle (str): its folder name (`check_files`: its path).
        profile (str | None): the profile it was built for, when the manifest could be read.
        findings (tuple[Finding, ...]): integrity (and the reference's identity, when re-validating).
        artifacts (tuple[ArtifactCheck, ...]).
        budgets_from (str | None): the profiles folder the budgets came from, or "manifest".
    """

    bundle: str
    profile: str | None
    findings: tuple = ()
    artifacts: tuple = ()
    budgets_from: str | None = None

    @property
    def passed(self) -> bool:
        return all(f.passed for f in self.findings) and all(a.passed for a in self.artifacts)

    @property
    def signature(self) -> str:
        """"verified" (a verify key showed every file signed) or "unsigned" (nothing showed it signed:
        no key was given, or the signature failed, which fails the bundle)."""
        found = next((f for f in self.findings if f.name == "signature"), None)
        return "verified" if found is not None and found.passed and found.message.startswith("every file is signed") else "unsigned"

    @property
    def checks(self) -> list:
        """Every finding and budget check, in order: what the table and JUnit XML list."""
        out = list(self.findings)
        for artifact in self.artifacts:
            out.append(artifact.loads)
            out += list(artifact.verdict.checks) if artifact.verdict else []
        return out

    def to_dict(self) -> dict:
        return {
            "artifacts": [a.to_dict() for a in self.artifacts],
            "budgets_from": self.budgets_from,
            "bundle": self.bundle,
            "findings": [f.to_dict() for f in self.findings],
            "passed": self.passed,
            "profile": self.profile,
            "signature": self.signature,
        }

    @classmethod
    def from_dict(cls, data: dict) -> BundleResult:
        return cls(
            data["bundle"], data["profile"], tuple(Finding.from_dict(f) for f in data["findings"]),
            tuple(ArtifactCheck.from_dict(a) for a in data["artifacts"]), data["budgets_from"],
        )


@dataclass(frozen=True)
class CheckResult:
    """What `check` found. `passed` (exit code 0) when the release is complete and every bundle passed
    every check.

    Attributes:
        root (str): the folder checked.
        bundles (tuple[BundleResult, ...]).
        release (tuple[Finding, ...]): completeness: every profile the build was for (and, with
            `--profiles`, every current profile) has its bundle.
    """

    root: str
    bundles: tuple = field(default_factory=tuple)
    release: tuple = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        checked = bool(self.bundles) or bool(self.release)  # no bundle and no finding: nothing was checked
        return checked and all(b.passed for b in self.bundles) and all(f.passed for f in self.release)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else EXIT_FAILED

    def to_dict(self) -> dict:
        return {
            "bundles": [b.to_dict() for b in self.bundles],
            "passed": self.passed,
            "release": [f.to_dict() for f in self.release],
            "root": self.root,
        }

    @classmethod
    def from_dict(cls, data: dict) -> CheckResult:
        return cls(data["root"], tuple(BundleResult.from_dict(b) for b in data["bundles"]),
                   tuple(Finding.from_dict(f) for f in data["release"]))

    def failure(self) -> str | None:
        """One line: the first failed check (and how many more), or None when the release passes."""
        failed = [f"{f.name}: {f.message}" for f in self.release if not f.passed]
        failed += [f"{b.bundle} {c.name}: {c.message}" for b in self.bundles for c in b.checks if not c.passed]
        if not failed:
            return None if self.passed else "no bundle found"
        more = f" (and {len(failed) - 1} more failed checks)" if len(failed) > 1 else ""
        return f"release fails: {failed[0]}{more}"

    def to_text(self) -> str:
        lines = [f"{'ok  ' if f.passed else 'FAIL'} {f.name:<22} {f.message}" for f in self.release]
        for b in self.bundles:
            origin = f", budgets from {b.budgets_from}" if b.budgets_from else ""
            lines.append(f"{'PASS' if b.passed else 'FAIL'} {b.bundle} (profile {b.profile or '?'}{origin}, {b.signature})")
            for c in b.checks:  # a budget passed on an interval that straddles its limit says "warn"
                status = ("warn" if getattr(c, "inconclusive", False) else "ok  ") if c.passed else "FAIL"
                lines.append(f"  {status} {c.name:<22} {c.message}")
        passed = sum(b.passed for b in self.bundles)
        verdict = "release passes" if self.passed else "release FAILS"
        lines.append(f"{passed} of {len(self.bundles)} bundles pass; {verdict}")
        return "\n".join(lines)

    def junit_xml(self) -> str:
        # html.escape(quote=True) escapes what XML attributes need (& < > " '); xml.sax.saxutils would
        # pull in urllib and ssl, 13 ms of every start-up.
        cases, failures = [], 0
        for b in [BundleResult("release", None, self.release)] + list(self.bundles):
            for c in b.checks:
                body = ""
                if not c.passed:
                    failures += 1
                    body = f'<failure message="{html.escape(c.message)}">{html.escape(c.message, quote=False)}</failure>'
                cases.append(f'  <testcase classname="mobilepre.{html.escape(b.bundle)}" name="{html.escape(c.name)}">{body}</testcase>')
        head = f'<testsuite name="mobilepre check" tests="{len(cases)}" failures="{failures}">'
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + head + "\n" + "\n".join(cases) + "\n</testsuite>\n"


# ------------------------------------------------------------------------------------------ integrity


def verify_files(bundle: Path, manifest: Manifest) -> None:
    """Every listed file exists, is regular, has its size and sha256; nothing else is in the bundle."""
    listed = {f.path: f for f in manifest.files}
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
    extra = sorted(seen - set(listed) - {"manifest.json", SIGNATURE_FILE})
    if extra:
        raise IntegrityError(f"{extra[0]} is not listed in manifest.json (an unlisted file)")
    for relative, entry in sorted(listed.items()):
        path = bundle / relative
        if relative not in seen:
            raise IntegrityError(f"{relative} is listed in manifest.json but missing")
        if root not in path.resolve().parents:
            raise IntegrityError(f"{relative} leads outside the bundle")
        data = path.read_bytes()
        if len(data) != entry.size_bytes:
            raise IntegrityError(f"{relative} is {len(data)} bytes, the manifest says {entry.size_bytes}")
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise IntegrityError(f"{relative} does not match its sha256 in manifest.json (modified or damaged)")


def _integrity(bundle: Path, verify_key: Path | None) -> tuple[Manifest | None, str | None, str | None]:
    """(manifest, None, None) for an intact bundle, else (None, the check that failed, why): with
    `verify_key` its signature first (before anything of the bundle is parsed), then its manifest, every
    file's size and sha256, nothing unlisted, and each artifact parsing in a verifier."""
    if verify_key is not None:
        problem = signature_problem(bundle, verify_key)
        if problem:
            return None, "signature", problem
    try:
        manifest = read_manifest(bundle)
        verify_files(bundle, manifest)
        _verify_artifacts(bundle, manifest)
    except IntegrityError as error:
        return None, "integrity", str(error)
    return manifest, None, None


def intact_manifest(bundle: Path, verify_key: Path | None = None, profile: str | None = None) -> tuple[Manifest | None, str | None]:
    """(manifest, None) for an intact bundle (`_integrity`) of `profile`, else (None, why not)."""
    manifest, _, problem = _integrity(bundle, verify_key)
    if problem:
        return None, problem
    if profile is not None and manifest.profile_name != profile:
        return None, f"its manifest is for profile {manifest.profile_name!r}, not {profile!r}"
    return manifest, None


def bundle_problem(bundle: Path, verify_key: Path | None = None, profile: str | None = None) -> str | None:
    """Why `bundle` is not intact or not the bundle of `profile`, or None."""
    return intact_manifest(bundle, verify_key, profile)[1]


def _verify_artifacts(bundle: Path, manifest: Manifest) -> None:
    """Artifacts parse in their format's verifier before any runtime sees them."""
    for artifact in manifest.artifacts:
        try:
            FORMATS[artifact.format].verify(bundle / artifact.path, artifact.path)
        except MobilepreError as error:
            raise IntegrityError(error.message) from None


# ------------------------------------------------------------------------------------------ budgets


def _profile_now(manifest: Manifest, profiles_arg) -> tuple[Profile, str]:
    """The profile as it is now in the repo (tightened budgets fail old bundles), else the manifest's copy."""
    name = manifest.profile_name
    source = Path(profiles_arg) if profiles_arg else default_profiles_dir()
    if source.exists():
        for profile in load_profiles(source):
            if profile.name == name:
                return profile, str(source)
    return Profile.from_dict(manifest.profile, "manifest.json profile"), "manifest"


def _measurement(bundle: Path, artifact: ManifestArtifact, facts, manifest: Manifest, validation,
                 peak_memory_bytes: int | None = None) -> Measurement:
    """Sizes as the files are (`facts`, read once); drift re-validated on `--data`, else as the manifest
    recorded it; peak memory as the run here measured it."""
    size, compressed = facts.size_bytes, facts.gzip_bytes
    if validation is not None:
        drift, labels, source = validation.drift(bundle, artifact, manifest), validation.has_labels(manifest), "validated"
    else:
        drift, labels, source = artifact.drift, manifest.labels, "manifest"
    return Measurement(size, compressed, tuple(drift), labels, size_source="recomputed", drift_source=source,
                       peak_memory_bytes=peak_memory_bytes, peak_memory_source=FORMATS[facts.format].memory_source,
                       download_bytes=download_bytes(facts.format, compressed))


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


MAX_REPEAT = 100
CHECK_LATENCY_RUNS = 50


def check(
    root: Path,
    profiles: Path | None = None,
    data: Path | None = None,
    reference: Path | None = None,
    measure: bool = True,
    device_timings: Path | None = None,
    input_range: tuple[float, float] = (0.0, 1.0),
    trust: bool = False,
    only_present: bool = False,
    verify_key: Path | None = None,
    require_signature: bool = False,
    custom_objects: tuple[str, ...] = (),
    repeat: int = 1,
) -> CheckResult:
    """Check every bundle under `root` (or `root` itself when it is one), and that a build output is a
    complete release: every profile its report names has its bundle, and with `profiles` every current
    profile too, unless `only_present`. With `verify_key`, every bundle must carry a signature that the
    key verifies over its files as they are now; without it each bundle is marked unsigned, which fails
    with `require_signature` (or a profile's `require_signature`). `repeat` times each artifact that
    many rounds (each a fresh process of 50 timed runs) and judges the interval of the rounds' medians."""
    if type(repeat) is not int or not 1 <= repeat <= MAX_REPEAT:
        raise MobilepreError(f"{param('repeat')} {repeat} is out of range: use a whole number of timing rounds from 1 to {MAX_REPEAT}")
    if require_signature and verify_key is None:
        raise MobilepreError(f"{param('require_signature')} needs {param('verify_key')}: the public key whose signatures the bundles must carry")
    bundles = find_bundles(root)
    timings = parse_device_timings(device_timings) if device_timings else None
    if profiles is not None and not Path(profiles).exists():
        raise MobilepreError(f"--profiles {profiles} does not exist")
    if data is not None and reference is None:
        reference = _demo_reference_for(bundles)
    validation = _Validation(reference, data, input_range, trust, custom_objects) if data is not None else None
    results = tuple(check_bundle(b, profiles, measure, timings, validation, verify_key, require_signature, repeat) for b in bundles)
    single = bundles == [Path(root)]
    release = () if single or only_present else _release_findings(Path(root), results, profiles)
    return CheckResult(str(root), results, release)


def _release_findings(root: Path, results, profiles) -> tuple[Finding, ...]:
    """A build output is a release: every profile it was built for has a bundle that passed."""
    present = {r.bundle for r in results}
    findings = [
        Finding(f"release[{r.bundle}]", False, f"folder {r.bundle} holds the bundle of profile {r.profile}")
        for r in results if r.profile is not None and r.profile != r.bundle
    ]
    expected = _report_profiles(root)
    if expected is None:
        findings.append(Finding("release", False, "report.json is missing or not a mobilepre report: cannot tell which "
                                "profiles the release must have (pass --only-present to check only the bundles there)"))
        expected = {}
    for name, bundle in sorted(expected.items()):
        if bundle is None:
            findings.append(Finding(f"release[{name}]", False, f"the build found no candidate within budget for profile {name}: no bundle"))
        elif bundle not in present:
            findings.append(Finding(f"release[{name}]", False, f"bundle {bundle} of profile {name} is missing"))
    if profiles is not None:
        for profile in load_profiles(profiles):
            if profile.name not in present and profile.name not in expected:
                findings.append(Finding(f"release[{profile.name}]", False, f"profile {profile.name} in {profiles} has no bundle (pass --only-present to allow)"))
    if not any(not f.passed for f in findings):
        findings.append(Finding("release", True, f"every profile has its bundle ({len(present)})"))
    return tuple(findings)


def _report_profiles(root: Path) -> dict | None:
    """Profile name -> bundle folder (None when the build wrote none), from the build's report.json."""
    try:
        return read_output(root).bundles
    except NotAnOutput:
        return None


def _demo_reference_for(bundles) -> Path:
    """`--data` without `--reference` is fine for bundles of the embedded demo model, and only those."""
    for bundle in bundles:
        try:
            if read_manifest(bundle).source.get("name") != "demo.keras":
                raise ValueError
        except (IntegrityError, OSError, ValueError, AttributeError):
            raise MobilepreError("--data re-validates drift against the float model: pass --reference MODEL too") from None
    return demo.model_path()


class _Validation:
    """The reference model and data, loaded once for all bundles; the model behind the pixel stages each
    bundle's build put in front of it (`manifest["source"]["stages"]`), prepared once per kind of stage."""

    def __init__(self, reference, data, input_range, trust, custom_objects=()):
        self.source = load_model(reference, trust=trust, custom_objects=custom_objects)
        self._data, self._input_range = Path(data), input_range
        self._prepared = {}

    def prepared(self, manifest: Manifest):
        """(source with the bundle's stages, dataset for it, reference outputs) for this bundle."""
        stages = manifest.source.get("stages") or {}
        key = json.dumps(stages, sort_keys=True)
        if key not in self._prepared:
            rescale = stages.get("rescale") if isinstance(stages, dict) else None
            luma = bool(stages.get("luma")) if isinstance(stages, dict) else False
            source = with_stages(self.source, tuple(rescale) if rescale else None, luma=luma)
            dataset = DataOptions(self._data, self._input_range, True, limit=None).load(source)  # as build converts
            self._prepared[key] = (source, dataset, reference_outputs(source, dataset.images)[0])
        return self._prepared[key]

    def images(self, manifest: Manifest):
        return self.prepared(manifest)[1].images

    def has_labels(self, manifest: Manifest) -> bool:
        return self.prepared(manifest)[1].labels is not None

    def drift(self, bundle: Path, artifact: ManifestArtifact, manifest: Manifest) -> list:
        """Drift re-measured on these images, each output judged as the kind the build gave it."""
        source, dataset, reference = self.prepared(manifest)
        _, run = run_candidate(artifact.run_path(bundle), dataset.images, output_names=[s.name for s in source.outputs])
        recorded = {o.get("name"): o.get("kind") for o in manifest.source.get("outputs", []) if isinstance(o, dict)}
        specs = [OutputSpec(s.name, OutputKind(recorded[s.name]), s.shape) if recorded.get(s.name) in set(OutputKind) else s
                 for s in source.outputs]
        return [d.to_dict() for d in compare(reference, run, dataset.labels, specs)]


def check_bundle(bundle: Path, profiles, measure: bool, timings, validation, verify_key=None, require_signature: bool = False,
                 repeat: int = 1) -> BundleResult:
    manifest, failed, problem = _integrity(bundle, verify_key)  # a signed release is trusted only as signed
    if problem:
        return BundleResult(bundle.name, None, (Finding(failed, False, f"{bundle.name}: {problem}"),))
    findings = [Finding("integrity", True, f"{len(manifest.files)} files match manifest.json; artifacts verified")]
    if verify_key is not None:
        findings.append(Finding("signature", True, f"every file is signed by the key of {Path(verify_key).name}"))
    if validation is not None and manifest.source.get("identity") != validation.source.identity:
        findings.append(Finding("reference", False, "--reference is not the model this bundle was built from (identity differs)"))
        return BundleResult(bundle.name, manifest.profile_name, tuple(findings))
    profile, where = _profile_now(manifest, profiles)
    if verify_key is None:
        required = require_signature or profile.require_signature
        why = f"profile {profile.name} requires a signature" if profile.require_signature else "a signature is required"
        findings.append(Finding("signature", not required, f"unsigned: no verify key was given, so no signature was checked"
                                + (f" ({why}: give the release's public key)" if required else "")))
    if not manifest.artifacts:
        findings.append(Finding("artifacts", False, "manifest.json lists no artifact: a bundle without a model"))
    images = validation.images(manifest) if validation else _sample_input(manifest)
    artifacts = []
    for artifact in manifest.artifacts:
        facts = artifact_facts(bundle, artifact.path, artifact.files)
        differs = claim_problems(facts, artifact.claims)
        if differs:  # a manifest is a claim, the artifact the fact: a re-sealed manifest cannot relabel a model
            findings.append(Finding(f"claims[{artifact.format}]", False, f"{artifact.candidate}: {'; '.join(differs)}"))
            continue
        allowed = allowed_problem(profile, facts.format, facts.mode, facts.io_type, artifact.sparsity, artifact.clusters)
        if allowed:
            findings.append(Finding(f"allowed[{artifact.format}]", False, f"{artifact.candidate}: {allowed}"))
            continue
        target = artifact.run_path(bundle)
        backend = _checked_backend(artifact)
        try:
            fmt, run = run_candidate(target, images[:1], browser=backend)
        except MobilepreError as error:
            artifacts.append(ArtifactCheck(artifact.path, artifact.candidate, Finding("runtime", False, error.message), None))
            continue
        shapes = ", ".join(str(tuple(o.shape[1:])) for o in run.outputs)
        loads = Finding(f"loads[{fmt}]", True, f"runs in {FORMATS[fmt].runtime}: outputs {shapes}")

        def measure_host(threads, browser=None, target=target):
            rounds = [run_candidate(target, images[:1], threads=threads, latency_runs=CHECK_LATENCY_RUNS, browser=browser)[1].latency
                      for _ in range(repeat)]
            return rounds[0] if repeat == 1 else Latency.of_rounds(rounds)

        latency = latency_figure(profile, artifact.candidate, manifest.source.get("macs"), timings, measure_host if measure else None)
        verdict = judge(profile, _measurement(bundle, artifact, facts, manifest, validation, run.peak_memory_bytes), latency)
        artifacts.append(ArtifactCheck(artifact.path, artifact.candidate, loads, verdict))
    return BundleResult(bundle.name, profile.name, tuple(findings), tuple(artifacts), where)


def _checked_backend(artifact: ManifestArtifact) -> str | None:
    """A LiteRT.js artifact runs in Chromium on the first backend its build found it runs right on (wasm
    when the manifest names none); other formats in their own runtime."""
    if artifact.format != "litertjs":
        return None
    backends = (artifact.claims.get("runtime") or {}).get("backends")
    ok = [b for b, v in backends.items() if v == "ok"] if isinstance(backends, dict) else []
    return ok[0] if ok else "wasm"


def _sample_input(manifest: Manifest):
    shape = tuple(manifest.source.get("input_shape", ()))
    dtype = manifest.source.get("input_dtype", "float32")
    if len(shape) != 3 or dtype not in ("uint8", "float32"):
        raise MobilepreError("manifest.json: source.input_shape / input_dtype are missing or invalid")
    return np.zeros((1, *shape), dtype=dtype)
