"""Does a candidate meet a profile? One pure judge, used by `build` and `check`, returning a typed verdict.

Judging does not measure: the caller measures (sizes, drift, a latency figure) and hands the numbers in.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from mobilepre import intervals
from mobilepre.intervals import Outcome
from mobilepre.metrics import TOLERANCES, OutputKind, relative_gap


@dataclass(frozen=True)
class Measurement:
    """What is known of one artifact when it is judged.

    Attributes:
        size_bytes (int), gzip_bytes (int): bytes on disk and gzip bytes.
        outputs (tuple[dict, ...]): per output, its `name`, `kind` and measured metrics (metric -> value,
            see `mobilepre.metrics.TOLERANCES`), as `validate.OutputDrift.to_dict()` gives them.
        labels (bool): drift was measured against labelled images (accuracy budgets apply).
        error (str | None): the artifact cannot be used (conversion or runtime failure).
        size_source (str), drift_source (str): where the figures come from, e.g. "measured",
            "recomputed", "validated", "manifest".
        peak_memory_bytes (int | None): the runtime's peak memory for loading and one inference, when
            measured (`runtimes.RunResult`); peak_memory_source: "host" (LiteRT's resident memory on
            this machine: varies by host, kept out of byte-identical files) or "measured" (TF.js tensor
            bytes, exact).
        download_bytes (int | None): for a web format, the gzip bytes of the model and the runtime it
            needs (`download_bytes`); None for a .tflite an app ships.
    """

    size_bytes: int
    gzip_bytes: int
    outputs: tuple = ()
    labels: bool = False
    error: str | None = None
    size_source: str = "measured"
    drift_source: str = "measured"
    peak_memory_bytes: int | None = None
    peak_memory_source: str = "host"
    download_bytes: int | None = None


@dataclass(frozen=True)
class LatencyFigure:
    """The latency figure a profile's budget names, obtained before judging.

    Attributes:
        ms (float | None): milliseconds for one image; None when it could not be had.
        source (str): "host", "estimate" or "device".
        detail (dict): how it was obtained (threads and runtime; MACs and device_gmacs; ...).
        skipped (bool): deliberately not measured (a `check --no-measure`): the budget is not judged.
        missing (str | None): why `ms` is None when it is not skipped, for the verdict.
        interval (tuple[float, float] | None): a timed figure's 95% interval of the median over its
            `runs` (`intervals.median_interval`); None for an estimate or a device figure (no spread
            known), which is judged as a point.
        runs (int | None): how many timed runs the median is of.
    """

    ms: float | None
    source: str
    detail: dict = field(default_factory=dict)
    skipped: bool = False
    missing: str | None = None
    interval: tuple | None = None
    runs: int | None = None

    def to_dict(self) -> dict:
        out = {"source": self.source, **self.detail}
        if self.ms is not None:
            out["ms"] = round(self.ms, 4)
        if self.interval is not None:
            out["interval_ms"] = [round(v, 4) for v in self.interval]
        if self.runs is not None:
            out["runs"] = self.runs
        return dict(sorted(out.items()))

    @classmethod
    def from_dict(cls, data: dict) -> LatencyFigure:
        detail = {k: v for k, v in data.items() if k not in ("source", "ms", "interval_ms", "runs")}
        interval = data.get("interval_ms")
        return cls(data.get("ms"), data["source"], detail, interval=None if interval is None else (float(interval[0]), float(interval[1])),
                   runs=data.get("runs"))

    def without_host_figures(self) -> LatencyFigure:
        """The figure as byte-identical files hold it: a host or browser timing blanked (it differs every run)."""
        if self.source not in ("host", "browser"):
            return self
        return LatencyFigure(None, self.source, self.detail)


@dataclass(frozen=True)
class BudgetCheck:
    """One budget against one figure.

    Attributes:
        name (str): the profile key, e.g. "max_size", "max_latency_ms", "min_top1_agreement".
        output (str | None): for a drift budget, the output it was judged on.
        value (float | None): the figure; None when unknown (which fails) or not measured (skipped).
        limit (float): the profile's bound.
        unit (str): "B", "ms" or "" for drift metrics.
        passed (bool).
        gap (float): how far past the limit, as a fraction of it; 0 when passed, inf when unknown.
        source (str): where the figure came from ("measured", "recomputed", "host", "estimate",
            "device", "validated", "manifest", "not measured").
        note (str | None): why the value is missing, when it is.
        interval (tuple[float, float] | None): the figure's 95% interval, when it has one.
        outcome (str | None): with an interval, what it says of the limit: "pass" (cleared), "fail"
            (on the wrong side) or "inconclusive" (straddles it; `passed` then follows the profile's
            `on_inconclusive`).
        needed (int | None): for an inconclusive budget, about how many validation images (drift) or
            timed runs (latency) would decide it; None when the estimate sits on the limit.
    """

    name: str
    value: float | None
    limit: float
    unit: str
    passed: bool
    gap: float
    source: str
    note: str | None = None
    output: str | None = None
    interval: tuple | None = None
    outcome: str | None = None
    needed: int | None = None
    needed_of: str | None = None  # what `needed` counts when not the default (timing rounds, for `check --repeat`)

    @property
    def label(self) -> str:
        """The budget's name, with the output it was judged on: `min_top1_agreement[cls]`."""
        return f"{self.name}[{self.output}]" if self.output else self.name

    @property
    def inconclusive(self) -> bool:
        return self.outcome == Outcome.INCONCLUSIVE

    @property
    def counted(self) -> str:
        """What `needed` counts: validation images (drift), timed runs (latency) or `needed_of`."""
        return self.needed_of or ("timed runs" if self.unit == "ms" else "validation images")

    @property
    def message(self) -> str:
        if self.value is None:
            return f"{self.label}: {self.note or 'unknown'} (limit {_show(self.limit, self.unit)})"
        shown = _show(self.value, self.unit)
        if self.interval is not None:
            shown += f" (95% {_show(self.interval[0], self.unit)} to {_show(self.interval[1], self.unit)})"
        text = f"{self.label}: {shown} vs {_show(self.limit, self.unit)} ({self.source})"
        if self.inconclusive:
            what = self.counted
            decide = (f"about {self.needed:,} {what} would decide it" if self.needed is not None
                      else "the estimate sits on the limit: no number of " + what + " decides it")
            text += f": inconclusive, {decide}"
        return text

    def to_dict(self) -> dict:
        out = {
            "gap": None if math.isinf(self.gap) else self.gap,
            "limit": self.limit,
            "name": self.name,
            "passed": self.passed,
            "source": self.source,
            "unit": self.unit,
            "value": self.value,
        }
        if self.note:
            out["note"] = self.note
        if self.output:
            out["output"] = self.output
        if self.interval is not None:
            out["interval"] = [round(v, 6) for v in self.interval]
        if self.outcome is not None:
            out["outcome"] = str(self.outcome)
        if self.needed is not None:
            out["needed"] = self.needed
        if self.needed_of is not None:
            out["needed_of"] = self.needed_of
        return out

    @classmethod
    def from_dict(cls, data: dict) -> BudgetCheck:
        gap = math.inf if data["gap"] is None else data["gap"]
        interval = data.get("interval")
        outcome = data.get("outcome")
        return cls(data["name"], data["value"], data["limit"], data["unit"], data["passed"], gap, data["source"],
                   data.get("note"), data.get("output"), None if interval is None else (float(interval[0]), float(interval[1])),
                   None if outcome is None else Outcome(outcome), data.get("needed"), data.get("needed_of"))


@dataclass(frozen=True)
class Verdict:
    """Every budget of a profile against one candidate.

    Attributes:
        checks (tuple[BudgetCheck, ...]): in a fixed order: sizes, latency, drift (by tolerance name).
        error (str | None): the candidate is unusable; then it fails whatever the checks say.
        unjudged (tuple[str, ...]): outputs no drift budget judged (any drift of theirs passes): named in
            the table, the reports and the manifest, never silent.
    """

    checks: tuple = ()
    error: str | None = None
    unjudged: tuple = ()

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.passed for c in self.checks)

    @property
    def gap(self) -> float:
        """The largest relative gap of any budget: how far the candidate is from meeting the profile."""
        if self.error is not None:
            return math.inf
        return max((c.gap for c in self.checks), default=0.0)

    @property
    def failures(self) -> list[str]:
        if self.error is not None:
            return [f"unusable: {self.error}"]
        return [c.message for c in self.checks if not c.passed]

    @property
    def inconclusive(self) -> list[BudgetCheck]:
        """The budgets whose interval straddles their limit (passed or not, by the profile's `on_inconclusive`)."""
        return [c for c in self.checks if c.inconclusive]

    @property
    def warnings(self) -> list[str]:
        """Inconclusive budgets that passed: named wherever the verdict is shown, never silent."""
        return [c.message for c in self.inconclusive if c.passed]

    @property
    def unjudged_note(self) -> str:
        """" (no drift budget judges NAME, ...)" for the outputs no budget judged, else "": what every
        table and report appends to the verdict."""
        return f" (no drift budget judges {', '.join(self.unjudged)})" if self.unjudged else ""

    @property
    def note(self) -> str:
        """What every table and report appends to the verdict: the outputs no budget judged, and the
        budgets whose 95% interval straddles the limit with how much more data would decide each."""
        text = self.unjudged_note
        if self.inconclusive:
            parts = [f"{c.label} " + (f"~{c.needed:,} {'runs' if c.unit == 'ms' else 'images'}" if c.needed else "on the limit")
                     for c in self.inconclusive]
            text += f" (inconclusive at 95%: {', '.join(parts)} would decide)"
        return text

    def check(self, name: str) -> BudgetCheck | None:
        return next((c for c in self.checks if c.name == name), None)

    def without_host_figures(self) -> Verdict:
        """The verdict with host-measured latencies and resident memory blanked: what files that must be
        byte-identical across runs may hold (a host figure differs every run; whether it passed is kept)."""
        checks = tuple(
            BudgetCheck(c.name, None, c.limit, c.unit, c.passed, 0.0 if c.passed else math.inf, c.source,
                        "within budget on the build host" if c.passed else "over budget on the build host", c.output)
            if c.name in _HOST_FIGURES and c.source in ("host", "browser") and (c.value is not None or c.interval is not None) else c
            for c in self.checks
        )
        return Verdict(checks, self.error, self.unjudged)

    def to_dict(self) -> dict:
        out = {"checks": [c.to_dict() for c in self.checks], "error": self.error, "passed": self.passed}
        if self.unjudged:
            out["unjudged"] = list(self.unjudged)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Verdict:
        return cls(tuple(BudgetCheck.from_dict(c) for c in data["checks"]), data.get("error"), tuple(data.get("unjudged", ())))


# Budgets whose figure measured on this machine differs every run or every host (latency, resident
# memory): byte-identical files keep whether it passed, not the figure.
_HOST_FIGURES = ("max_latency_ms", "max_peak_memory")


def judge(profile, measurement: Measurement, latency: LatencyFigure | None = None) -> Verdict:
    """Every budget of `profile` against `measurement` and the latency figure obtained for it.

    `latency` may be None only when the profile has no latency budget. Drift budgets are judged per
    output, each where it makes sense for the output's kind (`Drift.limits_for`). A drift metric that
    applies but was not measured fails its bound, except accuracy budgets when there were no labels
    (documented: accuracy is checked only when labels are given).
    """
    if measurement.error is not None:
        return Verdict((), measurement.error)
    budget = profile.budget
    policy = profile.on_inconclusive
    checks = [_bound("max_size", measurement.size_bytes, budget.max_size, "max", "B", measurement.size_source)]
    if budget.max_compressed_size is not None:
        checks.append(_bound("max_compressed_size", measurement.gzip_bytes, budget.max_compressed_size, "max", "B", measurement.size_source))
    if budget.max_download is not None and measurement.download_bytes is not None:
        checks.append(_bound("max_download", measurement.download_bytes, budget.max_download, "max", "B", measurement.size_source))
    if budget.max_peak_memory is not None:
        checks.append(_bound("max_peak_memory", measurement.peak_memory_bytes, budget.max_peak_memory, "max", "B",
                             measurement.peak_memory_source, None if measurement.peak_memory_bytes is not None else "not measured on this platform"))
    if budget.max_latency_ms is not None:
        if latency is None:
            raise ValueError(f"profile {profile.name} has a latency budget: obtain the latency figure before judging")
        if latency.skipped:
            checks.append(BudgetCheck("max_latency_ms", None, budget.max_latency_ms, "ms", True, 0.0, "not measured", latency.missing or "not measured"))
        else:
            needed = None
            if latency.interval is not None and latency.ms is not None and latency.runs:
                needed = intervals.scaled_needed(latency.ms, *latency.interval, budget.max_latency_ms, latency.runs)
            check = _bound("max_latency_ms", latency.ms, budget.max_latency_ms, "max", "ms", latency.source, latency.missing,
                           interval=latency.interval, needed=needed, policy=policy)
            if latency.detail.get("rounds"):
                check = dataclasses.replace(check, needed_of="timing rounds (check --repeat)")
            checks.append(check)
    drift = judge_drift(profile, measurement)
    return Verdict(tuple(checks) + drift.checks, unjudged=drift.unjudged)


def judge_drift(profile, measurement: Measurement) -> Verdict:
    """The drift budgets of `profile` alone against `measurement` (what a mixed-precision search must
    meet before sizes and latency are judged)."""
    return judge_drift_limits(profile.drift, measurement, profile.on_inconclusive)


def judge_drift_limits(drift, measurement: Measurement, policy: str = "warn") -> Verdict:
    """Drift limits (`profiles.Drift`) against `measurement`: the one drift rule, used by build, check,
    the mixed search and `validate`'s tolerances. A metric with an interval gets one of three outcomes
    (`_bound`); `policy` is what an inconclusive one counts as (`Profile.on_inconclusive`)."""
    if measurement.error is not None:
        return Verdict((), measurement.error)
    checks, unjudged = [], []
    for output in measurement.outputs:
        kind = OutputKind(output["kind"])
        before = len(checks)
        for name, limit in drift.limits_for(output["name"], kind).items():
            tolerance = TOLERANCES[name]
            if tolerance.needs == "labels" and not measurement.labels and tolerance.metric not in output:
                continue
            value = output.get(tolerance.metric)
            note = None if value is not None else f"{tolerance.metric} was not measured (needs {_NEEDS[tolerance.needs]})"
            interval = (output.get("intervals") or {}).get(tolerance.metric)
            needed = None
            if interval is not None and value is not None and output.get("images"):
                if tolerance.metric in _SHARES_OF_IMAGES and kind is not OutputKind.SEGMENTATION:
                    needed = intervals.shares_needed(value, limit, tolerance.kind)
                else:
                    needed = intervals.scaled_needed(value, interval[0], interval[1], limit, output["images"])
            checks.append(_bound(name, value, limit, tolerance.kind, "", measurement.drift_source, note, output["name"],
                                 interval=None if interval is None else tuple(interval), needed=needed, policy=policy))
        if len(checks) == before:
            unjudged.append(output["name"])
    return Verdict(tuple(checks), unjudged=tuple(unjudged))


_NEEDS = {"labels": "labels", None: "an output it applies to"}
# metrics that are a share of images, each image in or out (Wilson intervals: the count deciding them is exact)
_SHARES_OF_IMAGES = ("top1_agreement", "top5_agreement", "nn_agreement")


def _bound(name: str, value, limit, kind: str, unit: str, source: str, note: str | None = None, output: str | None = None,
           interval: tuple | None = None, needed: int | None = None, policy: str = "warn") -> BudgetCheck:
    """One figure against its limit. Without an interval the figure decides. With one, three outcomes: the
    interval clears the limit (passes), lies on the wrong side (fails) or straddles it (inconclusive:
    `policy` "warn" lets the figure decide, "fail" fails it, "pass" passes it)."""
    if value is None:
        return BudgetCheck(name, None, limit, unit, False, math.inf, source, note or "unknown", output)
    value = float(value) if unit != "B" else int(value)
    gap = round(relative_gap(value, limit, kind), 6)
    passed = value >= limit if kind == "min" else value <= limit
    shown = round(value, 6) if isinstance(value, float) else value
    if interval is None:
        return BudgetCheck(name, shown, limit, unit, passed, gap, source, None, output)
    low, high = float(interval[0]), float(interval[1])
    result = intervals.outcome(low, high, limit, kind)
    if result is Outcome.INCONCLUSIVE:
        if policy == "fail":
            passed, gap = False, max(gap, round(relative_gap(low if kind == "min" else high, limit, kind), 6))
        elif policy == "pass":
            passed, gap = True, 0.0
    else:
        passed, needed = result is Outcome.PASS, None
        gap = 0.0 if passed else gap
    return BudgetCheck(name, shown, limit, unit, passed, gap, source, None, output, (low, high), result, needed)


def _show(value, unit: str) -> str:
    if unit == "B":
        return f"{int(value):,} B"
    if unit == "ms":
        return f"{value:.3f} ms"
    return f"{value:.6g}"
