"""What a build found, as typed values: each candidate judged (`Trial`), each profile's search per format
(`FormatResult`), each profile (`ProfileResult`) and the build (`BuildResult`), which lists every
measured candidate as its one shape, `measured.Measured`. The search makes them, the build writes them, and every reader of a build output
(check, merge, copy, --baseline) reads them back with `from_dict`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mobilepre.budgets import LatencyFigure, Verdict
from mobilepre.errors import EXIT_FAILED
from mobilepre.formats import FORMATS, download_bytes
from mobilepre.intervals import median_interval
from mobilepre.measured import Measured
from mobilepre.profiles import WEB_FORMATS, Profile

REPORT_SCHEMA = "mobilepre.report/2"


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
        engine (str | None), engine_choice (dict | None): what made the artifact and why, where a
            measurement chose between engines (`Measured.engine`).
        bytes_breakdown (dict | None): a TFLite artifact's bytes by what they hold (weights, biases,
            quantization, graph, metadata) with its one-byte-per-parameter floor (`tflite_reader.tflite_bytes`).
        backends (dict | None): a shipped web artifact of a profile with `web_backends`: per browser
            backend, whether its outputs met the drift budgets (`passed`), its drift, why not (`note`),
            and its largest difference from the first backend's outputs (`max_difference`).
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
    engine: str | None = None
    engine_choice: dict | None = None
    backends: dict | None = None
    bytes_breakdown: dict | None = None

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    def metric(self, name: str) -> float | None:
        """`name` of the first output that has it (for one-line summaries; reports show every output)."""
        return next((d[name] for d in self.drift if name in d), None)

    def without_host_figures(self) -> Trial:
        """This trial as files that must be byte-identical across runs may hold it (see `Verdict`)."""
        latency = None if self.latency is None else self.latency.without_host_figures()
        return Trial(
            self.candidate, self.format, self.quantization, self.io_type, self.sparsity, self.size_bytes,
            self.gzip_bytes, self.drift, latency, self.verdict.without_host_figures(), self.mixed, self.clusters, self.qat,
            self.metadata, self.engine, self.engine_choice, self.backends, self.bytes_breakdown,
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
        if self.engine is not None:
            out["engine"] = self.engine
            out["engine_choice"] = self.engine_choice
        if self.backends is not None:
            out["backends"] = self.backends
        if self.bytes_breakdown is not None:
            out["bytes_breakdown"] = self.bytes_breakdown
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Trial:
        latency = None if data["latency"] is None else LatencyFigure.from_dict(data["latency"])
        return cls(
            data["candidate"], data["format"], data["quantization"], data["io_type"], data["sparsity"], data["bytes"],
            data["gzip_bytes"], tuple(dict(d) for d in data["drift"]), latency, Verdict.from_dict(data["verdict"]),
            data.get("mixed"), data.get("clusters", 0), data.get("qat"), data.get("metadata"), data.get("engine"),
            data.get("engine_choice"), data.get("backends"), data.get("bytes_breakdown"),
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
        tied_keys (tuple[str, ...] | None): with "latency", the trials the timings could not tell from
            the fastest, as read back from timings.json (computed when None).
        runoff (Runoff | None): with "latency", the passing trials timed again against each other in
            interleaved rounds (all but those far slower); when present it, not their separate
            timings, decides the tie.
    """

    profile: str
    format: str
    tried: tuple
    prefer: str = "fidelity"
    chosen_key: str | None = None
    tied_keys: tuple | None = None
    runoff: Runoff | None = None

    @property
    def chosen(self) -> Trial | None:
        """Among the trials within every budget: the first (fidelity), the fastest or the smallest; ties
        go to the earlier, higher-fidelity one. With "latency", every trial whose latency interval
        overlaps the fastest one's is tied (`latency_tied`): the measurements do not tell them apart, so
        the first in search order ships, and the choice does not follow the machine's load."""
        passed = [t for t in self.tried if t.passed]
        if not passed:
            return None
        if self.chosen_key is not None:
            return next((t for t in passed if t.candidate == self.chosen_key), None)
        if self.prefer == "latency":
            return self.latency_tied[0]
        if self.prefer == "size":  # TF.js files are served compressed; a .tflite ships as it is
            return min(passed, key=lambda t: (t.gzip_bytes, t.size_bytes) if FORMATS[t.format].served_compressed else (t.size_bytes, t.gzip_bytes))
        return passed[0]

    @property
    def latency_tied(self) -> list[Trial]:
        """The passing trials the latency measurements cannot tell from the fastest, in search order: by
        the run-off when there was one, else by each trial's own timing."""
        passed = [t for t in self.tried if t.passed]
        if self.runoff is not None and self.runoff.fastest() in {t.candidate for t in passed}:
            tied = set(self.runoff.tied())  # a passing trial left out of the run-off was far slower: not tied
            return [t for t in passed if t.candidate in tied]
        return tied_fastest(passed, lambda t: latency_span(t.latency))

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
        tied = self.tied_keys if self.tied_keys is not None else (
            tuple(t.candidate for t in self.latency_tied) if self.prefer == "latency" and self.chosen_key is None else ())
        if len(tied) > 1:  # host figures: kept in timings.json, not in the byte-stable report
            out["latency_tied"] = list(tied)
        if self.runoff is not None:  # host figures: a copy `without_host_figures` has none
            out["runoff"] = self.runoff.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> FormatResult:
        runoff = Runoff.from_dict(data["runoff"]) if isinstance(data.get("runoff"), dict) else None
        return cls(data["profile"], data["format"], tuple(Trial.from_dict(t) for t in data["tried"]), data.get("prefer", "fidelity"),
                   data.get("chosen"), tuple(data.get("latency_tied", ())), runoff)


def drift_use(trial: Trial) -> float:
    """How much of its drift budgets `trial` uses, at most over its outputs: 0 (no drift) to 1 (at a
    limit); a bound on agreement, cosine or SSIM counts the shortfall from 1 against the limit's."""
    used = 0.0
    for check in trial.verdict.checks:
        if check.unit or check.value is None:  # sizes (B), latency (ms) and memory are not drift
            continue
        if check.name.startswith("min_"):
            share = (1.0 - check.value) / (1.0 - check.limit) if check.limit < 1 else (0.0 if check.value >= 1 else math.inf)
        else:
            share = check.value / check.limit if check.limit > 0 else (0.0 if check.value <= 0 else math.inf)
        used = max(used, share)
    return used


def latency_span(latency) -> tuple[float, float, float]:
    """A latency figure as (value, low, high): its 95% interval when timed, its value alone when an
    estimate or a device figure, infinite when unknown."""
    if latency is None or latency.ms is None:
        return math.inf, math.inf, math.inf
    return (latency.ms, *(latency.interval or (latency.ms, latency.ms)))


# Latencies within this share of the fastest are not told apart whatever their intervals say: timed one
# after another on a shared machine, candidates meet different loads, which a run's own interval does not
# show. Measured here on the demo's LiteRT.js candidates (int8 7-14% faster than float32 on wasm): with
# intervals alone, or a 10% margin, int8 or float32 shipped depending on a second process keeping a
# core busy; with 25% float32 ships on either, while int8 against float (2.7x) and LiteRT.js against
# TF.js (1.6x) stay resolved.
LATENCY_MARGIN = 0.25


def tied_fastest(items: list, span) -> list:
    """Of `items` (in their order of preference), those the timings cannot tell from the fastest
    (`span(item)` = (value, low, high)): their interval overlaps the fastest one's, or their value is
    within `LATENCY_MARGIN` of it. The first is the choice."""
    if not items:
        return []
    figures = [span(i) for i in items]
    fastest = min(range(len(items)), key=lambda k: figures[k][0])
    value, _, top = figures[fastest]
    return [i for i, f in zip(items, figures) if f[1] <= top or f[0] <= value * (1 + LATENCY_MARGIN)]


@dataclass(frozen=True)
class Runoff:
    """Candidates timed against each other in interleaved rounds (`runtimes.runoff_tflite`): each round
    times every one in turn, so a round's figures met the same load, and their ratios are paired.

    Attributes:
        rounds (dict[str, tuple[float, ...]]): per candidate key, its median per round (ms), rounds in
            the same order for all.
    """

    rounds: dict

    def __post_init__(self):  # to 10 ns, as timings.json keeps them: a result read back decides the same
        object.__setattr__(self, "rounds", {str(k): tuple(round(float(v), 5) for v in values) for k, values in self.rounds.items()})

    def figures(self) -> dict[str, float]:
        """Each candidate's latency: the median of its round medians."""
        return {key: float(np.median(values)) for key, values in self.rounds.items()}

    def fastest(self) -> str:
        figures = self.figures()
        return min(figures, key=figures.get)

    def ratios(self) -> dict[str, tuple[float, float, float]]:
        """Per candidate, its time over the fastest one's, round by round: (median ratio, low, high), the
        95% interval of that median over the rounds (their range below 6 rounds)."""
        base = self.rounds[self.fastest()]
        out = {}
        for key, values in self.rounds.items():
            ratios = [v / max(b, 1e-9) for v, b in zip(values, base)]
            low, high = median_interval(ratios) or (min(ratios), max(ratios))
            out[key] = (float(np.median(ratios)), low, high)
        return out

    def tied(self) -> list[str]:
        """The candidates the run-off cannot tell from the fastest: their paired ratio's interval reaches
        1 (or below), or its median is within `LATENCY_MARGIN`."""
        return [key for key, (ratio, low, _) in self.ratios().items() if low <= 1.0 or ratio <= 1 + LATENCY_MARGIN]

    def to_dict(self) -> dict:
        figures = self.figures()
        return {"rounds": len(next(iter(self.rounds.values()), ())),
                "median_ms": {k: round(v, 4) for k, v in figures.items()},
                "ratio_to_fastest": {k: [round(x, 4) for x in r] for k, r in self.ratios().items()},
                "round_medians_ms": {k: list(values) for k, values in self.rounds.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> Runoff:
        """A run-off as timings.json or the cache keeps it; ValueError unless every candidate has the same
        number (at least one) of positive, finite round medians."""
        rounds = data.get("round_medians_ms") if isinstance(data, dict) else None
        if not isinstance(rounds, dict) or not rounds:
            raise ValueError("a run-off needs its round medians")
        lengths = set()
        for values in rounds.values():
            if not isinstance(values, list) or not values or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in values):
                raise ValueError("a run-off's round medians are positive numbers of ms")
            lengths.add(len(values))
        if len(lengths) != 1:
            raise ValueError("a run-off's candidates were timed in the same rounds")
        return cls(dict(rounds))


def web_choice(formats, prefer: str) -> dict | None:
    """Which web runtime a profile's bundle ships when it lists both TF.js and LiteRT.js: among the web
    formats whose search found a candidate, by the profile's `prefer`: "size", the smaller total
    download (model and runtime, gzip); "latency", the faster (timed the same way: the profile's
    latency source); "fidelity", the one using less of its drift budgets, then the smaller download.
    None when no web format found one. The figures compared are kept beside the choice."""
    found = [f for f in formats if f.format in WEB_FORMATS and f.chosen is not None]
    if not found:
        return None
    figures, trials = {}, {}
    for f in found:
        t = trials[f.format] = f.chosen
        figures[f.format] = {"candidate": t.candidate, "download_bytes": download_bytes(f.format, t.gzip_bytes),
                             "drift_use": round(drift_use(t), 6), "latency_ms": t.latency.ms if t.latency else None}
    order = {"size": lambda f: (figures[f]["download_bytes"],),
             "latency": lambda f: (math.inf if figures[f]["latency_ms"] is None else figures[f]["latency_ms"], figures[f]["download_bytes"]),
             "fidelity": lambda f: (figures[f]["drift_use"], figures[f]["download_bytes"])}[prefer]
    best = min(figures, key=order)
    tied = []
    if prefer == "latency":  # runtimes the timings cannot tell apart: the one using less of its drift budgets
        tied = tied_fastest(sorted(figures, key=lambda f: (figures[f]["drift_use"], figures[f]["download_bytes"])),
                            lambda f: latency_span(trials[f].latency))
        best = tied[0]
    listed = [f.format for f in formats if f.format in WEB_FORMATS]
    if len(figures) == 1:
        others = [f for f in listed if f != best]
        why = f"the only web runtime with a candidate within budget ({', '.join(others)}: none)" if others else "the profile's only web runtime"
    elif len(tied) > 1:
        why = ("latencies tied within their 95% intervals, so less of its drift budgets used: "
               + ", ".join(f"{f} {_figure(figures[f], 'fidelity')}" for f in tied))
    else:
        what = {"size": "smaller total download (model and runtime, gzip)", "latency": "faster",
                "fidelity": "less of its drift budgets used" + ("" if len({figures[f]["drift_use"] for f in figures}) > 1 else ", then smaller download")}[prefer]
        why = f"{what}: " + ", ".join(f"{f} {_figure(figures[f], prefer)}" for f in sorted(figures, key=order))
    return {"format": best, "why": why, "compared": figures}


def _figure(figures: dict, prefer: str) -> str:
    if prefer == "latency" and figures["latency_ms"] is not None:
        return f"{figures['latency_ms']:.3f} ms"
    if prefer == "fidelity":
        return f"{figures['drift_use']:.3f} of drift budgets, {figures['download_bytes']:,} B"
    return f"{figures['download_bytes']:,} B"


@dataclass(frozen=True)
class ProfileResult:
    """One profile's outcome: its search per format, and the bundle written when every format found one
    (of its web formats, TF.js and LiteRT.js, one: `web`).

    Attributes:
        name (str): the profile's name.
        profile (Profile): the profile as the build read it.
        formats (tuple[FormatResult, ...]): per format the profile lists.
        web (dict | None): when the profile lists a web format: which one the bundle ships, why, and
            the figures compared (`web_choice`); kept as chosen (a copy without host figures cannot
            compare latencies again). Computed when not given.
    """

    name: str
    profile: Profile
    formats: tuple
    web: dict | None = None

    def __post_init__(self):
        if self.web is None:
            object.__setattr__(self, "web", web_choice(self.formats, getattr(self.profile, "prefer", "fidelity")))

    @property
    def shipped(self) -> tuple:
        """The formats whose artifact the bundle carries: every format listed, of the web ones only `web`'s."""
        chosen_web = self.web["format"] if self.web else None
        return tuple(f for f in self.formats if f.format not in WEB_FORMATS or f.format == chosen_web)

    @property
    def passed(self) -> bool:
        web_listed = any(f.format in WEB_FORMATS for f in self.formats)
        return all(f.chosen is not None for f in self.shipped) and (self.web is not None or not web_listed)

    @property
    def bundle(self) -> str | None:
        """The bundle's folder name under the output, when one was written."""
        return self.name if self.passed else None

    def format(self, fmt: str) -> FormatResult:
        return next(f for f in self.formats if f.format == fmt)

    def set_aside(self, fmt: str) -> str | None:
        """For a web format the bundle does not ship (the other runtime was chosen): why, else None."""
        if fmt not in WEB_FORMATS or self.web is None or self.web["format"] == fmt:
            return None
        return f"not shipped: {self.web['format']} chosen, {self.web['why']}"

    def without_host_figures(self) -> ProfileResult:
        """This result as byte-stable files hold it: host figures blanked, every choice kept."""
        web = self.web
        if web is not None and self.profile.budget.timed_here and self.web["compared"]:
            web = {**web, "compared": {f: {**v, "latency_ms": None} for f, v in web["compared"].items()}}
            if getattr(self.profile, "prefer", "fidelity") == "latency" and len(web["compared"]) > 1:
                # how the timings compared (which were tied) is a host figure too: timings.json keeps it
                web["why"] = "the faster or, within the timings' 95% intervals, tied and using less of its drift budgets, on the build host (timings.json)"
        return ProfileResult(self.name, self.profile, tuple(f.without_host_figures() for f in self.formats), web)

    def to_dict(self) -> dict:
        out = {
            "bundle": self.bundle,
            "formats": [f.to_dict() for f in self.formats],
            "name": self.name,
            "passed": self.passed,
            "profile": self.profile.to_dict(),
        }
        if self.web is not None:
            out["web"] = self.web
        return out

    @classmethod
    def from_dict(cls, data: dict) -> ProfileResult:
        profile = Profile.from_dict(data["profile"], f"profile {data['name']}")
        web = data.get("web")
        return cls(data["name"], profile, tuple(FormatResult.from_dict(f) for f in data["formats"]), web if isinstance(web, dict) else None)


@dataclass(frozen=True)
class BuildResult:
    """What `build` did. `passed` (exit code 0) when every profile got a bundle, else exit code 1.

    Attributes:
        out (str): the output folder.
        profiles (tuple[ProfileResult, ...]): sorted by profile name.
        candidates (tuple[Measured, ...]): every measured candidate, without its files.
        conversions (int), validations (int): how much work the build did.
        source (dict): the model's name, identity, input, parameters and MACs.
        cache (dict | None): what the candidate cache gave and took (`cache.CacheStats`), when one was used.
    """

    out: str
    profiles: tuple
    candidates: tuple
    conversions: int
    validations: int
    source: dict
    cache: dict | None = None

    @property
    def passed(self) -> bool:
        return all(p.passed for p in self.profiles)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else EXIT_FAILED

    def profile(self, name: str) -> ProfileResult:
        return next(p for p in self.profiles if p.name == name)

    def failure(self) -> str | None:
        """One line naming each profile without a bundle and its closest candidate's first failure, or None."""
        reasons = []
        for p in self.profiles:
            for f in p.formats:
                if f.chosen is None and (f.format not in WEB_FORMATS or p.web is None):  # a web alternative is not needed
                    row = f.closest
                    why = f"closest {row.candidate}: {row.verdict.failures[0]}" if row and row.verdict.failures else "no candidate could be measured"
                    reasons.append(f"profile {p.name} ({f.format}): no candidate within budget ({why})")
        return "; ".join(reasons) or None

    def to_dict(self) -> dict:
        return finite({
            "cache": self.cache,
            "candidates": [c.to_dict() for c in self.candidates],
            "conversions": self.conversions,
            "out": self.out,
            "passed": self.passed,
            "profiles": [p.to_dict() for p in self.profiles],
            "source": self.source,
            "validations": self.validations,
        })

    @classmethod
    def from_dict(cls, data: dict) -> BuildResult:
        return cls(
            data["out"], tuple(ProfileResult.from_dict(p) for p in data["profiles"]),
            tuple(Measured.from_dict(c) for c in data["candidates"]), data["conversions"], data["validations"],
            dict(data["source"]), data.get("cache"),
        )

    def to_text(self) -> str:
        shown = [(p, f, f.chosen or f.closest) for p in self.profiles for f in p.formats if (f.chosen or f.closest) is not None]
        # columns as wide as their longest entry (a pruned, clustered or mixed candidate's key runs past 22)
        name_w = max([18, *(len(p.name) for p, _, _ in shown)])
        key_w = max([22, *(len(row.candidate) for _, _, row in shown)])
        lines = [f"{'profile':<{name_w}} {'format':<8} {'chosen':<{key_w}} {'bytes':>9} {'gzip':>9} {'top-1':>7} {'latency':>12}  verdict"]
        for p, f, row in shown:
            ms = row.latency.ms if row.latency else None
            lat = f"{ms:.2f} ms" if ms is not None else "-"
            top1 = row.metric("top1_agreement")
            verdict = (p.set_aside(f.format) or ("ok" if f.chosen else "NO CANDIDATE: " + "; ".join(row.verdict.failures))) + row.verdict.note
            size, gzip = (f"{row.size_bytes:,}", f"{row.gzip_bytes:,}") if row.size_bytes else ("-", "-")
            lines.append(
                f"{p.name:<{name_w}} {f.format:<8} {row.candidate:<{key_w}} {size:>9} "
                f"{gzip:>9} {'-' if top1 is None else f'{top1:.4f}':>7} {lat:>12}  {verdict}"
            )
        lines += [f"warning: {w}" for w in self.source.get("warnings", [])]
        written = sum(p.passed for p in self.profiles)
        where = (f"{written} of {len(self.profiles)} bundles written to {self.out}" if written
                 else f"no bundle written; the reports are in {self.out}")
        reused = f" ({self.cache['hits']} candidates from the cache)" if self.cache and self.cache.get("hits") else ""
        lines.append(f"{self.conversions} conversions, {self.validations} validations{reused}; {where}")
        return "\n".join(lines)


def finite(value):
    """JSON has no infinity: an unbounded gap (an unusable candidate) becomes null; -0.0 becomes 0.0."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, float) and value == 0:
        return 0.0  # never -0.0 (a rounded tiny negative difference)
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value
