"""Benchmark: per TFLite mode, Google's LiteRT Quantizer against TensorFlow's converter, bytes and drift
side by side, each file stripped as builds strip it and run in LiteRT."""

from __future__ import annotations

import numpy as np

from mobilepre import quantize
from mobilepre.quantize import Engine, Mode
from mobilepre.runtimes import run_tflite
from benchmarks.timing import Target

MODES = (Mode.DYNAMIC, Mode.INT16X8, Mode.INT8, Mode.INT4)

DESCRIPTION = (
    "Each TFLite mode made by both engines where both can make it (the converter makes no int4), from "
    "one SavedModel export, stripped as a build strips it. Bytes are exact; drift is measured in LiteRT "
    "against the Keras model: max abs error and top-1 agreement on the demo's 360 held-out digits. The "
    "MobileNetV2 has random weights (nothing is downloaded): its outputs are near-constant, so only its "
    "bytes mean something. A mode LiteRT cannot load is listed with the reason."
)


def run(subjects, validation: dict, progress) -> tuple[dict, list[Target]]:
    result = {"description": DESCRIPTION, "models": {}}
    for subject in subjects:
        images = validation[subject.name]
        reference = np.asarray(subject.model.predict(images, verbose=0))
        rows = {}
        for mode in MODES:
            for engine in (Engine.TFLITE_CONVERTER, Engine.LITERT_QUANTIZER):
                if engine is Engine.TFLITE_CONVERTER and mode is Mode.INT4:
                    continue
                settings = quantize.QuantizationSettings("tflite", mode, engine=engine)
                row = rows.setdefault(str(mode), {})
                try:
                    artifact = subject.convert(settings)
                    run_result = run_tflite(artifact.files["model.tflite"], images)
                except (quantize.QuantizeError, Exception) as error:  # a mode an engine or LiteRT refuses is a result
                    row[str(engine)] = {"error": str(getattr(error, "message", error)).splitlines()[0][:200]}
                    progress(f"{subject.name} {mode} {engine}: {row[str(engine)]['error']}")
                    continue
                got = run_result.outputs[0]
                row[str(engine)] = {
                    "bytes": artifact.size_bytes,
                    "gzip_bytes": artifact.gzip_bytes,
                    "max_abs_error": float(np.abs(got - reference).max()),
                    "top1_agreement": float((got.argmax(-1) == reference.argmax(-1)).mean()),
                }
                progress(f"{subject.name} {mode} {engine}: {artifact.size_bytes:,} B, max abs {row[str(engine)]['max_abs_error']:.4g}")
            both = rows[str(mode)]
            if all("bytes" in both.get(str(e), {}) for e in (Engine.TFLITE_CONVERTER, Engine.LITERT_QUANTIZER)):
                both["quantizer_over_converter_bytes"] = round(both["litert-quantizer"]["bytes"] / both["tflite-converter"]["bytes"], 4)
            both["chosen"] = str(quantize.QuantizationSettings("tflite", mode).engine or "measured per model")
        result["models"][subject.name] = rows
    targets = []
    for name, rows in result["models"].items():
        ratio = rows["dynamic"].get("quantizer_over_converter_bytes")
        if ratio is not None:
            targets.append(Target("engines", f"dynamic TFLite, LiteRT Quantizer / converter bytes, {name}", ratio, 1.0,
                                  "the engine builds use for dynamic must make the smaller file"))
    return result, targets
