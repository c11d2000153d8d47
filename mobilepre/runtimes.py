"""Running a candidate in its real runtime: LiteRT for .tflite, TensorFlow.js (Node.js, wasm) for TF.js."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobilepre.artifacts import verify_tflite, verify_tfjs_folder
from mobilepre.errors import MobilepreError
from mobilepre.quantize.runtime import tflite_interpreter

BATCH = 64


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
    """

    median_ms: float
    p90_ms: float
    runs: int
    warmup: int
    threads: int | None
    runtime: str
    source: str = "host"

    def to_dict(self) -> dict:
        return {
            "median_ms": round(self.median_ms, 4),
            "p90_ms": round(self.p90_ms, 4),
            "runs": self.runs,
            "warmup": self.warmup,
            "threads": self.threads,
            "runtime": self.runtime,
            "source": self.source,
        }


@dataclass(frozen=True)
class RunResult:
    outputs: list  # one float32 array per output, in the reference model's output order
    seconds: float  # inference time for all images
    latency: Latency | None


# ------------------------------------------------------------------------------------------- TFLite


def _check_input(shape, dtype: str, images: np.ndarray, where: str, quantized: bool) -> None:
    want = tuple(int(d) for d in shape[1:])
    got = tuple(images.shape[1:])
    if want != got:
        raise MobilepreError(f"{where} takes images of shape {want}, the data has {got}: resize the data or rebuild")
    if not quantized and np.dtype(dtype) != images.dtype:
        raise MobilepreError(f"{where} takes {np.dtype(dtype).name} input, the data is {images.dtype.name}")


def _quantize_input(images: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if not scale:
        return images.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    q = np.round(images.astype(np.float32) / scale + zero)
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if not scale:
        return values.astype(np.float32)
    return (values.astype(np.float32) - zero) * scale


def _tflite_output_order(interpreter) -> list[dict]:
    """Output details in the order of the exported signature's names (output_0, output_1, ...)."""
    details = interpreter.get_output_details()
    signatures = interpreter.get_signature_list()
    if "serving_default" not in signatures:
        return details
    by_index = {d["index"]: d for d in details}
    runner = interpreter.get_signature_runner("serving_default")
    named = runner.get_output_details()
    ordered = [by_index.get(named[name]["index"]) for name in sorted(named, key=_natural)]
    return ordered if all(d is not None for d in ordered) else details


def _natural(name: str):
    head = name.rstrip("0123456789")
    tail = name[len(head) :]
    return (head, int(tail) if tail else -1)


def run_tflite(content: bytes, images: np.ndarray, threads: int = 1, latency_runs: int = 0, warmup: int = 5, where: str = "candidate") -> RunResult:
    """Run `images` through a .tflite model in LiteRT; optionally time single-image runs."""
    verify_tflite(content, where)
    try:
        interpreter = tflite_interpreter(content, threads=threads)
    except Exception as error:
        raise MobilepreError(f"{where}: LiteRT could not load the model: {error}") from None
    inputs = interpreter.get_input_details()
    if len(inputs) != 1:
        raise MobilepreError(f"{where} has {len(inputs)} inputs; mobilepre validates one-input image models")
    detail = inputs[0]
    quantized = bool(detail["quantization"][0])
    _check_input(detail["shape"], detail["dtype"], images, where, quantized)
    if int(detail["shape"][0]) != 1:
        interpreter.resize_tensor_input(detail["index"], [1, *detail["shape"][1:]])
        interpreter.allocate_tensors()
    outputs = _tflite_output_order(interpreter)
    collected = [[] for _ in outputs]
    # One image per invoke, at the model's own batch of 1: on XNNPACK this is faster per image than
    # batches of 64 (measured on MobileNetV2: 140 against 111 images/s), and needs no tensor resizing.
    quantized_images = _quantize_input(images, detail)
    started = time.perf_counter()
    for i in range(len(images)):
        interpreter.set_tensor(detail["index"], quantized_images[i : i + 1])
        interpreter.invoke()
        for k, out in enumerate(outputs):
            collected[k].append(interpreter.get_tensor(out["index"]).copy())
    seconds = time.perf_counter() - started
    results = [_dequantize(np.concatenate(c), out) for c, out in zip(collected, outputs)]
    latency = None
    if latency_runs:
        latency = _tflite_latency(interpreter, detail, images[:1], latency_runs, warmup, threads)
    return RunResult(results, seconds, latency)


def _tflite_latency(interpreter, detail, sample, runs: int, warmup: int, threads: int) -> Latency:
    interpreter.set_tensor(detail["index"], _quantize_input(sample, detail))
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - t0) * 1000.0)
    return Latency(float(np.median(times)), float(np.percentile(times, 90)), runs, warmup, threads, "litert")


# -------------------------------------------------------------------------------------------- TF.js


def runner_dir() -> Path:
    override = os.environ.get("MOBILEPRE_TFJS_RUNNER")
    return Path(override) if override else Path(__file__).resolve().parent / "tfjs_runner"


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


def _tfjs_output_names(model_json: dict) -> list[str] | None:
    outputs = (model_json.get("signature") or {}).get("outputs") or {}
    names = [outputs[key].get("name") for key in sorted(outputs, key=_natural)]
    return names if names and all(names) else None


def run_tfjs(folder: Path, images: np.ndarray, latency_runs: int = 0, warmup: int = 5, where: str = "candidate") -> RunResult:
    """Run `images` through a TF.js graph model in Node.js on the wasm backend, in one process."""
    model_json = verify_tfjs_folder(Path(folder), where)
    node, runner = check_node()
    _check_tfjs_input(model_json, images, where)
    with tempfile.TemporaryDirectory(prefix="mobilepre-tfjs-run-") as tmp:
        tmp = Path(tmp)
        dtype = "float32" if images.dtype == np.float32 else images.dtype.name
        np.ascontiguousarray(images).tofile(tmp / "input.bin")
        request = {
            "model_dir": str(Path(folder).resolve()),
            "input_path": str(tmp / "input.bin"),
            "input_shape": list(images.shape),
            "input_dtype": dtype,
            "output_path": str(tmp / "output.bin"),
            "output_names": _tfjs_output_names(model_json),
            "batch_size": BATCH,
            "latency_runs": latency_runs,
            "warmup_runs": warmup,
        }
        (tmp / "request.json").write_text(json.dumps(request))
        result = subprocess.run(
            [node, str(runner / "runner.mjs"), str(tmp / "request.json")], capture_output=True, text=True, timeout=1800
        )
        answer = _runner_answer(result, where)
        flat = np.fromfile(tmp / "output.bin", dtype=np.float32)
    outputs, offset = [], 0
    for shape in answer["output_shapes"]:
        size = int(np.prod(shape))
        outputs.append(flat[offset : offset + size].reshape(shape))
        offset += size
    latency = None
    if latency_runs:
        lat = answer["latency_ms"]
        latency = Latency(lat["median"], lat["p90"], lat["runs"], warmup, None, "tfjs-wasm")
    return RunResult(outputs, float(answer["inference_seconds"]), latency)


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


def _runner_answer(result: subprocess.CompletedProcess, where: str) -> dict:
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        answer = {}
    if result.returncode != 0 or "error" in answer or not answer:
        detail = answer.get("error") or (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise MobilepreError(f"{where}: TF.js could not run the model: {detail}")
    return answer
