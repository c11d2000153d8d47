"""Benchmark: the two browser runtimes a web bundle can ship, LiteRT.js against TF.js, per image in headless
Chromium on wasm and WebGPU, and what a first visit downloads of each (model plus runtime, gzip)."""

from __future__ import annotations

from benchmarks.timing import Target, median, paired_ratio, rotated

LATENCY_RUNS = {"demo": 30, "mobilenet_v2": 10}
WEBGPU_LATENCY_RUNS = {"demo": 10, "mobilenet_v2": 3}  # WebGPU here is SwiftShader: a CPU emulating a GPU
WARMUP = 3

# (runtime, backend, format, mode): what each model is run as
RUNS = (
    ("litertjs", "wasm", "tflite", "float32"),
    ("litertjs", "wasm", "tflite", "int8"),
    ("tfjs", "wasm", "tfjs", "float32"),
    ("tfjs", "wasm", "tfjs", "uint8"),
    ("litertjs", "webgpu", "tflite", "float32"),
    ("tfjs", "webgpu", "tfjs", "float32"),
)

DESCRIPTION = (
    "Per image: the median of single-image runs after warm-up in headless Chromium, served from 127.0.0.1, "
    "through the loader page a bundle ships (LiteRT.js 2.5.3: `runDefault` on a uint8 or float input; TF.js "
    "4.22: `execute` + read-back), as `mobilepre validate --runtime chromium` times it. wasm is single-threaded "
    "in both. WebGPU here is SwiftShader (Chromium's CPU implementation of a GPU): its figures say the backend "
    "runs, not what a phone's GPU does. Download: what a first visit fetches, gzip: the model and the runtime "
    "it needs (LiteRT.js: its two ES modules and the relaxed-SIMD wasm build; TF.js: tfjs and the wasm backend "
    "with its SIMD wasm). int8 is full int8 with the model's own input type (the demo takes uint8 pixels); "
    "uint8 is TF.js's uint8 weights, dequantised to float at load. MobileNetV2 has random weights: only its "
    "speed and bytes mean something. A page without cross-origin isolation reads `performance.now()` in 0.1 ms "
    "steps, so the demo's figures (about 1-2 ms) are coarse; MobileNetV2's are not. Rounds interleaved with a rotating order; ratios are medians of per-round "
    "ratios."
)

def run(subjects, rounds: int, progress) -> tuple[dict, list[Target]]:
    from mobilepre import formats
    from mobilepre.runtimes import run_browser, run_litertjs

    result = {"description": DESCRIPTION, "rounds": rounds, "models": {}}
    targets = []
    for subject in subjects:
        one = subject.calibration[:1]
        files = {}
        for runtime, _, fmt, mode in RUNS:
            if (fmt, mode) not in files:
                files[fmt, mode] = (subject.artifact(fmt, mode), subject.written(fmt, mode))

        def measure(runtime, backend, fmt, mode):
            artifact, path = files[fmt, mode]
            runs = (WEBGPU_LATENCY_RUNS if backend == "webgpu" else LATENCY_RUNS)[subject.name]
            if runtime == "litertjs":
                ran = run_litertjs(artifact.files["model.tflite"], one, runs, WARMUP, backend=backend)
            else:
                ran = run_browser(path, one, runs, WARMUP, backend=backend)
            return ran.latency.median_ms

        names = {f"{runtime}_{backend}_{mode}": (runtime, backend, fmt, mode) for runtime, backend, fmt, mode in RUNS}
        values = {name: [] for name in names}
        errors = {}
        for r in range(rounds):
            for name in rotated(list(names), r):
                if name in errors:
                    continue
                try:
                    values[name].append(measure(*names[name]))
                except Exception as error:  # a backend that does not start here is a result, said as such
                    errors[name] = str(getattr(error, "message", error)).splitlines()[0][:200]
                    progress(f"{subject.name} {name}: {errors[name]}")
            progress(f"{subject.name} round {r + 1}/{rounds}: "
                     + ", ".join(f"{n} {v[-1]:.2f} ms" for n, v in values.items() if v))
        download = {}
        for runtime, _, fmt, mode in RUNS:
            artifact = files[fmt, mode][0]
            web_format = "litertjs" if runtime == "litertjs" else "tfjs"
            download[f"{runtime}_{mode}"] = {"model_gzip": artifact.gzip_bytes,
                                            "total_gzip": formats.download_bytes(web_format, artifact.gzip_bytes)}
        ratios = {}

        def ratio(name, numerator, denominator):
            if values.get(numerator) and values.get(denominator) and len(values[numerator]) == len(values[denominator]):
                ratios[name] = round(paired_ratio(values[numerator], values[denominator]), 4)

        ratio("litertjs_over_tfjs_wasm_float32", "litertjs_wasm_float32", "tfjs_wasm_float32")
        ratio("litertjs_int8_over_tfjs_float32_wasm", "litertjs_wasm_int8", "tfjs_wasm_float32")
        ratio("litertjs_int8_over_tfjs_uint8_wasm", "litertjs_wasm_int8", "tfjs_wasm_uint8")
        ratio("litertjs_over_tfjs_webgpu_float32", "litertjs_webgpu_float32", "tfjs_webgpu_float32")
        ratios["litertjs_over_tfjs_download_float32"] = round(download["litertjs_float32"]["total_gzip"] / download["tfjs_float32"]["total_gzip"], 4)
        ratios["litertjs_int8_over_tfjs_uint8_download"] = round(download["litertjs_int8"]["total_gzip"] / download["tfjs_uint8"]["total_gzip"], 4)
        result["models"][subject.name] = {
            "values_ms": {n: [round(v, 3) for v in vs] for n, vs in values.items() if vs},
            "medians_ms": {n: round(median(vs), 3) for n, vs in values.items() if vs},
            "did_not_run": errors,
            "download_bytes": download,
            "ratios": ratios,
        }
        if "litertjs_int8_over_tfjs_float32_wasm" in ratios:
            targets.append(Target("web_runtimes", f"LiteRT.js int8 / TF.js float32 per image, wasm, {subject.name}",
                                  ratios["litertjs_int8_over_tfjs_float32_wasm"], 1.0,
                                  "a latency-preferring web profile can ship LiteRT.js only where it is the faster runtime"))
    return result, targets
