"""Benchmark: how build costs grow. Warm (cached) rebuilds and budget-only changes against cold builds, build
time against profiles and model size, validation cost per image against the validation set's size, and a
merge of CI matrix parts against one build."""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.timing import CHILD_ENV, Target
from mobilepre.profiles import default_profiles_dir, load_profiles

DESCRIPTION = (
    "Wall time of one `mobilepre build` process per run (so each pays Python's and TensorFlow's start), nothing "
    "else running. Cache: a cold build into an empty cache (with --cache-latency), the same build again (warm, "
    "latencies from the cache), again without --cache-latency (every chosen candidate timed again), and with "
    "every max_size budget changed; the demo on the shipped profiles, MobileNetV2 (224x224, random weights, 16 "
    "calibration and 16 validation images) on two profiles measuring 4 TFLite and 2 TF.js modes. Profiles: "
    "4, 8 and 16 demo profiles trying the same 4 TFLite candidates (prefer = size, one thread count), no cache. "
    "Model size: those two profiles on the demo, MobileNetV2 at 96x96 and at 224x224, cold. Validation: one "
    "demo candidate run in its runtime's process on 100, 1,000 and 5,000 images (marginal wall time per image "
    "between sizes), and the build process's resident memory after each of 8 candidates validated on 5,000 "
    "images. Merge: the demo's 6 shipped profiles built as 6 separate processes (a CI matrix, no shared "
    "cache), then `mobilepre merge`, against one build of all 6."
)

SCALE_PROFILES = {
    "tflite-size": 'formats = ["tflite"]\nquantization = ["float32", "float16", "dynamic", "int8"]\nprefer = "size"\n'
                   'threads = 2\n[budget]\nmax_size = "64 MiB"\nmax_latency_ms = 5000.0\n',
    "tfjs-size": 'formats = ["tfjs"]\nquantization = ["float16", "uint8"]\nprefer = "size"\n[budget]\nmax_size = "64 MiB"\n',
}


def _mobilepre(*args, check: bool = True) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mobilepre", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **CHILD_ENV})
    if check and done.returncode not in (0, 1):
        raise RuntimeError(f"mobilepre {' '.join(map(str, args[:3]))}: {done.stderr[-2000:]}")
    return round(time.perf_counter() - started, 2)


def _write_profiles(folder: Path, bodies: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in bodies.items():
        (folder / f"{name}.toml").write_text(f'name = "{name}"\ndescription = "scale benchmark"\n{body}')
    return folder


def _tighter(source: Path, target: Path) -> Path:
    """Copies of the profiles in `source` with every max_size one unit smaller: a budget-only change."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.toml")):
        text = re.sub(r'max_size = "(\d+) (\w+)"', lambda m: f'max_size = "{int(m.group(1)) - 1} {m.group(2)}"', path.read_text())
        (target / path.name).write_text(text)
    return target


def _mobilenet(folder: Path, size: int) -> list:
    from mobilepre._tf import keras

    k = keras()
    k.utils.set_random_seed(0)
    model = k.applications.MobileNetV2(weights=None, input_shape=(size, size, 3))
    path = folder / f"mobilenet_v2_{size}.keras"
    model.save(path)
    rng = np.random.default_rng(0)
    calibration, validation = folder / f"calibration_{size}.npy", folder / f"validation_{size}.npy"
    np.save(calibration, rng.uniform(-1, 1, (16, size, size, 3)).astype(np.float32))
    np.save(validation, rng.uniform(-1, 1, (16, size, size, 3)).astype(np.float32))
    return [path, "--calibration", calibration, "--validation", validation]


def _cache_runs(work: Path, name: str, args: list, profiles: Path | None, progress, no_cache_too: bool) -> dict:
    cache = work / f"cache-{name}"
    with_profiles = [*args, *(["--profiles", profiles] if profiles else [])]
    build = lambda out, *extra: _mobilepre("build", *extra, "--out", work / out, "--force", "--quiet", "--latency-runs", "20", "--cache", cache)  # noqa: E731
    seconds = {"cold": build(f"{name}-cold", *with_profiles, "--cache-latency")}
    seconds["warm"] = build(f"{name}-warm", *with_profiles, "--cache-latency")
    seconds["warm_timing_again"] = build(f"{name}-warm-timed", *with_profiles)
    tighter = _tighter(profiles or default_profiles_dir(), work / f"{name}-tighter")
    seconds["budget_changed"] = build(f"{name}-budget", *args, "--profiles", tighter, "--cache-latency")
    if no_cache_too:
        seconds["cold_no_cache"] = _mobilepre("build", *with_profiles, "--out", work / f"{name}-nocache", "--force", "--quiet",
                                              "--latency-runs", "20", "--no-cache")
    same = _same_bundles(work / f"{name}-cold", work / f"{name}-warm")
    progress(f"cache {name}: {seconds}; warm bundles identical: {same}")
    return {"seconds": seconds, "warm_bundles_identical": same,
            "warm_over_cold": round(seconds["warm"] / seconds["cold"], 4),
            "warm_timing_again_over_cold": round(seconds["warm_timing_again"] / seconds["cold"], 4),
            "budget_changed_over_cold": round(seconds["budget_changed"] / seconds["cold"], 4)}


def _same_bundles(a: Path, b: Path) -> bool:
    files = lambda root: {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file() and p.parent != root}  # noqa: E731
    return files(a) == files(b)


def _profiles_scaling(work: Path, progress) -> dict:
    body = ('formats = ["tflite"]\nquantization = ["float32", "float16", "dynamic", "int8"]\nprefer = "size"\nthreads = 2\n'
            '[budget]\nmax_size = "{n} MiB"\nmax_latency_ms = 500.0\n[drift]\nmin_top1_agreement = 0.9\n')
    seconds = {}
    for count in (4, 8, 16):
        folder = _write_profiles(work / f"profiles-{count}", {f"p{i:02d}": body.replace("{n}", str(4 + i)) for i in range(count)})
        seconds[count] = _mobilepre("build", "--profiles", folder, "--out", work / f"profiles-{count}-out", "--force", "--quiet",
                                    "--latency-runs", "20", "--no-cache")
        progress(f"{count} profiles: {seconds[count]} s")
    return {"seconds": {str(k): v for k, v in seconds.items()}, "8_over_4": round(seconds[8] / seconds[4], 4),
            "16_over_4": round(seconds[16] / seconds[4], 4)}


def _validation_scaling(work: Path, progress) -> dict:
    """Per-image cost of a candidate's run on 100, 1,000 and 5,000 images, and the build process's
    memory across candidates."""
    from mobilepre import demo, quantize
    from mobilepre.candidates import Candidate
    from mobilepre.evaluate import make_evaluator
    from mobilepre.models import load_model
    from mobilepre.validate import run_candidate

    source = load_model(demo.model_path(), isolate=False)
    with np.load(demo.calibration_path()) as stored:
        calibration = stored["images"]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5000, *source.input_shape), dtype=np.uint8)
    artifacts = {}
    for fmt, mode in (("tflite", "int8"), ("tfjs", "uint8")):
        artifact = quantize.convert(source.model, quantize.QuantizationSettings(fmt, mode), calibration)
        folder = work / f"validation-{fmt}"
        folder.mkdir(exist_ok=True)
        for name, data in artifact.files.items():
            (folder / name).write_bytes(data)
        artifacts[fmt] = folder / "model.tflite" if fmt == "tflite" else folder
    runs = {}
    for fmt, path in artifacts.items():
        runs[fmt] = {}
        for count in (100, 1000, 5000):
            started = time.perf_counter()
            _, run = run_candidate(path, images[:count])
            runs[fmt][str(count)] = {"wall_s": round(time.perf_counter() - started, 3), "inference_s": round(run.seconds, 3)}
        w = {int(k): v["wall_s"] for k, v in runs[fmt].items()}
        runs[fmt]["marginal_ms_per_image_100_to_1000"] = round((w[1000] - w[100]) / 900 * 1000, 4)
        runs[fmt]["marginal_ms_per_image_1000_to_5000"] = round((w[5000] - w[1000]) / 4000 * 1000, 4)
        runs[fmt]["growth"] = round(runs[fmt]["marginal_ms_per_image_1000_to_5000"] / runs[fmt]["marginal_ms_per_image_100_to_1000"], 4)
        progress(f"validation {fmt}: {runs[fmt]}")
    (work / "evaluator").mkdir(exist_ok=True)
    evaluator = make_evaluator(source, calibration, images, None, work / "evaluator")
    candidates = [Candidate("tflite", m) for m in ("float32", "float16", "dynamic", "int8")] + [Candidate("tfjs", m) for m in ("float32", "float16", "uint16", "uint8")]
    resident = []
    for candidate in candidates:
        measured = evaluator.measure(candidate)
        if measured.error:
            raise RuntimeError(f"{candidate.key}: {measured.error}")
        resident.append(_resident_bytes())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    progress(f"resident after each candidate (MB): {[round(r / 1e6) for r in resident]}")
    return {"runs": runs, "resident_bytes_after_each_candidate": resident, "peak_bytes": peak,
            "resident_growth_after_the_first_two": resident[-1] - resident[1],
            "resident_growth_after_the_first_two_over_images_bytes": round((resident[-1] - resident[1]) / images.nbytes, 4)}


def _resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _merge(work: Path, progress, one_build_s: float) -> dict:
    parts, seconds = [], {}
    for profile in load_profiles(default_profiles_dir()):
        out = work / f"part-{profile.name}"
        seconds[profile.name] = _mobilepre("build", "--profile", profile.name, "--out", out, "--force", "--quiet", "--latency-runs", "20", "--no-cache")
        parts.append(out)
    merge_s = _mobilepre("merge", work / "merged", *parts, "--force")
    progress(f"parts {seconds}, merge {merge_s} s")
    longest = max(seconds.values())
    return {"part_seconds": seconds, "merge_seconds": merge_s, "one_build_seconds": one_build_s,
            "merge_over_one_build": round(merge_s / one_build_s, 4),
            "critical_path_over_one_build": round((longest + merge_s) / one_build_s, 4),
            "all_parts_over_one_build": round((sum(seconds.values()) + merge_s) / one_build_s, 4)}


def run(work: Path, progress) -> tuple[dict, list]:
    work.mkdir(parents=True, exist_ok=True)
    scale = _write_profiles(work / "scale-profiles", SCALE_PROFILES)
    models = work / "models"
    models.mkdir(exist_ok=True)
    mobilenet_224, mobilenet_96 = _mobilenet(models, 224), _mobilenet(models, 96)
    result = {"description": DESCRIPTION}
    result["cache"] = {"demo": _cache_runs(work, "demo", [], None, progress, no_cache_too=True),
                       "mobilenet_v2_224": _cache_runs(work, "mobilenet_v2_224", mobilenet_224, scale, progress, no_cache_too=False)}
    result["profiles"] = _profiles_scaling(work, progress)
    sizes = {"demo": _mobilepre("build", "--profiles", scale, "--out", work / "size-demo", "--force", "--quiet", "--latency-runs", "20", "--no-cache"),
             "mobilenet_v2_96": _mobilepre("build", *mobilenet_96, "--profiles", scale, "--out", work / "size-96", "--force", "--quiet",
                                           "--latency-runs", "20", "--no-cache"),
             "mobilenet_v2_224": result["cache"]["mobilenet_v2_224"]["seconds"]["cold"]}
    result["model_size"] = {"seconds": sizes, "parameters": {"demo": 43190, "mobilenet_v2_96": 3538984, "mobilenet_v2_224": 3538984},
                            "mobilenet_v2_224_over_demo": round(sizes["mobilenet_v2_224"] / sizes["demo"], 4),
                            "mobilenet_v2_224_over_96": round(sizes["mobilenet_v2_224"] / sizes["mobilenet_v2_96"], 4)}
    progress(f"model size: {sizes}")
    result["validation"] = _validation_scaling(work, progress)
    result["merge"] = _merge(work, progress, result["cache"]["demo"]["seconds"]["cold_no_cache"])
    shutil.rmtree(work, ignore_errors=True)
    targets = []
    for name, row in result["cache"].items():
        targets.append(Target("scale", f"warm rebuild / cold build, {name}", row["warm_over_cold"], 0.15,
                              "start-up, loading and checks only: every candidate, the reference outputs and the latencies come from the cache"))
        targets.append(Target("scale", f"budget-only change / cold build, {name}", row["budget_changed_over_cold"], 0.2,
                              "nothing converted or validated: only the judging changes"))
    for fmt in ("tflite", "tfjs"):
        targets.append(Target("scale", f"validation cost per image, 1,000-5,000 / 100-1,000 images, {fmt}",
                              result["validation"]["runs"][fmt]["growth"], 1.25, "flat: no quadratic step, no copy of the set per run"))
    return result, targets
