"""The search: for each profile and format, candidates from highest fidelity down until one meets every budget."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

from mobilepre.budgets import LatencyFigure, Verdict, judge
from mobilepre.candidates import Candidate, candidates_for
from mobilepre.metrics import TOLERANCES
from mobilepre.evaluate import Evaluator, Measured
from mobilepre.latency import latency_figure
from mobilepre.progress import as_reporter


@dataclass(frozen=True)
class Trial:
    """One candidate judged against one profile.

    Attributes:
        candidate (str): the candidate key, e.g. "tflite-int8-uint8io".
        format (str), quantization (str), io_type (str): as the engine names them.
        sparsity (float): share of zero weights reached.
        size_bytes (int), gzip_bytes (int).
        drift (tuple[dict, ...]): per output, its name, kind and metrics.
        latency (LatencyFigure | None): the figure the profile's latency budget was judged on.
        verdict (Verdict).
        mixed (dict | None): a mixed candidate's base precision, raised layers and steps.
        clusters (int): shared values per kernel of a clustered candidate (0: not clustered).
        qat (dict | None): for a quantization-aware int8 candidate, the calibrated int8 candidate it
            replaces and the drift budgets each missed (what the fine-tuning recovered).
        metadata (dict | None): the SDK metadata the artifact carries, or why none (`Measured.metadata`).
    """

    candidate: str
    format: str
    quantization: str
    io_type: str
    sparsity: float
    size_bytes: int
    gzip_bytes: int
    drift: tuple
    latency: LatencyFigure | None
    verdict: Verdict
    mixed: dict | None = None
    clusters: int = 0
    qat: dict | None = None
    metadata: dict | None = None

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    @classmethod
    def of(cls, measured: Measured, latency: LatencyFigure | None, verdict: Verdict) -> Trial:
        c = measured.candidate
        return cls(
            c.key, str(c.fmt), str(c.mode), str(c.io_type), round(measured.sparsity, 6), measured.size_bytes,
            measured.gzip_bytes, tuple(measured.drift), latency, verdict, measured.mixed, c.clusters,
            metadata=measured.metadata,
        )

    def metric(self, name: str) -> float | None:
        """`name` of the first output that has it (for one-line summaries; reports show every output)."""
        return next((d[name] for d in self.drift if name in d), None)

    def without_host_figures(self) -> Trial:
        """This trial as files that must be byte-identical across runs may hold it (see `Verdict`)."""
        latency = self.latency
        if latency is not None and latency.source in ("host", "browser"):
            latency = LatencyFigure(None, latency.source, latency.detail)
        return Trial(
            self.candidate, self.format, self.quantization, self.io_type, self.sparsity, self.size_bytes,
            self.gzip_bytes, self.drift, latency, self.verdict.without_host_figures(), self.mixed, self.clusters, self.qat,
            self.metadata,
        )

    def to_dict(self) -> dict:
        out = {
            "bytes": self.size_bytes,
            "candidate": self.candidate,
            "drift": [dict(d) for d in self.drift],
            "format": self.format,
            "gzip_bytes": self.gzip_bytes,
            "io_type": self.io_type,
            "latency": None if self.latency is None else self.latency.to_dict(),
            "quantization": self.quantization,
            "sparsity": self.sparsity,
            "verdict": self.verdict.to_dict(),
        }
        if self.mixed is not None:
            out["mixed"] = self.mixed
        if self.clusters:
            out["clusters"] = self.clusters
        if self.qat is not None:
            out["qat"] = self.qat
        if self.metadata is not None:
            out["metadata"] = self.metadata
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Trial:
        latency = None if data["latency"] is None else LatencyFigure.from_dict(data["latency"])
        return cls(
            data["candidate"], data["format"], data["quantization"], data["io_type"], data["sparsity"], data["bytes"],
            data["gzip_bytes"], tuple(dict(d) for d in data["drift"]), latency, Verdict.from_dict(data["verdict"]),
            data.get("mixed"), data.get("clusters", 0), data.get("qat"), data.get("metadata"),
        )


@dataclass(frozen=True)
class FormatResult:
    """One profile's search in one format.

    Attributes:
        profile (str), format (str).
        tried (tuple[Trial, ...]): in search order (with prefer "fidelity", the search stops at the
            first that passes).
        prefer (str): the profile's `prefer`: which passing trial is chosen (size: gzip bytes first for
            TF.js, which is served compressed; bytes on disk first for TFLite).
        chosen_key (str | None): the trial chosen, when it was chosen already: a copy without host
            figures (`without_host_figures`) cannot choose the fastest again, nor can its reader.
    """

    profile: str
    format: str
    tried: tuple
    prefer: str = "fidelity"
    chosen_key: str | None = None

    @property
    def chosen(self) -> Trial | None:
        """Among the trials within every budget: the first (fidelity), the fastest or the smallest; ties
        go to the earlier, higher-fidelity one."""
        passed = [t for t in self.tried if t.passed]
        if not passed:
            return None
        if self.chosen_key is not None:
            return next((t for t in passed if t.candidate == self.chosen_key), None)
        if self.prefer == "latency":
            return min(passed, key=lambda t: t.latency.ms if t.latency and t.latency.ms is not None else math.inf)
        if self.prefer == "size":  # TF.js files are served compressed; a .tflite ships as it is
            return min(passed, key=lambda t: (t.gzip_bytes, t.size_bytes) if t.format == "tfjs" else (t.size_bytes, t.gzip_bytes))
        return passed[0]

    @property
    def closest(self) -> Trial | None:
        """When none passed: the candidate nearest to meeting every budget (smallest largest gap)."""
        if self.chosen or not self.tried:
            return None
        return min(self.tried, key=lambda t: t.verdict.gap)

    def without_host_figures(self) -> FormatResult:
        """This result as byte-stable files hold it: host figures blanked, the choice kept."""
        chosen = self.chosen
        return FormatResult(self.profile, self.format, tuple(t.without_host_figures() for t in self.tried), self.prefer,
                            chosen.candidate if chosen else None)

    def to_dict(self) -> dict:
        chosen, closest = self.chosen, self.closest
        out = {
            "chosen": chosen.candidate if chosen else None,
            "closest": closest.candidate if closest else None,
            "format": self.format,
            "profile": self.profile,
            "tried": [t.to_dict() for t in self.tried],
        }
        if self.prefer != "fidelity":
            out["prefer"] = self.prefer
        return out

    @classmethod
    def from_dict(cls, data: dict) -> FormatResult:
        return cls(data["profile"], data["format"], tuple(Trial.from_dict(t) for t in data["tried"]), data.get("prefer", "fidelity"),
                   data.get("chosen"))


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
            trial = Trial.of(measured, latency, verdict)
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
    return [FormatResult(profile.name, str(fmt), tuple(tried[(profile.name, fmt)]), profile.prefer) for profile, fmt, _ in lanes]
