"""What a build found, as typed values: each candidate judged (`Trial`), each profile's search per format
(`FormatResult`), each profile (`ProfileResult`) and the build (`BuildResult`), which lists every
measured candidate as its one shape, `measured.Measured`. The search makes them, the build writes them, and every reader of a build output
(check, merge, copy, --baseline) reads them back with `from_dict`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mobilepre.budgets import LatencyFigure, Verdict
from mobilepre.errors import EXIT_FAILED
from mobilepre.formats import FORMATS
from mobilepre.measured import Measured
from mobilepre.profiles import Profile

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

    @property
    def passed(self) -> bool:
        return self.verdict.passed

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
            self.metadata, self.engine, self.engine_choice,
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
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Trial:
        latency = None if data["latency"] is None else LatencyFigure.from_dict(data["latency"])
        return cls(
            data["candidate"], data["format"], data["quantization"], data["io_type"], data["sparsity"], data["bytes"],
            data["gzip_bytes"], tuple(dict(d) for d in data["drift"]), latency, Verdict.from_dict(data["verdict"]),
            data.get("mixed"), data.get("clusters", 0), data.get("qat"), data.get("metadata"), data.get("engine"),
            data.get("engine_choice"),
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
            return min(passed, key=lambda t: (t.gzip_bytes, t.size_bytes) if FORMATS[t.format].served_compressed else (t.size_bytes, t.gzip_bytes))
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


@dataclass(frozen=True)
class ProfileResult:
    """One profile's outcome: its search per format, and the bundle written when every format found one.

    Attributes:
        name (str): the profile's name.
        profile (Profile): the profile as the build read it.
        formats (tuple[FormatResult, ...]): per format the profile lists.
    """

    name: str
    profile: Profile
    formats: tuple

    @property
    def passed(self) -> bool:
        return all(f.chosen is not None for f in self.formats)

    @property
    def bundle(self) -> str | None:
        """The bundle's folder name under the output, when one was written."""
        return self.name if self.passed else None

    def format(self, fmt: str) -> FormatResult:
        return next(f for f in self.formats if f.format == fmt)

    def to_dict(self) -> dict:
        return {
            "bundle": self.bundle,
            "formats": [f.to_dict() for f in self.formats],
            "name": self.name,
            "passed": self.passed,
            "profile": self.profile.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ProfileResult:
        profile = Profile.from_dict(data["profile"], f"profile {data['name']}")
        return cls(data["name"], profile, tuple(FormatResult.from_dict(f) for f in data["formats"]))


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
                if f.chosen is None:
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
        lines = [f"{'profile':<{name_w}} {'format':<7} {'chosen':<{key_w}} {'bytes':>9} {'gzip':>9} {'top-1':>7} {'latency':>12}  verdict"]
        for p, f, row in shown:
            ms = row.latency.ms if row.latency else None
            lat = f"{ms:.2f} ms" if ms is not None else "-"
            top1 = row.metric("top1_agreement")
            verdict = ("ok" if f.chosen else "NO CANDIDATE: " + "; ".join(row.verdict.failures)) + row.verdict.unjudged_note
            size, gzip = (f"{row.size_bytes:,}", f"{row.gzip_bytes:,}") if row.size_bytes else ("-", "-")
            lines.append(
                f"{p.name:<{name_w}} {f.format:<7} {row.candidate:<{key_w}} {size:>9} "
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
