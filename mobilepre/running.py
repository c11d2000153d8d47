"""Converted candidates run in their real runtime against the float reference: drift, peak memory, latency."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from mobilepre.errors import MobilepreError
from mobilepre.formats import FORMATS
from mobilepre.measured import Measured
from mobilepre.progress import as_reporter
from mobilepre.runtimes import ImagesOnDisk, Latency
from mobilepre.validate import compare, run_candidate


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
    """

    def __init__(self, validation, labels, outputs, reference, workdir: Path, progress=None, name: str = "validation"):
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

    def validate(self, measured: Measured) -> Measured:
        """`measured` run on every validation image in its runtime: with its drift per output and peak
        memory, or with the run's error (a failure that may not recur)."""
        if measured.error is not None:
            return measured
        row = FORMATS[measured.candidate.fmt]
        self.progress.stage(f"validating {measured.key} in {row.runtime} on {len(self.validation)} images")
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            path = row.write(measured.files, Path(tmp))
            try:
                _, run = run_candidate(path, self._on_disk(), output_names=[spec.name for spec in self.outputs], where=measured.key)
            except MobilepreError as error:
                return measured.with_run_error(error.message)
        with self._lock:
            self.validations += 1
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

    def _on_disk(self) -> ImagesOnDisk:
        with self._lock:
            if self._images is None:
                self._images = ImagesOnDisk.write(self.validation, self.workdir, self._name)
            return self._images
