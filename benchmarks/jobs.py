"""Benchmark: build wall time with --jobs 2 against --jobs 1 (candidates converted in worker processes and
validated in parallel), on the demo with the shipped profiles and on a MobileNetV2."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.timing import Target

DESCRIPTION = (
    "Wall time of one `mobilepre build` process per run, --jobs 1 then --jobs 2, nothing else running. "
    "Demo: the shipped profiles (web-mobile fine-tunes two pruned models, which no job count speeds up). "
    "MobileNetV2 (224x224, random weights, 16 calibration and 16 validation images): two profiles that "
    "measure every TFLite mode but mixed and every TF.js mode but mixed (prefer = size, no pruning), so "
    "each round has several conversions to share out. A worker process imports TensorFlow once per build "
    "(about 5 s), which a small model's conversions do not earn back."
)

PROFILES = {
    "every-tflite": 'formats = ["tflite"]\nquantization = ["float32", "float16", "dynamic", "int16x8", "int8", "int4"]\n',
    "every-tfjs": 'formats = ["tfjs"]\nquantization = ["float32", "float16", "uint16", "uint8"]\n',
}


def _mobilenet(folder: Path) -> tuple[Path, Path, Path]:
    from mobilepre.quantize._tf import quiet_tensorflow

    quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    path = folder / "mobilenet_v2.keras"
    model.save(path)
    rng = np.random.default_rng(0)
    calibration, validation = folder / "calibration.npy", folder / "validation.npy"
    np.save(calibration, rng.uniform(-1, 1, (16, 224, 224, 3)).astype(np.float32))
    np.save(validation, rng.uniform(-1, 1, (16, 224, 224, 3)).astype(np.float32))
    return path, calibration, validation


def _build(args: list, out: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mobilepre", "build", *args, "--out", str(out), "--force", "--latency-runs", "5"],
                          capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise RuntimeError(done.stderr[-2000:])
    return round(time.perf_counter() - started, 2)


def run(work: Path, progress) -> tuple[dict, list]:
    work.mkdir(parents=True, exist_ok=True)
    profiles = work / "profiles"
    profiles.mkdir(exist_ok=True)
    for name, body in PROFILES.items():
        (profiles / f"{name}.toml").write_text(
            f'name = "{name}"\ndescription = "jobs benchmark"\n{body}prefer = "size"\n[budget]\nmax_size = "64 MiB"\n'
        )
    model, calibration, validation = _mobilenet(work)
    subjects = {
        "demo": [],
        "mobilenet_v2": [str(model), "--profiles", str(profiles), "--calibration", str(calibration), "--validation", str(validation)],
    }
    result = {"description": DESCRIPTION, "seconds": {}}
    targets = []
    for name, args in subjects.items():
        times = {}
        for jobs in (1, 2):
            times[jobs] = _build([*args, "--jobs", str(jobs)], work / f"{name}-{jobs}")
            progress(f"{name} --jobs {jobs}: {times[jobs]} s")
        ratio = round(times[2] / times[1], 4)
        result["seconds"][name] = {"jobs_1": times[1], "jobs_2": times[2], "jobs_2_over_jobs_1": ratio}
        targets.append(Target("jobs", f"build wall time --jobs 2 / --jobs 1, {name}", ratio, 1.0,
                              "a second job must not make a build slower"))
    return result, targets
