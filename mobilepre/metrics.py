"""The one table of drift tolerances (each profile key, the metric it bounds, floor or ceiling, range and
the kinds of output it makes sense for), and the kinds of output a model has."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class OutputKind(StrEnum):
    """What a model output means, which decides how its drift is judged."""

    PROBABILITIES = "probabilities"  # class scores after softmax: top-k agreement, accuracy, KL divergence
    LOGITS = "logits"  # class scores before softmax: the same, KL on their softmax
    SEGMENTATION = "segmentation"  # per-pixel class scores (N, H, W, C): per-pixel agreement, mean IoU
    PROBABILITY_MAP = "probability_map"  # per-pixel probabilities (a detector's heat map, a sigmoid mask): their error
    REGRESSION = "regression"  # boxes, landmarks, values: absolute error, also relative to the output's range
    EMBEDDING = "embedding"  # vectors compared by angle: cosine, nearest-neighbour agreement
    IMAGE = "image"  # pixels (N, H, W, C): PSNR, SSIM


CLASS_SCORES = frozenset({OutputKind.PROBABILITIES, OutputKind.LOGITS})
ALL_KINDS = frozenset(OutputKind)


@dataclass(frozen=True)
class Tolerance:
    """One drift budget a profile may set.

    Attributes:
        name (str): the key in a profile's [drift] table, e.g. "min_top1_agreement".
        metric (str): the measured metric it bounds (a field of `validate.OutputDrift`), e.g.
            "top1_agreement".
        kind (str): "min" (the metric must be at least the limit) or "max" (at most).
        low, high (float): the range a limit may take.
        needs (str | None): what the metric needs beyond its output: "labels" (labelled validation
            images) or None.
        kinds (frozenset[OutputKind]): the kinds of output the metric makes sense for; a profile's
            [drift] default applies to those outputs only.
        meaning (str): one line for documentation.
    """

    name: str
    metric: str
    kind: str
    low: float
    high: float
    needs: str | None
    kinds: frozenset
    meaning: str

    def fails(self, value: float, limit: float) -> bool:
        return value < limit if self.kind == "min" else value > limit

    def gap(self, value: float, limit: float) -> float:
        """How far `value` is past `limit`, as a fraction of the limit (0 when within)."""
        return relative_gap(value, limit, self.kind)


_CLASSES_AND_PIXELS = CLASS_SCORES | {OutputKind.SEGMENTATION}

TOLERANCES: dict[str, Tolerance] = {
    t.name: t
    for t in (
        Tolerance("min_top1_agreement", "top1_agreement", "min", 0.0, 1.0, None, _CLASSES_AND_PIXELS,
                  "share of inputs (of pixels, for segmentation) whose top-1 class matches the reference"),
        Tolerance("min_top5_agreement", "top5_agreement", "min", 0.0, 1.0, None, CLASS_SCORES,
                  "share of inputs whose reference top-1 class is in the candidate's top 5"),
        Tolerance("max_accuracy_drop", "accuracy_drop", "max", 0.0, 1.0, "labels", CLASS_SCORES,
                  "accuracy against labels lost relative to the reference"),
        Tolerance("max_kl_divergence", "kl_divergence", "max", 0.0, math.inf, None, CLASS_SCORES,
                  "mean KL divergence of the candidate's class distribution from the reference's"),
        Tolerance("min_mean_iou", "mean_iou", "min", 0.0, 1.0, None, frozenset({OutputKind.SEGMENTATION}),
                  "mean intersection over union of the candidate's mask with the reference's, over classes"),
        Tolerance("max_abs_error", "max_abs_error", "max", 0.0, math.inf, None, ALL_KINDS, "largest absolute output difference"),
        Tolerance("max_mean_abs_error", "mean_abs_error", "max", 0.0, math.inf, None, ALL_KINDS, "mean absolute output difference"),
        Tolerance("max_relative_error", "relative_error", "max", 0.0, math.inf, None, ALL_KINDS,
                  "largest absolute difference over the reference output's range on the validation set"),
        Tolerance("max_rmse", "rmse", "max", 0.0, math.inf, None, ALL_KINDS, "root mean square output difference"),
        Tolerance("min_psnr_db", "psnr_db", "min", 0.0, math.inf, None, ALL_KINDS, "peak signal-to-noise ratio of the outputs, dB"),
        Tolerance("min_ssim", "ssim", "min", -1.0, 1.0, None, frozenset({OutputKind.IMAGE}),
                  "structural similarity of the output images (global, per image and channel)"),
        Tolerance("min_cosine", "cosine", "min", -1.0, 1.0, None, ALL_KINDS, "cosine similarity of the per-image output vectors"),
        Tolerance("min_nn_agreement", "nn_agreement", "min", 0.0, 1.0, None, frozenset({OutputKind.EMBEDDING}),
                  "share of inputs whose nearest neighbour in the validation set (by cosine) stays the same"),
    )
}


def relative_gap(value: float, limit: float, kind: str) -> float:
    """How far a value is past its limit, as a fraction of the limit (0 when within)."""
    if kind == "max":
        return max(0.0, (value - limit) / limit) if limit else (0.0 if value <= 0 else math.inf)
    return max(0.0, (limit - value) / limit) if limit else 0.0


@dataclass(frozen=True)
class OutputDrift:
    """Drift of one output tensor, measured as its kind asks (`mobilepre.metrics.OutputKind`).

    Attributes:
        name (str): the output's name (the Keras output name).
        kind (OutputKind): what the output means.
        max_abs_error, mean_abs_error, rmse (float): over all values.
        relative_error (float): max_abs_error over the reference output's range on these images.
        psnr_db (float): 20 log10(reference range / rmse), capped at `PSNR_CAP_DB`.
        cosine (float): mean cosine similarity of the per-image output vectors.
        top1_agreement (float | None): class scores: how often the candidate's top-1 class equals the
            reference's; segmentation: the same per pixel.
        top5_agreement (float | None): class scores: how often the reference's top-1 is in the
            candidate's top-k (k = min(5, classes)).
        kl_divergence (float | None): class scores: mean KL(reference || candidate) of the class
            distributions (softmax of logits).
        accuracy_reference, accuracy_candidate, accuracy_drop (float | None): class scores, with labels.
        mean_iou (float | None): segmentation: mean IoU of the candidate's mask with the reference's.
        nn_agreement (float | None): embedding: how often each image's nearest neighbour (cosine) among
            the other images stays the same.
        ssim (float | None): image: mean structural similarity per image and channel.
        images (int | None): how many images the metrics were measured on.
        intervals (dict | None): metric -> (low, high), its 95% interval over the images
            (`mobilepre.intervals`): Wilson for shares of images (top-1, top-5, nearest-neighbour
            agreement), a seeded percentile bootstrap over images for means (and for per-pixel agreement
            and mean IoU, whose pixels are not independent). A maximum (max_abs_error, relative_error)
            has none: it is exact over these images.
    """

    name: str
    kind: OutputKind
    max_abs_error: float
    mean_abs_error: float
    relative_error: float
    rmse: float
    psnr_db: float
    cosine: float
    top1_agreement: float | None = None
    top5_agreement: float | None = None
    kl_divergence: float | None = None
    accuracy_reference: float | None = None
    accuracy_candidate: float | None = None
    accuracy_drop: float | None = None
    mean_iou: float | None = None
    nn_agreement: float | None = None
    ssim: float | None = None
    images: int | None = None
    intervals: dict | None = None

    def metrics(self) -> dict:
        """metric -> value, the measured ones only."""
        return {k: round(float(v), 6) for k, v in self.__dict__.items()
                if k not in ("name", "kind", "images", "intervals") and v is not None}

    def to_dict(self) -> dict:
        out = {"kind": str(self.kind), "name": self.name, **self.metrics()}
        if self.images is not None:
            out["images"] = self.images
        if self.intervals:
            out["intervals"] = {k: [round(float(lo), 6), round(float(hi), 6)] for k, (lo, hi) in sorted(self.intervals.items())}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> OutputDrift:
        """The drift `to_dict` wrote (a report, a cache record): KeyError, TypeError or ValueError when it is not one."""
        fields = {k: v for k, v in data.items() if k not in ("name", "kind", "images", "intervals")}
        unknown = set(fields) - set(cls.__dataclass_fields__)
        if unknown or not isinstance(data["name"], str):
            raise ValueError(f"not an output's drift: {sorted(unknown) or data['name']!r}")
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in fields.values()):
            raise TypeError("drift metrics are numbers")
        images = data.get("images")
        if images is not None and (isinstance(images, bool) or not isinstance(images, int) or images < 0):
            raise TypeError("images is a count")
        intervals = data.get("intervals")
        if intervals is not None:
            if not isinstance(intervals, dict) or not set(intervals) <= set(fields):
                raise ValueError("intervals name measured metrics")
            intervals = {k: _pair(v) for k, v in intervals.items()}
        return cls(data["name"], OutputKind(data["kind"]), **fields, images=images, intervals=intervals)


def _pair(value) -> tuple[float, float]:
    if (not isinstance(value, list) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value) or value[0] > value[1]):
        raise TypeError("an interval is [low, high]")
    return float(value[0]), float(value[1])
