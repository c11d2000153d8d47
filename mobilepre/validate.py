"""Drift of a compressed candidate against the float reference, measured in the candidate's own runtime."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobilepre.errors import EXIT_FAILED, MobilepreError
from mobilepre.metrics import TOLERANCES
from mobilepre.models import load_model
from mobilepre.runtimes import run_tflite, run_tfjs

PSNR_CAP_DB = 200.0  # identical outputs have infinite PSNR; JSON has no infinity


@dataclass(frozen=True)
class OutputDrift:
    """Drift of one output tensor.

    Attributes:
        max_abs_error, mean_abs_error, rmse (float): over all values.
        psnr_db (float): 20 log10(reference range / rmse), capped at `PSNR_CAP_DB`.
        cosine (float): mean cosine similarity of the per-image output vectors.
        top1_agreement, top5_agreement (float | None): for classifier outputs (N, classes): how often
            the candidate's top-1 class equals the reference's, and how often the reference's top-1 is
            in the candidate's top-k (k = min(5, classes)).
        accuracy_reference, accuracy_candidate, accuracy_drop (float | None): against labels, when given.
    """

    max_abs_error: float
    mean_abs_error: float
    rmse: float
    psnr_db: float
    cosine: float
    top1_agreement: float | None = None
    top5_agreement: float | None = None
    accuracy_reference: float | None = None
    accuracy_candidate: float | None = None
    accuracy_drop: float | None = None

    def to_dict(self) -> dict:
        return {k: (None if v is None else round(float(v), 6)) for k, v in self.__dict__.items()}


def output_drift(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None) -> OutputDrift:
    reference = reference.astype(np.float64)
    candidate = candidate.astype(np.float64)
    if reference.shape != candidate.shape:
        raise MobilepreError(f"candidate output shape {candidate.shape} differs from the reference's {reference.shape}")
    diff = candidate - reference
    rmse = float(np.sqrt(np.mean(diff**2)))
    span = float(reference.max() - reference.min()) or 1.0
    psnr = PSNR_CAP_DB if rmse == 0 else min(PSNR_CAP_DB, 20.0 * math.log10(span / rmse))
    ref_rows = reference.reshape(len(reference), -1)
    cand_rows = candidate.reshape(len(candidate), -1)
    norms = np.linalg.norm(ref_rows, axis=1) * np.linalg.norm(cand_rows, axis=1)
    dots = np.sum(ref_rows * cand_rows, axis=1)
    cosine = float(np.mean(np.where(norms > 0, dots / np.where(norms > 0, norms, 1), 1.0)))
    drift = dict(
        max_abs_error=float(np.abs(diff).max()),
        mean_abs_error=float(np.abs(diff).mean()),
        rmse=rmse,
        psnr_db=psnr,
        cosine=cosine,
    )
    if reference.ndim == 2 and reference.shape[1] >= 2:
        ref_top = reference.argmax(axis=1)
        k = min(5, reference.shape[1])
        cand_topk = np.argsort(-candidate, axis=1, kind="stable")[:, :k]
        drift["top1_agreement"] = float(np.mean(cand_topk[:, 0] == ref_top))
        drift["top5_agreement"] = float(np.mean(np.any(cand_topk == ref_top[:, None], axis=1)))
        if labels is not None:
            acc_ref = float(np.mean(ref_top == labels))
            acc_cand = float(np.mean(cand_topk[:, 0] == labels))
            drift.update(accuracy_reference=acc_ref, accuracy_candidate=acc_cand, accuracy_drop=acc_ref - acc_cand)
    return OutputDrift(**drift)


def worst(drifts: list[OutputDrift]) -> dict:
    """One value per metric across outputs: the worst of each (lowest floor metric, highest ceiling one)."""
    summary = {}
    for tolerance in TOLERANCES.values():
        values = [getattr(d, tolerance.metric) for d in drifts if getattr(d, tolerance.metric) is not None]
        if values:
            summary[tolerance.metric] = min(values) if tolerance.kind == "min" else max(values)
    return summary


def tolerance_failures(summary: dict, tolerances: dict) -> list[str]:
    """Each tolerance not met, as 'name: measured vs limit'. A metric that was not measured fails its bound."""
    failures = []
    for name, limit in sorted(tolerances.items()):
        if limit is None:
            continue
        tolerance = TOLERANCES[name]
        value = summary.get(tolerance.metric)
        if value is None:
            failures.append(f"{name}: {tolerance.metric} was not measured (needs a classifier output or labels)")
        elif tolerance.fails(value, limit):
            failures.append(f"{name}: {tolerance.metric} {value:.6g} vs limit {limit:g}")
    return failures


@dataclass(frozen=True)
class ValidationResult:
    """What `validate` measured.

    Attributes:
        candidate (str), format (str): the artifact and "tflite" or "tfjs".
        images (int): how many images were compared.
        outputs (list[OutputDrift]): drift per output, in the reference's output order.
        summary (dict): the worst value of each metric across outputs.
        latency (Latency | None): per-image latency in the candidate's runtime on this host.
        macs (int): multiply-accumulates per image, counted from the reference model's layers.
        reference_seconds, candidate_seconds (float): inference time of the whole set.
        failures (list[str]): tolerances not met (empty when none were given or all were met).
    """

    candidate: str
    format: str
    images: int
    outputs: list
    summary: dict
    latency: object
    macs: int
    reference_seconds: float
    candidate_seconds: float
    failures: list = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.failures else 0

    @property
    def images_per_second(self) -> float:
        return self.images / self.candidate_seconds if self.candidate_seconds > 0 else float("inf")

    def to_dict(self) -> dict:
        return {
            "candidate": self.candidate,
            "format": self.format,
            "images": self.images,
            "outputs": [d.to_dict() for d in self.outputs],
            "summary": {k: round(float(v), 6) for k, v in sorted(self.summary.items())},
            "latency": self.latency.to_dict() if self.latency else None,
            "macs": self.macs,
            "reference_seconds": round(self.reference_seconds, 4),
            "candidate_seconds": round(self.candidate_seconds, 4),
            "candidate_images_per_second": round(self.images_per_second, 1),
            "failures": list(self.failures),
            "passed": not self.failures,
        }

    def to_text(self) -> str:
        lines = [f"{self.candidate} ({self.format}) on {self.images} images"]
        for name, value in sorted(self.summary.items()):
            lines.append(f"  {name:<20} {value:.6g}")
        if self.latency:
            lat = self.latency
            threads = f", {lat.threads} threads" if lat.threads else ""
            lines.append(f"  latency              median {lat.median_ms:.3f} ms, p90 {lat.p90_ms:.3f} ms ({lat.runtime}{threads})")
        lines.append(f"  MACs per image       {self.macs}")
        lines.append(f"  throughput           {self.images_per_second:.0f} images/s in the candidate's runtime")
        lines += [f"  FAILED {failure}" for failure in self.failures] or ["  within tolerance"]
        return "\n".join(lines)


def candidate_format(path: Path) -> str:
    path = Path(path)
    if path.is_dir():
        if (path / "model.json").exists():
            return "tfjs"
        raise MobilepreError(f"candidate {path} is a folder without model.json: give a .tflite file or a TF.js graph-model folder")
    if path.suffix == ".tflite":
        return "tflite"
    if path.name == "model.json":
        return "tfjs"
    raise MobilepreError(f"candidate {path} is neither a .tflite file nor a TF.js graph-model folder")


def run_candidate(path: Path, images: np.ndarray, threads: int = 1, latency_runs: int = 0):
    """Run a candidate file or folder in its runtime; returns (format, RunResult)."""
    path = Path(path)
    fmt = candidate_format(path)
    if fmt == "tflite":
        try:
            content = path.read_bytes()
        except OSError as error:
            raise MobilepreError(f"candidate {path} cannot be read: {error.strerror}") from None
        return fmt, run_tflite(content, images, threads, latency_runs, where=str(path))
    folder = path if path.is_dir() else path.parent
    return fmt, run_tfjs(folder, images, latency_runs, where=str(folder))


def compare(
    reference_outputs: list,
    run,
    labels: np.ndarray | None,
) -> list[OutputDrift]:
    if len(run.outputs) != len(reference_outputs):
        raise MobilepreError(
            f"the candidate has {len(run.outputs)} outputs, the reference {len(reference_outputs)}: they are not the same model"
        )
    return [output_drift(r, c, labels) for r, c in zip(reference_outputs, run.outputs)]


def reference_outputs(source, images: np.ndarray) -> tuple[list, float]:
    started = time.perf_counter()
    out = source.model.predict(images, batch_size=256, verbose=0)
    seconds = time.perf_counter() - started
    outputs = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(o, dtype=np.float32) for o in outputs], seconds


def validate(
    source,
    candidate: Path,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    threads: int = 1,
    latency_runs: int = 50,
    tolerances: dict | None = None,
) -> ValidationResult:
    """Compare `candidate` (a .tflite file or TF.js folder) with the float `source` model on `images`."""
    reference, ref_seconds = reference_outputs(source, images)
    fmt, run = run_candidate(candidate, images, threads, latency_runs)
    drifts = compare(reference, run, labels)
    summary = worst(drifts)
    failures = tolerance_failures(summary, tolerances or {})
    return ValidationResult(
        candidate=str(candidate),
        format=fmt,
        images=len(images),
        outputs=drifts,
        summary=summary,
        latency=run.latency,
        macs=source.macs,
        reference_seconds=ref_seconds,
        candidate_seconds=run.seconds,
        failures=failures,
    )


def validate_files(
    reference: Path,
    candidate: Path,
    data,
    threads: int = 1,
    latency_runs: int = 50,
    tolerances: dict | None = None,
    trust: bool = False,
) -> ValidationResult:
    """`mobilepre validate`: load the reference (scanned), the data, then `validate`."""
    candidate_format(candidate)  # refuse a wrong candidate before the slow model load
    source = load_model(reference, trust=trust)
    dataset = data.load(source, "validation")
    return validate(source, candidate, dataset.images, dataset.labels, threads, latency_runs, tolerances)
