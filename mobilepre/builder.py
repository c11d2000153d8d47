"""`mobilepre build`: for each device profile, the highest-fidelity candidate within its budgets, as a bundle."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import io
import json
import os
import shutil
import signal
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobilepre import demo
from mobilepre.cache import DEFAULT_MAX_BYTES, CandidateCache
from mobilepre.data import DataOptions, dataset_info, load_class_names
from mobilepre.errors import MobilepreError, engine_errors
from mobilepre.evaluate import make_evaluator
from mobilepre.keys import BuildContext, loaded_key, reference_key
from mobilepre.fsutil import check_output, fsync_tree, os_error_message, remove_stale_staging, replace_tree, staging_folder
from mobilepre.latency import parse_device_timings
from mobilepre.manifest import bundle_files
from mobilepre.metrics import ALL_KINDS, CLASS_SCORES, TOLERANCES
from mobilepre.models import OutputSpec, ReferenceChild, isolated_loads, load_model, settle_kinds, with_stages
from mobilepre.output import output_problem
from mobilepre.overview import latency_figures, load_baseline, markdown
from mobilepre.profiles import default_profiles_dir, format_size, load_profiles
from mobilepre.progress import as_reporter
from mobilepre.report import render_html
from mobilepre.sdk_metadata import SdkContract
from mobilepre.results import REPORT_SCHEMA, BuildResult, FormatResult, ProfileResult, finite
from mobilepre.search import search
from mobilepre.validate import degenerate_reason, reference_outputs
from mobilepre.signing import sign_bundle
from mobilepre.versions import toolchain_versions



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
        rgb_input (bool): a grayscale (one-channel) model's bundles take RGB pixels, turned into luma
            inside the model (a fixed 1x1 convolution, ITU-R BT.601), so every image bundle takes what a
            camera gives; one-channel images are then repeated into R, G and B. Default True.
        shard_size (int): TF.js weight shard bytes (browsers fetch shards in parallel; some CDNs cap a
            file's size). Default 4 MiB, the converter's own.
        class_names (Path | None): a text file of class names, one per line in class-index order, for
            the bundles' metadata (default: the data's class sub-folders or CSV names; the demo's digits).
        baseline (Path | None): a previous build's output folder: the report adds, per profile, the
            change in bytes, gzip bytes, latency and drift.
        device_timings (Path | None): JSON of on-device latencies per candidate key.
        force (bool): replace an existing `out`. Default False.
        jobs (int): candidates converted at once (in worker processes) and validated at once. Default 1.
        latency_runs (int): single-image runs timed per candidate on this host. Default 50.
        prune_epochs (int): distillation epochs of each pruned candidate. Default 30.
        trust_model (bool): lift the model scan's refusals. Default False.
        input_shape (tuple | None): H,W,C for models with dynamic input sizes.
        sign_key (Path | None): an elliptic-curve private key (PEM): each bundle gets a `signature.sig`
            over all its files (OpenSSF model-signing), for `check --verify-key`.
        allow_degenerate_reference (bool): build even when the float model's class scores are degenerate on
            the validation images (one class for nearly all, constant or tied scores). Default False:
            class-score budgets judged on such images say nothing, so the build is refused.
        config (Path | None): the `--config` file these options came from; the output may not replace it.
        cache (Path | None): the candidate cache folder (`mobilepre.cache`): candidates measured by an
            earlier build of the same content are reused, not converted again. None (the library's
            default; the CLI's is `default_cache_dir()`): no cache.
        cache_max_bytes (int): the cache's size bound; least recently used entries go first. Default 5 GiB.
        cache_latency (bool): also reuse host latencies measured on a machine of this one's identity (CPU
            model, CPU count, memory, OS) with the same threads and runs. Default False: latencies are
            measurements, taken again by every build.
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
    rgb_input: bool = True
    shard_size: int = 4 * 1024 * 1024
    class_names: Path | None = None
    baseline: Path | None = None
    device_timings: Path | None = None
    force: bool = False
    jobs: int = 1
    latency_runs: int = 50
    prune_epochs: int = 30
    trust_model: bool = False
    input_shape: tuple | None = None
    sign_key: Path | None = None
    allow_degenerate_reference: bool = False
    config: Path | None = None
    cache: Path | None = None
    cache_max_bytes: int = DEFAULT_MAX_BYTES
    cache_latency: bool = False

    def __post_init__(self):
        if not isinstance(self.jobs, int) or not 1 <= self.jobs <= 16:
            raise MobilepreError(f"--jobs {self.jobs!r}: expected a whole number from 1 to 16")
        if not isinstance(self.latency_runs, int) or not 1 <= self.latency_runs <= 10_000:
            raise MobilepreError(f"latency_runs {self.latency_runs!r}: expected a whole number from 1 to 10000")
        if not isinstance(self.shard_size, int) or isinstance(self.shard_size, bool) or self.shard_size < 1024:
            raise MobilepreError(f"--shard-size {self.shard_size!r}: expected at least 1 KiB, e.g. '4 MiB'")
        if not isinstance(self.prune_epochs, int) or self.prune_epochs < 0:
            raise MobilepreError(f"prune_epochs {self.prune_epochs!r}: expected a whole number >= 0")
        if not isinstance(self.cache_max_bytes, int) or isinstance(self.cache_max_bytes, bool) or self.cache_max_bytes < 1024 * 1024:
            raise MobilepreError(f"--cache-max {self.cache_max_bytes!r}: expected at least 1 MiB, e.g. '5 GiB'")


# ------------------------------------------------------------------------------------------ writing


def _created() -> str | None:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return None
    try:
        return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):
        raise MobilepreError(f"SOURCE_DATE_EPOCH {epoch!r} is not a whole number of seconds") from None


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


def _load_inputs(options: BuildOptions, cache: CandidateCache | None = None):
    model_path = options.model or demo.model_path()
    calibration = options.calibration or (demo.calibration_path() if options.model is None else None)
    validation = options.validation or (demo.validation_path() if options.model is None else None)
    # A file whose very bytes loaded in the sandboxed child before (with this toolchain and code) is
    # loaded here at once: the trial load guards against a crash this file is known not to cause. Its
    # reference inferences still run in a child (`_reference`).
    loaded = loaded_key(Path(model_path), options.input_shape, options.trust_model) if cache is not None else None
    known = loaded is not None and cache.get(loaded) is not None
    source = load_model(model_path, trust=options.trust_model, input_shape=options.input_shape, isolate=False if known else None)
    if loaded is not None and not known and source.reference is not None:
        cache.put(loaded, {"loaded": True}, {}, {"loaded": str(model_path)})
    source = with_stages(source, options.input_range if options.frontend else None, luma=options.rgb_input)
    if calibration is None and validation is None:
        raise MobilepreError("a build measures drift on images: pass --validation or --calibration (folder of images, .npy or .npz)")
    cal = DataOptions(calibration or validation, options.input_range, source.luma, limit=500).load(source)
    val = DataOptions(validation or calibration, options.input_range, source.luma, limit=None, labels=options.labels).load(source)
    return source, cal, val


def build(options: BuildOptions, progress=None) -> BuildResult:
    """Build one bundle per profile into `options.out`, atomically; see `BuildOptions`.

    Everything checkable about the output comes first (it replaces nothing it should not, its folder is
    writable); an OS error anywhere becomes one line naming the path, and the previous output stays.
    """
    reporter = as_reporter(progress)
    try:
        return _build(options, reporter)
    except OSError as error:
        raise MobilepreError(os_error_message(error, error.filename or options.out)) from None
    finally:
        reporter.close()


def _build(options: BuildOptions, progress) -> BuildResult:
    out = Path(options.out)
    inputs = (options.model, options.profiles, options.calibration, options.validation, options.labels,
              options.device_timings, options.config, options.sign_key, options.class_names)
    check_output(out, options.force, "--out", inputs, output_problem)
    profiles = every_profile = load_profiles(options.profiles or default_profiles_dir())
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
    baseline = load_baseline(options.baseline) if options.baseline is not None else None  # before `out` may replace it
    for stale in remove_stale_staging(out):
        progress(f"removed {stale.name}, left beside {out} by a build that did not finish")
    _check_room(out, Path(options.model or demo.model_path()))
    cache = _open_cache(options, out)
    # The work folder (exports of the model, artifacts under validation) lives beside the output, so
    # creating it proves the folder is writable before any conversion, and a killed build's copy of
    # the model is removed by the next build (`remove_stale_staging`).
    with _signals_unwind(), _build_lock(out, progress), staging_folder(out, "work") as work:
        progress.stage(f"loading {Path(options.model).name if options.model else 'the demo model'} and its images")
        with engine_errors(str(options.model or "demo model")):
            source, calibration, validation = _load_inputs(options, cache)
        source_info = {
            "format": source.format,
            "identity": source.identity,
            "input_dtype": source.input_dtype,
            "input_shape": list(source.input_shape),
            "macs": source.macs,
            "name": Path(source.path).name,
            "parameters": source.parameters,
            "stages": source.stages,
        }
        data = {"calibration": dataset_info(calibration), "validation": dataset_info(validation)}  # hashes each set once
        context = BuildContext.of(source, data, validation.labels)
        reference = _reference(source, validation, cache, context, progress, options.trust_model)
        # output kinds as every profile of the folder declares them, so that a build of some profiles
        # (one cell of a CI matrix) judges them as the build of all does
        outputs = resolve_outputs(source, every_profile, reference)
        data_warnings = list(dict.fromkeys([*calibration.warnings, *validation.warnings]))
        for warning in data_warnings:
            progress(f"warning: {warning}")
        source_info["warnings"] = data_warnings + _degenerate_warnings(outputs, reference, profiles, options.allow_degenerate_reference, progress)
        class_names = _class_names(options, calibration, validation, outputs, progress)
        if class_names:
            source_info["class_names"] = list(class_names)
        source_info["outputs"] = [spec.to_dict() for spec in outputs]
        sdk = SdkContract(Path(source.path).stem if options.model else "mobilepre_demo_digits", source.input_dtype,
                          tuple(source.input_shape), tuple(options.input_range),
                          tuple((spec.name, spec.kind.value) for spec in outputs), class_names, source.luma)
        context = context.with_outputs(outputs, sdk)
        evaluator = make_evaluator(source, calibration.images, validation.images, validation.labels, work, progress,
                                   prune_epochs=options.prune_epochs, outputs=outputs, reference=reference, profiles=profiles,
                                   sdk=sdk, shard_size=options.shard_size, cache=cache, context=context)
        try:
            results = search(profiles, evaluator, timings, options.latency_runs, progress, options.jobs)
        finally:
            evaluator.close()
        check_output(out, options.force, "--out", inputs, output_problem)  # again: another build may have written it
        progress.stage("writing bundles and reports")
        with staging_folder(out) as staging:
            result = _write_outputs(staging, profiles, results, evaluator, source_info, data, str(out), options.input_range, baseline)
            if cache is not None:
                result = dataclasses.replace(result, cache=cache.stats.to_dict())
            if options.sign_key:
                for summary in result.profiles:
                    if summary.bundle:
                        sign_bundle(staging / summary.bundle, options.sign_key)
            fsync_tree(staging)
            replace_tree(staging, out)
    return result


def _open_cache(options: BuildOptions, out: Path) -> CandidateCache | None:
    if options.cache is None:
        return None
    cache_dir, target = Path(options.cache).absolute(), out.absolute()
    if cache_dir == target or target in cache_dir.parents or cache_dir in target.parents:
        raise MobilepreError(f"--cache {options.cache}: the cache folder and --out {out} may not hold one another: choose another cache folder")
    return CandidateCache(cache_dir, options.cache_max_bytes, options.cache_latency).open()


def _reference(source, validation, cache: CandidateCache | None, context: BuildContext, progress, trust: bool = False) -> list:
    """The float model's outputs on the validation images, from the cache when this model, these stages
    and these images were run before."""
    key = reference_key(context)
    entry = cache.get(key) if cache is not None else None
    if entry is not None:
        try:
            with np.load(io.BytesIO(entry.files["reference.npz"]), allow_pickle=False) as stored:
                return [np.asarray(stored[f"output_{i}"], dtype=np.float32) for i in range(int(entry.record["outputs"]))]
        except (KeyError, TypeError, ValueError, OSError, EOFError, zipfile.BadZipFile):  # unreadable: run the model again
            cache.discard(key)
    progress.stage(f"running the float model on {len(validation)} validation images")
    if source.reference is None and isolated_loads():  # loaded here at once (`_load_inputs`): infer in a child still
        child = ReferenceChild(Path(source.path), source.format, trust)
        try:
            child.wait_loaded()
            view = child.with_stages(source.stages) if source.stages else child
            reference = reference_outputs(dataclasses.replace(source, reference=view), validation.images)[0]
        finally:
            child.close()
    else:
        reference = reference_outputs(source, validation.images)[0]
    if cache is not None:
        buffer = io.BytesIO()
        np.savez(buffer, **{f"output_{i}": np.asarray(values) for i, values in enumerate(reference)})
        cache.put(key, {"outputs": len(reference)}, {"reference.npz": buffer.getvalue()}, {"reference": source.identity})
    return reference


# A build keeps SavedModel exports of the model (one per pruning level) and the candidates beside the
# output, then writes the bundles: a few times the model's size.
ROOM_FACTOR = 4
ROOM_MARGIN_BYTES = 16 * 1024 * 1024


def _check_room(out: Path, model: Path) -> None:
    """Refuse, before any conversion, an output folder whose filesystem cannot hold the build's work."""
    model_bytes = sum(p.stat().st_size for p in model.rglob("*") if p.is_file()) if model.is_dir() else model.stat().st_size
    needed = ROOM_FACTOR * model_bytes + ROOM_MARGIN_BYTES
    parent = out.parent if str(out.parent) else Path(".")
    free = shutil.disk_usage(parent).free
    if free < needed:
        raise MobilepreError(
            f"--out {out}: {format_size(free)} free on its filesystem, a build of {model.name} needs about "
            f"{format_size(needed)} for its work copies and bundles: free some space or choose another folder"
        )


def _class_names(options: BuildOptions, calibration, validation, outputs, progress) -> tuple[str, ...]:
    """The classifier's class names for the bundles' metadata: `--class-names FILE`, else the data's
    (class sub-folders, CSV names), else the demo's digits. A file whose count differs from the model's
    classes is refused; data naming fewer classes than the model has gives no names and a warning."""
    scores = [spec for spec in outputs if spec.kind in CLASS_SCORES]
    classes = int(scores[0].shape[-1]) if len(scores) == 1 and scores[0].shape else None
    if options.class_names is not None:
        names = load_class_names(options.class_names)
        if classes is not None and len(names) != classes:
            raise MobilepreError(f"--class-names {options.class_names}: {len(names)} names, the model's {scores[0].name} output has {classes} classes: give one name per class")
        return names
    names = validation.class_names or calibration.class_names or (demo.class_names() if options.model is None else ())
    if names and classes is not None and len(names) != classes:
        progress(f"warning: the data names {len(names)} classes, the model has {classes}: bundles carry no class names (pass --class-names FILE)")
        return ()
    return tuple(names)


def _degenerate_warnings(outputs, reference, profiles, allowed: bool, progress) -> list[str]:
    """A degenerate reference refuses the build when a profile judges class scores on it, unless allowed."""
    warnings = []
    for spec, values in zip(outputs, reference):
        reason = degenerate_reason(values, spec.kind)
        if reason is None:
            continue
        judged = [p.name for p in profiles if any(spec.kind in TOLERANCES[t].kinds and TOLERANCES[t].kinds != ALL_KINDS
                                                  for t in p.drift.limits_for(spec.name, spec.kind))]
        line = (f"the float model's {spec.name} output is degenerate on the validation images: {reason} "
                "(a wrong --input-range or broken preprocessing does this)")
        if judged and not allowed:
            raise MobilepreError(f"{line}; profiles {', '.join(judged)} judge its class scores, which would pass "
                                 "whatever the candidate does: fix the data or pass --allow-degenerate-reference")
        progress(f"warning: {line}")
        warnings.append(line)
    return warnings


def resolve_outputs(source, profiles, reference: list) -> tuple:
    """Each output's name and kind: inferred from the model (then from the reference's values), then as the
    profiles declare it. Refused before any conversion: profiles that disagree on a kind, a budget for an
    output the model does not have, or one that has no meaning for the output's kind."""
    specs = settle_kinds(source.outputs, reference)
    names = [spec.name for spec in specs]
    declared: dict = {}
    for profile in profiles:
        for name, budget in profile.drift.outputs.items():
            if name not in names:
                raise MobilepreError(f"profile {profile.name}: [drift.outputs.{name}] names no output of the model: its outputs are {', '.join(names)}")
            if budget.kind is not None:
                if declared.get(name, (budget.kind,))[0] != budget.kind:
                    raise MobilepreError(f"profiles {declared[name][1]} and {profile.name} give output {name} different kinds ({declared[name][0]}, {budget.kind})")
                declared[name] = (budget.kind, profile.name)
    resolved = tuple(
        OutputSpec(s.name, declared[s.name][0], s.shape, f"declared by profile {declared[s.name][1]}") if s.name in declared else s
        for s in specs
    )
    for profile in profiles:
        for spec in resolved:
            budget = profile.drift.outputs.get(spec.name)
            for tolerance, _ in (budget.limits if budget else ()):
                if spec.kind not in TOLERANCES[tolerance].kinds:
                    raise MobilepreError(
                        f"profile {profile.name}: drift.outputs.{spec.name}.{tolerance} has no meaning for output {spec.name}, "
                        f"a {spec.kind} output ({spec.evidence}): remove it, or declare kind = \"...\" for that output"
                    )
    return resolved


def _write_outputs(staging: Path, profiles, results: list[FormatResult], evaluator, source_info, data: dict, out: str,
                   input_range: tuple = (0.0, 1.0), baseline: dict | None = None) -> BuildResult:
    versions, created = toolchain_versions(), _created()
    by_key = {m.candidate.key: m for m in evaluator.measured.values()}
    summaries = []
    for profile in profiles:
        summary = ProfileResult(profile.name, profile, tuple(r for r in results if r.profile == profile.name))
        if summary.passed:
            chosen = [(f.chosen.without_host_figures(), by_key[f.chosen.candidate].files) for f in summary.formats]
            for name, content in bundle_files(profile, chosen, source_info, data, versions, created, input_range).items():
                path = staging / profile.name / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
        summaries.append(summary)
    # every measured candidate, by key (a merge orders them so too), as the reports list them (no files)
    candidates = tuple(dataclasses.replace(m, files={}) for m in sorted(evaluator.measured.values(), key=lambda m: m.key))
    result = BuildResult(out, tuple(summaries), candidates, evaluator.conversions, evaluator.validations, source_info)
    write_reports(staging, result, data, versions, baseline)
    return result


def write_reports(folder: Path, result: BuildResult, data: dict, versions: dict, baseline: dict | None = None) -> None:
    """report.json (every figure that is the same on every run), timings.json (host figures: latencies,
    and every trial as judged), report.html and report.md. The reports are rendered from the results as
    the files record them, so `mobilepre merge`, which reads them back, renders the same bytes."""
    recorded = BuildResult.from_dict(json.loads(json.dumps(result.to_dict())))
    stable = [ProfileResult(p.name, p.profile, tuple(f.without_host_figures() for f in p.formats)) for p in recorded.profiles]
    report = {
        "data": data,
        "profiles": [p.to_dict() for p in stable],
        "schema": REPORT_SCHEMA,
        "source": recorded.source,
        "versions": versions,
    }
    (folder / "report.json").write_text(json.dumps(finite(report), indent=2, sort_keys=True) + "\n")
    latencies = latency_figures(recorded)
    chosen_latency = [{"profile": p, "format": f, "ms": ms, "source": source} for (p, f), (ms, source) in sorted(latencies.items())]
    timings = {"candidates": [c.to_dict() for c in recorded.candidates], "profiles": chosen_latency,
               "results": [p.to_dict() for p in recorded.profiles]}
    (folder / "timings.json").write_text(json.dumps(finite(timings), indent=2, sort_keys=True) + "\n")
    (folder / "report.html").write_text(render_html(recorded, latencies, baseline))
    (folder / "report.md").write_text(markdown(recorded, latencies, baseline))

