"""The search: for each profile and format, candidates from highest fidelity down until one meets every budget.

Its results (`Trial`, `FormatResult`) live in `mobilepre.results`, with the build's."""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from mobilepre.budgets import Measurement, Verdict, judge, judge_drift
from mobilepre.candidates import Candidate, candidates_for
from mobilepre.metrics import TOLERANCES
from mobilepre.evaluate import Evaluator
from mobilepre.measured import Measured
from mobilepre.latency import latency_figure
from mobilepre.progress import as_reporter
from mobilepre.formats import download_bytes
from mobilepre.profiles import WEB_FORMATS
from mobilepre.results import FormatResult, Trial, web_choice


def _trial(measured: Measured, latency, verdict, bytes_breakdown: dict | None) -> Trial:
    """A measured candidate as judged against one profile."""
    c = measured.candidate
    return Trial(
        c.key, str(c.fmt), str(c.mode), str(c.io_type), round(measured.sparsity, 6), measured.size_bytes,
        measured.gzip_bytes, measured.drift_dicts(), latency, verdict, measured.mixed, c.clusters,
        metadata=measured.metadata, engine=measured.engine, engine_choice=measured.engine_choice,
        bytes_breakdown=bytes_breakdown,
    )


def _where_the_bytes_go(measured: Measured) -> dict | None:
    """A TFLite artifact's bytes by what they hold (`tflite_reader.tflite_bytes`); None for other formats."""
    from mobilepre.tflite_reader import tflite_bytes

    content = (measured.files or {}).get("model.tflite")
    if measured.error is not None or content is None:
        return None
    return tflite_bytes(content, measured.candidate.key)


def _plain_int8(candidate, trials):
    key = Candidate(candidate.fmt, candidate.mode, candidate.io_type).key
    return next((t for t in trials if t.candidate == key), None)


def _needless(candidate, trials) -> bool:
    """A quantization-aware int8 candidate is tried only when the calibrated int8 model it would replace
    ran and missed a drift budget (fine-tuning cannot fix a size, a latency or a failed conversion)."""
    if not candidate.qat:
        return False
    plain = _plain_int8(candidate, trials)
    if plain is None or plain.verdict.error is not None:
        return True
    return all(c.passed for c in plain.verdict.checks if c.name in TOLERANCES)


def _outweighed(profile, fmt, tried: dict) -> str | None:
    """With prefer "size", a web runtime whose own download (its runtime alone, before any model byte) is
    more than another web runtime's chosen-so-far total cannot win: why its lane stops, or None."""
    if profile.prefer != "size" or fmt not in WEB_FORMATS:
        return None
    floor = download_bytes(fmt, 0)
    for other in WEB_FORMATS:
        passed = [t for t in tried.get((profile.name, other), ()) if t.passed] if other != fmt else []
        best = min(passed, key=lambda t: download_bytes(other, t.gzip_bytes), default=None)
        if best is not None and download_bytes(other, best.gzip_bytes) <= floor:
            return (f"{fmt}'s runtime alone is {floor:,} B of gzip, more than {best.candidate}'s whole download "
                    f"({download_bytes(other, best.gzip_bytes):,} B): its other candidates cannot be smaller")
    return None


def _recovered(trial: Trial, trials) -> dict:
    """What quantization-aware fine-tuning recovered: the drift budgets the calibrated int8 model missed
    and those the fine-tuned one still misses."""
    plain = _plain_int8(Candidate(trial.format, trial.quantization, trial.io_type), trials)
    missed = lambda t: [c.message for c in t.verdict.checks if c.name in TOLERANCES and not c.passed]  # noqa: E731
    return {"baseline": plain.candidate, "missed_before": missed(plain), "missed_after": missed(trial) if trial.verdict.error is None else [trial.verdict.error]}


def search(
    profiles,
    evaluator: Evaluator,
    device_timings: dict | None,
    latency_runs: int,
    progress: Callable[[str], None],
    jobs: int = 1,
) -> list[FormatResult]:
    """For each profile and format, the candidate that meets every budget: the first in search order
    (highest fidelity first), or with `prefer` "latency" / "size" the fastest / smallest of all that do
    (latency tries pruned and clustered candidates only when no plain one passed).

    The search goes in rounds: each unresolved (profile, format) offers its next candidate, the round's
    new candidates are measured together (`jobs` validations at once), then each is judged. Every
    profile still tries its candidates in order and stops at the first that fits, so the choices are
    those of a one-by-one search.
    """
    progress = as_reporter(progress)
    lanes = [(profile, fmt, list(candidates)) for profile in profiles for fmt, candidates in candidates_for(profile).items()]
    tried = {(p.name, fmt): [] for p, fmt, _ in lanes}
    breakdowns = {}  # candidate -> where its file's bytes go (`_where_the_bytes_go`)
    done = set()
    labels = evaluator.labels is not None
    total = sum(len(queue) for _, _, queue in lanes)  # the most this search can measure: the bar's length
    progress.plan(total)
    counted = 0
    while True:
        for profile, fmt, queue in lanes:
            while queue and _needless(queue[0], tried[(profile.name, fmt)]):
                queue.pop(0)
                progress.advance()
                counted += 1
            outweighed = queue and tried[(profile.name, fmt)] and _outweighed(profile, str(fmt), tried)
            if outweighed:
                progress(f"[{profile.name}] {fmt}: {len(queue)} candidates not tried: {outweighed}")
                progress.advance(len(queue))
                counted += len(queue)
                queue.clear()
        open_lanes = [(p, fmt, queue) for p, fmt, queue in lanes if (p.name, fmt) not in done and queue]
        if not open_lanes:
            break
        evaluator.measure_many([queue[0] for _, _, queue in open_lanes], jobs)
        for profile, fmt, queue in open_lanes:
            measured = evaluator.measured[queue.pop(0)]
            latency = None
            if measured.error is None:
                latency = latency_figure(
                    profile, measured.candidate.key, evaluator.source.macs, device_timings,
                    lambda threads, browser=None, m=measured: evaluator.host_latency(m, threads, latency_runs, browser),
                )
            verdict = judge(profile, measured.measurement(labels), latency)
            if measured.candidate not in breakdowns:  # once per file, whichever profiles judge it
                breakdowns[measured.candidate] = _where_the_bytes_go(measured)
            trial = _trial(measured, latency, verdict, breakdowns[measured.candidate])
            if measured.candidate.qat:
                trial = dataclasses.replace(trial, qat=_recovered(trial, tried[(profile.name, fmt)]))
            tried[(profile.name, fmt)].append(trial)
            progress.advance()
            counted += 1
            status = "meets every budget" if verdict.passed else "; ".join(verdict.failures)
            progress(f"[{profile.name}] {trial.candidate}: {trial.size_bytes:,} B, {status}")
            finished = verdict.passed and profile.prefer == "fidelity"  # other preferences compare every candidate
            # pruned and clustered models run as fast as dense ones: latency tries them only when no
            # plain candidate met the budgets (a gzip budget, say)
            finished = finished or (profile.prefer == "latency" and queue and (queue[0].sparsity or queue[0].clusters)
                                    and any(t.passed for t in tried[(profile.name, fmt)]))
            if finished:
                done.add((profile.name, fmt))
                progress.advance(len(queue))  # the rest of this lane is not needed
                counted += len(queue)
                queue.clear()
    progress.advance(max(0, total - counted))
    runoffs = {(p.name, fmt): _runoff(p, fmt, tried[(p.name, fmt)], evaluator, progress) for p, fmt, _ in lanes}
    for profile in profiles:
        if profile.web_backends:
            _conform_web(profile, tried, evaluator, labels, progress, runoffs)
    return [FormatResult(profile.name, str(fmt), tuple(tried[(profile.name, fmt)]), profile.prefer, runoff=runoffs[(profile.name, fmt)])
            for profile, fmt, _ in lanes]


# Candidates whose own timing is more than this many times the fastest one's stay out of the run-off: a
# busy machine moved the demo's separate timings by up to 3x (int8 0.14 ms lost to float32's 0.41 ms),
# never 10x, and a slow candidate's rounds would cost the most (int16x8's reference kernels: 150x).
RUNOFF_SPAN = 10.0


# Where a lane's latency is timed, for a run-off: host-timed LiteRT in a LiteRT child process, and
# browser-timed LiteRT.js in one Chromium page (TF.js lanes have none: one model per page load).
RUNOFF_LANES = {"tflite": "host", "litertjs": "browser"}


def _runoff(profile, fmt, trials: list, evaluator: Evaluator, progress):
    """With prefer "latency" on host-timed LiteRT or browser-timed LiteRT.js, the passing candidates timed
    again against each other in interleaved rounds (`results.Runoff`): timed one after another, each met
    its own moment's load, and a busy machine could reorder them; in rounds, they meet the same. Those
    more than `RUNOFF_SPAN` times slower than the fastest stay out (and are not tied). None when fewer
    than two take part."""
    source = RUNOFF_LANES.get(str(fmt))
    if profile.prefer != "latency" or source is None:
        return None
    passed = [t for t in trials if t.passed and t.latency is not None and t.latency.source == source and t.latency.ms is not None]
    fastest = min((t.latency.ms for t in passed), default=0.0)
    passed = [t for t in passed if t.latency.ms <= RUNOFF_SPAN * fastest]  # further apart is no timing noise
    if len(passed) < 2:
        return None
    backend = (profile.budget.browser_backend or "wasm") if source == "browser" else None
    runoff = evaluator.runoff([t.candidate for t in passed], profile.threads, backend)
    ratios = runoff.ratios()
    progress(f"[{profile.name}] run-off over {len(runoff.rounds[passed[0].candidate])} interleaved rounds"
             f"{f' (LiteRT.js, {backend})' if backend else ''}: "
             + ", ".join(f"{k} {ratios[k][0]:.2f}x" for k in sorted(ratios, key=lambda k: ratios[k][0])) + " the fastest's time")
    return runoff


# The backends each web runtime has in Chromium
RUNTIME_BACKENDS = {"tfjs": ("wasm", "webgl", "webgpu"), "litertjs": ("wasm", "webgpu")}


def _conform_web(profile, tried: dict, evaluator: Evaluator, labels: bool, progress, runoffs: dict) -> None:
    """The web artifact `profile` would ship, run on each of its `web_backends` its runtime has, until one
    that some backend runs right is chosen: a backend whose outputs miss the drift budgets is named
    and refused; an artifact no backend runs right fails, and the choice moves on (another candidate of
    its runtime, or the other runtime)."""
    lanes = {fmt: tried[(profile.name, fmt)] for fmt in WEB_FORMATS if (profile.name, fmt) in tried}
    while True:
        results = tuple(FormatResult(profile.name, fmt, tuple(trials), profile.prefer, runoff=runoffs.get((profile.name, fmt)))
                        for fmt, trials in lanes.items())
        choice = web_choice(results, profile.prefer)
        if choice is None:
            return
        trials = lanes[choice["format"]]
        chosen = next(f for f in results if f.format == choice["format"]).chosen
        if chosen.backends is not None:
            return
        conformed = _conform(profile, chosen, evaluator, labels)
        trials[trials.index(chosen)] = conformed
        ran = ", ".join(f"{b} {'ok' if v['passed'] else 'refused: ' + v['note']}" for b, v in conformed.backends.items())
        progress(f"[{profile.name}] {chosen.candidate} in Chromium: {ran or 'no listed backend runs ' + chosen.format}")


def _conform(profile, trial: Trial, evaluator: Evaluator, labels: bool) -> Trial:
    candidate = Candidate.from_key(trial.candidate)
    backends, first = {}, None
    for backend in profile.web_backends:
        if backend not in RUNTIME_BACKENDS[trial.format]:
            continue
        drift, outputs, error = evaluator.on_backend(candidate, backend)
        if error is not None:
            backends[backend] = {"note": error, "passed": False}
            continue
        verdict = judge_drift(profile, Measurement(trial.size_bytes, trial.gzip_bytes, drift, labels))
        entry = {"drift": [dict(d) for d in drift], "passed": verdict.passed}
        if not verdict.passed:
            entry["note"] = "; ".join(verdict.failures)
        if first is None:
            first = (backend, outputs)
        else:
            entry["max_difference"] = {first[0]: round(max(float(np.max(np.abs(a - b), initial=0.0)) for a, b in zip(outputs, first[1])), 6)}
        backends[backend] = entry
    conformed = dataclasses.replace(trial, backends=backends)
    if not any(b["passed"] for b in backends.values()):
        listed = ", ".join(profile.web_backends)
        why = "; ".join(f"{b}: {v['note']}" for b, v in backends.items()) or f"{trial.format} has none of them"
        conformed = dataclasses.replace(conformed, verdict=Verdict(trial.verdict.checks, f"no web backend of {listed} runs it right ({why})",
                                                                   trial.verdict.unjudged))
    return conformed
