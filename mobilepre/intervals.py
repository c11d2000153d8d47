"""Uncertainty of measured figures: 95% intervals and the three verdicts a budget can get from one.

Deterministic wherever the data is: a share of images gets a Wilson score interval, a mean over images a
percentile bootstrap with a fixed seed, a median of timed runs the distribution-free interval of its
order statistics. The same images give the same intervals on any machine.
"""

from __future__ import annotations

import functools
import math
from enum import StrEnum

import numpy as np

Z95 = 1.959963984540054  # two-sided 95%
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20261204
MAX_IMAGES = 10_000_000  # the most images a "would decide it" count is searched up to


class Outcome(StrEnum):
    """A budget against an interval: cleared, on the wrong side, or straddled."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a share `successes / trials` (exact at 0 and 1, unlike the normal one)."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference(per_image) -> tuple[float, float]:
    """Interval of a paired difference of shares (accuracy of the reference minus the candidate's, per
    image +1, 0 or -1): the discordant images each way, `b` (only the reference right) and `c` (only the
    candidate right), give drop = (b - c) / n, bounded by their Wilson intervals (conservative: with no
    discordant image at all it still says how large a drop so few images cannot rule out)."""
    values = np.asarray(per_image)
    n = len(values)
    b_low, b_high = wilson(int((values > 0).sum()), n)
    c_low, c_high = wilson(int((values < 0).sum()), n)
    return b_low - c_high, b_high - c_low


@functools.lru_cache(maxsize=4)
def resample_weights(n: int, resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """(resamples, n) counts: how often each of `n` images is drawn in each bootstrap resample, from a fixed
    seed, so the same images always give the same interval (read-only: shared by every output measured
    on `n` images)."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)
    weights.flags.writeable = False
    return weights


def bootstrap_mean(per_image: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of per-image values."""
    values = np.asarray(per_image, dtype=np.float64).reshape(len(per_image), -1).mean(axis=1)
    if len(values) < 2:
        return float(values.mean()), float(values.mean())
    weights = resample_weights(len(values)) if weights is None else weights
    means = weights @ values / len(values)
    return _percentiles(means)


def bootstrap_ratio(numerators: np.ndarray, denominators: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per resample, sum of numerators over sum of denominators (rows: images; columns kept): for
    statistics that pool counts over images, such as intersection over union."""
    return (weights @ numerators) / np.maximum(weights @ denominators, 1e-300)


def percentile_interval(samples: np.ndarray) -> tuple[float, float]:
    return _percentiles(np.asarray(samples, dtype=np.float64))


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def median_interval(samples) -> tuple[float, float] | None:
    """Distribution-free 95% interval of the median of timed runs: the order statistics the binomial
    (n, 1/2) puts 2.5% beyond on each side. With fewer than 6 runs no such interval exists at 95% (the
    whole range holds the median with less confidence, and one slow run makes it wide): None, and the
    median is judged as a point."""
    ordered = sorted(float(s) for s in samples)
    n = len(ordered)
    if n == 0:
        raise ValueError("no timed runs")
    if n < 6:
        return None
    # largest j with P(Binomial(n, 1/2) < j) <= 0.025: the interval is [x_(j), x_(n+1-j)] (1-based)
    cumulative, j = 0.0, 0
    for k in range(n + 1):
        cumulative += math.comb(n, k) / 2.0**n
        if cumulative > 0.025:
            j = k
            break
    j = max(j, 1)
    return ordered[j - 1], ordered[n - j]


def outcome(low: float, high: float, limit: float, kind: str) -> Outcome:
    """A "min" (floor) or "max" (ceiling) budget against the interval [low, high]."""
    if kind == "min":
        return Outcome.PASS if low >= limit else Outcome.FAIL if high < limit else Outcome.INCONCLUSIVE
    return Outcome.PASS if high <= limit else Outcome.FAIL if low > limit else Outcome.INCONCLUSIVE


def shares_needed(value: float, limit: float, kind: str) -> int | None:
    """How many images a share measured at `value` (top-1 agreement, ...) would need for its Wilson
    interval to clear or miss `limit`; None when the estimate sits on the limit (no count decides)."""
    if value == limit:
        return None

    def decided(n: int) -> bool:
        low, high = wilson(round(value * n), n)
        return outcome(low, high, limit, kind) is not Outcome.INCONCLUSIVE

    if not decided(MAX_IMAGES):
        return None
    low, high = 1, MAX_IMAGES
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if decided(middle) else (middle + 1, high)
    return low


def scaled_needed(value: float, low: float, high: float, limit: float, samples: int) -> int | None:
    """How many samples an interval measured on `samples` would need, narrowing as 1/sqrt(n), for the
    side facing `limit` to stop reaching it; None when the estimate sits on the limit."""
    distance = abs(value - limit)
    if distance == 0:
        return None
    half = (value - low) if limit < value else (high - value)
    return max(samples + 1, math.ceil(samples * (half / distance) ** 2 - 1e-9))
