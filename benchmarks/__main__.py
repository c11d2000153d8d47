"""`python -m benchmarks [NAME ...]`: run the benchmarks, write benchmarks/results.json and results.md.

With names (startup, overhead, jobs, scale, size, engines, mixed, size_search, clustering, speed, web_runtimes, frontend), only those run and their sections replace the
ones in an existing results.json; with none, all run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import report
from benchmarks.timing import load_average

HERE = Path(__file__).resolve().parent
NAMES = ("startup", "overhead", "jobs", "scale", "size", "engines", "mixed", "size_search", "clustering", "speed", "web_runtimes", "frontend")  # subprocess benchmarks first, in-process after
ROUNDS = {"startup": 15, "overhead": 7, "speed": 5, "web_runtimes": 3}


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _host() -> dict:
    from importlib import metadata

    names = ("tensorflow", "keras", "tensorflowjs", "ai-edge-litert", "litert-quantizer", "numpy")
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "node": _node_version(),
        "versions": {name: metadata.version(name) for name in names},
    }


def _node_version() -> str | None:
    import shutil
    import subprocess

    node = shutil.which("node")
    return subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip() if node else None


class Subjects:
    """The demo and MobileNetV2 models, made on first use and shared by the in-process benchmarks."""

    def __init__(self, work: Path):
        self.work = work
        self._demo = self._mobilenet = None

    @property
    def demo(self):
        from benchmarks import subjects

        self._demo = self._demo or subjects.demo(self.work)
        return self._demo

    @property
    def demo_validation(self):
        """The demo's 360 held-out digits, in model units."""
        import numpy as np

        from mobilepre import demo

        return np.load(demo.validation_path())["images"]

    @property
    def mobilenet(self):
        from benchmarks import subjects

        self._mobilenet = self._mobilenet or subjects.mobilenet(self.work)
        return self._mobilenet


def run_one(name: str, work: Path, models: Subjects) -> tuple[dict, list]:
    if name == "startup":
        from benchmarks import startup

        return startup.run(ROUNDS["startup"], progress), []
    if name == "overhead":
        from benchmarks import overhead

        return overhead.run(work / "overhead", ROUNDS["overhead"], progress)
    if name == "size":
        from benchmarks import size

        return size.run([models.demo, models.mobilenet], progress)
    if name == "size_search":
        from benchmarks import size_search

        return size_search.run(progress)
    if name == "engines":
        from benchmarks import engines

        validation = {"demo": models.demo_validation, "mobilenet_v2": models.mobilenet.calibration}
        return engines.run([models.demo, models.mobilenet], validation, progress)
    if name == "jobs":
        from benchmarks import jobs

        return jobs.run(work / "jobs", progress)
    if name == "scale":
        from benchmarks import scale

        return scale.run(work / "scale", progress)
    if name == "clustering":
        from benchmarks import clustering

        return clustering.run(progress)
    if name == "mixed":
        from benchmarks import mixed

        return mixed.run(progress)
    if name == "speed":
        from benchmarks import speed

        return speed.run(models.demo, models.mobilenet, ROUNDS["speed"], progress), []
    if name == "web_runtimes":
        from benchmarks import web_runtimes

        return web_runtimes.run([models.demo, models.mobilenet], ROUNDS["web_runtimes"], progress)
    from benchmarks import frontend

    return frontend.run(progress), []


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(NAMES)} (default: all)")
    chosen = parser.parse_args(argv).names or list(NAMES)
    unknown = sorted(set(chosen) - set(NAMES))
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}: choose from {', '.join(NAMES)}")
    path = HERE / "results.json"
    results = json.loads(path.read_text()) if len(chosen) < len(NAMES) and path.exists() else {"benchmarks": {}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mobilepre-bench-") as tmp:
        work = Path(tmp)
        models = Subjects(work / "models")
        (work / "models").mkdir()
        for name in NAMES:
            if name not in chosen:
                continue
            progress(f"{name} ...")
            before, t0 = load_average(), time.perf_counter()
            section, targets = run_one(name, work, models)
            section["targets"] = [t.to_dict() for t in targets]
            section["seconds_taken"] = round(time.perf_counter() - t0, 1)
            section["load_average"] = {"before": before, "after": load_average()}
            results["benchmarks"][name] = section
    results["host"] = _host()
    results["run"] = {"benchmarks": [n for n in NAMES if n in chosen], "seconds": round(time.perf_counter() - started, 1)}
    results["targets"] = [t for name in NAMES for t in results["benchmarks"].get(name, {}).get("targets", [])]
    results["schema"] = "mobilepre.bench/1"
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (HERE / "results.md").write_text(report.markdown(results))
    print(report.table(results))
    met = sum(t["met"] for t in results["targets"])
    print(f"{met} of {len(results['targets'])} targets met; {results['run']['seconds'] / 60:.1f} minutes; "
          f"wrote {path.relative_to(HERE.parent)} and benchmarks/results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
