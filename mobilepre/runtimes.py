"""Running a candidate in its real runtime: LiteRT for .tflite, TensorFlow.js (Node.js, wasm) for TF.js."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobilepre.artifacts import litertjs_problem, verify_tflite, verify_tfjs_folder
from mobilepre.errors import EXIT_FAILED, MobilepreError
from mobilepre.litert_child import dequantize, ordered_keys
from mobilepre.web_bundle import PAGE_FILES, WEB_DIR, runner_dir

BATCH = 64
LITERT_CHILD = Path(__file__).resolve().parent / "litert_child.py"
MIN_RUN_TIMEOUT_S = 60.0
SECONDS_PER_RUN = 1.0


@dataclass(frozen=True)
class Latency:
    """Per-image latency of a candidate.

    Attributes:
        median_ms (float), p90_ms (float): over `runs` single-image runs after `warmup` runs.
        runs (int), warmup (int).
        threads (int | None): TFLite interpreter threads; None for TF.js.
        runtime (str): "litert" or "tfjs-wasm".
        source (str): "host" (measured here), "estimate" (from MACs and a stated device throughput) or
            "device" (imported from a benchmark_model run on the device).
        low_ms, high_ms (float | None): the median's 95% interval over the runs
            (`intervals.median_interval`); None when not timed here.
    """

    median_ms: float
    p90_ms: float
    runs: int
    warmup: int
    threads: int | None
    runtime: str
    source: str = "host"
    low_ms: float | None = None
    high_ms: float | None = None
    rounds: int = 1

    @classmethod
    def of(cls, samples, warmup: int, threads: int | None, runtime: str) -> Latency:
        """The latency of timed single-image runs (ms each): median, p90 and the median's interval."""
        from mobilepre.intervals import median_interval

        times = sorted(float(t) for t in samples)
        low, high = median_interval(times) or (None, None)
        return cls(float(np.median(times)), float(np.percentile(times, 90)), len(times), warmup, threads, runtime, "host", low, high)

    @classmethod
    def of_rounds(cls, rounds: list[Latency]) -> Latency:
        """Several timing rounds (fresh processes) as one figure: the median of their medians, with the
        interval of that median over the rounds (what varies between processes and moments, which one
        round's runs cannot show); `runs` counts the rounds."""
        from mobilepre.intervals import median_interval

        medians = [r.median_ms for r in rounds]
        low, high = median_interval(medians) or (min(medians), max(medians))  # few rounds: their range
        first = rounds[0]
        return cls(float(np.median(medians)), float(np.median([r.p90_ms for r in rounds])), len(rounds), first.warmup,
                   first.threads, first.runtime, first.source, low, high, len(rounds))

    @property
    def interval(self) -> tuple | None:
        return None if self.low_ms is None or self.high_ms is None else (self.low_ms, self.high_ms)

    def to_dict(self) -> dict:
        out = {
            "median_ms": round(self.median_ms, 4),
            "p90_ms": round(self.p90_ms, 4),
            "runs": self.runs,
            "warmup": self.warmup,
            "threads": self.threads,
            "runtime": self.runtime,
            "source": self.source,
        }
        if self.interval is not None:
            out["interval_ms"] = [round(self.low_ms, 4), round(self.high_ms, 4)]
        if self.rounds > 1:
            out["rounds"] = self.rounds
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Latency:
        interval = data.get("interval_ms") or [data.get("low_ms"), data.get("high_ms")]
        return cls(data["median_ms"], data["p90_ms"], data["runs"], data["warmup"], data["threads"], data["runtime"], data.get("source", "host"),
                   None if interval[0] is None else float(interval[0]), None if interval[1] is None else float(interval[1]),
                   data.get("rounds", 1))


@dataclass(frozen=True)
class RunResult:
    outputs: list  # one float32 array per output, in the reference model's output order
    seconds: float  # inference time for all images
    latency: Latency | None
    peak_memory_bytes: int | None = None  # LiteRT: the child's resident high-water mark above its state
    # before the interpreter, for loading and one inference; TF.js: tf.profile's peak tensor bytes of one
    # inference, weights included. None when the platform cannot say.


# ------------------------------------------------------------------------------------------- TFLite


@dataclass(frozen=True)
class ImagesOnDisk:
    """Images written once for every run of a build: an .npy for LiteRT (its child maps it, not reads it
    whole) and raw bytes for TF.js. A run given these writes no copy of its own.

    Attributes:
        array (np.ndarray): the images. npy (Path), raw (Path): the same images on disk.
    """

    array: np.ndarray
    npy: Path
    raw: Path

    @classmethod
    def write(cls, images: np.ndarray, folder: Path, name: str = "images") -> ImagesOnDisk:
        images = np.ascontiguousarray(images)
        npy, raw = Path(folder) / f"{name}.npy", Path(folder) / f"{name}.bin"
        np.save(npy, images, allow_pickle=False)
        images.tofile(raw)
        return cls(images, npy, raw)

    def __len__(self) -> int:
        return len(self.array)


def _array(images) -> np.ndarray:
    return images.array if isinstance(images, ImagesOnDisk) else images


def run_timeout_s(images: int, runs: int) -> float:
    """How long one run of an artifact may take: `MOBILEPRE_RUN_TIMEOUT` (the CLI's `--run-timeout`), else
    a second per image and per timed run, and at least a minute."""
    override = os.environ.get("MOBILEPRE_RUN_TIMEOUT", "")
    try:
        if override and float(override) > 0:
            return float(override)
    except ValueError:
        pass
    return max(MIN_RUN_TIMEOUT_S, SECONDS_PER_RUN * (images + runs))


def _run_child(command: list, timeout_s: float, where: str, runtime: str) -> subprocess.CompletedProcess:
    """Run a runtime's child process under a time limit: a runaway or a crash is one line, exit 1."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise MobilepreError(
            f"{where}: {runtime} did not finish within {timeout_s:g} s (a model that never ends?): "
            "raise the limit with --run-timeout SECONDS if it is only slow",
            EXIT_FAILED,
        ) from None
    if result.returncode < 0:
        name = signal.Signals(-result.returncode).name if -result.returncode in signal.valid_signals() else str(-result.returncode)
        raise MobilepreError(f"{where}: {runtime} crashed running the model ({name})", EXIT_FAILED)
    return result


def run_tflite(content: bytes, images: np.ndarray, threads: int = 1, latency_runs: int = 0, warmup: int = 5, where: str = "candidate",
               output_keys: list | None = None) -> RunResult:
    """Run `images` through a .tflite model in LiteRT, in a child process under a time limit (the flatbuffer
    verifier first); optionally time single-image runs. Outputs come in the order of `output_keys` (the
    signature's output names in the reference model's order, `quantize.export.signature_output_keys`),
    or in natural order of the signature's names without them."""
    verify_tflite(content, where)
    with tempfile.TemporaryDirectory(prefix="mobilepre-litert-") as tmp:
        tmp = Path(tmp)
        (tmp / "model.tflite").write_bytes(content)
        if isinstance(images, ImagesOnDisk):
            images_path = images.npy
        else:
            images_path = tmp / "images.npy"
            np.save(images_path, np.ascontiguousarray(images), allow_pickle=False)
        request = {
            "answer_path": str(tmp / "answer.json"),
            "images_path": str(images_path),
            "latency_runs": latency_runs,
            "model_path": str(tmp / "model.tflite"),
            "output_keys": output_keys,
            "outputs_path": str(tmp / "outputs.npz"),
            "threads": threads,
            "warmup": warmup,
            "where": where,
        }
        answer = _ask_litert(tmp, request, run_timeout_s(len(images), latency_runs + warmup), where, "run the model")
        with np.load(tmp / "outputs.npz", allow_pickle=False) as saved:
            outputs = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    latency = None
    if latency_runs:
        latency = Latency.of(answer["latency_ms"], warmup, threads, "litert")
    return RunResult(outputs, float(answer["seconds"]), latency, _bytes(answer.get("peak_memory_bytes")))


# A run-off's shape: rounds enough for a 95% interval of a median over them (6 or more), each model's
# block of runs about 5 ms (several scheduler slices, so a block sees the load its neighbours see).
RUNOFF_ROUNDS = 15
RUNOFF_BLOCK_MS = 5.0


def runoff_tflite(contents: list[bytes], images: np.ndarray, threads: int, rounds: int = RUNOFF_ROUNDS,
                  where: str = "run-off") -> list[list[float]]:
    """Time several .tflite models on one image in interleaved rounds, in one LiteRT child process (each
    verified first): per model, the median of its block of runs in each round, in `contents`' order."""
    for k, content in enumerate(contents):
        verify_tflite(content, f"{where}: model {k + 1}")
    with tempfile.TemporaryDirectory(prefix="mobilepre-runoff-") as tmp:
        tmp = Path(tmp)
        models = []
        for k, content in enumerate(contents):
            (tmp / f"model{k}.tflite").write_bytes(content)
            models.append(str(tmp / f"model{k}.tflite"))
        np.save(tmp / "images.npy", np.ascontiguousarray(_array(images)[:1]), allow_pickle=False)
        request = {
            "answer_path": str(tmp / "answer.json"),
            "images_path": str(tmp / "images.npy"),
            "runoff": {"models": models, "rounds": rounds, "block_ms": RUNOFF_BLOCK_MS, "min_runs": 1, "max_runs": 500},
            "threads": threads,
            "warmup": 5,
            "where": where,
        }
        answer = _ask_litert(tmp, request, run_timeout_s(0, rounds * len(contents) * 10), where, "time the models")
    return answer["runoff_ms"]


def _ask_litert(tmp: Path, request: dict, timeout_s: float, where: str, doing: str) -> dict:
    """The LiteRT child's answer to `request` (written to `tmp`/request.json; it names the answer file
    `tmp`/answer.json): one line, exit 1, when it gives none, and the child's own line for its error."""
    (tmp / "request.json").write_text(json.dumps(request))
    result = _run_child([sys.executable, str(LITERT_CHILD), str(tmp / "request.json")], timeout_s, where, "LiteRT")
    try:
        answer = json.loads((tmp / "answer.json").read_text())
    except (OSError, json.JSONDecodeError):
        detail = (result.stderr.strip().splitlines() or ["no answer"])[-1]
        raise MobilepreError(f"{where}: LiteRT could not {doing}: {detail}", EXIT_FAILED) from None
    if "error" in answer:
        raise MobilepreError(answer["error"])
    return answer


# -------------------------------------------------------------------------------------------- TF.js


def check_node() -> tuple[str, Path]:
    """The node binary and the runner folder, or one line saying what to install."""
    node = shutil.which("node")
    if node is None:
        raise MobilepreError(
            "Node.js is needed to run TF.js candidates and was not found on PATH: install Node.js 18 or newer, then `make install`"
        )
    folder = runner_dir()
    for package in ("tfjs", "tfjs-backend-wasm"):
        if not (folder / "node_modules" / "@tensorflow" / package / "package.json").is_file():
            raise MobilepreError(
                f"the TF.js runtime is not installed in {folder}: run `npm ci` there (`make install` does it)"
            )
    return node, folder


def _tfjs_batch(model_json: dict) -> int:
    """Images per `execute`: the model's own batch when it is static (1), else `BATCH`."""
    inputs = (model_json.get("signature") or {}).get("inputs") or {}
    dims = [int(d.get("size", -1)) for spec in inputs.values() for d in spec.get("tensorShape", {}).get("dim", [])[:1]]
    return dims[0] if dims and dims[0] > 0 else BATCH


def _tfjs_output_nodes(model_json: dict, output_keys: list | None) -> list[str] | None:
    outputs = (model_json.get("signature") or {}).get("outputs") or {}
    names = [outputs[key].get("name") for key in ordered_keys(outputs, output_keys)]
    return names if names and all(names) else None


def run_tfjs(folder: Path, images: np.ndarray, latency_runs: int = 0, warmup: int = 5, where: str = "candidate",
             output_keys: list | None = None) -> RunResult:
    """Run `images` through a TF.js graph model in Node.js on the wasm backend, in one process; outputs in
    the order of `output_keys`, as for `run_tflite`."""
    model_json = verify_tfjs_folder(Path(folder), where)
    check_node()
    _check_tfjs_input(model_json, _array(images), where)
    return _run_tfjs_script("runner.mjs", "TF.js", "tfjs-wasm", folder, model_json, images, latency_runs, warmup, where, output_keys)


def _run_tfjs_script(script: str, what: str, runtime: str, folder: Path, model_json: dict, images: np.ndarray, latency_runs: int,
                     warmup: int, where: str, output_keys: list | None, extra=lambda tmp: {}, start_s: float = 0.0) -> RunResult:
    """Run one of the Node scripts (`runner.mjs`, `browser.mjs`) on `images`: the request they share
    (plus `extra(tmp)`), the raw input and output files, and the answer read back. `start_s` is added
    to the time limit (a browser's start)."""
    node, runner = check_node()
    with tempfile.TemporaryDirectory(prefix="mobilepre-tfjs-run-") as tmp:
        tmp = Path(tmp)
        if isinstance(images, ImagesOnDisk):
            input_path, images = images.raw, images.array
        else:
            input_path = tmp / "input.bin"
            np.ascontiguousarray(images).tofile(input_path)
        request = {
            "model_dir": str(Path(folder).resolve()),
            "input_path": str(input_path),
            "input_shape": list(images.shape),
            "input_dtype": "float32" if images.dtype == np.float32 else images.dtype.name,
            "output_path": str(tmp / "output.bin"),
            "output_names": _tfjs_output_nodes(model_json, output_keys),
            "batch_size": _tfjs_batch(model_json),
            "latency_runs": latency_runs,
            "warmup_runs": warmup,
            **extra(tmp),
        }
        (tmp / "request.json").write_text(json.dumps(request))
        timeout = run_timeout_s(len(images), latency_runs + warmup) + start_s
        result = _run_child([node, str(runner / script), str(tmp / "request.json")], timeout, where, what)
        answer = _runner_answer(result, where, what)
        flat = np.fromfile(tmp / "output.bin", dtype=np.float32)
    outputs, offset = [], 0
    for shape in answer["output_shapes"]:
        size = int(np.prod(shape))
        outputs.append(flat[offset : offset + size].reshape(shape))
        offset += size
    repeated = answer.get("repeat_difference")
    if isinstance(repeated, (int, float)) and outputs:
        scale = max(float(np.max(np.abs(o), initial=0.0)) for o in outputs)
        if not repeated <= REPEAT_TOLERANCE * (1.0 + scale):
            raise MobilepreError(f"{where}: {what} gave different outputs for the same images when run again (by {repeated:.3g}); "
                                 "a runtime whose later inferences differ from its first cannot be trusted on this backend")
    latency = None
    if latency_runs and answer.get("latency_ms"):
        lat = answer["latency_ms"]
        latency = (Latency.of(lat["samples"], warmup, None, runtime) if lat.get("samples")
                   else Latency(lat["median"], lat["p90"], lat["runs"], warmup, None, runtime))
    return RunResult(outputs, float(answer["inference_seconds"]), latency, _bytes(answer.get("peak_memory_bytes")))


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def check_chromium() -> str:
    """Chromium's executable (MOBILEPRE_CHROMIUM, else chromium on PATH), or one line saying how to install it."""
    override = os.environ.get("MOBILEPRE_CHROMIUM")
    if override:
        if not (Path(override).is_file() and os.access(override, os.X_OK)):
            raise MobilepreError(f"MOBILEPRE_CHROMIUM={override} is not an executable file: point it at a Chrome or Chromium binary")
        return override
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise MobilepreError(
        "Chromium is needed to run TF.js in a browser and was not found: install it (Debian/Ubuntu: "
        "`sudo apt-get install chromium`; `make install` does it) or set MOBILEPRE_CHROMIUM to a Chrome/Chromium binary"
    )


def _bundle_page(folder: Path) -> Path | None:
    """The web bundle `folder` (its `tfjs/` or `litertjs/` model folder) sits in, when it is one: its own
    page is used."""
    parent = folder.resolve().parent
    if folder.name in ("tfjs", "litertjs") and (parent / "manifest.json").is_file() and all((parent / n).is_file() for n in PAGE_FILES):
        return parent
    return None


def run_browser(folder: Path, images: np.ndarray, latency_runs: int = 0, warmup: int = 5, where: str = "candidate",
                output_keys: list | None = None, backend: str = "wasm") -> RunResult:
    """Run `images` through a TF.js graph model in headless Chromium on `backend` ("wasm" or "webgl"),
    through the loader page of the bundle it sits in (else the page mobilepre ships), served from
    127.0.0.1; outputs in the order of `output_keys`, as for `run_tfjs`."""
    model_json = verify_tfjs_folder(Path(folder), where)
    _, runner = check_node()
    if not (runner / "node_modules" / "puppeteer-core" / "package.json").is_file():
        raise MobilepreError(f"puppeteer-core is not installed in {runner}: run `npm ci` there (`make install` does it)")
    chromium = check_chromium()
    _check_tfjs_input(model_json, _array(images), where)
    bundle = _bundle_page(Path(folder))
    page_dir = bundle or WEB_DIR
    # in a bundle, the model as the page finds it (beside the manifest its loader reads)
    model_url = f"/page/{Path(folder).name}/model.json" if bundle else "/model/model.json"

    def extra(tmp: Path) -> dict:
        return {"chromium": chromium, "profile_dir": str(tmp / "chromium-profile"), "page_dir": str(page_dir),
                "model_url": model_url, "backend": backend}

    return _run_tfjs_script("browser.mjs", "TF.js in Chromium", f"chromium-{backend}", folder, model_json, images,
                            latency_runs, warmup, where, output_keys, extra, BROWSER_START_S)


def run_litertjs(model, images: np.ndarray, latency_runs: int = 0, warmup: int = 5, where: str = "candidate",
                 output_keys: list | None = None, backend: str = "wasm") -> RunResult:
    """Run `images` through a .tflite model with LiteRT.js in headless Chromium on `backend` ("wasm" or
    "webgpu"), served from 127.0.0.1; outputs in the order of `output_keys` (signature names),
    dequantized as LiteRT's own are. `model`: the .tflite bytes (run through the page mobilepre ships,
    LiteRT.js from the pinned node_modules), or a LiteRT.js model folder (`model.tflite`,
    `contract.json`), which in a web bundle runs through the bundle's own page and runtime files."""
    folder = Path(model) if isinstance(model, (str, Path)) else None
    if folder is not None:
        try:
            content = (folder / "model.tflite").read_bytes()
        except OSError as error:
            raise MobilepreError(f"{where}: {folder / 'model.tflite'} cannot be read: {error.strerror}") from None
    else:
        content = bytes(model)
    io = _litertjs_io(content, where)
    keys = ordered_keys(io["signature"]["outputs"], output_keys)
    by_index = {t["index"]: t for t in io["outputs"]}
    _, _, chromium = _litertjs_tools()
    with tempfile.TemporaryDirectory(prefix="mobilepre-litertjs-") as tmp_page:
        page_dir = _bundle_page(folder) if folder is not None else None
        model_url = f"/page/{folder.name}/model.tflite" if page_dir is not None else "/model/model.tflite"
        if page_dir is None:  # the page mobilepre ships, LiteRT.js served from node_modules
            page_dir = _shipped_litertjs_page(Path(tmp_page))
            if folder is None:
                folder = _litertjs_model_folder(page_dir / "litertjs", content, io)

        def extra(tmp: Path) -> dict:
            return {"chromium": chromium, "profile_dir": str(tmp / "chromium-profile"), "page_dir": str(page_dir),
                    "model_url": model_url, "backend": backend, "output_names": keys, "batch_size": 1}

        result = _run_tfjs_script("browser.mjs", "LiteRT.js in Chromium", f"litertjs-{backend}", folder, {}, images,
                                  latency_runs, warmup, where, None, extra, BROWSER_START_S)
    outputs = [dequantize(values, by_index[io["signature"]["outputs"][key]]) for key, values in zip(keys, result.outputs)]
    return RunResult(outputs, result.seconds, result.latency, result.peak_memory_bytes)


def runoff_litertjs(contents: list[bytes], images: np.ndarray, backend: str = "wasm", rounds: int = RUNOFF_ROUNDS,
                    where: str = "run-off") -> list[list[float]]:
    """Time several .tflite models with LiteRT.js on `backend` in one headless Chromium page, on one
    image in interleaved rounds (as `runoff_tflite` does in LiteRT): per model, the median of its block
    of runs in each round, in `contents`' order. Each model is verified and must suit LiteRT.js first."""
    ios = [_litertjs_io(content, f"{where}: model {k + 1}") for k, content in enumerate(contents)]
    node, runner, chromium = _litertjs_tools()
    with tempfile.TemporaryDirectory(prefix="mobilepre-litertjs-runoff-") as tmp:
        tmp = Path(tmp)
        page_dir = _shipped_litertjs_page(tmp / "page")
        for k, (content, io) in enumerate(zip(contents, ios)):
            _litertjs_model_folder(page_dir / f"litertjs{k}", content, io)
        urls = [f"/page/litertjs{k}/model.tflite" for k in range(len(contents))]
        sample = np.ascontiguousarray(_array(images)[:1])
        sample.tofile(tmp / "input.bin")
        request = {
            "chromium": chromium, "profile_dir": str(tmp / "chromium-profile"), "page_dir": str(page_dir), "model_dir": str(page_dir),
            "model_url": urls[0], "backend": backend, "input_path": str(tmp / "input.bin"), "input_shape": list(sample.shape),
            "input_dtype": "float32" if sample.dtype == np.float32 else sample.dtype.name, "warmup_runs": 5,
            "runoff": {"model_urls": urls, "rounds": rounds, "block_ms": RUNOFF_BLOCK_MS, "min_runs": 1, "max_runs": 500},
        }
        (tmp / "request.json").write_text(json.dumps(request))
        timeout = run_timeout_s(0, rounds * len(contents) * 10) + BROWSER_START_S
        answer = _runner_answer(_run_child([node, str(runner / "browser.mjs"), str(tmp / "request.json")], timeout, where,
                                           "LiteRT.js in Chromium"), where, "LiteRT.js in Chromium")
    medians = answer.get("runoff_ms")
    if not (isinstance(medians, list) and len(medians) == len(contents) and all(isinstance(m, list) and len(m) == rounds for m in medians)):
        raise MobilepreError(f"{where}: LiteRT.js in Chromium gave no run-off timings")
    return [[float(v) for v in m] for m in medians]


def _litertjs_io(content: bytes, where: str) -> dict:
    """The .tflite `content`'s I/O (`tflite_io`, the flatbuffer verified first), or one line when LiteRT.js
    cannot run it (`artifacts.litertjs_problem`)."""
    from mobilepre.tflite_reader import tflite_io

    io = tflite_io(content, where)
    problem = litertjs_problem(content, where)
    if problem:
        raise MobilepreError(problem)
    return io


def _litertjs_tools() -> tuple[str, Path, str]:
    """Node, the runner folder and Chromium, with LiteRT.js installed in the runner; one line when not."""
    node, runner = check_node()
    if not (runner / "node_modules" / "@litertjs" / "core" / "package.json").is_file():
        raise MobilepreError(f"LiteRT.js is not installed in {runner}: run `npm ci` there (`make install` does it)")
    return node, runner, check_chromium()


def _shipped_litertjs_page(page_dir: Path) -> Path:
    """`page_dir` holding the page a LiteRT.js bundle ships (LiteRT.js itself served from node_modules)."""
    from mobilepre.web_bundle import litertjs_page_files

    page_dir.mkdir(exist_ok=True)
    for name, data in litertjs_page_files(runtime=False).items():
        (page_dir / name).write_bytes(data)
    return page_dir


def _litertjs_model_folder(folder: Path, content: bytes, io: dict) -> Path:
    """`folder` holding the .tflite and what the loader reads of an I/O contract: the input's dtype, which
    picks LiteRT.js's wasm build."""
    folder.mkdir()
    (folder / "model.tflite").write_bytes(content)
    (folder / "contract.json").write_text(json.dumps({"mobilepre": {"quantization": {"input_dtype": io["inputs"][0]["dtype"]}}}))
    return folder


# How far a repeated inference of the same image may move, relative to the outputs' largest magnitude:
# float rounding of a kernel chosen differently, never a wrong answer.
REPEAT_TOLERANCE = 1e-5
BROWSER_START_S = 60.0  # Chromium's start and the page's load, on top of the per-image time limit


def _bytes(value) -> int | None:
    return int(value) if isinstance(value, (int, float)) and value >= 0 else None


def _check_tfjs_input(model_json: dict, images: np.ndarray, where: str) -> None:
    inputs = (model_json.get("signature") or {}).get("inputs") or {}
    if len(inputs) != 1:
        raise MobilepreError(f"{where} has {len(inputs)} inputs; mobilepre validates one-input image models")
    spec = next(iter(inputs.values()))
    dims = [int(d.get("size", -1)) for d in spec.get("tensorShape", {}).get("dim", [])]
    want = tuple(dims[1:])
    if len(want) != images.ndim - 1 or any(w not in (-1, g) for w, g in zip(want, images.shape[1:])):
        raise MobilepreError(f"{where} takes images of shape {want}, the data has {tuple(images.shape[1:])}")
    dtype = {"DT_FLOAT": np.float32, "DT_UINT8": np.uint8, "DT_INT32": np.int32}.get(spec.get("dtype"))
    if dtype is not None and np.dtype(dtype) != images.dtype:
        raise MobilepreError(f"{where} takes {np.dtype(dtype).name} input, the data is {images.dtype.name}")


def _runner_answer(result: subprocess.CompletedProcess, where: str, what: str = "TF.js") -> dict:
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        answer = {}
    if result.returncode != 0 or "error" in answer or not answer:
        detail = answer.get("error") or (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise MobilepreError(f"{where}: {what} could not run the model: {detail}")
    return answer
