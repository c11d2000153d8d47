"""Benchmark 3, speed on this host: int8 against float32 TFLite latency, TF.js wasm latency, validation throughput."""

from __future__ import annotations

import numpy as np

from benchmarks.timing import median, paired_ratio, rotated

TFLITE_LATENCY_RUNS = 50
TFJS_LATENCY_RUNS = 15
WARMUP = 5
MOBILENET_THROUGHPUT_IMAGES = 32

DESCRIPTION = (
    "Latency: median of single-image runs after warm-up, as `mobilepre validate` measures it (LiteRT: "
    f"{TFLITE_LATENCY_RUNS} `invoke()` calls; TF.js: {TFJS_LATENCY_RUNS} `execute()` + read-back on Node, wasm "
    "backend). Throughput: images per second of batched inference (batches of 64) over the demo's 360 "
    f"validation images and {MOBILENET_THROUGHPUT_IMAGES} random MobileNetV2 images, inference only (no "
    "process start or model load), LiteRT with 1 thread. Every figure is measured once per round, rounds "
    "interleaved with a rotating order; ratios are medians of per-round ratios. int8 TFLite keeps float32 I/O."
)


def run(demo, mobilenet, rounds: int, progress) -> dict:
    from mobilepre.runtimes import run_tfjs, run_tflite

    rng = np.random.default_rng(1)
    mobilenet_images = rng.uniform(-1.0, 1.0, (MOBILENET_THROUGHPUT_IMAGES, 224, 224, 3)).astype(np.float32)
    demo_images = np.load(_demo_validation())["images"]
    float32 = mobilenet.artifact("tflite", "float32").files["model.tflite"]
    int8 = mobilenet.artifact("tflite", "int8").files["model.tflite"]
    mobilenet_tfjs = mobilenet.written("tfjs", "float32")
    demo_tflite = demo.artifact("tflite", "float32").files["model.tflite"]
    demo_tfjs = demo.written("tfjs", "float32")
    one = mobilenet_images[:1]

    def tflite_ms(content, threads):
        return run_tflite(content, one, threads, TFLITE_LATENCY_RUNS, WARMUP).latency.median_ms

    def images_per_second(run, images):
        return len(images) / run.seconds

    measures = {
        "latency_ms.tflite_float32_1_thread": lambda: tflite_ms(float32, 1),
        "latency_ms.tflite_int8_1_thread": lambda: tflite_ms(int8, 1),
        "latency_ms.tflite_float32_2_threads": lambda: tflite_ms(float32, 2),
        "latency_ms.tflite_int8_2_threads": lambda: tflite_ms(int8, 2),
        "latency_ms.tfjs_wasm_float32": lambda: run_tfjs(mobilenet_tfjs, one, TFJS_LATENCY_RUNS, WARMUP).latency.median_ms,
        "images_per_s.demo_litert": lambda: images_per_second(run_tflite(demo_tflite, demo_images), demo_images),
        "images_per_s.demo_tfjs_wasm": lambda: images_per_second(run_tfjs(demo_tfjs, demo_images), demo_images),
        "images_per_s.mobilenet_litert": lambda: images_per_second(run_tflite(float32, mobilenet_images), mobilenet_images),
        "images_per_s.mobilenet_tfjs_wasm": lambda: images_per_second(run_tfjs(mobilenet_tfjs, mobilenet_images), mobilenet_images),
    }
    values = {name: [] for name in measures}
    for r in range(rounds):
        for name in rotated(list(measures), r):
            values[name].append(measures[name]())
        progress(f"round {r + 1}/{rounds}: " + ", ".join(f"{n.split('.', 1)[1]} {v[-1]:.1f}" for n, v in values.items()))

    ratios = {
        "int8_over_float32_latency_1_thread": paired_ratio(
            values["latency_ms.tflite_int8_1_thread"], values["latency_ms.tflite_float32_1_thread"]
        ),
        "int8_over_float32_latency_2_threads": paired_ratio(
            values["latency_ms.tflite_int8_2_threads"], values["latency_ms.tflite_float32_2_threads"]
        ),
        "two_over_one_thread_latency_float32": paired_ratio(
            values["latency_ms.tflite_float32_2_threads"], values["latency_ms.tflite_float32_1_thread"]
        ),
        "tfjs_wasm_over_tflite_float32_latency": paired_ratio(
            values["latency_ms.tfjs_wasm_float32"], values["latency_ms.tflite_float32_1_thread"]
        ),
        "demo_tfjs_over_litert_throughput": paired_ratio(
            values["images_per_s.demo_tfjs_wasm"], values["images_per_s.demo_litert"]
        ),
        "mobilenet_tfjs_over_litert_throughput": paired_ratio(
            values["images_per_s.mobilenet_tfjs_wasm"], values["images_per_s.mobilenet_litert"]
        ),
    }
    return {
        "description": DESCRIPTION,
        "model": "mobilenet_v2 (latency), demo and mobilenet_v2 (throughput)",
        "rounds": rounds,
        "values": {name: [round(v, 3) for v in vs] for name, vs in values.items()},
        "medians": {name: round(median(vs), 3) for name, vs in values.items()},
        "ratios": {name: round(value, 4) for name, value in ratios.items()},
    }


def _demo_validation():
    from mobilepre import demo

    return demo.validation_path()
