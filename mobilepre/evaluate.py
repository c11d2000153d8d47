"""Candidates measured: each converted and validated at most once per build, shared by every profile."""

from __future__ import annotations

import hashlib
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mobilepre import quantize
from mobilepre.budgets import Measurement
from mobilepre.candidates import Candidate
from mobilepre.errors import MobilepreError
from mobilepre.mixed import find_mixed
from mobilepre.quantize.export import export_saved_model
from mobilepre.quantize.pruning import PruneSettings, prune
from mobilepre.quantize.settings import Format
from mobilepre.validate import compare, reference_outputs, run_candidate


@dataclass
class Measured:
    """What a candidate was measured to be.

    Attributes:
        candidate (Candidate).
        files (dict[str, bytes]): the artifact's files by name.
        size_bytes (int), gzip_bytes (int).
        sparsity (float): the share of zero weights reached.
        drift (list[dict]): per output, its name, kind and metrics (`validate.OutputDrift.to_dict()`).
        latency (dict[int, runtimes.Latency]): host latency by thread count (0 for TF.js).
        error (str | None): conversion or runtime failure: the candidate cannot be chosen.
        mixed (dict | None): for a mixed candidate, the base precision, the layers raised (with their
            error and byte cost) and every verified step (`mobilepre.mixed.find_mixed`).
        peak_memory_bytes (int | None): the runtime's peak memory for loading and one inference.
    """

    candidate: Candidate
    files: dict
    size_bytes: int
    gzip_bytes: int
    sparsity: float
    drift: dict
    latency: dict = field(default_factory=dict)
    error: str | None = None
    mixed: dict | None = None
    peak_memory_bytes: int | None = None

    def measurement(self, labels: bool) -> Measurement:
        """What judging needs of this candidate."""
        source = "measured" if self.candidate.fmt is Format.TFJS else "host"
        return Measurement(self.size_bytes, self.gzip_bytes, tuple(self.drift), labels, self.error,
                           peak_memory_bytes=self.peak_memory_bytes, peak_memory_source=source)

    def sha256(self) -> dict:
        return {name: hashlib.sha256(data).hexdigest() for name, data in sorted(self.files.items())}


class Evaluator:
    """Converts and validates candidates on demand, each once; prunes each sparsity level once."""

    def __init__(self, source, calibration, validation, labels, workdir: Path, progress=None, prune_epochs: int = 30,
                 outputs=None, reference=None, profiles=()):
        self.source = source
        self.outputs = tuple(outputs or source.outputs)  # OutputSpecs: each output's name and kind
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
        self._reference = reference  # the float model's outputs on the validation images, computed once
        self._lock = threading.Lock()
        self._unsupported: dict = {}  # format -> why its runtime cannot run this model (recurs in every mode)
        self._cannot_prune: str | None = None  # why pruning cannot work on this model (recurs at every sparsity)
        self.profiles = {p.name: p for p in profiles}  # whose drift budgets a mixed candidate is found for

    def reference(self) -> list:
        if self._reference is None:
            self._reference = reference_outputs(self.source, self.validation)[0]
        return self._reference

    def variant(self, sparsity: float):
        """(Keras model, SavedModel export, reached sparsity) of the model pruned to `sparsity`, made once."""
        if sparsity not in self._models:
            model, reached = self.source.model, 0.0
            if sparsity and self._cannot_prune:  # said once: every sparsity fails the same way
                raise quantize.CannotPruneError(self._cannot_prune)
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
        for candidate in sorted(set(candidates)):
            if candidate.mode is quantize.Mode.MIXED and candidate not in self.measured:
                if candidate.fmt in self._unsupported:
                    self.measured[candidate] = self.failed(candidate, self._unsupported[candidate.fmt])
                else:
                    self.measured[candidate] = find_mixed(self, candidate, self.profiles[candidate.target])
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
        if candidate.fmt in self._unsupported:  # the same ops fail every mode: do not convert again
            return Measured(candidate, {}, 0, 0, candidate.sparsity, [], error=self._unsupported[candidate.fmt])
        try:
            model, directory, reached = self.variant(candidate.sparsity)
        except quantize.CannotPruneError as error:
            self._cannot_prune = str(error)
            return Measured(candidate, {}, 0, 0, candidate.sparsity, [], error=str(error))
        except quantize.QuantizeError as error:  # a failed candidate, not a failed build
            return Measured(candidate, {}, 0, 0, candidate.sparsity, [], error=str(error))
        settings = quantize.QuantizationSettings(candidate.fmt, candidate.mode, io_type=candidate.io_type)
        try:
            artifact = quantize.convert(model, settings, self.calibration, saved_model_dir=directory, sparsity=reached)
        except quantize.UnsupportedOpsError as error:
            self._unsupported[candidate.fmt] = str(error)
            self.progress(f"{candidate.fmt}: {error}; no {candidate.fmt} mode can be built")
            return Measured(candidate, {}, 0, 0, reached, [], error=str(error))
        except quantize.QuantizeError as error:
            return Measured(candidate, {}, 0, 0, reached, [], error=str(error))
        self.conversions += 1
        return Measured(candidate, artifact.files, artifact.size_bytes, artifact.gzip_bytes, reached, [])

    def failed(self, candidate: Candidate, error: str) -> Measured:
        """A candidate that cannot be made: `error` says why."""
        return Measured(candidate, {}, 0, 0, candidate.sparsity, [], error=error)

    def measure_plan(self, candidate: Candidate, plan) -> Measured:
        """One step of a mixed search: `candidate` converted with per-layer precisions `plan` and validated."""
        model, directory, _ = self.variant(0.0)
        settings = quantize.QuantizationSettings(candidate.fmt, quantize.Mode.MIXED, mixed=plan)
        try:
            artifact = quantize.convert(model, settings, self.calibration, saved_model_dir=directory)
        except quantize.QuantizeError as error:
            return self.failed(candidate, str(error))
        self.conversions += 1
        measured = Measured(candidate, artifact.files, artifact.size_bytes, artifact.gzip_bytes, 0.0, [])
        self._validate(measured)
        return measured

    def _validate(self, measured: Measured) -> None:
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            path = _write(measured, Path(tmp))
            try:
                _, run = run_candidate(path, self.validation, output_names=[spec.name for spec in self.outputs])
            except MobilepreError as error:
                measured.error = error.message
                return
        with self._lock:
            self.validations += 1
        measured.drift = [d.to_dict() for d in compare(self.reference(), run, self.labels, self.outputs)]
        measured.peak_memory_bytes = run.peak_memory_bytes

    def host_latency(self, measured: Measured, threads: int, runs: int = 50):
        """Single-image latency on this host, measured once per candidate and thread count."""
        key = threads if measured.candidate.fmt is Format.TFLITE else 0
        if key not in measured.latency:
            with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
                path = _write(measured, Path(tmp))
                _, run = run_candidate(path, self.validation[:1], threads=max(1, threads), latency_runs=runs)
            measured.latency[key] = run.latency
        return measured.latency[key]


def _write(measured: Measured, folder: Path) -> Path:
    for name, data in measured.files.items():
        (folder / name).write_bytes(data)
    return folder / "model.tflite" if measured.candidate.fmt is Format.TFLITE else folder
