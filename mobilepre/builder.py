"""`mobilepre build`: for each device profile, the highest-fidelity candidate within its budgets, as a bundle."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mobilepre.errors import EXIT_FAILED, MobilepreError
from mobilepre.manifest import MANIFEST_SCHEMA, seal_manifest
from mobilepre.search import Candidate, Evaluator, candidates_for, parse_device_timings, relative_gap
from mobilepre.validate import TOLERANCES, tolerance_failures

REPORT_SCHEMA = "mobilepre.report/1"


@dataclass(frozen=True)
class BuildOptions:
    """Everything a build takes. Validated by `build`; every field is also a key of `--config` TOML.

    Attributes:
        out (Path): output folder; one sub-folder (bundle) per profile, plus report.json/.html.
        model (Path | None): .keras, .h5 or SavedModel folder; None builds the embedded demo model.
        profiles (Path | None): a profile TOML file or a folder of them; None: the shipped profiles.
        profile (tuple[str, ...]): only these profile names. Default: all.
        calibration (Path | None): images for int8 calibration and pruning fine-tuning.
        validation (Path | None): images to measure drift on; default: the calibration images.
        labels (Path | None): labels of the validation images (accuracy drop).
        input_range (tuple[float, float]): float models: decoded pixels map to this range. Default (0, 1).
        frontend (bool): put a uint8 input and in-model rescaling in front of a float model, so bundles
            take raw pixels. Default False.
        device_timings (Path | None): JSON of on-device latencies per candidate key.
        force (bool): replace an existing `out`. Default False.
        jobs (int): candidates validated at once (conversion stays serial). Default 1.
        latency_runs (int): single-image runs timed per candidate on this host. Default 50.
        prune_epochs (int): distillation epochs of each pruned candidate. Default 30.
        trust_model (bool): lift the model scan's refusals. Default False.
        input_shape (tuple | None): H,W,C for models with dynamic input sizes.
    """

    out: Path
    model: Path | None = None
    profiles: Path | None = None
    profile: tuple[str, ...] = ()
    calibration: Path | None = None
    validation: Path | None = None
    labels: Path | None = None
    input_range: tuple[float, float] = (0.0, 1.0)
    frontend: bool = False
    device_timings: Path | None = None
    force: bool = False
    jobs: int = 1
    latency_runs: int = 50
    prune_epochs: int = 30
    trust_model: bool = False
    input_shape: tuple | None = None

    def __post_init__(self):
        if not isinstance(self.jobs, int) or not 1 <= self.jobs <= 16:
            raise MobilepreError(f"--jobs {self.jobs!r}: expected a whole number from 1 to 16")
        if not isinstance(self.latency_runs, int) or not 1 <= self.latency_runs <= 10_000:
            raise MobilepreError(f"latency_runs {self.latency_runs!r}: expected a whole number from 1 to 10000")
        if not isinstance(self.prune_epochs, int) or self.prune_epochs < 0:
            raise MobilepreError(f"prune_epochs {self.prune_epochs!r}: expected a whole number >= 0")


@dataclass
class Choice:
    """One profile's outcome for one format: the chosen candidate, or the closest one and its gaps."""

    profile: str
    fmt: str
    chosen: Candidate | None
    tried: list  # [{candidate, verdict...}] in search order
    closest: dict | None = None


@dataclass
class BuildResult:
    """What `build` did. `exit_code` is 0 when every profile got a bundle, 1 otherwise."""

    out: str
    profiles: list  # per profile: {"name", "passed", "bundle", "formats": {fmt: {...}}}
    candidates: list  # every measured candidate
    conversions: int
    validations: int
    source: dict

    @property
    def exit_code(self) -> int:
        return 0 if all(p["passed"] for p in self.profiles) else EXIT_FAILED

    def to_dict(self) -> dict:
        return _finite({
            "candidates": self.candidates,
            "conversions": self.conversions,
            "out": self.out,
            "passed": self.exit_code == 0,
            "profiles": self.profiles,
            "source": self.source,
            "validations": self.validations,
        })

    def to_text(self) -> str:
        lines = [f"{'profile':<18} {'format':<7} {'chosen':<22} {'bytes':>9} {'gzip':>9} {'top-1':>7} {'latency':>12}  verdict"]
        for p in self.profiles:
            for fmt, f in p["formats"].items():
                row = f.get("chosen") or f.get("closest") or {}
                latency = row.get("latency_ms")
                lat = f"{latency:.2f} ms" if latency is not None else "-"
                top1 = row.get("drift", {}).get("top1_agreement")
                verdict = "ok" if f.get("chosen") else "NO CANDIDATE: " + "; ".join(row.get("failed", []) or [row.get("error", "")])
                lines.append(
                    f"{p['name']:<18} {fmt:<7} {row.get('candidate', '-'):<22} {row.get('bytes', 0):>9} "
                    f"{row.get('gzip_bytes', 0):>9} {'-' if top1 is None else f'{top1:.4f}':>7} {lat:>12}  {verdict}"
                )
        lines.append(f"{self.conversions} conversions, {self.validations} validations; bundles in {self.out}")
        return "\n".join(lines)


def _finite(value):
    """JSON has no infinity: an unbounded gap (an unusable candidate) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------ judging


def _latency_ms(profile, measured, evaluator, device_timings, latency_runs) -> tuple[float | None, dict]:
    """The latency figure the profile's budget names, with how it was obtained."""
    budget = profile.budget
    if budget.latency_source == "estimate":
        from mobilepre.macs import estimated_latency_ms

        macs = evaluator.source.macs
        return estimated_latency_ms(macs, budget.device_gmacs), {"source": "estimate", "macs": macs, "device_gmacs": budget.device_gmacs}
    if budget.latency_source == "device":
        value = (device_timings or {}).get(measured.candidate.key)
        return value, {"source": "device"}
    latency = evaluator.host_latency(measured, profile.threads, latency_runs)
    return latency.median_ms, {"source": "host", **latency.to_dict()}


def _judge(profile, measured, evaluator, device_timings, latency_runs) -> dict:
    """Every budget of `profile` against a measured candidate: values, limits, what failed and by how much."""
    row = {
        "candidate": measured.candidate.key,
        "format": measured.candidate.fmt,
        "quantization": measured.candidate.mode,
        "io_type": measured.candidate.io_type,
        "sparsity": round(measured.sparsity, 6),
        "bytes": measured.size_bytes,
        "gzip_bytes": measured.gzip_bytes,
        "drift": {k: round(float(v), 6) for k, v in sorted(measured.drift.items())},
    }
    if measured.error:
        return {**row, "error": measured.error, "failed": [f"unusable: {measured.error}"], "gap": float("inf")}
    failed, gaps = [], []
    budget = profile.budget

    def limit(name, value, bound, kind="max", unit=""):
        if bound is None:
            return
        gap = relative_gap(value, bound, kind) if value is not None else float("inf")
        if value is None or gap > 0:
            shown = "unknown" if value is None else f"{value:g}{unit}"
            failed.append(f"{name}: {shown} vs {bound:g}{unit}")
        gaps.append(gap)

    limit("max_size", measured.size_bytes, budget.max_size, unit=" B")
    limit("max_compressed_size", measured.gzip_bytes, budget.max_compressed_size, unit=" B")
    if budget.max_latency_ms is not None:
        value, how = _latency_ms(profile, measured, evaluator, device_timings, latency_runs)
        row["latency_ms"] = None if value is None else round(value, 4)
        row["latency"] = how
        limit("max_latency_ms", value, budget.max_latency_ms, unit=" ms")
    tolerances = {k: getattr(profile.drift, k) for k in TOLERANCES}
    if evaluator.labels is None:
        tolerances.pop("max_accuracy_drop")  # documented: checked only when labels are given
    for failure in tolerance_failures(measured.drift, tolerances):
        failed.append(failure)
    for name, bound in tolerances.items():
        if bound is None:
            continue
        metric, kind = TOLERANCES[name]
        value = measured.drift.get(metric)
        gaps.append(relative_gap(value, bound, kind) if value is not None else float("inf"))
    return {**row, "failed": failed, "gap": max(gaps, default=0.0)}


def search(profiles, evaluator, device_timings, latency_runs, progress, jobs: int = 1) -> list[Choice]:
    """For each profile and format, the first candidate (highest fidelity first) that meets every budget.

    The search goes in rounds: each unresolved (profile, format) offers its next candidate, the round's
    new candidates are measured together (`jobs` validations at once), then each is judged. Every
    profile still tries its candidates in order and stops at the first that fits, so the choices are
    those of a one-by-one search.
    """
    lanes = [(profile, fmt, list(candidates)) for profile in profiles for fmt, candidates in candidates_for(profile).items()]
    tried = {(p.name, fmt): [] for p, fmt, _ in lanes}
    chosen = {}
    while True:
        open_lanes = [(p, fmt, queue) for p, fmt, queue in lanes if (p.name, fmt) not in chosen and queue]
        if not open_lanes:
            break
        evaluator.measure_many([queue[0] for _, _, queue in open_lanes], jobs)
        for profile, fmt, queue in open_lanes:
            candidate = queue.pop(0)
            verdict = _judge(profile, evaluator.measured[candidate], evaluator, device_timings, latency_runs)
            tried[(profile.name, fmt)].append(verdict)
            status = "meets every budget" if not verdict["failed"] else "; ".join(verdict["failed"])
            progress(f"[{profile.name}] {candidate.key}: {evaluator.measured[candidate].size_bytes} B, {status}")
            if not verdict["failed"]:
                chosen[(profile.name, fmt)] = candidate
    choices = []
    for profile, fmt, _ in lanes:
        rows = tried[(profile.name, fmt)]
        pick = chosen.get((profile.name, fmt))
        choices.append(Choice(profile.name, fmt, pick, rows, None if pick else min(rows, key=lambda v: v["gap"])))
    return choices


# ------------------------------------------------------------------------------------------ writing


def _versions() -> dict:
    from importlib import metadata

    from mobilepre import __version__

    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "ai-edge-litert": version("ai-edge-litert"),
        "keras": version("keras"),
        "mobilepre": __version__,
        "numpy": version("numpy"),
        "tensorflow": version("tensorflow"),
        "tensorflowjs": version("tensorflowjs"),
        "tfjs-runtime": "@tensorflow/tfjs 4.22.0, @tensorflow/tfjs-backend-wasm 4.22.0",
    }


def _created() -> str | None:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return None
    import datetime

    try:
        return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):
        raise MobilepreError(f"SOURCE_DATE_EPOCH {epoch!r} is not a whole number of seconds") from None


def _artifact_path(fmt: str) -> str:
    return "model.tflite" if fmt == "tflite" else "tfjs/model.json"


def _stable(row: dict) -> dict:
    """A verdict row without wall-clock measurements, for files that must be byte-identical across runs."""
    stable = {k: v for k, v in row.items() if k not in ("latency_ms", "latency", "gap")}
    if "latency" in row:
        how = row["latency"]
        stable["latency"] = {"source": how["source"]}
        if how["source"] != "host":  # estimates and imported device timings are inputs, not measurements
            stable["latency"]["ms"] = row.get("latency_ms")
            stable["latency"].update({k: v for k, v in how.items() if k != "source"})
        else:
            stable["latency"]["threads"] = how.get("threads")
            stable["latency"]["runtime"] = how.get("runtime")
    host = row.get("latency", {}).get("source") == "host"
    stable["failed"] = [
        "max_latency_ms: over budget on the build host" if host and f.startswith("max_latency_ms") else f
        for f in row.get("failed", [])
    ]
    return stable


def data_info(dataset) -> dict:
    """Which images a measurement used: a content hash, so `check` can tell whether it re-validates on the same."""
    info = {
        "images": len(dataset),
        "labels": dataset.labels is not None,
        "sha256": hashlib.sha256(dataset.images.tobytes()).hexdigest(),
        "source": Path(dataset.source).name,
    }
    return info


def bundle_files(profile, choices: list[Choice], evaluator, source_info: dict, data: dict) -> dict[str, bytes]:
    """The files of one profile's bundle, manifest.json last (it lists the others with sha256)."""
    files: dict[str, bytes] = {}
    artifacts = []
    verdicts = {}
    for choice in choices:
        measured = evaluator.measured[choice.chosen]
        prefix = "" if choice.fmt == "tflite" else "tfjs/"
        for name, content in measured.files.items():
            files[prefix + name] = content
        row = _stable(choice.tried[-1])
        artifacts.append(
            {
                "bytes": measured.size_bytes,
                "candidate": choice.chosen.key,
                "drift": row["drift"],
                "files": sorted(prefix + n for n in measured.files),
                "format": choice.fmt,
                "gzip_bytes": measured.gzip_bytes,
                "io_type": choice.chosen.io_type,
                "latency": row.get("latency", {"source": profile.budget.latency_source, "budget": None}),
                "path": _artifact_path(choice.fmt),
                "quantization": choice.chosen.mode,
                "sha256": hashlib.sha256(files[_artifact_path(choice.fmt)]).hexdigest(),
                "sparsity": round(measured.sparsity, 6),
            }
        )
        verdicts[choice.fmt] = _verdict_table(profile, row)
    manifest = {
        "artifacts": sorted(artifacts, key=lambda a: a["path"]),
        "data": data,
        "files": [
            {"bytes": len(content), "path": name, "sha256": hashlib.sha256(content).hexdigest()}
            for name, content in sorted(files.items())
        ],
        "profile": profile.to_dict(),
        "schema": MANIFEST_SCHEMA,
        "source": source_info,
        "verdict": verdicts,
        "versions": _versions(),
    }
    created = _created()
    if created:
        manifest["created"] = created
    files["manifest.json"] = seal_manifest(manifest)
    return files


def _verdict_table(profile, row: dict) -> dict:
    table = {}
    budget = profile.budget
    for name, bound, value in (
        ("max_size", budget.max_size, row["bytes"]),
        ("max_compressed_size", budget.max_compressed_size, row["gzip_bytes"]),
    ):
        if bound is not None:
            table[name] = {"limit": bound, "passed": value <= bound, "value": value}
    if budget.max_latency_ms is not None:
        entry = {"limit": budget.max_latency_ms, "passed": True, "source": budget.latency_source}
        if budget.latency_source != "host":
            entry["value"] = row.get("latency", {}).get("ms")
        table["max_latency_ms"] = entry
    for name, (metric, _kind) in sorted(TOLERANCES.items()):
        bound = getattr(profile.drift, name)
        if bound is not None and metric in row["drift"]:
            table[name] = {"limit": bound, "passed": True, "value": row["drift"][metric]}
    return table


@contextlib.contextmanager
def _build_lock(out: Path, progress):
    """An OS lock on the output's parent folder: a second build beside it waits; a dead process releases it."""
    parent = out.parent if str(out.parent) else Path(".")
    fd = os.open(parent, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another mobilepre build writing into {parent} to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _signals_unwind():
    """SIGINT or SIGTERM (CI cancellation sends one, then the other) unwinds the build like Ctrl-C, once:
    later signals are ignored, so the clean-up of temporary folders cannot itself be interrupted."""

    def handler(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    interrupted = False
    try:
        yield
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if not interrupted:  # once interrupted, stay deaf until the process exits
            for sig, old in previous.items():
                signal.signal(sig, old)


# ------------------------------------------------------------------------------------------ the build


def _load_inputs(options: BuildOptions):
    from mobilepre import demo
    from mobilepre.compress import DataOptions
    from mobilepre.frontend import FrontendSpec, attach, build_frontend
    from mobilepre.models import from_keras, load_model

    model_path = options.model or demo.model_path()
    calibration = options.calibration or (demo.calibration_path() if options.model is None else None)
    validation = options.validation or (demo.validation_path() if options.model is None else None)
    source = load_model(model_path, trust=options.trust_model, input_shape=options.input_shape)
    if options.frontend:
        if source.input_dtype == "uint8":
            raise MobilepreError(f"--frontend: model {model_path} already takes uint8 pixels")
        low, high = options.input_range
        spec = FrontendSpec(
            input_shape=source.input_shape, denoise=False, features=(), normalize="none", rescale_range=(low, high)
        )
        front = build_frontend(spec)
        source = from_keras(attach(front, source.model), path=str(model_path), fmt=source.format)
    if calibration is None and validation is None:
        raise MobilepreError("a build measures drift on images: pass --validation or --calibration (folder of images, .npy or .npz)")
    cal = DataOptions(calibration or validation, options.input_range, limit=500).load(source)
    val = DataOptions(validation or calibration, options.input_range, limit=None, labels=options.labels).load(source)
    return source, cal, val


def build(options: BuildOptions, progress=None) -> BuildResult:
    """Build one bundle per profile into `options.out`, atomically; see `BuildOptions`."""
    from mobilepre.fsutil import check_output, fsync_tree, make_staging, remove_tree, replace_tree
    from mobilepre.profiles import default_profiles_dir, load_profiles

    progress = progress or (lambda message: None)
    out = Path(options.out)
    check_output(out, options.force, "--out")
    profiles = load_profiles(options.profiles or default_profiles_dir())
    if options.profile:
        known = {p.name for p in profiles}
        missing = [name for name in options.profile if name not in known]
        if missing:
            raise MobilepreError(f"--profile {missing[0]!r} is not among the profiles: {', '.join(sorted(known))}")
        profiles = [p for p in profiles if p.name in options.profile]
    timings = parse_device_timings(options.device_timings) if options.device_timings else None
    if any(p.budget.latency_source == "device" for p in profiles) and timings is None:
        name = next(p.name for p in profiles if p.budget.latency_source == "device")
        raise MobilepreError(f"profile {name} takes latency from the device: pass --device-timings FILE")

    source, calibration, validation = _load_inputs(options)
    source_info = {
        "format": source.format,
        "identity": source.identity,
        "input_dtype": source.input_dtype,
        "input_shape": list(source.input_shape),
        "macs": source.macs,
        "name": Path(source.path).name,
        "parameters": source.parameters,
    }
    with _signals_unwind(), _build_lock(out, progress), tempfile.TemporaryDirectory(prefix="mobilepre-build-") as work:
        evaluator = Evaluator(source, calibration.images, validation.images, validation.labels, Path(work), progress, options.prune_epochs)
        choices = search(profiles, evaluator, timings, options.latency_runs, progress, options.jobs)
        check_output(out, options.force, "--out")  # again under the lock: another build may have written it
        staging = make_staging(out)
        try:
            result = _write_outputs(staging, profiles, choices, evaluator, source_info, validation, calibration, str(out))
            fsync_tree(staging)
            replace_tree(staging, out)
        finally:
            remove_tree(staging)
    return result


def _write_outputs(staging: Path, profiles, choices, evaluator, source_info, validation, calibration, out: str) -> BuildResult:
    from mobilepre.report import render_html

    by_profile = {p.name: [c for c in choices if c.profile == p.name] for p in profiles}
    data = {"calibration": data_info(calibration), "validation": data_info(validation)}
    summaries = []
    for profile in profiles:
        mine = by_profile[profile.name]
        passed = all(c.chosen is not None for c in mine)
        formats = {}
        for c in mine:
            entry = {"tried": c.tried}
            if c.chosen:
                entry["chosen"] = c.tried[-1]
            else:
                entry["closest"] = c.closest
            formats[c.fmt] = entry
        if passed:
            for name, content in bundle_files(profile, mine, evaluator, source_info, data).items():
                path = staging / profile.name / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
        summaries.append({"name": profile.name, "passed": passed, "bundle": profile.name if passed else None, "formats": formats, "profile": profile.to_dict()})
    candidates = [
        {
            "candidate": m.candidate.key,
            "bytes": m.size_bytes,
            "gzip_bytes": m.gzip_bytes,
            "sparsity": round(m.sparsity, 6),
            "drift": {k: round(float(v), 6) for k, v in sorted(m.drift.items())},
            "error": m.error,
            "latency_ms": {str(t): round(lat.median_ms, 4) for t, lat in sorted(m.latency.items())},
        }
        for m in sorted(evaluator.measured.values(), key=lambda m: m.candidate)
    ]
    result = BuildResult(out, summaries, candidates, evaluator.conversions, evaluator.validations, source_info)
    report = {
        "data": data,
        "profiles": [
            {**s, "formats": {f: {k: ([_stable(r) for r in v] if k == "tried" else (_stable(v) if v else v)) for k, v in e.items()} for f, e in s["formats"].items()}}
            for s in summaries
        ],
        "schema": REPORT_SCHEMA,
        "source": source_info,
        "versions": _versions(),
    }
    (staging / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (staging / "timings.json").write_text(json.dumps({"candidates": candidates}, indent=2, sort_keys=True) + "\n")
    (staging / "report.html").write_text(render_html(result))
    return result


def stderr_progress(message: str) -> None:
    print(f"mobilepre: {message}", file=sys.stderr, flush=True)
