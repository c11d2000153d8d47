"""The latency figure a profile's budget names, obtained before judging: measured on this host, estimated
from MACs, or imported from the device."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

from mobilepre.budgets import LatencyFigure
from mobilepre.errors import MobilepreError, param
from mobilepre.toml_reader import read_regular_file

MAX_TIMINGS_BYTES = 4 * 1024 * 1024


def estimated_latency_ms(macs: int, device_gmacs: float) -> float:
    """Latency of one image on a device that sustains `device_gmacs` billion MACs per second."""
    return macs / (device_gmacs * 1e9) * 1000.0


def latency_figure(
    profile,
    candidate_key: str,
    macs: int | None,
    device_timings: dict[str, float] | None,
    measure_host: Callable[[int], object] | None,
) -> LatencyFigure | None:
    """The figure for `profile`'s latency budget, or None when it has none.

    `measure_host(threads, browser_backend)` returns a `runtimes.Latency` on this host (`browser_backend`
    None: the format's own runtime; "wasm" / "webgl": TF.js in headless Chromium, for latency_source
    "browser"); None means latency is not to be measured here (a `check --no-measure`): the figure is
    then marked skipped.
    """
    budget = profile.budget
    if budget.max_latency_ms is None:
        return None
    if budget.latency_source == "estimate":
        if not isinstance(macs, int):
            return LatencyFigure(None, "estimate", missing="no MAC count to estimate latency from")
        return LatencyFigure(estimated_latency_ms(macs, budget.device_gmacs), "estimate", {"device_gmacs": budget.device_gmacs, "macs": macs})
    if budget.latency_source == "device":
        value = (device_timings or {}).get(candidate_key)
        missing = None if value is not None else f"no device timing for {candidate_key}: pass --device-timings FILE"
        return LatencyFigure(value, "device", missing=missing)
    source = "browser" if budget.latency_source == "browser" else "host"
    if measure_host is None:
        return LatencyFigure(None, source, skipped=True, missing="not measured (--no-measure)")
    if source == "browser":
        latency = measure_host(profile.threads, budget.browser_backend or "wasm")
        detail = {"runtime": latency.runtime, **({"rounds": latency.rounds} if latency.rounds > 1 else {})}
        return LatencyFigure(latency.median_ms, "browser", detail, interval=latency.interval, runs=latency.runs)
    latency = measure_host(profile.threads, None)
    detail = {"runtime": latency.runtime, "threads": latency.threads, **({"rounds": latency.rounds} if latency.rounds > 1 else {})}
    return LatencyFigure(latency.median_ms, "host", detail, interval=latency.interval, runs=latency.runs)


def parse_device_timings(path: Path) -> dict[str, float]:
    """`--device-timings FILE`: JSON mapping candidate keys to milliseconds or to the text TFLite's
    `benchmark_model` printed on the device ("Inference timings in us: ... Inference (avg): 1234.5")."""
    raw = read_regular_file(Path(path), param('device_timings'), MAX_TIMINGS_BYTES)
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise MobilepreError(f"{param('device_timings')} {path} is not a JSON file: {error}") from None
    if not isinstance(document, dict):
        raise MobilepreError(f"{param('device_timings')} {path}: expected an object of candidate key -> ms or benchmark_model output")
    timings = {}
    for key, value in document.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            timings[key] = float(value)
            continue
        if isinstance(value, str):
            match = re.search(r"Inference \(avg\):\s*([0-9.eE+]+)", value)
            if match:
                timings[key] = float(match.group(1)) / 1000.0  # benchmark_model prints microseconds
                continue
        raise MobilepreError(
            f"{param('device_timings')} {path}: {key!r} is neither a positive number of ms nor benchmark_model output with 'Inference (avg)'"
        )
    return timings
