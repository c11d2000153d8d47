"""`mobilepre build`: for each device profile, the highest-fidelity candidate within its budgets, as a bundle."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np

from mobilepre import demo
from mobilepre.cache import CandidateCache
from mobilepre.errors import EXIT_FAILED, MobilepreError, engine_errors, param
from mobilepre.evaluate import make_evaluator
from mobilepre.guards import build_lock, signals_unwind
from mobilepre.inputs import load_inputs, run_reference
from mobilepre.keys import reference_key
from mobilepre.running import ArtifactRunner
from mobilepre.options import BuildOptions
from mobilepre.fsutil import check_output, fsync_tree, os_error_message, remove_stale_staging, replace_tree, staging_folder
from mobilepre.latency import parse_device_timings
from mobilepre.output import output_problem
from mobilepre.overview import load_baseline
from mobilepre.profiles import default_profiles_dir, format_size, load_profiles
from mobilepre.progress import as_reporter
from mobilepre.results import BuildResult
from mobilepre.search import search
from mobilepre.writing import write_outputs
from mobilepre.signing import sign_bundle

__all__ = ["BuildOptions", "BuildResult", "build"]


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
    sources = (options.model, options.profiles, options.calibration, options.validation, options.labels,
               options.device_timings, options.config, options.sign_key, options.class_names)
    check_output(out, options.force, param("out"), sources, output_problem)
    profiles = every_profile = load_profiles(options.profiles or default_profiles_dir())
    if options.profile:
        known = {p.name for p in profiles}
        missing = [name for name in options.profile if name not in known]
        if missing:
            raise MobilepreError(f"{param('profile')} {missing[0]!r} is not among the profiles: {', '.join(sorted(known))}")
        profiles = [p for p in profiles if p.name in options.profile]
    timings = parse_device_timings(options.device_timings) if options.device_timings else None
    if any(p.budget.latency_source == "device" for p in profiles) and timings is None:
        name = next(p.name for p in profiles if p.budget.latency_source == "device")
        raise MobilepreError(f"profile {name} takes latency from the device: pass {param('device_timings')} FILE")
    baseline = load_baseline(options.baseline) if options.baseline is not None else None  # before `out` may replace it
    for stale in remove_stale_staging(out):
        progress(f"removed {stale.name}, left beside {out} by a build that did not finish")
    _check_room(out, Path(options.model or demo.model_path()))
    cache = _open_cache(options, out)
    # The work folder (exports of the model, artifacts under validation) lives beside the output, so
    # creating it proves the folder is writable before any conversion, and a killed build's copy of
    # the model is removed by the next build (`remove_stale_staging`).
    with signals_unwind(), build_lock(out, progress), staging_folder(out, "work") as work:
        progress.stage(f"loading {Path(options.model).name if options.model else 'the demo model'} and its images")
        with engine_errors(str(options.model or "demo model")):
            inputs = load_inputs(options, cache, profiles, every_profile, progress)
        evaluator, results, checked = _search_checked(options, inputs, profiles, timings, cache, work, progress)
        check_output(out, options.force, param("out"), sources, output_problem)  # again: another build may have written it
        progress.stage("writing bundles and reports")
        with staging_folder(out) as staging:
            counts = (evaluator.conversions, evaluator.validations + checked)
            result = write_outputs(staging, profiles, results, evaluator.measured.values(), counts,
                                   inputs.source_info, inputs.data, str(out), options.input_range, baseline)
            if cache is not None:
                result = dataclasses.replace(result, cache=cache.stats.to_dict())
            if options.sign_key:
                for summary in result.profiles:
                    if summary.bundle:
                        sign_bundle(staging / summary.bundle, options.sign_key)
            fsync_tree(staging)
            replace_tree(staging, out)
    return result


# Rounds of "search, then check fresh what it chose from the cache" before a build gives up on a cache
# that keeps failing its checks (each round replaces what failed with fresh measurements).
MAX_CHECK_ROUNDS = 4


def _search_checked(options: BuildOptions, inputs, profiles, timings, cache, work: Path, progress):
    """(evaluator, the search's results, fresh validations run): the search, and then every artifact it
    chose that came from the cache run again fresh in its runtime, against reference outputs run fresh,
    before anything is written: the cache makes a build faster, it never decides what ships. A cached
    measurement that differs from its fresh run is discarded and the candidate measured anew; cached
    reference outputs that differ from the model's run now discard every cached figure of this build."""
    evaluator = _evaluator(options, inputs, profiles, cache, work, progress)
    fresh_reference, checked = None, 0
    try:
        for _ in range(MAX_CHECK_ROUNDS):
            results = search(profiles, evaluator, timings, options.latency_runs, progress, options.jobs)
            chosen = {f.chosen.candidate for f in results if f.chosen is not None}
            if chosen and fresh_reference is None:
                fresh_reference = run_reference(inputs.source, inputs.validation, progress, options.trust_model) if inputs.reference_cached else inputs.reference
                if not _same_outputs(fresh_reference, inputs.reference):
                    progress("warning: the cached reference outputs differ from the float model's run now: "
                             "discarded, and every candidate is measured again without the cache")
                    cache.discard(reference_key(inputs.context))
                    inputs = dataclasses.replace(inputs, reference=fresh_reference, reference_cached=False)
                    evaluator.close()
                    evaluator = _evaluator(options, inputs, profiles, None, work, progress)
                    continue
            cached = [m for m in evaluator.measured.values() if m.key in chosen and evaluator.from_cache(m.candidate)]
            if not cached:
                return evaluator, results, checked
            runner = ArtifactRunner(inputs.validation.images, inputs.validation.labels, inputs.outputs, fresh_reference, work, progress,
                                    name="validation-check")
            failed = []
            for measured in sorted(cached, key=lambda m: m.key):
                fresh = runner.validate(dataclasses.replace(measured, drift=(), peak_memory_bytes=None, error=None))
                if fresh.error is not None or fresh.drift_dicts() != measured.drift_dicts():
                    failed.append(measured)
            checked += runner.validations
            if not failed:
                return evaluator, results, checked
            for measured in failed:
                progress(f"warning: {measured.key} from the cache differs from a fresh run of its artifact: discarded, measured anew")
                evaluator.forget(measured.candidate)
        raise MobilepreError(f"{param('cache')} {cache.root}: its entries kept failing their fresh checks: "
                             f"clear it (mobilepre cache clear) or build without it", EXIT_FAILED)
    finally:
        evaluator.close()


def _evaluator(options: BuildOptions, inputs, profiles, cache, work: Path, progress):
    return make_evaluator(inputs.source, inputs.calibration.images, inputs.validation.images, inputs.validation.labels,
                          work, progress, prune_epochs=options.prune_epochs, outputs=inputs.outputs, reference=inputs.reference,
                          profiles=profiles, sdk=inputs.sdk, shard_size=options.shard_size, cache=cache, context=inputs.context,
                          # timed as validated only one at a time: validations at once would time each other's load
                          time_runs=options.latency_runs if options.jobs == 1 and any(
                              p.budget.max_latency_ms is not None and p.budget.timed_here for p in profiles) else 0)


def _same_outputs(a: list, b: list) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def _open_cache(options: BuildOptions, out: Path) -> CandidateCache | None:
    if options.cache is None:
        return None
    cache_dir, target = Path(options.cache).absolute(), out.absolute()
    if cache_dir == target or target in cache_dir.parents or cache_dir in target.parents:
        raise MobilepreError(f"{param('cache')} {options.cache}: the cache folder and {param('out')} {out} may not hold one another: choose another cache folder")
    return CandidateCache(cache_dir, options.cache_max_bytes, options.cache_latency).open()


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


