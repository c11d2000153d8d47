"""`mobilepre merge`: the outputs of builds of some profiles each (the cells of a CI matrix) as one build output."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from mobilepre.check import bundle_problem
from mobilepre.errors import MobilepreError
from mobilepre.fsutil import check_output, fsync_tree, os_error_message, replace_tree, staging_folder
from mobilepre.output import NotAnOutput, output_problem, read_output
from mobilepre.overview import load_baseline
from mobilepre.measured import Measured
from mobilepre.results import BuildResult
from mobilepre.writing import write_reports

# What parts must agree on, section by section of report.json, to be one build.
_SAME = (("schema", "report schema"), ("versions", "toolchain"), ("source", "model"), ("data", "images"))


def merge(out: Path, parts, force: bool = False, verify_key: Path | None = None, baseline: Path | None = None) -> BuildResult:
    """Assemble the build outputs `parts` into `out`: their bundles, and one report.json, report.html,
    report.md and timings.json, byte-identical to one build of all their profiles with the same
    measurements. Every part is checked first (a build output; every bundle's files match its manifest,
    and with `verify_key` its signature); parts built from another model, other images or another
    toolchain, or holding the same profile twice, are refused. Nothing is written until all pass."""
    out, parts = Path(out), [Path(p) for p in parts]
    if not parts:
        raise MobilepreError("merge needs the output folders of the builds to merge: mobilepre merge OUT PART...")
    try:
        check_output(out, force, "OUT", tuple(parts) + (verify_key, baseline), output_problem)
        read = [_read_part(part, verify_key) for part in parts]
        first_part, first_report, _ = read[0]
        for part, report, _ in read[1:]:
            for key, what in _SAME:
                if report.get(key) != first_report.get(key):
                    raise MobilepreError(f"part {part} was built with another {what} than part {first_part} "
                                         f"({_first_difference(first_report.get(key), report.get(key), key)}): merge parts of one build only")
        owner: dict[str, Path] = {}
        profiles, candidates, conversions, validations = [], {}, 0, 0
        for part, report, result in read:
            for profile in result.profiles:
                if profile.name in owner:
                    raise MobilepreError(f"profile {profile.name} is in part {owner[profile.name]} and in part {part}: each profile may be built in one part only")
                owner[profile.name] = part
                profiles.append(profile)
            for record in result.candidates:
                candidates[record.key] = _same_candidate(candidates.get(record.key), record, part)
            conversions, validations = conversions + result.conversions, validations + result.validations
        prior = load_baseline(baseline) if baseline is not None else None
        merged = BuildResult(str(out), tuple(sorted(profiles, key=lambda p: p.name)), tuple(candidates[k] for k in sorted(candidates)),
                             conversions, validations, first_report["source"])
        with staging_folder(out) as staging:
            for profile in merged.profiles:
                if profile.bundle:
                    shutil.copytree(owner[profile.name] / profile.bundle, staging / profile.bundle, symlinks=True)
            write_reports(staging, merged, first_report["data"], first_report["versions"], prior)
            fsync_tree(staging)
            replace_tree(staging, out)
    except OSError as error:
        raise MobilepreError(os_error_message(error, error.filename or out)) from None
    return merged


def _read_part(part: Path, verify_key: Path | None) -> tuple[Path, dict, BuildResult]:
    """A part's report.json and its full results (timings.json), checked against each other and its bundles."""
    problem = output_problem(part)
    if problem:
        raise MobilepreError(f"part {part}: {problem}: give the output folder of a `mobilepre build`")
    try:
        output = read_output(part)
        result = output.result()
    except NotAnOutput as why:
        raise MobilepreError(f"part {part}: {why}: build the part again") from None
    for profile in result.profiles:
        if profile.bundle:
            problem = bundle_problem(part / profile.bundle, verify_key, profile.name)
            if problem:
                raise MobilepreError(f"part {part}: bundle {profile.bundle}: {problem}: build the part again")
    return part, output.report, result


def _same_candidate(seen: Measured | None, record: Measured, part: Path) -> Measured:
    """One record of a candidate two parts measured: the same bytes and drift (host latencies joined)."""
    if seen is None:
        return record
    a, b = seen.to_dict(), record.to_dict()
    for key in ("bytes", "gzip_bytes", "drift", "error", "sparsity"):
        if a[key] != b[key]:
            raise MobilepreError(f"part {part} measured candidate {record.key} differently ({key}) than an earlier part: "
                                 "were the parts built from the same inputs and toolchain?")
    return dataclasses.replace(seen, latency_ms=tuple(sorted({**dict(record.latency_ms), **dict(seen.latency_ms)}.items())))


def _first_difference(a, b, where: str) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{where}.{key}")
    text = lambda v: json.dumps(v)[:40]  # noqa: E731
    return f"{where}: {text(a)} vs {text(b)}"
