"""Candidates converted into artifacts with the SDK metadata written in: what is validated is what ships."""

from __future__ import annotations

import dataclasses
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from mobilepre import quantize
from mobilepre.artifacts import dynamic_shapes_problem, litertjs_problem
from mobilepre.candidates import Candidate
from mobilepre.formats import FORMATS
from mobilepre.measured import Measured
from mobilepre.progress import as_reporter
from mobilepre.quantize.checks import check_weights
from mobilepre.quantize.settings import Format, engine_format

# Conversions go to worker processes only for models at least this large: a worker imports TensorFlow
# once (about 5 s), which the demo's (43k parameters) sub-second conversions never earn back (measured:
# a --jobs 2 demo build took 1.06x as long with workers), while MobileNetV2's (3.5M) do (0.95x).
WORKER_MIN_PARAMETERS = 1_000_000


class Converter:
    """Converts candidates from the model's variants, each a `Measured` with its files, sizes and metadata
    (not yet run), or a failed one saying why.

    Args:
        variants (variants.Variants): the model's variants to convert from.
        sdk (sdk_metadata.SdkContract | None): the I/O contract every artifact carries.
        shard_size (int): TF.js weight shard bytes.
        workdir (Path): where calibration images are shared with worker processes.
        progress: a reporter or callable.
    """

    def __init__(self, variants, sdk=None, shard_size: int = 4 * 1024 * 1024, workdir: Path | None = None, progress=None):
        self.variants = variants
        self.sdk = sdk
        self.shard_size = shard_size
        self.workdir = Path(workdir) if workdir is not None else variants.workdir
        self.progress = as_reporter(progress)
        self.conversions = 0
        self.unsupported: dict = {}  # format -> why its runtime cannot run this model (recurs in every mode)
        self._pool = None  # conversion worker processes, with jobs > 1
        self._made: dict = {}  # (SavedModel export, settings) -> artifact, for this build

    @property
    def calibration(self):
        return self.variants.calibration

    def convert_many(self, candidates, jobs: int = 1) -> list[Measured]:
        """Convert `candidates` (with `jobs` > 1, for a model of at least `WORKER_MIN_PARAMETERS`, in that
        many worker processes: the converters are not thread-safe, processes are)."""
        parameters = self.variants.source.parameters or 0
        if jobs > 1 and len(candidates) > 1 and parameters >= WORKER_MIN_PARAMETERS:
            return self._convert_in_workers(candidates, jobs)
        return [self.convert(c) for c in candidates]

    def convert(self, candidate: Candidate) -> Measured:
        prepared = self._prepare(candidate)
        if isinstance(prepared, Measured):
            return prepared
        settings, directory, reached = prepared
        made = (str(directory), settings)
        if made in self._made:  # the same .tflite for a TFLite and a LiteRT.js candidate: converted once
            return self._converted(candidate, self._made[made], reached)
        self.progress.stage(f"converting {candidate.key}")
        try:
            artifact = quantize.convert_saved_model(directory, settings, self.calibration, reached)
        except quantize.QuantizeError as error:
            return self._failed(candidate, error, reached)
        self._made[made] = artifact
        return self._converted(candidate, artifact, reached)

    def convert_plan(self, candidate: Candidate, plan) -> Measured:
        """One step of a mixed search: `candidate` converted with per-layer precisions `plan`."""
        made = engine_format(candidate.fmt)
        settings = quantize.QuantizationSettings(made, quantize.Mode.MIXED, mixed=plan, shard_size_bytes=self.shard_size)
        try:
            model, directory, _ = self.variants.get(fmt=str(made))
            artifact = quantize.convert(model, settings, self.calibration, saved_model_dir=directory)
        except quantize.QuantizeError as error:  # one step of a search: the search's result is what is cached
            return Measured.failed(candidate, str(error), 0.0, final=False)
        return self._converted(candidate, artifact, 0.0)

    def _prepare(self, candidate: Candidate):
        """(settings, SavedModel export, reached sparsity) to convert `candidate` from, or the failed
        `Measured` that makes converting pointless."""
        if candidate.fmt in self.unsupported:  # the same ops fail every mode: do not convert again
            return Measured.failed(candidate, self.unsupported[candidate.fmt], unsupported=True, final=False)
        try:
            made = engine_format(candidate.fmt)  # a LiteRT.js artifact is a .tflite
            model, directory, reached = self.variants.get(candidate.sparsity, candidate.clusters, candidate.qat, str(made))
            settings = quantize.QuantizationSettings(made, candidate.mode, io_type=candidate.io_type, shard_size_bytes=self.shard_size)
            check_weights(model, settings.mode)
        except quantize.QuantizeError as error:  # a failed candidate, not a failed build (not cached: no conversion ran)
            return Measured.failed(candidate, str(error), final=False)
        return settings, directory, reached

    def _failed(self, candidate: Candidate, error: Exception, reached: float) -> Measured:
        """A conversion the converter refused (the same again next time, so the cache may keep it)."""
        if isinstance(error, quantize.UnsupportedOpsError):
            if candidate.fmt not in self.unsupported:
                self.unsupported[candidate.fmt] = str(error)
                self.progress(f"{candidate.fmt}: {error}; no {candidate.fmt} mode can be built")
            return Measured.failed(candidate, str(error), reached, unsupported=True)
        return Measured.failed(candidate, str(error), reached)

    def _converted(self, candidate: Candidate, artifact, sparsity: float) -> Measured:
        """A converted artifact with the SDK metadata written into its files, before it is validated
        (what is validated is what ships: its size and gzip size count the metadata). A graph that is not
        static (every model is exported with a batch of 1) fails here, before it is judged."""
        self.conversions += 1
        static_problem = dynamic_shapes_problem(candidate.fmt, artifact.files)
        if candidate.fmt is Format.LITERTJS and not static_problem:
            static_problem = litertjs_problem(artifact.files["model.tflite"], "the .tflite")
        if static_problem:
            return Measured.failed(candidate, f"{candidate.key}: {static_problem}", sparsity)
        metadata = None
        if self.sdk is not None:
            files, metadata = FORMATS[candidate.fmt].with_metadata(dict(artifact.files), self.sdk)
            artifact = dataclasses.replace(artifact, files=files)
        chosen = artifact.made_by is not None
        return Measured(candidate, artifact.files, artifact.size_bytes, artifact.gzip_bytes, sparsity, metadata=metadata,
                        engine=str(artifact.made_by) if chosen else None, engine_choice=artifact.engine_choice if chosen else None)

    def _convert_in_workers(self, candidates, jobs: int) -> list[Measured]:
        """Convert `candidates` in `jobs` worker processes (each imports TensorFlow once per build and
        converts from the SavedModel export on disk; calibration images are shared through a file)."""
        prepared = {c: self._prepare(c) for c in candidates}
        todo = [c for c in candidates if not isinstance(prepared[c], Measured)]
        if len(todo) < 2:
            return [prepared[c] if isinstance(prepared[c], Measured) else self.convert(c) for c in candidates]
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
                out.append(self._converted(candidate, futures[candidate].result(), reached))
            except quantize.QuantizeError as error:
                out.append(self._failed(candidate, error, reached))
            except BrokenProcessPool:
                self._pool = None  # a converter crashed its process: this candidate fails, the next pool is fresh
                out.append(Measured.failed(candidate, f"{candidate.key}: the converter's process died", reached, final=False))
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


def convert_worker(saved_model_dir: str, settings, calibration_path: str | None, sparsity: float):
    """In a worker process: one conversion from a SavedModel export (the model's weights were checked
    by the parent)."""
    calibration = None if calibration_path is None else np.load(calibration_path, mmap_mode="r", allow_pickle=False)
    return quantize.convert_saved_model(Path(saved_model_dir), settings, calibration, sparsity)
