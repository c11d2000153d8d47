"""Benchmark 2, size against the floor: artifact bytes / (parameters x bytes per weight), every mode."""

from __future__ import annotations

from mobilepre import quantize
from benchmarks.timing import Target

MAX_OVER_FLOOR = 1.10  # int8 and dynamic TFLite on a MobileNetV2-size model

DESCRIPTION = (
    "Bytes of each artifact (all files; TF.js: model.json and weight shards) divided by the model's "
    "parameters (Keras `count_params()`, BatchNormalization statistics included) times the bytes per "
    "weight of the mode (4 float32, 2 float16/uint16, 1 dynamic/int16x8/int8/uint8, 0.5 int4). Sizes are deterministic, so "
    "one conversion per mode. Below 1.0 is possible: BatchNormalization folds into the convolutions, "
    "so its 4 numbers per channel become one bias. Above 1.0 is the format's cost: int8 TFLite keeps "
    "biases as int32 and per-channel scales and zero points (each identical vector stored once), and every "
    "format stores the graph. A mode the converters cannot make for a model (int16x8 of MobileNetV2's random "
    "weights overflows LiteRT's depthwise kernel) is named with why."
)


def run(subjects, progress) -> tuple[dict, list[Target]]:
    result = {"description": DESCRIPTION, "models": {}}
    for subject in subjects:
        rows = {}
        for fmt, modes in quantize.MODES_BY_FORMAT.items():
            if fmt is quantize.Format.LITERTJS:  # the .tflite itself: its bytes are tflite's
                continue
            for mode in modes:
                if mode is quantize.Mode.MIXED:  # per layer, found against a profile: benchmarks/mixed.py
                    continue
                try:
                    artifact = subject.artifact(fmt.value, mode.value)
                except quantize.QuantizeError as error:  # e.g. int16x8 of random MobileNetV2 weights overflows
                    rows[f"{fmt.value}-{mode.value}"] = {"error": str(error).splitlines()[0][:300]}
                    progress(f"{subject.name} {fmt.value}-{mode.value}: not made: {error}")
                    continue
                floor = subject.parameters * quantize.BYTES_PER_WEIGHT[mode]
                rows[f"{fmt.value}-{mode.value}"] = {
                    "bytes": artifact.size_bytes,
                    "floor_bytes": int(floor),
                    "ratio": round(artifact.size_bytes / floor, 4),
                }
                progress(f"{subject.name} {fmt.value}-{mode.value}: {artifact.size_bytes} B, {artifact.size_bytes / floor:.3f}x the floor")
        result["models"][subject.name] = {"parameters": subject.parameters, "artifacts": rows}
    targets = []
    for mode in ("int8", "dynamic"):
        large = result["models"]["mobilenet_v2"]["artifacts"][f"tflite-{mode}"]
        extra = large["bytes"] - large["floor_bytes"]
        targets.append(Target(
            "size",
            f"{mode} TFLite bytes / floor, MobileNetV2",
            large["ratio"],
            MAX_OVER_FLOOR,
            f"{extra:,} B above one byte per parameter: int32 biases, per-channel scales (and int8's zero points), the graph",
        ))
    return result, targets
