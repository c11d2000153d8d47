"""Benchmark 1, tool overhead: `mobilepre build` against the converters called directly, and profile reuse."""

from __future__ import annotations

import json
import re
from pathlib import Path

from benchmarks.timing import MOBILEPRE, PYTHON, BenchError, Command, Target, median, paired_ratio, time_commands

# The artifacts both sides make from the embedded demo model: one profile per artifact.
ARTIFACTS = (("tflite", "float32"), ("tflite", "int8"), ("tfjs", "float32"), ("tfjs", "uint8"))
MAX_OVERHEAD = 1.15
MAX_REUSE = 1.05  # "almost nothing": doubling the profiles, all reusing artifacts, adds at most 5%

DESCRIPTION = (
    "Both sides run in a fresh process (TensorFlow start-up included) on the embedded demo model and make "
    "the same four artifacts (TFLite float32 and int8, TF.js float32 and uint8), then run the 360 validation "
    "images through each artifact's runtime (LiteRT; TF.js on Node, wasm) and compare with the Keras outputs. "
    "Direct script (`benchmarks/direct_convert.py`): load the model, one SavedModel export, "
    "`TFLiteConverter.from_saved_model` / `convert_tf_saved_model` with mobilepre's options, the same "
    "runtime calls, top-1 agreement. `mobilepre build` with four one-mode profiles (no latency budgets, so "
    "no latency runs on either side) adds what the tool does around that: the model safety scan, the trial "
    "load in a child process (as shipped; `MOBILEPRE_ISOLATE_LOADS=0` turns it off), data loading and "
    "hashing, every drift metric, gzip sizes, sealed manifests, atomic bundles, report.json/html. "
    "Reuse: the same build with each profile duplicated (8 profiles, still 4 conversions)."
)


def _profile(fmt: str, mode: str, name: str) -> str:
    return "\n".join(
        [
            f'name = "{name}"',
            'description = "benchmark profile: one artifact"',
            f'formats = ["{fmt}"]',
            f'quantization = ["{mode}"]',
            "[budget]",
            'max_size = "1 GiB"',
            "",
        ]
    )


def write_profiles(folder: Path, copies: int) -> Path:
    """One profile per artifact, or `copies` profiles per artifact that all choose the same artifact."""
    folder.mkdir(parents=True, exist_ok=True)
    for fmt, mode in ARTIFACTS:
        for copy in range(copies):
            name = f"{fmt}-{mode}" + (f"-{copy + 1}" if copy else "")
            (folder / f"{name}.toml").write_text(_profile(fmt, mode, name))
    return folder


def _conversions(stdout: str) -> int:
    match = re.search(r"(\d+) conversions, (\d+) validations", stdout)
    if match is None:
        raise BenchError(f"mobilepre build did not print its conversion count: {stdout[-300:]!r}")
    return int(match.group(1))


def _check_same_artifacts(build_out: Path, direct: dict) -> None:
    """Both sides must have made the same artifacts: identical TFLite files and TF.js weight shards."""
    import hashlib

    for fmt, mode in ARTIFACTS:
        bundle = build_out / f"{fmt}-{mode}"
        files = (
            {"model.tflite": bundle / "model.tflite"}
            if fmt == "tflite"
            else {p.name: p for p in sorted((bundle / "tfjs").iterdir()) if p.name != "model.json"}
        )
        built = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
        if built != direct[f"{fmt}-{mode}"]["sha256"]:
            raise BenchError(f"{fmt}-{mode}: mobilepre build and the direct script made different artifacts")


def _ratios(seconds: dict) -> dict:
    return {
        "build_over_direct": paired_ratio(seconds["build"], seconds["direct"]),
        "build_no_trial_load_over_direct": paired_ratio(seconds["build_no_trial_load"], seconds["direct"]),
        "reused_profiles_over_build": paired_ratio(seconds["build_reused_profiles"], seconds["build"]),
    }


def _spread(numerator: list[float], denominator: list[float]) -> str:
    ratios = [a / b for a, b in zip(numerator, denominator)]
    return f"per-round ratios {min(ratios):.2f} to {max(ratios):.2f}"


def judge(seconds: dict) -> list[Target]:
    """The three targets, from the raw seconds of every round."""
    medians = {name: median(values) for name, values in seconds.items()}
    ratios = _ratios(seconds)
    trial_load = medians["build"] - medians["build_no_trial_load"]
    rest = medians["build_no_trial_load"] - medians["direct"]
    per_profile = (medians["build_reused_profiles"] - medians["build"]) / len(ARTIFACTS)
    why = (
        f"{_spread(seconds['build'], seconds['direct'])}; of the {medians['build'] - medians['direct']:.2f} s "
        f"between the medians, the trial load in a child process (one more TensorFlow start-up, for crash "
        f"isolation) is {trial_load:.2f} s and everything else (scan, data hashing, drift metrics, gzip, "
        f"manifests, reports) {rest:+.2f} s"
    )
    return [
        Target(
            "overhead", "mobilepre build / direct converters (as shipped)", ratios["build_over_direct"], MAX_OVERHEAD, why
        ),
        Target(
            "overhead",
            "mobilepre build / direct converters (MOBILEPRE_ISOLATE_LOADS=0)",
            ratios["build_no_trial_load_over_direct"],
            MAX_OVERHEAD,
            f"{_spread(seconds['build_no_trial_load'], seconds['direct'])}; medians differ by {rest:+.2f} s",
        ),
        Target(
            "overhead",
            "4 more profiles reusing the 4 artifacts",
            ratios["reused_profiles_over_build"],
            MAX_REUSE,
            f"{_spread(seconds['build_reused_profiles'], seconds['build'])}; {per_profile * 1000:+.0f} ms per "
            "extra profile (difference of the medians)",
        ),
    ]


def run(work: Path, rounds: int, progress) -> tuple[dict, list[Target]]:
    specs = [f"{fmt}:{mode}" for fmt, mode in ARTIFACTS]
    once = write_profiles(work / "profiles", copies=1)
    twice = write_profiles(work / "profiles-reused", copies=2)

    def build(profiles: Path, out: str, env: dict | None = None) -> Command:
        return Command((MOBILEPRE, "build", "--out", str(work / out), "--profiles", str(profiles), "--force"), env or {})

    commands = {
        "direct": Command((PYTHON, "-m", "benchmarks.direct_convert", str(work / "direct"), *specs)),
        "build": build(once, "build"),
        "build_no_trial_load": build(once, "build-no-trial", {"MOBILEPRE_ISOLATE_LOADS": "0"}),
        "build_reused_profiles": build(twice, "build-reused"),
    }
    seconds, stdout = time_commands(commands, rounds, progress)
    direct = json.loads(stdout["direct"].strip().splitlines()[-1])
    _check_same_artifacts(work / "build", direct)
    conversions = {name: _conversions(stdout[name]) for name in commands if name != "direct"}
    if set(conversions.values()) != {len(ARTIFACTS)}:
        raise BenchError(f"expected {len(ARTIFACTS)} conversions in every build, got {conversions}")

    medians = {name: round(median(values), 3) for name, values in seconds.items()}
    targets = judge(seconds)
    result = {
        "description": DESCRIPTION,
        "artifacts": {k: {"bytes": v["bytes"], "top1_agreement": v["top1_agreement"]} for k, v in direct.items()},
        "rounds": rounds,
        "seconds": {name: [round(s, 3) for s in values] for name, values in seconds.items()},
        "median_seconds": medians,
        "conversions": conversions,
        "ratios": {name: round(value, 4) for name, value in _ratios(seconds).items()},
        "trial_load_seconds": round(medians["build"] - medians["build_no_trial_load"], 3),
        "seconds_per_reusing_profile": round((medians["build_reused_profiles"] - medians["build"]) / len(ARTIFACTS), 3),
    }
    return result, targets
