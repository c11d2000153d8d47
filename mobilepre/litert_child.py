"""Runs one .tflite model in LiteRT in a child process, so that a run has a time limit and a crash of the
native runtime is an error of the parent, not its death. Imports only NumPy and LiteRT (about 0.1 s).

Usage: python litert_child.py REQUEST.json. The request names the model, the images (.npy), the thread
count, the latency runs, the signature's output names in the reference model's order, and where to write
the outputs (.npz, one array per output in that order) and the answer (.json: timings, or an error line).
"""

import json
import sys
import time

import numpy as np


def main(request_path: str) -> int:
    with open(request_path) as f:
        request = json.load(f)
    try:
        answer = runoff(request) if "runoff" in request else run(request)
    except UserFacing as error:
        answer = {"error": str(error)}
    with open(request["answer_path"], "w") as f:
        json.dump(answer, f)
    return 0


class UserFacing(Exception):
    """A problem of the model or the data, said in one line."""


def load(model_path: str, threads: int, where: str):
    """(interpreter, input detail) of a one-input model, at a batch of 1 (a dynamic batch resized)."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_path=model_path, num_threads=threads)
        interpreter.allocate_tensors()
    except Exception as error:
        raise UserFacing(f"{where}: LiteRT could not load the model: {str(error).strip() or type(error).__name__}") from None
    inputs = interpreter.get_input_details()
    if len(inputs) != 1:
        raise UserFacing(f"{where} has {len(inputs)} inputs; mobilepre validates one-input image models")
    detail = inputs[0]
    if int(detail["shape"][0]) != 1:
        interpreter.resize_tensor_input(detail["index"], [1, *detail["shape"][1:]])
        interpreter.allocate_tensors()
    return interpreter, detail


def run(request: dict) -> dict:
    where = request["where"]
    images = np.load(request["images_path"], mmap_mode="r", allow_pickle=False)  # paged in as read, never copied whole
    baseline = memory_baseline()
    interpreter, detail = load(request["model_path"], request["threads"], where)
    quantized = bool(detail["quantization"][0])
    want = tuple(int(d) for d in detail["shape"][1:])
    if want != tuple(images.shape[1:]):
        raise UserFacing(f"{where} takes images of shape {want}, the data has {tuple(images.shape[1:])}: resize the data or rebuild")
    if not quantized and np.dtype(detail["dtype"]) != images.dtype:
        raise UserFacing(f"{where} takes {np.dtype(detail['dtype']).name} input, the data is {images.dtype.name}")
    outputs = output_order(interpreter, request.get("output_keys"))
    # Peak memory of loading the model and one inference: the process's high-water mark above what it
    # held before the interpreter existed (model, arena, packed weights: what the app pays).
    interpreter.set_tensor(detail["index"], quantize_input(images[:1], detail))
    interpreter.invoke()
    peak = memory_peak(baseline)
    collected = [[] for _ in outputs]
    # One image per invoke, at the model's own batch of 1: on XNNPACK this is faster per image than
    # batches of 64 (measured on MobileNetV2: 140 against 111 images/s), and needs no tensor resizing.
    started = time.perf_counter()
    for i in range(len(images)):
        interpreter.set_tensor(detail["index"], quantize_input(images[i : i + 1], detail))
        interpreter.invoke()
        for k, out in enumerate(outputs):
            collected[k].append(interpreter.get_tensor(out["index"]).copy())
    seconds = time.perf_counter() - started
    results = [dequantize(np.concatenate(c), out) for c, out in zip(collected, outputs)]
    np.savez(request["outputs_path"], *results)
    answer = {"seconds": seconds, "peak_memory_bytes": peak}
    if request["latency_runs"]:
        answer["latency_ms"] = latency(interpreter, detail, quantize_input(images[:1], detail), request["latency_runs"], request["warmup"])
    return answer


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_baseline() -> int | None:
    """Resident bytes now, with the high-water mark reset to it where the kernel allows (Linux 4.0+)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    rss = _status_kib("VmRSS")
    return None if rss is None else rss * 1024


def memory_peak(baseline: int | None) -> int | None:
    """Bytes the high-water mark rose above `baseline`; None where /proc is not there."""
    peak = _status_kib("VmHWM")
    if baseline is None or peak is None:
        return None
    return max(0, peak * 1024 - baseline)


def quantize_input(images: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if not scale:
        return images.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    q = np.round(images.astype(np.float32) / scale + zero)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if not scale:
        return values.astype(np.float32)
    return (values.astype(np.float32) - zero) * scale


def output_order(interpreter, wanted_keys=None) -> list:
    """Output details in the reference model's order: by the serving signature's output names."""
    details = interpreter.get_output_details()
    if "serving_default" not in interpreter.get_signature_list():
        return details
    by_index = {d["index"]: d for d in details}
    named = interpreter.get_signature_runner("serving_default").get_output_details()
    ordered = [by_index.get(named[name]["index"]) for name in ordered_keys(named, wanted_keys)]
    return ordered if all(d is not None for d in ordered) else details


def ordered_keys(keys, wanted=None) -> list:
    """A signature's output names in the reference model's order: `wanted` (the names the model's outputs
    were exported under, in its order) when the signature has exactly those, else natural order
    (output_0, output_1, ..., output_10), which is the order of an export that numbered them."""
    keys = list(keys)
    if wanted is not None and sorted(wanted) == sorted(keys):
        return list(wanted)
    return sorted(keys, key=natural)


def natural(name: str):
    head = name.rstrip("0123456789")
    tail = name[len(head) :]
    return (head, int(tail) if tail else -1)


def latency(interpreter, detail, sample, runs: int, warmup: int) -> list:
    interpreter.set_tensor(detail["index"], sample)
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def runoff(request: dict) -> dict:
    """Several models timed in interleaved rounds on one image, so that each round meets them all under
    the same load: per model, the median of each round's block of runs (`runoff_ms`). A block lasts
    about `block_ms` (its run count set from the warm-up), and the order turns each round (A B C, then
    C B A), so a load that grows or fades through the round favours none."""
    spec = request["runoff"]
    sample = np.load(request["images_path"], mmap_mode="r", allow_pickle=False)[:1]
    timed = []
    for k, path in enumerate(spec["models"]):
        interpreter, detail = load(path, request["threads"], f"{request['where']}: model {k + 1}")
        warm = latency(interpreter, detail, quantize_input(sample, detail), max(3, request["warmup"]), request["warmup"])
        runs = min(spec["max_runs"], max(spec["min_runs"], int(spec["block_ms"] / max(float(np.median(warm)), 1e-3))))
        timed.append((interpreter, detail, runs))
    medians = [[] for _ in timed]
    for r in range(spec["rounds"]):
        order = range(len(timed)) if r % 2 == 0 else reversed(range(len(timed)))
        for k in order:
            interpreter, detail, runs = timed[k]
            medians[k].append(float(np.median(latency(interpreter, detail, quantize_input(sample, detail), runs, 1))))
    return {"runoff_ms": medians, "runs": [runs for _, _, runs in timed]}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
