"""A build's output written: each profile's bundle (manifest last) and the reports, from the typed results."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from pathlib import Path

from mobilepre.errors import MobilepreError
from mobilepre.manifest import bundle_files
from mobilepre.overview import latency_figures, markdown
from mobilepre.report import render_html
from mobilepre.results import REPORT_SCHEMA, BuildResult, FormatResult, ProfileResult, finite
from mobilepre.versions import toolchain_versions


def created_stamp() -> str | None:
    """The manifests' creation time: `SOURCE_DATE_EPOCH` (reproducible builds), else none."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return None
    try:
        return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):
        raise MobilepreError(f"SOURCE_DATE_EPOCH {epoch!r} is not a whole number of seconds") from None


def write_outputs(staging: Path, profiles, results: list[FormatResult], measured, counts: tuple, source_info, data: dict, out: str,
                   input_range: tuple = (0.0, 1.0), baseline: dict | None = None) -> BuildResult:
    """Each profile's bundle (when every format found a candidate) and the reports into `staging`, from the
    search's `results` and every `measured` candidate; `counts` is (conversions, validations)."""
    versions, created = toolchain_versions(), created_stamp()
    measured = sorted(measured, key=lambda m: m.key)
    by_key = {m.key: m for m in measured}
    summaries = []
    for profile in profiles:
        summary = ProfileResult(profile.name, profile, tuple(r for r in results if r.profile == profile.name))
        if summary.passed:
            chosen = [(f.chosen.without_host_figures(), by_key[f.chosen.candidate].files) for f in summary.shipped]
            for name, content in bundle_files(profile, chosen, source_info, data, versions, created, input_range).items():
                path = staging / profile.name / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
        summaries.append(summary)
    # every measured candidate, by key (a merge orders them so too), as the reports list them (no files)
    candidates = tuple(dataclasses.replace(m, files={}) for m in measured)
    result = BuildResult(out, tuple(summaries), candidates, *counts, source_info)
    write_reports(staging, result, data, versions, baseline)
    return result


def write_reports(folder: Path, result: BuildResult, data: dict, versions: dict, baseline: dict | None = None) -> None:
    """report.json (every figure that is the same on every run), timings.json (host figures: latencies,
    and every trial as judged), report.html and report.md. The reports are rendered from the results as
    the files record them, so `mobilepre merge`, which reads them back, renders the same bytes."""
    recorded = BuildResult.from_dict(json.loads(json.dumps(result.to_dict())))
    stable = [p.without_host_figures() for p in recorded.profiles]
    report = {
        "data": data,
        "profiles": [p.to_dict() for p in stable],
        "schema": REPORT_SCHEMA,
        "source": recorded.source,
        "versions": versions,
    }
    (folder / "report.json").write_text(json.dumps(finite(report), indent=2, sort_keys=True) + "\n")
    latencies = latency_figures(recorded)
    chosen_latency = [{"profile": p, "format": f, "ms": ms, "source": source} for (p, f), (ms, source) in sorted(latencies.items())]
    timings = {"candidates": [c.to_dict() for c in recorded.candidates], "profiles": chosen_latency,
               "results": [p.to_dict() for p in recorded.profiles]}
    (folder / "timings.json").write_text(json.dumps(finite(timings), indent=2, sort_keys=True) + "\n")
    (folder / "report.html").write_text(render_html(recorded, latencies, baseline))
    (folder / "report.md").write_text(markdown(recorded, latencies, baseline))
