"""Candidates measured: each converted and validated at most once per build, shared by every profile."""

from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
import tempfile
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobilepre import quantize
from mobilepre.budgets import Measurement
from mobilepre.cache import CandidateCache
from mobilepre.candidates import Candidate
from mobilepre.errors import MobilepreError
from mobilepre.keys import BuildContext, candidate_key
from mobilepre.mixed import find_mixed
from mobilepre.progress import as_reporter
from mobilepre.quantize.checks import check_weights
from mobilepre.quantize.export import export_saved_model
from mobilepre.quantize.pruning import PruneSettings, prune
from mobilepre.quantize.settings import Format
from mobilepre.runtimes import ImagesOnDisk, Latency
from mobilepre.sdk_metadata import tflite_with_metadata, tfjs_with_metadata
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
        metadata (dict | None): the SDK metadata the artifact carries (`carries`), or why none (`note`).
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
    metadata: dict | None = None

    def measurement(self, labels: bool) -> Measurement:
        """What judging needs of this candidate."""
        source = "measured" if self.candidate.fmt is Format.TFJS else "host"
        return Measurement(self.size_bytes, self.gzip_bytes, tuple(self.drift), labels, self.error,
                           peak_memory_bytes=self.peak_memory_bytes, peak_memory_source=source)

    def sha256(self) -> dict:
        return {name: hashlib.sha256(data).hexdigest() for name, data in sorted(self.files.items())}


# Conversions go to worker processes only for models at least this large: a worker imports TensorFlow
# once (about 5 s), which the demo's (43k parameters) sub-second conversions never earn back (measured:
# a --jobs 2 demo build took 1.06x as long with workers), while MobileNetV2's (3.5M) do (0.95x).
WORKER_MIN_PARAMETERS = 1_000_000


class Evaluator:
    """Converts and validates candidates on demand, each once; prunes each sparsity level once."""

    def __init__(self, source, calibration, validation, labels, workdir: Path, progress=None, prune_epochs: int = 30,
                 outputs=None, reference=None, profiles=(), sdk=None, shard_size: int = 4 * 1024 * 1024,
                 cache: CandidateCache | None = None, context: BuildContext | None = None):
        self.source = source
        self.cache = cache  # measured candidates from earlier builds, keyed by content (`candidate_key`)
        self.context = context  # what every candidate's cache key holds: model, data, toolchain... (`keys`)
        self._cached: dict = {}  # candidate -> (its cache key, the entry it came from, or None when this build stored it)
        self.shard_size = shard_size  # TF.js weight shard bytes
        self.sdk = sdk  # SdkContract: the metadata every artifact carries, written before it is validated
        self.outputs = tuple(outputs or source.outputs)  # OutputSpecs: each output's name and kind
        self.calibration = calibration
        self.validation = validation
        self.labels = labels
        self.workdir = Path(workdir)
        self.progress = as_reporter(progress)
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
        self._pool = None  # conversion worker processes, with --jobs > 1
        self.rankings: dict = {}  # (format, base precision) -> layers by measured error, for mixed searches
        self._images = None  # the validation images on disk (`_validation_on_disk`)
        self._converter_failures: set = set()  # candidates the converter refused (the same again next time)

    def reference(self) -> list:
        if self._reference is None:
            self._reference = reference_outputs(self.source, self.validation)[0]
        return self._reference

    def variant(self, sparsity: float, clusters: int = 0, qat: bool = False):
        """(Keras model, SavedModel export, reached sparsity) of the model pruned to `sparsity`, clustered
        to `clusters` shared values per kernel or fine-tuned for int8 (`qat`), made once."""
        key = (sparsity, clusters, qat)
        if key not in self._models:
            model, reached = self.source.model, 0.0
            if (sparsity or clusters or qat) and self._cannot_prune:  # said once: every level fails the same way
                raise quantize.CannotPruneError(self._cannot_prune)
            if sparsity:
                self.progress(f"pruning to {sparsity:.0%} and fine-tuning by distillation")
                result = prune(model, PruneSettings(sparsity, epochs=self.prune_epochs), self.calibration)
                model, reached = result.model, result.sparsity
            elif clusters:
                self.progress(f"clustering to {clusters} shared values per kernel and fine-tuning by distillation")
                model = quantize.cluster(model, quantize.ClusterSettings(clusters, epochs=self.prune_epochs), self.calibration).model
            elif qat:
                self.progress("fine-tuning for int8 with fake-quantized weights and activations (quantization-aware)")
                model = quantize.quantization_aware(model, quantize.QATSettings(), self.calibration).model
            name = f"saved_model_s{round(sparsity * 100):02d}" + (f"_c{clusters}" if clusters else "") + ("_qat" if qat else "")
            directory = export_saved_model(model, self.workdir / name, self.source.input_shape)
            self._models[key] = (model, directory, reached)
        return self._models[key]

    def measure(self, candidate: Candidate) -> Measured:
        return self.measure_many([candidate])[candidate]

    def measure_many(self, candidates, jobs: int = 1) -> dict:
        """Measure the candidates not measured yet: convert them (with `jobs` > 1, for a model of at
        least `WORKER_MIN_PARAMETERS`, in that many worker processes: the converters are not
        thread-safe, processes are), then validate `jobs` at once (LiteRT and Node processes in parallel)."""
        for candidate in sorted(set(candidates)):
            if candidate not in self.measured and self.cache is not None:
                self._from_cache(candidate)
        for candidate in sorted(set(candidates)):
            if candidate.mode is quantize.Mode.MIXED and candidate not in self.measured:
                if candidate.fmt in self._unsupported:
                    self.measured[candidate] = self.failed(candidate, self._unsupported[candidate.fmt])
                else:
                    self.measured[candidate] = find_mixed(self, candidate, self.profiles[candidate.target])
                    self._to_cache(self.measured[candidate])
        pending = [c for c in sorted(set(candidates)) if c not in self.measured]
        in_workers = jobs > 1 and len(pending) > 1 and (self.source.parameters or 0) >= WORKER_MIN_PARAMETERS
        new = self._convert_in_workers(pending, jobs) if in_workers else [self._convert(c) for c in pending]
        ready = [m for m in new if m.error is None]
        if jobs > 1 and len(ready) > 1:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                list(pool.map(self._validate, ready))
        else:
            for measured in ready:
                self._validate(measured)
        for measured in new:
            self.measured[measured.candidate] = measured
            self._to_cache(measured)
        return {c: self.measured[c] for c in candidates}

    # ---------------------------------------------------------------------------------- the cache

    def candidate_key(self, candidate: Candidate) -> str:
        """The cache key of `candidate` in this build (`keys.candidate_key`)."""
        return candidate_key(self.context, candidate, self.shard_size, self.prune_epochs, self.profiles.get(candidate.target))

    def _from_cache(self, candidate: Candidate) -> None:
        key = self.candidate_key(candidate)
        entry = self.cache.get(key)
        if entry is None:
            return
        try:
            measured = _measured_from(candidate, entry)
        except (KeyError, TypeError, ValueError, AttributeError):  # an entry this version cannot read: measure again
            self.cache.discard(key)
            return
        r = entry.record
        if r.get("unsupported") and candidate.fmt not in self._unsupported:
            self._unsupported[candidate.fmt] = r["error"]
        self._cached[candidate] = (key, entry)
        self.measured[candidate] = measured
        self.progress(f"{candidate.key}: from the cache")

    def _to_cache(self, measured: Measured) -> None:
        """Store a candidate whose measurement would come out the same again: one validated, or one whose
        conversion failed in the converter (not one whose process died or whose run failed, which may not recur)."""
        candidate = measured.candidate
        if self.cache is None or candidate in self._cached:
            return
        if measured.error is not None and candidate not in self._converter_failures:
            return
        key = self.candidate_key(candidate)
        record = {
            "drift": measured.drift, "error": measured.error, "gzip_bytes": measured.gzip_bytes, "metadata": measured.metadata,
            "mixed": measured.mixed, "peak_memory_bytes": measured.peak_memory_bytes, "size_bytes": measured.size_bytes,
            "sparsity": measured.sparsity, "unsupported": self._unsupported.get(candidate.fmt) == measured.error and measured.error is not None,
        }
        self.cache.put(key, record, measured.files, {"candidate": candidate.key, "model": self.source.identity})
        self._cached[candidate] = (key, None)

    def _prepare(self, candidate: Candidate):
        """(settings, SavedModel export, reached sparsity) to convert `candidate` from, or the `Measured`
        failure that makes converting pointless."""
        if candidate.fmt in self._unsupported:  # the same ops fail every mode: do not convert again
            return self.failed(candidate, self._unsupported[candidate.fmt])
        try:
            model, directory, reached = self.variant(candidate.sparsity, candidate.clusters, candidate.qat)
            settings = quantize.QuantizationSettings(candidate.fmt, candidate.mode, io_type=candidate.io_type, shard_size_bytes=self.shard_size)
            check_weights(model, settings.mode)
        except quantize.CannotPruneError as error:
            self._cannot_prune = str(error)
            return self.failed(candidate, str(error))
        except quantize.QuantizeError as error:  # a failed candidate, not a failed build
            return self.failed(candidate, str(error))
        return settings, directory, reached

    def _converted(self, candidate: Candidate, reached: float, artifact=None, error: Exception | None = None, died: bool = False) -> Measured:
        if error is not None and not died:
            self._converter_failures.add(candidate)
        if isinstance(error, quantize.UnsupportedOpsError):
            if candidate.fmt not in self._unsupported:
                self._unsupported[candidate.fmt] = str(error)
                self.progress(f"{candidate.fmt}: {error}; no {candidate.fmt} mode can be built")
            return Measured(candidate, {}, 0, 0, reached, [], error=str(error))
        if error is not None:
            return Measured(candidate, {}, 0, 0, reached, [], error=str(error))
        self.conversions += 1
        return self._measured(candidate, artifact, reached)

    def _measured(self, candidate: Candidate, artifact, sparsity: float) -> Measured:
        """A converted artifact with the SDK metadata written into its files, before it is validated
        (what is validated is what ships: its size and gzip size count the metadata)."""
        metadata = None
        if self.sdk is not None:
            files = dict(artifact.files)
            if candidate.fmt is Format.TFLITE:
                written = tflite_with_metadata(files["model.tflite"], self.sdk)
                files["model.tflite"] = written.data
                metadata = {"carries": written.carries, "note": written.note}
            else:
                files["model.json"] = tfjs_with_metadata(files["model.json"], self.sdk)
                metadata = {"carries": ["userDefinedMetadata: I/O contract" + (" and class names" if self.sdk.class_names else "")], "note": None}
            artifact = dataclasses.replace(artifact, files=files)
        return Measured(candidate, artifact.files, artifact.size_bytes, artifact.gzip_bytes, sparsity, [], metadata=metadata)

    def _convert(self, candidate: Candidate) -> Measured:
        prepared = self._prepare(candidate)
        if isinstance(prepared, Measured):
            return prepared
        settings, directory, reached = prepared
        self.progress.stage(f"converting {candidate.key}")
        try:
            artifact = quantize.convert_saved_model(directory, settings, self.calibration, reached)
        except quantize.QuantizeError as error:
            return self._converted(candidate, reached, error=error)
        return self._converted(candidate, reached, artifact)

    def _convert_in_workers(self, candidates, jobs: int) -> list:
        """Convert `candidates` in `jobs` worker processes (each imports TensorFlow once per build and
        converts from the SavedModel export on disk; calibration images are shared through a file)."""
        prepared = {c: self._prepare(c) for c in candidates}
        todo = [c for c in candidates if not isinstance(prepared[c], Measured)]
        if len(todo) < 2:
            return [prepared[c] if isinstance(prepared[c], Measured) else self._convert(c) for c in candidates]
        pool = self._workers(jobs)
        self.progress.stage(f"converting {', '.join(c.key for c in todo)} in {jobs} processes")
        futures = {c: pool.submit(convert_worker, str(prepared[c][1]), prepared[c][0], self._calibration_file(), prepared[c][2]) for c in todo}
        out = []
        for candidate in candidates:
            if candidate not in futures:
                out.append(prepared[candidate])
                continue
            reached = prepared[candidate][2]
            try:
                out.append(self._converted(candidate, reached, futures[candidate].result()))
            except quantize.QuantizeError as error:
                out.append(self._converted(candidate, reached, error=error))
            except BrokenProcessPool:
                self._pool = None  # a converter crashed its process: this candidate fails, the next pool is fresh
                out.append(self._converted(candidate, reached, error=quantize.QuantizeError(f"{candidate.key}: the converter's process died"), died=True))
        return out

    def _workers(self, jobs: int):
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def _calibration_file(self) -> str | None:
        if self.calibration is None:
            return None
        path = self.workdir / "calibration.npy"
        if not path.exists():
            np.save(path, self.calibration, allow_pickle=False)
        return str(path)

    def close(self) -> None:
        """Stop the conversion workers, if any, at once (a build that is interrupted must not wait for
        a conversion nobody will use)."""
        if self._pool is not None:
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def failed(self, candidate: Candidate, error: str) -> Measured:
        """A candidate that cannot be made: `error` says why."""
        return Measured(candidate, {}, 0, 0, candidate.sparsity, [], error=error)

    def measure_plan(self, candidate: Candidate, plan) -> Measured:
        """One step of a mixed search: `candidate` converted with per-layer precisions `plan` and validated."""
        model, directory, _ = self.variant(0.0)
        settings = quantize.QuantizationSettings(candidate.fmt, quantize.Mode.MIXED, mixed=plan, shard_size_bytes=self.shard_size)
        try:
            artifact = quantize.convert(model, settings, self.calibration, saved_model_dir=directory)
        except quantize.QuantizeError as error:
            return self.failed(candidate, str(error))
        self.conversions += 1
        measured = self._measured(candidate, artifact, 0.0)
        self._validate(measured)
        return measured

    def _validate(self, measured: Measured) -> None:
        runtime = "LiteRT" if measured.candidate.fmt is Format.TFLITE else "TF.js (Node, wasm)"
        self.progress.stage(f"validating {measured.candidate.key} in {runtime} on {len(self.validation)} images")
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            path = _write(measured, Path(tmp))
            try:
                _, run = run_candidate(path, self._validation_on_disk(), output_names=[spec.name for spec in self.outputs], where=measured.candidate.key)
            except MobilepreError as error:
                measured.error = error.message
                return
        with self._lock:
            self.validations += 1
        measured.drift = [d.to_dict() for d in compare(self.reference(), run, self.labels, self.outputs)]
        measured.peak_memory_bytes = run.peak_memory_bytes

    def _validation_on_disk(self) -> ImagesOnDisk:
        """The validation images, written once per build for every candidate's run (not once per run)."""
        with self._lock:
            if self._images is None:
                self._images = ImagesOnDisk.write(self.validation, self.workdir, "validation")
        return self._images

    def host_latency(self, measured: Measured, threads: int, runs: int = 50, browser: str | None = None):
        """Single-image latency on this host, measured once per candidate and thread count (TF.js: per
        runtime, Node's wasm or Chromium's `browser` backend, through the bundle's own page)."""
        key = threads if measured.candidate.fmt is Format.TFLITE else (browser or 0)
        cached = self._cached.get(measured.candidate) if self.cache is not None and self.cache.latency else None
        slot = f"{measured.candidate.fmt}:{key}:{runs}"
        if key not in measured.latency and cached is not None and cached[1] is not None:
            found = self.cache.latency_for(cached[1], slot)
            try:
                if found is not None:
                    measured.latency[key] = Latency.from_dict(found)
            except (KeyError, TypeError):  # unreadable: measured again below
                pass
        if key not in measured.latency:
            where = (f"LiteRT ({max(1, threads)} threads)" if measured.candidate.fmt is Format.TFLITE
                     else f"Chromium ({browser})" if browser else "TF.js (Node, wasm)")
            self.progress.stage(f"timing {measured.candidate.key} in {where}")
            with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
                path = _write(measured, Path(tmp))
                _, run = run_candidate(path, self.validation[:1], threads=max(1, threads), latency_runs=runs,
                                       where=measured.candidate.key, browser=browser)
            measured.latency[key] = run.latency
            if cached is not None:
                self.cache.add_latency(cached[0], slot, dataclasses.asdict(run.latency))  # unrounded: judged as measured
        return measured.latency[key]


def _measured_from(candidate: Candidate, entry) -> Measured:
    """A cache entry as the `Measured` it recorded; KeyError, TypeError or ValueError when it is not one."""
    r = entry.record
    if not isinstance(r["drift"], list) or not all(isinstance(d, dict) for d in r["drift"]):
        raise TypeError("drift")
    if r["error"] is not None and not isinstance(r["error"], str):
        raise TypeError("error")
    if (candidate.fmt is Format.TFLITE and r["error"] is None) != ("model.tflite" in entry.files):
        raise ValueError("files")
    peak = r["peak_memory_bytes"]
    return Measured(candidate, dict(entry.files), int(_number(r["size_bytes"])), int(_number(r["gzip_bytes"])), _number(r["sparsity"]),
                    list(r["drift"]), error=r["error"], mixed=r["mixed"], peak_memory_bytes=None if peak is None else int(_number(peak)),
                    metadata=r["metadata"])


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{value!r} is not a number")
    return value


def convert_worker(saved_model_dir: str, settings, calibration_path: str | None, sparsity: float):
    """In a worker process: one conversion from a SavedModel export (the model's weights were checked
    by the parent)."""
    calibration = None if calibration_path is None else np.load(calibration_path, mmap_mode="r", allow_pickle=False)
    return quantize.convert_saved_model(Path(saved_model_dir), settings, calibration, sparsity)


def _write(measured: Measured, folder: Path) -> Path:
    for name, data in measured.files.items():
        (folder / name).write_bytes(data)
    return folder / "model.tflite" if measured.candidate.fmt is Format.TFLITE else folder
