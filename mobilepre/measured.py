"""A measured candidate: one frozen shape from the runtime to the manifest.

A build converts a candidate, runs it in its runtime and times it; each step returns a new `Measured`
(`with_run`, `with_latency`). The cache stores it (`to_record`) and gives it back (`from_record`); the
judge reads it (`measurement`); the reports and `merge` write and read it (`to_dict`, `from_dict`). A
new measured figure is one field here and its producer.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from mobilepre.budgets import Measurement
from mobilepre.candidates import Candidate
from mobilepre.metrics import OutputDrift
from mobilepre.quantize.artifact import gzip_size
from mobilepre.formats import FORMATS, download_bytes


@dataclass(frozen=True)
class Measured:
    """What one candidate was measured to be.

    Attributes:
        candidate (Candidate).
        files (dict[str, bytes]): the artifact's files by name, metadata written (what ships); empty when
            read back from a report.
        size_bytes (int), gzip_bytes (int): of those files.
        sparsity (float): the share of zero weights reached.
        drift (tuple[OutputDrift, ...]): per output, in the model's output order; empty until validated.
        error (str | None): why the candidate cannot be used (conversion or runtime failure).
        mixed (dict | None): a mixed candidate's base precision, the layers raised (with their error and
            byte cost) and every verified step (`mobilepre.mixed`).
        peak_memory_bytes (int | None): the runtime's peak memory for loading and one inference.
        metadata (dict | None): the SDK metadata the artifact carries (`carries`), or why none (`note`).
        latency_ms (tuple[tuple[str, float], ...]): host median latency by runtime key (TFLite: its thread
            count; TF.js: "0" for Node's wasm, or the Chromium backend), sorted by key: host figures, kept
            out of byte-identical files.
        engine (str | None): what made the artifact, where a measurement chose it (`Artifact.engine`).
        engine_choice (dict | None): that measurement (`Artifact.engine_choice`).
        unsupported (bool): the error is the format's runtime refusing the model's ops (every mode of the
            format fails the same way).
        final (bool): the measurement would come out the same again (a validated candidate, or one the
            converter refused), so the cache may keep it; a failed run, a dead process or a failure before
            conversion is not final.
    """

    candidate: Candidate
    files: dict = field(default_factory=dict, repr=False)
    size_bytes: int = 0
    gzip_bytes: int = 0
    sparsity: float = 0.0
    drift: tuple = ()
    error: str | None = None
    mixed: dict | None = None
    peak_memory_bytes: int | None = None
    metadata: dict | None = None
    latency_ms: tuple = ()
    unsupported: bool = False
    final: bool = True
    engine: str | None = None
    engine_choice: dict | None = None

    @classmethod
    def failed(cls, candidate: Candidate, error: str, sparsity: float | None = None, unsupported: bool = False,
               final: bool = True) -> Measured:
        """A candidate that cannot be made or run: `error` says why."""
        return cls(candidate, sparsity=candidate.sparsity if sparsity is None else sparsity, error=str(error),
                   unsupported=unsupported, final=final)

    # ---------------------------------------------------------------------------------- steps

    def with_run(self, drift, peak_memory_bytes: int | None) -> Measured:
        """This candidate once run in its runtime: drift per output (`OutputDrift`s) and peak memory."""
        return dataclasses.replace(self, drift=tuple(drift), peak_memory_bytes=peak_memory_bytes)

    def with_run_error(self, error: str) -> Measured:
        """This candidate when its run failed (a failure that may not recur: not final)."""
        return dataclasses.replace(self, error=str(error), final=False)

    def with_latency(self, key, median_ms: float) -> Measured:
        """This candidate with a host median latency for runtime `key` (threads, or a TF.js runtime)."""
        latency = dict(self.latency_ms)
        latency[str(key)] = float(median_ms)
        return dataclasses.replace(self, latency_ms=tuple(sorted(latency.items())))

    # ---------------------------------------------------------------------------------- reading

    @property
    def key(self) -> str:
        return self.candidate.key

    def drift_dicts(self) -> tuple:
        """Per output, its name, kind and metrics: what judges, reports and manifests hold."""
        return tuple(d.to_dict() for d in self.drift)

    def measurement(self, labels: bool) -> Measurement:
        """What judging needs of this candidate (TF.js peak memory counts tensor bytes, exact; LiteRT's is
        the host's resident memory)."""
        return Measurement(self.size_bytes, self.gzip_bytes, self.drift_dicts(), labels, self.error,
                           peak_memory_bytes=self.peak_memory_bytes, peak_memory_source=FORMATS[self.candidate.fmt].memory_source,
                           download_bytes=None if self.error else download_bytes(self.candidate.fmt, self.gzip_bytes))

    def sha256(self) -> dict:
        return {name: hashlib.sha256(data).hexdigest() for name, data in sorted(self.files.items())}

    # ---------------------------------------------------------------------------------- the cache

    def to_record(self) -> dict:
        """The cache's record of this candidate (its files are stored beside it; latencies by host apart)."""
        return {
            "drift": list(self.drift_dicts()), "error": self.error, "gzip_bytes": self.gzip_bytes, "metadata": self.metadata,
            "mixed": self.mixed, "peak_memory_bytes": self.peak_memory_bytes, "size_bytes": self.size_bytes,
            "sparsity": self.sparsity, "unsupported": self.unsupported,
            **({"engine": self.engine, "engine_choice": self.engine_choice} if self.engine else {}),
        }

    @classmethod
    def from_record(cls, candidate: Candidate, record: dict, files: dict) -> Measured:
        """A cache entry as the candidate it recorded; KeyError, TypeError or ValueError when it is not one."""
        if not isinstance(record["drift"], list):
            raise TypeError("drift")
        if record["error"] is not None and not isinstance(record["error"], str):
            raise TypeError("error")
        if record["error"] is None and not files.keys() >= {Path(FORMATS[candidate.fmt].artifact).name}:
            raise ValueError("files")
        peak = record["peak_memory_bytes"]
        if record["error"] is None and (record["size_bytes"] != sum(len(d) for d in files.values())
                                        or record["gzip_bytes"] != sum(gzip_size(d) for d in files.values())):
            raise ValueError("the recorded sizes are not those of the files")
        return cls(candidate, dict(files), int(_number(record["size_bytes"])), int(_number(record["gzip_bytes"])),
                   _number(record["sparsity"]), tuple(OutputDrift.from_dict(d) for d in record["drift"]), record["error"],
                   record["mixed"], None if peak is None else int(_number(peak)), record["metadata"],
                   unsupported=bool(record.get("unsupported")), engine=_text(record.get("engine")),
                   engine_choice=_mapping(record.get("engine_choice")))

    # ---------------------------------------------------------------------------------- reports

    def to_dict(self) -> dict:
        """The candidate as timings.json lists it (no files; latencies rounded to 0.1 us)."""
        return {
            "bytes": self.size_bytes, "candidate": self.key, "drift": [dict(d) for d in self.drift_dicts()], "error": self.error,
            "gzip_bytes": self.gzip_bytes, "latency_ms": {k: round(ms, 4) for k, ms in self.latency_ms},
            "peak_memory_bytes": self.peak_memory_bytes, "sparsity": round(self.sparsity, 6),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Measured:
        """A candidate as a report listed it (`to_dict`): no files, the figures as written."""
        return cls(Candidate.from_key(data["candidate"]), {}, data["bytes"], data["gzip_bytes"], data["sparsity"],
                   tuple(OutputDrift.from_dict(d) for d in data["drift"]), data["error"],
                   peak_memory_bytes=data.get("peak_memory_bytes"),
                   latency_ms=tuple(sorted((str(k), float(v)) for k, v in dict(data["latency_ms"]).items())))


def _text(value) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{value!r} is not text")
    return value


def _mapping(value) -> dict | None:
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"{value!r} is not a mapping")
    return value


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{value!r} is not a number")
    return value
