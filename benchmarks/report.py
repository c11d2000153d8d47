"""The Markdown view of results.json: one table of ratios with their targets, then what each side includes."""

from __future__ import annotations

from mobilepre.quantize import MODES_BY_FORMAT

TITLES = {
    "overhead": "1. Tool overhead",
    "size": "2. Size against the floor",
    "engines": "2b. TFLite engines",
    "mixed": "2c. Mixed precision",
    "clustering": "2d. Clustering and pruning",
    "size_search": "2e. Size search toward the floor",
    "jobs": "1b. Parallel builds",
    "scale": "1c. Costs at scale",
    "speed": "3. Speed on this host",
    "web_runtimes": "3b. Browser runtimes",
    "frontend": "4. Front-end inside the model",
    "startup": "5. Start-up",
}


def _x(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.3f}x"


def _b(count: int) -> str:
    return f"{count:,} B"


def _size(count: int) -> str:
    return f"{count / 1e6:.2f} MB" if count >= 1e6 else f"{count / 1e3:.1f} kB"


def _verdict(target: dict | None) -> tuple[str, str]:
    if target is None:
        return "-", "no target"
    return f"<= {target['limit']:.2f}x", "**met**" if target["met"] else "**not met**"


def _rows(results: dict) -> list[tuple[str, str, str, str, str, str]]:
    """(benchmark, figure, ratio, measured, target, verdict) per row, in issue order."""
    sections = results["benchmarks"]
    targets = {t["name"]: t for t in results.get("targets", [])}
    rows = []

    def add(section, figure, ratio, measured, target_name=None):
        target, verdict = _verdict(targets.get(target_name) if target_name else None)
        rows.append((TITLES[section], figure, ratio, measured, target, verdict))

    if "overhead" in sections:
        o = sections["overhead"]
        m, r = o["median_seconds"], o["ratios"]
        add("overhead", "`mobilepre build` / direct converters, 4 demo artifacts (as shipped)",
            _x(r["build_over_direct"]), f"{m['build']:.1f} s vs {m['direct']:.1f} s",
            "mobilepre build / direct converters (as shipped)")
        add("overhead", "the same with `MOBILEPRE_ISOLATE_LOADS=0` (no trial load in a child process)",
            _x(r["build_no_trial_load_over_direct"]), f"{m['build_no_trial_load']:.1f} s vs {m['direct']:.1f} s",
            "mobilepre build / direct converters (MOBILEPRE_ISOLATE_LOADS=0)")
        add("overhead", "8 profiles reusing the 4 artifacts / 4 profiles",
            _x(r["reused_profiles_over_build"]), f"{m['build_reused_profiles']:.1f} s vs {m['build']:.1f} s",
            "4 more profiles reusing the 4 artifacts")
    if "scale" in sections:
        sc = sections["scale"]
        for name, row in sc["cache"].items():
            t = row["seconds"]
            add("scale", f"warm rebuild / cold build, {name} (cached latencies)", _x(row["warm_over_cold"]),
                f"{t['warm']:.1f} s vs {t['cold']:.1f} s", f"warm rebuild / cold build, {name}")
            add("scale", f"warm rebuild timing the candidates again / cold build, {name}", _x(row["warm_timing_again_over_cold"]),
                f"{t['warm_timing_again']:.1f} s vs {t['cold']:.1f} s")
            add("scale", f"budget-only change / cold build, {name}", _x(row["budget_changed_over_cold"]),
                f"{t['budget_changed']:.1f} s vs {t['cold']:.1f} s", f"budget-only change / cold build, {name}")
            if "cold_no_cache" in t:
                add("scale", f"cold build writing the cache / without a cache, {name}", _x(t["cold"] / t["cold_no_cache"]),
                    f"{t['cold']:.1f} s vs {t['cold_no_cache']:.1f} s")
        p = sc["profiles"]
        add("scale", "16 / 4 profiles sharing 4 candidates (8 / 4 beside)", _x(p["16_over_4"]),
            f"{p['seconds']['16']:.1f} s vs {p['seconds']['4']:.1f} s (8: {p['seconds']['8']:.1f} s, {_x(p['8_over_4'])})")
        m = sc["model_size"]
        add("scale", "cold build, MobileNetV2 224 / demo (82x the parameters)", _x(m["mobilenet_v2_224_over_demo"]),
            f"{m['seconds']['mobilenet_v2_224']:.1f} s vs {m['seconds']['demo']:.1f} s (96x96: {m['seconds']['mobilenet_v2_96']:.1f} s)")
        for fmt, label in (("tflite", "LiteRT"), ("tfjs", "TF.js")):
            r = sc["validation"]["runs"][fmt]
            add("scale", f"validation ms per image, 1,000-5,000 / 100-1,000 images, {label}", _x(r["growth"]),
                f"{r['marginal_ms_per_image_1000_to_5000']:.3f} ms vs {r['marginal_ms_per_image_100_to_1000']:.3f} ms",
                f"validation cost per image, 1,000-5,000 / 100-1,000 images, {fmt}")
        v = sc["validation"]
        resident = v["resident_bytes_after_each_candidate"]
        add("scale", "build process memory after 8 / after 2 candidates (5,000 images)", _x(resident[-1] / resident[1]),
            f"{resident[-1] / 1e6:.0f} MB vs {resident[1] / 1e6:.0f} MB")
        g = sc["merge"]
        add("scale", "merge of 6 parts / one build of the 6 profiles", _x(g["merge_over_one_build"]),
            f"{g['merge_seconds']:.1f} s vs {g['one_build_seconds']:.1f} s")
        add("scale", "CI critical path (longest part + merge) / one build", _x(g["critical_path_over_one_build"]),
            f"{max(g['part_seconds'].values()) + g['merge_seconds']:.1f} s vs {g['one_build_seconds']:.1f} s")
        add("scale", "all 6 parts + merge (CPU time spent) / one build", _x(g["all_parts_over_one_build"]),
            f"{sum(g['part_seconds'].values()) + g['merge_seconds']:.1f} s vs {g['one_build_seconds']:.1f} s")
    if "size" in sections:
        models = sections["size"]["models"]
        for mode in ("int8", "dynamic"):
            large = models["mobilenet_v2"]["artifacts"][f"tflite-{mode}"]
            add("size", f"{mode} TFLite bytes / floor, MobileNetV2 ({models['mobilenet_v2']['parameters']:,} parameters)",
                _x(large["ratio"]), f"{_b(large['bytes'])} vs {_b(large['floor_bytes'])}",
                f"{mode} TFLite bytes / floor, MobileNetV2")
        for name, label in (("mobilenet_v2", "MobileNetV2"), ("demo", "demo")):
            model = models[name]
            for fmt, modes in MODES_BY_FORMAT.items():
                if fmt.value == "litertjs":  # the .tflite itself: its bytes are tflite's
                    continue
                per_mode = [(mode.value, model["artifacts"][f"{fmt.value}-{mode.value}"]) for mode in modes if mode.value != "mixed"]
                add("size", f"{fmt.value} bytes / floor, every mode, {label} ({model['parameters']:,} parameters)",
                    ", ".join(f"{mode} {row['ratio']:.2f}" if "ratio" in row else f"{mode} not made" for mode, row in per_mode),
                    ", ".join(_size(row["bytes"]) if "bytes" in row else f"{mode}: {row['error']}" for mode, row in per_mode))
    if "engines" in sections:
        for name, label in (("demo", "demo"), ("mobilenet_v2", "MobileNetV2")):
            for mode, row in sections["engines"]["models"][name].items():
                sides = []
                for engine in ("tflite-converter", "litert-quantizer"):
                    cell = row.get(engine)
                    if cell is None:
                        continue
                    if "error" in cell:
                        sides.append(f"{engine}: refused ({cell['error'][:60]})")
                    else:
                        drift = f", max abs {cell['max_abs_error']:.3g}, top-1 {cell['top1_agreement']:.3f}" if name == "demo" else ""
                        sides.append(f"{engine}: {_b(cell['bytes'])}{drift}")
                ratio = row.get("quantizer_over_converter_bytes")
                add("engines", f"{mode} TFLite, LiteRT Quantizer / converter bytes, {label} (builds use: {row['chosen']})",
                    _x(ratio) if ratio is not None else "-", "; ".join(sides),
                    f"dynamic TFLite, LiteRT Quantizer / converter bytes, {name}" if mode == "dynamic" else None)
    if "jobs" in sections:
        for name, row in sections["jobs"]["seconds"].items():
            add("jobs", f"build wall time --jobs 2 / --jobs 1, {name}", _x(row["jobs_2_over_jobs_1"]),
                f"{row['jobs_2']:.1f} s vs {row['jobs_1']:.1f} s", f"build wall time --jobs 2 / --jobs 1, {name}")
    if "mixed" in sections:
        mixed = sections["mixed"]
        rows_by = mixed["candidates"]
        dynamic = rows_by["tflite-dynamic"]
        for key in ("tflite-int8", "tflite-dynamic", "tflite-int4", "mixed (weights)", "mixed (integer)"):
            row = rows_by.get(key)
            if row is None:
                continue
            raised = f", {len(row['raised'])} layers raised from {row['base']}" if "raised" in row else ""
            add("mixed", f"{key}, demo, max abs error <= {mixed['max_abs_error']} ({'met' if row['passed_drift'] else 'missed'})",
                _x(row["bytes"] / dynamic["bytes"]) + " dynamic's bytes",
                f"{_b(row['bytes'])}, max abs {row['max_abs_error']:.3g}, {row['latency_ms']:.3f} ms{raised}")
    if "size_search" in sections:
        z = sections["size_search"]
        for name, model in z["models"].items():
            if "error" in model:
                add("size_search", f"smallest TFLite at top-1 >= {z['min_top1_agreement']}, {name}", "none", model["error"])
                continue
            for plain in ("dynamic", "int8"):
                if f"smallest_over_{plain}" in model:
                    add("size_search", f"smallest TFLite at top-1 >= {z['min_top1_agreement']} / plain {plain}, {name}",
                        _x(model[f"smallest_over_{plain}"]),
                        f"{model['smallest']} {_b(model['smallest_bytes'])} vs {_b(model['candidates'][f'tflite-{plain}']['bytes'])}; "
                        f"search {model['search_seconds']:.0f} s (ranking {model['ranking_seconds']:.1f} s)")
            tight = model.get("tight")
            if tight:
                ratio = (tight["bytes"] or 0) / model["candidates"]["tflite-int8"]["bytes"]
                add("size_search", f"under max_size {_b(tight['max_size'])} (0.85x int8), {name}: found / int8",
                    _x(ratio) if tight["bytes"] else "none",
                    (f"{tight['found']} {_b(tight['bytes'])}" if tight["found"] else f"closest: {tight['closest']}")
                    + (f"; mixed {_b(tight['mixed']['bytes'])}, {tight['mixed']['raised']} raised, {tight['mixed']['steps']} steps"
                       if tight.get("mixed") else "") + f"; search {tight['search_seconds']:.0f} s",
                    next((t["name"] for t in results.get("targets", []) if t["benchmark"] == "size_search" and t["name"].endswith(name)), None))
        for name, cost in z.get("ranking_cost", {}).items():
            add("size_search", f"mixed ranking time / ({cost['ranked_ops']} ops x one run of the 16 ranking images), {name}",
                _x(cost["ranking_over_runs"]),
                f"{cost['ranking_seconds']:.1f} s for {cost['ranked_ops']} weighted ops of {cost['ops']}; one run {cost['one_run_seconds']:.2f} s")
    if "clustering" in sections:
        c = sections["clustering"]
        for fmt, summary in c["formats"].items():
            best = summary["smallest_at_equal_drift"]
            if len(best) < 2:
                continue
            pruned, clustered = summary["candidates"][best["pruning"]], summary["candidates"][best["clustering"]]
            add("clustering", f"{fmt} gzip bytes, smallest clustered / smallest pruned at top-1 >= {c['min_top1_agreement']}, demo",
                _x(summary["clustering_over_pruning_gzip"]),
                f"{best['clustering']} {_b(clustered['gzip_bytes'])} (top-1 {clustered['top1_agreement']:.3f}) vs "
                f"{best['pruning']} {_b(pruned['gzip_bytes'])} (top-1 {pruned['top1_agreement']:.3f})")
    if "speed" in sections:
        s = sections["speed"]
        m, r = s["medians"], s["ratios"]
        for threads, label in (("1_thread", "1 thread"), ("2_threads", "2 threads")):
            add("speed", f"int8 / float32 TFLite latency, MobileNetV2, {label}",
                _x(r[f"int8_over_float32_latency_{threads}"]),
                f"{m[f'latency_ms.tflite_int8_{threads}']:.2f} ms vs {m[f'latency_ms.tflite_float32_{threads}']:.2f} ms")
        add("speed", "2 / 1 threads float32 TFLite latency, MobileNetV2 (below 1: the second core helped)",
            _x(r["two_over_one_thread_latency_float32"]),
            f"{m['latency_ms.tflite_float32_2_threads']:.2f} ms vs {m['latency_ms.tflite_float32_1_thread']:.2f} ms")
        add("speed", "TF.js wasm / LiteRT float32 latency (1 thread), MobileNetV2",
            _x(r["tfjs_wasm_over_tflite_float32_latency"]),
            f"{m['latency_ms.tfjs_wasm_float32']:.1f} ms vs {m['latency_ms.tflite_float32_1_thread']:.2f} ms")
        for name, label in (("demo", "demo, 360 images"), ("mobilenet", "MobileNetV2, 32 images")):
            add("speed", f"validation throughput TF.js wasm / LiteRT, {label}",
                _x(r[f"{name}_tfjs_over_litert_throughput"]),
                f"{m[f'images_per_s.{name}_tfjs_wasm']:,.0f} vs {m[f'images_per_s.{name}_litert']:,.0f} images/s")
    if "web_runtimes" in sections:
        for name, label in (("demo", "demo"), ("mobilenet_v2", "MobileNetV2")):
            model = sections["web_runtimes"]["models"].get(name)
            if model is None:
                continue
            m, r, d = model["medians_ms"], model["ratios"], model["download_bytes"]
            for key, figure, num, den in (
                ("litertjs_over_tfjs_wasm_float32", "LiteRT.js / TF.js, float32", "litertjs_wasm_float32", "tfjs_wasm_float32"),
                ("litertjs_int8_over_tfjs_float32_wasm", "LiteRT.js int8 / TF.js float32", "litertjs_wasm_int8", "tfjs_wasm_float32"),
                ("litertjs_int8_over_tfjs_uint8_wasm", "LiteRT.js int8 / TF.js uint8 weights", "litertjs_wasm_int8", "tfjs_wasm_uint8"),
                ("litertjs_over_tfjs_webgpu_float32", "LiteRT.js / TF.js, float32, WebGPU on SwiftShader", "litertjs_webgpu_float32", "tfjs_webgpu_float32"),
            ):
                if key in r:
                    add("web_runtimes", f"ms per image in Chromium, {figure}{'' if 'webgpu' in key else ', wasm'}, {label}",
                        _x(r[key]), f"{m[num]:.2f} ms vs {m[den]:.2f} ms",
                        f"LiteRT.js int8 / TF.js float32 per image, wasm, {name}" if key == "litertjs_int8_over_tfjs_float32_wasm" else None)
            for key, figure, num, den in (("litertjs_over_tfjs_download_float32", "LiteRT.js / TF.js, float32", "litertjs_float32", "tfjs_float32"),
                                          ("litertjs_int8_over_tfjs_uint8_download", "LiteRT.js int8 / TF.js uint8 weights", "litertjs_int8", "tfjs_uint8")):
                add("web_runtimes", f"first-visit download (model + runtime, gzip), {figure}, {label}",
                    _x(r[key]), f"{_size(d[num]['total_gzip'])} vs {_size(d[den]['total_gzip'])} (models {_size(d[num]['model_gzip'])} vs {_size(d[den]['model_gzip'])})")
            for failed, why in model.get("did_not_run", {}).items():
                add("web_runtimes", f"{failed}, {label}: did not run", "-", why[:120])
    if "frontend" in sections:
        f = sections["frontend"]
        for threads, label in (("1_thread", "1 thread"), ("2_threads", "2 threads")):
            lat = f["latency"][threads]
            add("frontend", f"end-to-end latency per 224x224x3 image, inside / outside (NumPy + SciPy), {label}",
                _x(lat["inside_over_outside"]),
                f"{lat['inside_ms']:.2f} ms vs {lat['outside_ms']:.2f} ms (NumPy + SciPy part {lat['outside_numpy_ms']:.2f} ms)")
        sizes = f["bytes_to_runtime_per_image"]
        add("frontend", "bytes handed to the runtime per image, inside (uint8) / outside (float32)",
            _x(f["bytes_ratio_inside_over_outside"]), f"{_b(sizes['inside'])} vs {_b(sizes['outside'])}")
    if "startup" in sections:
        st = sections["startup"]
        m = st["median_seconds"]
        add("startup", "`mobilepre --help` / `python -c pass`", _x(st["ratios"]["help_over_python"]),
            f"{m['mobilepre_help']:.3f} s vs {m['python_pass']:.3f} s")
    return rows


def _run(run: dict) -> str:
    took = f"{run['seconds'] / 60:.1f} minutes"
    if len(run["benchmarks"]) == len(TITLES):
        return f"the run took {took}"
    return f"the last run ({', '.join(run['benchmarks'])} only; the rest from an earlier run) took {took}"


def _finding(name: str, section: dict) -> str:
    """A sentence about this run's figures that the reader needs to read them."""
    if name == "frontend":
        return (f" The two variants compute the same thing: their 32 feature maps (Keras) agree within "
                f"{section['max_abs_feature_difference']:.1e} and their LiteRT outputs within "
                f"{section['max_abs_output_difference']:.1e} (largest absolute differences, random images).")
    if name == "speed":
        ratio = section["ratios"]["two_over_one_thread_latency_float32"]
        if ratio >= 1.0:
            return (f" In this run 2 threads were no faster than 1 ({_x(ratio)}): the host's second core was "
                    "busy (see the load average), so the 2-thread figures say little about an idle 2-core device.")
    return ""


def table(results: dict) -> str:
    lines = ["| benchmark | figure | ratio | medians, side by side | target | verdict |", "|---|---|---|---|---|---|"]
    for row in _rows(results):
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def markdown(results: dict) -> str:
    """results.md: the table, the targets not met and why, what each benchmark compares, the host."""
    host = results["host"]
    lines = [
        "# mobilepre benchmarks",
        "",
        f"Every figure is a ratio of two things measured side by side in one run (interleaved, rotating order) "
        f"on this shared {host['cpus']}-core host; medians over repeated runs. Generated by `make bench` "
        f"(`python -m benchmarks`) from `results.json`; {_run(results['run'])}.",
        "",
        table(results),
        "",
        "## Targets",
        "",
    ]
    for target in results.get("targets", []):
        verdict = "met" if target["met"] else "NOT MET"
        lines.append(f"- {target['name']}: {_x(target['value'])} against <= {target['limit']:.2f}x, **{verdict}**; {target['note']}.")
    lines += ["", "## What each figure compares", ""]
    for name, title in TITLES.items():
        section = results["benchmarks"].get(name)
        if section:
            load = section.get("load_average", {})
            lines.append(f"**{title}.** {section['description']}{_finding(name, section)} (Took {section['seconds_taken']:.0f} s; load average "
                         f"{load.get('before', ['?'])[0]} before, {load.get('after', ['?'])[0]} after.)")
            lines.append("")
    versions = ", ".join(f"{k} {v}" for k, v in sorted(host["versions"].items()))
    lines.append(f"Host: {host['platform']}, {host['cpus']} CPUs, Python {host['python']}; {versions}.")
    return "\n".join(lines) + "\n"
