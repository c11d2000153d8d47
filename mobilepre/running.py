"""Converted candidates run in their real runtime against the float reference: drift, peak memory, latency."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from mobilepre.errors import MobilepreError
from mobilepre.formats import FORMATS
from mobilepre.quantize.settings import Format
from mobilepre.measured import Measured
from mobilepre.progress import as_reporter
from mobilepre.runtimes import ImagesOnDisk, Latency, runoff_litertjs, runoff_tflite
from mobilepre.validate import compare, run_candidate


def runtime_key(fmt, threads: int, browser: str | None = None) -> str:
    """Which runtime times a candidate, as host latencies are keyed: LiteRT by its thread count; LiteRT.js
    in Chromium, on wasm unless `browser` names a backend; TF.js in Node's wasm ("0") or on Chromium's
    `browser` backend."""
    if fmt is Format.TFLITE:
        return str(threads)
    if fmt is Format.LITERTJS:
        return browser or "wasm"
    return str(browser or 0)


class ArtifactRunner:
    """Runs artifacts on the validation images (drift against `reference`, peak memory) and times them.

    Args:
        validation (np.ndarray): the validation images.
        labels (np.ndarray | None): their labels.
        outputs (tuple[OutputSpec, ...]): each output's name and kind, in the model's order.
        reference (list[np.ndarray]): the float model's outputs on the validation images.
        workdir (Path): where artifacts are written to run.
        progress: a reporter or callable.
        name (str): the file name the validation images are written under in `workdir`, once.
        time_runs (int): web artifacts (TF.js in Node, LiteRT.js in Chromium on wasm) are also timed
            this many single-image runs in the process that validates them, which costs a fraction of
            starting Node or Chromium again to time them (`timed_while_validating`); 0: not.
    """

    def __init__(self, validation, labels, outputs, reference, workdir: Path, progress=None, name: str = "validation",
                 time_runs: int = 0):
        self.validation = validation
        self.labels = labels
        self.outputs = tuple(outputs)
        self.reference = reference
        self.workdir = Path(workdir)
        self.progress = as_reporter(progress)
        self.validations = 0
        self._lock = threading.Lock()
        self._images = None  # the validation images on disk, written once per build
        self._name = name
        self._time_runs = time_runs
        self._timed = {}  # (candidate, runtime key, runs) -> Latency timed while validating

    def validate(self, measured: Measured) -> Measured:
        """`measured` run on every validation image in its runtime: with its drift per output and peak
        memory, or with the run's error (a failure that may not recur)."""
        if measured.error is not None:
            return measured
        row = FORMATS[measured.candidate.fmt]
        self.progress.stage(f"validating {measured.key} in {row.runtime} on {len(self.validation)} images")
        fmt = measured.candidate.fmt
        runs = 0 if fmt is Format.TFLITE else self._time_runs  # validated in Node or Chromium, on wasm
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            path = row.write(measured.files, Path(tmp))
            try:
                _, run = run_candidate(path, self._on_disk(), latency_runs=runs, output_names=[spec.name for spec in self.outputs],
                                       where=measured.key)
            except MobilepreError as error:
                return measured.with_run_error(error.message)
        with self._lock:
            self.validations += 1
            if run.latency is not None:
                self._timed[(measured.candidate, runtime_key(fmt, 1), runs)] = run.latency
        return measured.with_run(compare(self.reference, run, self.labels, self.outputs), run.peak_memory_bytes)

    def run_on(self, measured: Measured, backend: str):
        """`measured` run on every validation image in Chromium on `backend` (TF.js: wasm, webgl or
        webgpu; LiteRT.js: wasm or webgpu): (drift per output, or None, the outputs, or None, the error)."""
        row = FORMATS[measured.candidate.fmt]
        self.progress.stage(f"running {measured.key} on {backend} in Chromium on {len(self.validation)} images")
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            path = row.write(measured.files, Path(tmp))
            try:
                _, run = run_candidate(path, self._on_disk(), output_names=[spec.name for spec in self.outputs],
                                       where=f"{measured.key} on {backend}", browser=backend)
            except MobilepreError as error:
                return None, None, error.message
        with self._lock:
            self.validations += 1
        return compare(self.reference, run, self.labels, self.outputs), run.outputs, None

    def timed_while_validating(self, candidate, key: str, runs: int) -> Latency | None:
        """The latency of `candidate` timed `runs` runs as it was validated, on the runtime `key` names
        (TF.js: "0", Node's wasm; LiteRT.js: "wasm"), or None."""
        with self._lock:
            return self._timed.get((candidate, key, runs))

    def time(self, measured: Measured, threads: int, runs: int, browser: str | None = None) -> Latency:
        """Single-image latency of `measured` on this host: LiteRT with `threads`, TF.js in Node's wasm, or
        in headless Chromium on `browser`'s backend through the bundle's own page (TF.js; LiteRT.js always,
        on wasm unless `browser` says)."""
        fmt = measured.candidate.fmt
        where = (f"LiteRT ({max(1, threads)} threads)" if fmt == "tflite"
                 else f"LiteRT.js in Chromium ({browser or 'wasm'})" if fmt == "litertjs"
                 else f"TF.js in Chromium ({browser})" if browser else "TF.js (Node, wasm)")
        self.progress.stage(f"timing {measured.key} in {where}")
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            path = FORMATS[measured.candidate.fmt].write(measured.files, Path(tmp))
            _, run = run_candidate(path, self.validation[:1], threads=max(1, threads), latency_runs=runs,
                                   where=measured.key, browser=browser)
        return run.latency

    def runoff(self, measured: list[Measured], threads: int, backend: str | None = None) -> list[list[float]]:
        """Candidates timed against each other in interleaved rounds: in LiteRT (`runtimes.runoff_tflite`), or
        with `backend` in LiteRT.js in one Chromium page (`runtimes.runoff_litertjs`)."""
        where = f"the run-off of {', '.join(m.key for m in measured)}"
        contents = [m.files["model.tflite"] for m in measured]
        if backend is not None:
            self.progress.stage(f"timing {', '.join(m.key for m in measured)} against each other in LiteRT.js ({backend})")
            return runoff_litertjs(contents, self.validation[:1], backend, where=where)
        self.progress.stage(f"timing {', '.join(m.key for m in measured)} against each other in LiteRT ({max(1, threads)} threads)")
        return runoff_tflite(contents, self.validation[:1], max(1, threads), where=where)

    def _on_disk(self) -> ImagesOnDisk:
        with self._lock:
            if self._images is None:
                self._images = ImagesOnDisk.write(self.validation, self.workdir, self._name)
            return self._images
