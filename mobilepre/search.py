"""Candidates and their measurements: each converted and validated at most once per build, shared by profiles."""

from __future__ import annotations

import json
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path


from mobilepre.errors import MobilepreError

# Sparsity levels tried after plain int8 (and TF.js uint8), up to a profile's max_sparsity.
SPARSITY_STEPS = (0.25, 0.5, 0.75, 0.9)


@dataclass(frozen=True, order=True)
class Candidate:
    """One artifact a build may choose: a format, a mode, an int8 I/O type and a pruning sparsity."""

    fmt: str
    mode: str
    io_type: str = "float32"
    sparsity: float = 0.0

    @property
    def key(self) -> str:
        parts = [self.fmt, self.mode]
        if self.mode == "int8" and self.io_type != "float32":
            parts.append(f"{self.io_type}io")
        if self.sparsity:
            parts.append(f"s{round(self.sparsity * 100):02d}")
        return "-".join(parts)


def candidates_for(profile) -> dict[str, list[Candidate]]:
    """Per format, the candidates a profile allows, highest fidelity first: modes, then growing sparsity."""
    out = {}
    for fmt in profile.formats:
        modes = profile.modes_for(fmt)
        io = profile.io_type if fmt == "tflite" else "float32"
        found = [Candidate(fmt, mode, io if mode == "int8" else "float32") for mode in modes]
        lowest = modes[-1]
        if lowest in ("int8", "uint8") and profile.max_sparsity > 0:
            levels = sorted({s for s in SPARSITY_STEPS if s < profile.max_sparsity} | {profile.max_sparsity})
            found += [Candidate(fmt, lowest, io if lowest == "int8" else "float32", s) for s in levels]
        out[fmt] = found
    return out


@dataclass
class Measured:
    """What a candidate was measured to be. `drift` is the worst value of each metric across outputs."""

    candidate: Candidate
    files: dict  # name -> bytes
    size_bytes: int
    gzip_bytes: int
    sparsity: float
    drift: dict
    latency: dict = field(default_factory=dict)  # threads (or 0 for TF.js) -> runtimes.Latency
    error: str | None = None  # conversion or runtime failure: the candidate cannot be chosen

    def sha256(self) -> dict:
        import hashlib

        return {name: hashlib.sha256(data).hexdigest() for name, data in sorted(self.files.items())}


def parse_device_timings(path: Path) -> dict[str, float]:
    """`--device-timings FILE`: JSON mapping candidate keys to milliseconds or to the text TFLite's
    `benchmark_model` printed on the device ("Inference timings in us: ... Inference (avg): 1234.5")."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MobilepreError(f"--device-timings {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MobilepreError(f"--device-timings {path} is not a JSON file: {error}") from None
    if not isinstance(document, dict):
        raise MobilepreError(f"--device-timings {path}: expected an object of candidate key -> ms or benchmark_model output")
    timings = {}
    for key, value in document.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            timings[key] = float(value)
            continue
        if isinstance(value, str):
            match = re.search(r"Inference \(avg\):\s*([0-9.eE+]+)", value)
            if match:
                timings[key] = float(match.group(1)) / 1000.0  # benchmark_model prints microseconds
                continue
        raise MobilepreError(
            f"--device-timings {path}: {key!r} is neither a positive number of ms nor benchmark_model output with 'Inference (avg)'"
        )
    return timings


class Evaluator:
    """Converts and validates candidates on demand, each once; prunes each sparsity level once."""

    def __init__(self, source, calibration, validation, labels, workdir: Path, progress=None, prune_epochs: int = 30):
        self.source = source
        self.calibration = calibration
        self.validation = validation
        self.labels = labels
        self.workdir = Path(workdir)
        self.progress = progress or (lambda message: None)
        self.prune_epochs = prune_epochs
        self.measured: dict[Candidate, Measured] = {}
        self.conversions = 0
        self.validations = 0
        self._models: dict[float, tuple] = {}  # sparsity -> (keras model, saved model dir, reached sparsity)
        self._reference = None
        self._lock = threading.Lock()

    def reference(self) -> list:
        if self._reference is None:
            from mobilepre.validate import reference_outputs

            self._reference = reference_outputs(self.source, self.validation)[0]
        return self._reference

    def _variant(self, sparsity: float):
        if sparsity not in self._models:
            from mobilepre.quantize.export import export_saved_model
            from mobilepre.quantize.pruning import PruneSettings, prune

            model, reached = self.source.model, 0.0
            if sparsity:
                self.progress(f"pruning to {sparsity:.0%} and fine-tuning by distillation")
                result = prune(model, PruneSettings(sparsity, epochs=self.prune_epochs), self.calibration)
                model, reached = result.model, result.sparsity
            directory = export_saved_model(model, self.workdir / f"saved_model_s{round(sparsity * 100):02d}", self.source.input_shape)
            self._models[sparsity] = (model, directory, reached)
        return self._models[sparsity]

    def measure(self, candidate: Candidate) -> Measured:
        return self.measure_many([candidate])[candidate]

    def measure_many(self, candidates, jobs: int = 1) -> dict:
        """Measure the candidates not measured yet: convert one by one (the converters are not
        thread-safe), then validate `jobs` at once (LiteRT and the Node processes run in parallel)."""
        from concurrent.futures import ThreadPoolExecutor

        new = [self._convert(c) for c in sorted(set(candidates)) if c not in self.measured]
        ready = [m for m in new if m.error is None]
        if jobs > 1 and len(ready) > 1:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                list(pool.map(self._validate, ready))
        else:
            for measured in ready:
                self._validate(measured)
        for measured in new:
            self.measured[measured.candidate] = measured
        return {c: self.measured[c] for c in candidates}

    def _convert(self, candidate: Candidate) -> Measured:
        from mobilepre import quantize

        try:
            model, directory, reached = self._variant(candidate.sparsity)
        except quantize.QuantizeError as error:
            return Measured(candidate, {}, 0, 0, candidate.sparsity, {}, error=str(error))
        settings = quantize.QuantizationSettings(candidate.fmt, candidate.mode, io_type=candidate.io_type)
        try:
            artifact = quantize.convert(model, settings, self.calibration, saved_model_dir=directory, sparsity=reached)
        except quantize.QuantizeError as error:
            return Measured(candidate, {}, 0, 0, reached, {}, error=str(error))
        self.conversions += 1
        return Measured(candidate, artifact.files, artifact.size_bytes, artifact.gzip_bytes, reached, {})

    def _validate(self, measured: Measured) -> None:
        from mobilepre.validate import compare, run_candidate, worst

        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            path = _write(measured, Path(tmp))
            try:
                _, run = run_candidate(path, self.validation)
            except MobilepreError as error:
                measured.error = error.message
                return
        with self._lock:
            self.validations += 1
        measured.drift = worst(compare(self.reference(), run, self.labels))

    def host_latency(self, measured: Measured, threads: int, runs: int = 50):
        """Single-image latency on this host, measured once per candidate and thread count."""
        key = threads if measured.candidate.fmt == "tflite" else 0
        if key not in measured.latency:
            from mobilepre.validate import run_candidate

            with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
                path = _write(measured, Path(tmp))
                _, run = run_candidate(path, self.validation[:1], threads=max(1, threads), latency_runs=runs)
            measured.latency[key] = run.latency
        return measured.latency[key]


def _write(measured: Measured, folder: Path) -> Path:
    for name, data in measured.files.items():
        (folder / name).write_bytes(data)
    return folder / "model.tflite" if measured.candidate.fmt == "tflite" else folder


def relative_gap(value: float, limit: float, kind: str) -> float:
    """How far a value is past its limit, as a fraction of the limit (0 when within)."""
    if kind == "max":
        return max(0.0, (value - limit) / limit) if limit else (0.0 if value <= 0 else float("inf"))
    return max(0.0, (limit - value) / limit) if limit else 0.0

