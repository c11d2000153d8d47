"""A build output folder read back: the one reader of its report.json, timings.json and the bundles it names.

`check`, `merge`, `copy`, `check-files`, `--baseline` and the `--force` check of `build` and `merge` all
read a build output through `read_output`; none opens report.json itself. Every file is read as a
regular file under a size cap, parsed, and checked for the report's schema before anything is used;
what is wrong is a `NotAnOutput` whose message the caller puts after the place it names.
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from pathlib import Path

from mobilepre.errors import MobilepreError
from mobilepre.manifest import safe_relative
from mobilepre.measured import Measured
from mobilepre.results import REPORT_SCHEMA, BuildResult, ProfileResult, finite
from mobilepre.signing import SIGNATURE_FILE
from mobilepre.toml_reader import read_regular_file

MAX_REPORT_BYTES = 64 * 1024 * 1024  # report.json and timings.json are read whole: a cap, like every file read whole
BUILD_FILES = frozenset({"report.json", "report.html", "report.md", "timings.json"})


class NotAnOutput(Exception):
    """Why a folder is not (or not wholly) the output of a `mobilepre build`; the caller says where."""


@dataclass(frozen=True)
class BuildOutput:
    """A build output as its report.json states it.

    Attributes:
        folder (Path): the output folder.
        report (dict): report.json, of a known schema (`REPORT_SCHEMA` family).
        bundles (dict[str, str | None]): profile name -> its bundle's folder name, None when the build
            found no candidate for it. Only plain folder names count (no path, no `..`).
    """

    folder: Path
    report: dict
    bundles: dict

    def timings(self) -> dict:
        """timings.json: every figure of the build, host latencies included."""
        timings = read_json(self.folder / "timings.json")
        if not isinstance(timings, dict):
            raise NotAnOutput("timings.json is not a build's timings")
        return timings

    def result(self) -> BuildResult:
        """The build's full results (timings.json), checked against report.json: what `merge` joins."""
        timings = self.timings()
        if not isinstance(timings.get("results"), list):
            raise NotAnOutput("timings.json holds no results (a build by an older mobilepre?)")
        try:
            result = BuildResult(str(self.folder), tuple(ProfileResult.from_dict(p) for p in timings["results"]),
                                 tuple(Measured.from_dict(c) for c in timings["candidates"]), 0, 0, self.report["source"])
            stable = [ProfileResult(p.name, p.profile, tuple(f.without_host_figures() for f in p.formats)).to_dict() for p in result.profiles]
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, MobilepreError) as error:
            raise NotAnOutput(f"report.json or timings.json does not have a build's layout ({error})") from None
        if finite(stable) != self.report.get("profiles"):
            raise NotAnOutput("report.json and timings.json disagree on the profiles' results (edited or damaged)")
        return result

    def chosen_latencies(self) -> dict:
        """(profile, format) -> (ms, source) of each chosen candidate's latency, from timings.json when it
        is there and readable (host figures are not in report.json); empty otherwise."""
        if not (self.folder / "timings.json").exists():
            return {}
        out = {}
        for item in self.timings().get("profiles") or []:
            if isinstance(item, dict) and isinstance(item.get("ms"), (int, float)) and not isinstance(item.get("ms"), bool):
                out[(item.get("profile"), item.get("format"))] = (float(item["ms"]), item.get("source"))
        return out


def read_json(path: Path):
    """A JSON file of a build output, read as a regular file under `MAX_REPORT_BYTES`."""
    try:
        raw = read_regular_file(path, path.name, MAX_REPORT_BYTES)
    except MobilepreError as error:
        raise NotAnOutput(error.message.replace(f"{path.name} {path}", path.name, 1)) from None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise NotAnOutput(f"{path.name} is not JSON ({error})") from None


def read_output(folder: Path) -> BuildOutput:
    """The build output in `folder`, or `NotAnOutput` saying why it is not one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotAnOutput("it is not a folder")
    path = folder / "report.json"
    try:
        info = path.lstat()
    except FileNotFoundError:
        raise NotAnOutput("it has no report.json") from None
    except OSError as error:
        raise NotAnOutput(f"its report.json cannot be read ({error.strerror or error})") from None
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_REPORT_BYTES:
        raise NotAnOutput("its report.json is not a regular file of a sensible size")
    try:
        report = read_json(path)
    except NotAnOutput:
        raise NotAnOutput("its report.json is not a mobilepre report") from None
    if not isinstance(report, dict) or not str(report.get("schema", "")).startswith(REPORT_SCHEMA.split("/")[0] + "/"):
        raise NotAnOutput("its report.json is not a mobilepre report")
    bundles = {}
    for entry in report.get("profiles", []) if isinstance(report.get("profiles"), list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            bundle = entry.get("bundle")
            bundles[entry["name"]] = bundle if isinstance(bundle, str) and safe_relative(bundle) and "/" not in bundle else None
    return BuildOutput(folder, report, bundles)


def output_problem(folder: Path) -> str | None:
    """Why `folder` is not wholly the output of an earlier `mobilepre build` (what `--force` may replace),
    or None when it is: a report.json of ours, and nothing but the reports and the bundles it names (each
    a folder with its manifest)."""
    try:
        output = read_output(folder)
    except NotAnOutput as why:
        return str(why)
    named = {bundle for bundle in output.bundles.values() if bundle}
    for entry in sorted(Path(folder).iterdir()):
        if entry.name in BUILD_FILES and entry.is_file() and not entry.is_symlink():
            continue
        if entry.name in named and entry.is_dir() and not entry.is_symlink() and (entry / "manifest.json").is_file():
            continue
        if entry.name == SIGNATURE_FILE:
            continue
        return f"it holds {entry.name}, which a build does not write"
    return None
