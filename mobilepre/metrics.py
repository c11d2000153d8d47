"""The one table of drift tolerances: each profile key, the metric it bounds, floor or ceiling, and range."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """One drift budget a profile may set.

    Attributes:
        name (str): the key in a profile's [drift] table, e.g. "min_top1_agreement".
        metric (str): the measured metric it bounds (a field of `validate.OutputDrift`), e.g.
            "top1_agreement".
        kind (str): "min" (the metric must be at least the limit) or "max" (at most).
        low, high (float): the range a limit may take.
        needs (str | None): what the metric needs to exist: "classes" (a class-score output),
            "labels" (labelled validation images) or None (any output).
        meaning (str): one line for documentation.
    """

    name: str
    metric: str
    kind: str
    low: float
    high: float
    needs: str | None
    meaning: str

    def fails(self, value: float, limit: float) -> bool:
        return value < limit if self.kind == "min" else value > limit

    def gap(self, value: float, limit: float) -> float:
        """How far `value` is past `limit`, as a fraction of the limit (0 when within)."""
        return relative_gap(value, limit, self.kind)


TOLERANCES: dict[str, Tolerance] = {
    t.name: t
    for t in (
        Tolerance("min_top1_agreement", "top1_agreement", "min", 0.0, 1.0, "classes",
                  "share of inputs whose top-1 class matches the reference"),
        Tolerance("min_top5_agreement", "top5_agreement", "min", 0.0, 1.0, "classes",
                  "share of inputs whose reference top-1 class is in the candidate's top 5"),
        Tolerance("max_abs_error", "max_abs_error", "max", 0.0, math.inf, None, "largest absolute output difference"),
        Tolerance("max_mean_abs_error", "mean_abs_error", "max", 0.0, math.inf, None, "mean absolute output difference"),
        Tolerance("max_rmse", "rmse", "max", 0.0, math.inf, None, "root mean square output difference"),
        Tolerance("min_psnr_db", "psnr_db", "min", 0.0, math.inf, None, "peak signal-to-noise ratio of the outputs, dB"),
        Tolerance("min_cosine", "cosine", "min", -1.0, 1.0, None, "cosine similarity of the per-image output vectors"),
        Tolerance("max_accuracy_drop", "accuracy_drop", "max", 0.0, 1.0, "labels",
                  "accuracy against labels lost relative to the reference"),
    )
}


def relative_gap(value: float, limit: float, kind: str) -> float:
    """How far a value is past its limit, as a fraction of the limit (0 when within)."""
    if kind == "max":
        return max(0.0, (value - limit) / limit) if limit else (0.0 if value <= 0 else math.inf)
    return max(0.0, (limit - value) / limit) if limit else 0.0
