"""Drift of a compressed candidate against the float reference, measured in the candidate's own runtime."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mobilepre import intervals
from mobilepre.artifacts import io_contract, io_lines, tflite_io, tfjs_tensor
from mobilepre.budgets import Measurement, judge_drift_limits
from mobilepre.errors import EXIT_FAILED, MobilepreError, param
from mobilepre.metrics import CLASS_SCORES, TOLERANCES, OutputDrift, OutputKind
from mobilepre.models import load_model, settle_kinds, with_stages
from mobilepre.profiles import Drift
from mobilepre.quantize.export import output_list, signature_output_keys
from mobilepre.runtimes import check_chromium, run_browser, run_litertjs, run_tflite, run_tfjs

PSNR_CAP_DB = 200.0  # identical outputs have infinite PSNR; JSON has no infinity


def output_drift(
    reference: np.ndarray,
    candidate: np.ndarray,
    labels: np.ndarray | None = None,
    kind: OutputKind = OutputKind.REGRESSION,
    name: str = "output_0",
) -> OutputDrift:
    """The drift of one output, with the metrics its kind has, each (but the maxima) with its 95% interval
    over the images (`mobilepre.intervals`: the same images give the same intervals)."""
    kind = OutputKind(kind)
    reference = reference.astype(np.float64)
    candidate = candidate.astype(np.float64)
    if reference.shape != candidate.shape:
        raise MobilepreError(f"output {name}: candidate shape {candidate.shape} differs from the reference's {reference.shape}")
    n = len(reference)
    weights = intervals.resample_weights(n) if n >= 2 else None
    diff = candidate - reference
    per_image_sq = (diff**2).reshape(n, -1).mean(axis=1)
    rmse = float(np.sqrt(np.mean(diff**2)))
    span = float(reference.max() - reference.min()) or 1.0
    ref_rows = reference.reshape(n, -1)
    cand_rows = candidate.reshape(n, -1)
    max_abs = float(np.abs(diff).max())
    cosines = _cosines(ref_rows, cand_rows)
    drift = dict(
        max_abs_error=max_abs,
        mean_abs_error=float(np.abs(diff).mean()),
        relative_error=max_abs / span,
        rmse=rmse,
        psnr_db=_psnr(span, rmse),
        cosine=float(np.mean(cosines)),
    )
    spread = {}  # metric -> (low, high)
    if weights is not None:
        spread["mean_abs_error"] = intervals.bootstrap_mean(np.abs(diff), weights)
        low, high = (math.sqrt(max(v, 0.0)) for v in intervals.bootstrap_mean(per_image_sq, weights))
        spread["rmse"] = (low, high)
        spread["psnr_db"] = (_psnr(span, high), _psnr(span, low))
        spread["cosine"] = intervals.bootstrap_mean(cosines, weights)
    if kind in CLASS_SCORES and reference.ndim == 2 and reference.shape[1] >= 2:
        scores, per_image = _class_scores(reference, candidate, labels, kind)
        drift.update(scores)
        spread.update(_share_intervals(per_image, ("top1_agreement", "top5_agreement")))
        if weights is not None:
            spread["kl_divergence"] = intervals.bootstrap_mean(per_image["kl_divergence"], weights)
        if "accuracy_drop" in per_image:
            spread["accuracy_drop"] = intervals.paired_difference(per_image["accuracy_drop"])
    elif kind is OutputKind.SEGMENTATION and reference.ndim == 4 and reference.shape[-1] >= 2:
        scores, per_image = _segmentation(reference, candidate)
        drift.update(scores)
        if weights is not None:
            spread["top1_agreement"] = intervals.bootstrap_mean(per_image["top1_agreement"], weights)
            ious = intervals.bootstrap_ratio(per_image["intersections"], per_image["unions"], weights)
            present = (weights @ per_image["unions"]) > 0
            spread["mean_iou"] = intervals.percentile_interval(np.nanmean(np.where(present, ious, np.nan), axis=1))
    elif kind is OutputKind.EMBEDDING and n >= 2:
        same = _nearest(ref_rows) == _nearest(cand_rows)
        drift["nn_agreement"] = float(np.mean(same))
        spread.update(_share_intervals({"nn_agreement": same}, ("nn_agreement",)))
    elif kind is OutputKind.IMAGE and reference.ndim == 4:
        per_image = _ssim(reference, candidate, span)
        drift["ssim"] = float(per_image.mean())
        if weights is not None:
            spread["ssim"] = intervals.bootstrap_mean(per_image, weights)
    # an interval holds its estimate (a percentile bootstrap of a skewed mean may sit just beside it)
    spread = {m: (min(lo, drift[m]), max(hi, drift[m])) for m, (lo, hi) in spread.items()}
    return OutputDrift(name=name, kind=kind, **drift, images=n, intervals=spread or None)


def _psnr(span: float, rmse: float) -> float:
    return PSNR_CAP_DB if rmse == 0 else min(PSNR_CAP_DB, 20.0 * math.log10(span / rmse))


def _share_intervals(per_image: dict, metrics) -> dict:
    """Wilson intervals of shares of images (each image in or out)."""
    out = {}
    for metric in metrics:
        hits = np.asarray(per_image[metric], dtype=bool)
        out[metric] = intervals.wilson(int(hits.sum()), len(hits))
    return out


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.sum(a * b, axis=1)
    return np.where(norms > 0, dots / np.where(norms > 0, norms, 1), 1.0)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _class_scores(reference, candidate, labels, kind) -> tuple[dict, dict]:
    """(metrics, per-image values they are means of)."""
    ref_top = reference.argmax(axis=1)
    k = min(5, reference.shape[1])
    cand_topk = np.argsort(-candidate, axis=1, kind="stable")[:, :k]
    p, q = (reference, candidate) if kind is OutputKind.PROBABILITIES else (_softmax(reference), _softmax(candidate))
    p, q = np.clip(p, 1e-12, 1.0), np.clip(q, 1e-12, 1.0)
    per_image = {
        "top1_agreement": cand_topk[:, 0] == ref_top,
        "top5_agreement": np.any(cand_topk == ref_top[:, None], axis=1),
        "kl_divergence": np.sum(p * np.log(p / q), axis=1),
    }
    out = {m: float(np.mean(v)) for m, v in per_image.items()}
    if labels is not None:
        ref_right, cand_right = ref_top == labels, cand_topk[:, 0] == labels
        acc_ref, acc_cand = float(np.mean(ref_right)), float(np.mean(cand_right))
        out.update(accuracy_reference=acc_ref, accuracy_candidate=acc_cand, accuracy_drop=acc_ref - acc_cand)
        per_image["accuracy_drop"] = ref_right.astype(np.float64) - cand_right
    return out, per_image


def _segmentation(reference, candidate) -> tuple[dict, dict]:
    ref_mask, cand_mask = reference.argmax(axis=-1), candidate.argmax(axis=-1)
    classes = reference.shape[-1]
    n = len(reference)
    inter = np.zeros((n, classes))
    union = np.zeros((n, classes))
    for c in range(classes):
        r, k = ref_mask == c, cand_mask == c
        inter[:, c] = np.logical_and(r, k).reshape(n, -1).sum(axis=1)
        union[:, c] = np.logical_or(r, k).reshape(n, -1).sum(axis=1)
    totals = union.sum(axis=0)
    ious = inter.sum(axis=0)[totals > 0] / totals[totals > 0]
    agreement = (ref_mask == cand_mask).reshape(n, -1).mean(axis=1)
    return ({"top1_agreement": float(np.mean(ref_mask == cand_mask)), "mean_iou": float(np.mean(ious))},
            {"top1_agreement": agreement, "intersections": inter, "unions": union})


def _nearest(rows: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Each row's nearest other row by cosine, computed in chunks (memory stays O(chunk x N))."""
    unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    unit = unit.astype(np.float32)
    nearest = np.empty(len(unit), dtype=np.int64)
    for start in range(0, len(unit), chunk):
        sims = unit[start : start + chunk] @ unit.T
        sims[np.arange(len(sims)), np.arange(start, start + len(sims))] = -np.inf
        nearest[start : start + len(sims)] = sims.argmax(axis=1)
    return nearest


def _ssim(reference, candidate, span: float) -> np.ndarray:
    """Global SSIM per image (no sliding window), the mean over its channels."""
    c1, c2 = (0.01 * span) ** 2, (0.03 * span) ** 2
    axes = (1, 2)
    mu_x, mu_y = reference.mean(axis=axes), candidate.mean(axis=axes)
    var_x, var_y = reference.var(axis=axes), candidate.var(axis=axes)
    cov = ((reference - mu_x[:, None, None, :]) * (candidate - mu_y[:, None, None, :])).mean(axis=axes)
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim.mean(axis=-1)


# A reference is degenerate when nearly every image gets one class (what a wrong --input-range or broken
# preprocessing produces), its class scores are constant, or it barely separates its top two classes.
DEGENERATE_SHARE = 0.95
MIN_IMAGES_TO_JUDGE = 10
NEAR_ZERO_MARGIN = 1e-3


def degenerate_reason(reference: np.ndarray, kind) -> str | None:
    """Why the float model's class-score (or segmentation) output says nothing about these images, or None."""
    if kind not in CLASS_SCORES | {OutputKind.SEGMENTATION} or len(reference) < MIN_IMAGES_TO_JUDGE or reference.shape[-1] < 2:
        return None
    scores = reference.reshape(-1, reference.shape[-1]).astype(np.float64)
    if float(scores.std(axis=0).max()) < 1e-6:
        return "its scores are the same for every image"
    if kind == OutputKind.SEGMENTATION:  # counted in images: most pixels of a mask are background by nature
        masks = reference.reshape(len(reference), -1, reference.shape[-1]).argmax(axis=-1)
        uniform = masks.min(axis=1) == masks.max(axis=1)
        classes = masks[:, 0][uniform]
        counts = np.bincount(classes) if len(classes) else np.zeros(1, int)
        share = float(counts.max() / len(masks))
        if share >= DEGENERATE_SHARE:
            return f"it gives class {int(counts.argmax())} at every pixel of {share:.0%} of the images"
        return None
    top = scores.argmax(axis=1)
    share = float(np.bincount(top).max() / len(top))
    if share >= DEGENERATE_SHARE:
        return f"it gives class {int(np.bincount(top).argmax())} for {share:.0%} of the images"
    ordered = np.sort(scores, axis=1)
    if float(np.mean(ordered[:, -1] - ordered[:, -2] < NEAR_ZERO_MARGIN)) >= 0.9:
        return "its top two classes are within 0.001 of each other for 90% of the images"
    return None


def _check_tolerances(tolerances: dict) -> None:
    """A tolerance outside the range its metric can take is a mistake, not a test (`--min-top1 2`)."""
    for name, limit in tolerances.items():
        if limit is None:
            continue
        tolerance = TOLERANCES[name]
        if not (math.isfinite(limit) and tolerance.low <= limit <= tolerance.high):
            raise MobilepreError(f"{param(name)} {limit:g}: expected a number from {tolerance.low:g} to {tolerance.high:g} ({tolerance.meaning})")


def tolerance_failures(drifts: list, tolerances: dict) -> list[str]:
    """Each tolerance not met, per output where it makes sense for the output's kind, as
    'name[output]: measured vs limit', judged by the one drift rule (`budgets.judge_drift_limits`). A
    metric that applies but was not measured fails its bound."""
    limits = Drift({name: limit for name, limit in tolerances.items() if limit is not None})
    return judge_drift_limits(limits, Measurement(0, 0, tuple(d.to_dict() for d in drifts))).failures


@dataclass(frozen=True)
class ValidationResult:
    """What `validate` measured.

    Attributes:
        candidate (str), format (str): the artifact and "tflite" or "tfjs".
        images (int): how many images were compared.
        outputs (list[OutputDrift]): drift per output, by name and kind, in the model's output order.
        latency (Latency | None): per-image latency in the candidate's runtime on this host.
        macs (int): multiply-accumulates per image, counted from the reference model's layers.
        reference_seconds, candidate_seconds (float): inference time of the whole set.
        failures (list[str]): tolerances not met (empty when none were given or all were met).
        warnings (list[str]): outputs whose reference is degenerate on these images (`degenerate_reason`).
        io (dict): the candidate's I/O contract, as a bundle's manifest states it (`artifacts.io_contract`).
    """

    candidate: str
    format: str
    images: int
    outputs: list
    latency: object
    macs: int
    reference_seconds: float
    candidate_seconds: float
    failures: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    io: dict = field(default_factory=dict)
    judged: bool = True  # a tolerance was given (without one nothing is judged and nothing can fail)

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
            "latency": self.latency.to_dict() if self.latency else None,
            "macs": self.macs,
            "reference_seconds": round(self.reference_seconds, 4),
            "candidate_seconds": round(self.candidate_seconds, 4),
            "candidate_images_per_second": round(self.images_per_second, 1),
            "failures": list(self.failures),
            "passed": not self.failures,
            "judged": self.judged,
            "warnings": list(self.warnings),
            "io": self.io,
        }

    def to_text(self) -> str:
        lines = [f"{self.candidate} ({self.format}) on {self.images} images", *io_lines(self.io)]
        for drift in self.outputs:
            lines.append(f"  output {drift.name} ({drift.kind})")
            for name, value in drift.metrics().items():
                lines.append(f"    {name:<20} {value:.6g}")
        if self.latency:
            lat = self.latency
            threads = f", {lat.threads} threads" if lat.threads else ""
            lines.append(f"  latency              median {lat.median_ms:.3f} ms, p90 {lat.p90_ms:.3f} ms ({lat.runtime}{threads})")
        lines.append(f"  MACs per image       {self.macs}")
        lines.append(f"  throughput           {self.images_per_second:.0f} images/s in the candidate's runtime")
        lines += [f"  WARNING {warning}" for warning in self.warnings]
        lines += [f"  FAILED {failure}" for failure in self.failures] or [
            "  within tolerance" if self.judged else "  no tolerance given: nothing judged (pass a tolerance, e.g. --min-top1 0.99, to gate)"]
        return "\n".join(lines)


def _behind_stages(source, candidate: Path, fmt: str, input_range: tuple):
    """The reference as a build's bundle sees it: behind `build --frontend`'s rescaling when the candidate
    takes uint8 pixels and the model floats, and behind the luma stage when the candidate takes RGB and
    the model one channel."""
    shape, dtype = candidate_input(candidate, fmt)
    if not shape:
        return source
    rescale = input_range if dtype == "uint8" and source.input_dtype == "float32" else None
    luma = shape[-1] == 3 and source.input_shape[-1] == 1
    return with_stages(source, rescale, luma=luma)


def candidate_input(candidate: Path, fmt: str) -> tuple[list, str]:
    """(shape, dtype) of the candidate's first input, read from the file; ([], "") when it says none."""
    if fmt in ("tflite", "litertjs"):
        inputs = tflite_io(_tflite_file(candidate).read_bytes(), str(candidate))["inputs"]
        return (list(inputs[0]["shape"]), inputs[0]["dtype"]) if inputs else ([], "")
    folder = candidate if candidate.is_dir() else candidate.parent
    try:
        signature = json.loads((folder / "model.json").read_bytes()).get("signature") or {}
        return tfjs_tensor(next(iter((signature.get("inputs") or {}).values())))
    except (OSError, ValueError, StopIteration, AttributeError, TypeError):
        return [], ""  # the runtime says what is wrong with the folder


def _tflite_file(candidate: Path) -> Path:
    return candidate / "model.tflite" if candidate.is_dir() else candidate


def candidate_format(path: Path) -> str:
    """"tflite" (a .tflite file), "tfjs" (a graph-model folder or its model.json) or "litertjs" (a
    bundle's `litertjs/` folder: model.tflite and contract.json)."""
    path = Path(path)
    if path.is_dir():
        if (path / "model.json").exists():
            return "tfjs"
        if (path / "model.tflite").exists():
            return "litertjs"
        raise MobilepreError(f"candidate {path} is a folder without model.json or model.tflite: give a .tflite file, a TF.js "
                             "graph-model folder or a LiteRT.js bundle's litertjs/ folder")
    if path.suffix == ".tflite":
        return "tflite"
    if path.name == "model.json":
        return "tfjs"
    raise MobilepreError(f"candidate {path} is neither a .tflite file nor a TF.js graph-model folder")


def run_candidate(path: Path, images: np.ndarray, threads: int = 1, latency_runs: int = 0, output_names=None,
                  where: str | None = None, browser: str | None = None):
    """Run a candidate file or folder in its runtime; returns (format, RunResult) with the outputs in the
    order of `output_names` (the reference model's output names; natural signature order without).
    `browser`: a TF.js candidate runs in headless Chromium on that backend ("wasm", "webgl", "webgpu")
    instead of Node, a .tflite in LiteRT.js in Chromium ("wasm", "webgpu") instead of LiteRT; a
    LiteRT.js folder always runs in LiteRT.js (on wasm unless `browser` says). Errors name the candidate
    by `where` (default: its path)."""
    path = Path(path)
    fmt = candidate_format(path)
    keys = list(signature_output_keys(output_names)) if output_names else None
    if fmt == "litertjs" or (fmt == "tflite" and browser):
        model = path if fmt == "litertjs" else _read(path)
        return fmt, run_litertjs(model, images, latency_runs, where=where or str(path), output_keys=keys, backend=browser or "wasm")
    if fmt == "tflite":
        return fmt, run_tflite(_read(path), images, threads, latency_runs, where=where or str(path), output_keys=keys)
    folder = path if path.is_dir() else path.parent
    if browser:
        return fmt, run_browser(folder, images, latency_runs, where=where or str(folder), output_keys=keys, backend=browser)
    return fmt, run_tfjs(folder, images, latency_runs, where=where or str(folder), output_keys=keys)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise MobilepreError(f"candidate {path} cannot be read: {error.strerror}") from None


def compare(reference_outputs: list, run, labels: np.ndarray | None, outputs: list) -> list[OutputDrift]:
    """Drift of each output of a run against the reference's; `outputs` are the model's `OutputSpec`s
    (name and kind), in the order both list their outputs."""
    if len(run.outputs) != len(reference_outputs):
        raise MobilepreError(
            f"the candidate has {len(run.outputs)} outputs, the reference {len(reference_outputs)}: they are not the same model"
        )
    return [output_drift(r, c, labels, spec.kind, spec.name) for r, c, spec in zip(reference_outputs, run.outputs, outputs)]


def reference_outputs(source, images: np.ndarray) -> tuple[list, float]:
    """The float model's outputs on `images` and the seconds they took: in the model's sandboxed child
    process when it has one (`models.ReferenceChild`), else here."""
    started = time.perf_counter()
    if source.reference is not None:
        outputs = source.reference.predict(images)
    else:
        outputs = output_list(source.model, source.model.predict(images, batch_size=256, verbose=0))
    seconds = time.perf_counter() - started
    return [np.asarray(o, dtype=np.float32) for o in outputs], seconds


def validate(
    source,
    candidate: Path,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    threads: int = 1,
    latency_runs: int = 50,
    tolerances: dict | None = None,
    input_range: tuple = (0.0, 1.0),
    browser: str | None = None,
) -> ValidationResult:
    """Compare `candidate` (a .tflite file or TF.js folder) with the float `source` model on `images`;
    `input_range` is what a float input's values mean, for the I/O contract; `browser` ("wasm" or
    "webgl") runs a TF.js candidate in headless Chromium instead of Node."""
    reference, ref_seconds = reference_outputs(source, images)
    fmt, run = run_candidate(candidate, images, threads, latency_runs, [spec.name for spec in source.outputs], browser=browser)
    specs = settle_kinds(source.outputs, reference)
    drifts = compare(reference, run, labels, specs)
    failures = tolerance_failures(drifts, tolerances or {})
    warnings = [f"the float model's {spec.name} output is degenerate on these images: {reason}"
                for spec, values in zip(specs, reference) if (reason := degenerate_reason(values, spec.kind))]
    return ValidationResult(
        candidate=str(candidate),
        format=fmt,
        images=len(images),
        outputs=drifts,
        latency=run.latency,
        macs=source.macs,
        reference_seconds=ref_seconds,
        candidate_seconds=run.seconds,
        failures=failures,
        warnings=warnings,
        io=_io(Path(candidate), fmt, source, specs, input_range),
        judged=any(limit is not None for limit in (tolerances or {}).values()),
    )


def _io(candidate: Path, fmt: str, source, specs, input_range: tuple) -> dict:
    if fmt in ("tflite", "litertjs"):
        files = {"model.tflite": _tflite_file(Path(candidate)).read_bytes()}
    else:
        files = {"model.json": ((candidate if candidate.is_dir() else candidate.parent) / "model.json").read_bytes()}
    source_info = {"input_dtype": source.input_dtype, "outputs": [spec.to_dict() for spec in specs]}
    return io_contract(fmt, files, source_info, input_range)


def validate_files(
    reference: Path,
    candidate: Path,
    data,
    threads: int = 1,
    latency_runs: int = 50,
    tolerances: dict | None = None,
    trust: bool = False,
    browser: str | None = None,
    custom_objects: tuple[str, ...] = (),
) -> ValidationResult:
    """`mobilepre validate`: load the reference (scanned), the data, then `validate`."""
    _check_tolerances(tolerances or {})
    fmt = candidate_format(candidate)  # refuse a wrong candidate before the slow model load
    if browser is not None:
        if fmt != "tfjs" and browser == "webgl":
            raise MobilepreError(f"{param('browser')} webgl is a TF.js backend; {candidate} runs in LiteRT.js: use wasm or webgpu")
        check_chromium()  # before the slow model load
    source = load_model(reference, trust=trust, custom_objects=custom_objects)
    source = _behind_stages(source, Path(candidate), fmt, data.input_range)
    if source.luma:
        data = dataclasses.replace(data, convert_channels=True)
    dataset = data.load(source, "validation")
    result = validate(source, candidate, dataset.images, dataset.labels, threads, latency_runs, tolerances, data.input_range, browser)
    return dataclasses.replace(result, warnings=[*dataset.warnings, *result.warnings])
