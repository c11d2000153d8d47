"""Benchmark 2e, the size search toward the floor (issue 30): per trained classifier, the smallest TFLite file
the search finds at top-1 agreement >= 0.97, against plain dynamic-range and full int8, and how long the
search took; then the same classifier under a size budget of 0.85x its int8 file."""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.timing import Target
from mobilepre.builder import BuildOptions, build

MIN_TOP1 = 0.97
TIGHT = 0.85  # the target: a file within 0.85x of the int8 one at top-1 >= 0.97
MODES = ["float32", "float16", "dynamic", "int16x8", "int8", "mixed", "int4"]

DESCRIPTION = (
    "One in-process build per classifier with a profile allowing every TFLite mode (float32, float16, "
    f"dynamic, int16x8, int8, mixed, int4), prefer = \"size\", min top-1 agreement {MIN_TOP1} against the "
    "float model on held-out images, each candidate run in LiteRT; then the same with max_size at "
    f"{TIGHT}x the int8 file's bytes, so the mixed search spends the room by error removed per byte. "
    "Classifiers, each trained here on scikit-learn's handwritten digits (upsampled to 32x32, 15 epochs, held-out accuracy checked >= 0.8): "
    "the demo (its own, trained end to end), a compact CNN of 72,794 parameters with a Dense head "
    "(near the issue's 58k-parameter face classifier), and MobileNetV2 (alpha 0.35, 32x32, Keras's own "
    "constructor), and the conformance sweep's Keras families that need no edited layers, each at 32x32 "
    "by its own constructor's arguments (MobileNetV3Large alpha 0.35, EfficientNetV2 B0 at a quarter of "
    "its width and depth, DenseNet with two layers per block, ConvNeXt with one block per stage and 16 to "
    "128 channels). Ratios are bytes over the plain candidate's; search time is the build's wall time, "
    "and the mixed ranking's own time is read from the build's progress lines. Ranking cost: two larger "
    "networks at 224x224 (Keras's MobileNetV2 and EfficientNetV2B0, untrained: time does not depend on the "
    "weights), their float .tflite ranked at int4 on 16 images as the search ranks them (each weighted op "
    "alone quantized and run), against one LiteRT run of those 16 images."
)


def _digits(side: int = 32, channels: int = 3):
    import tensorflow as tf
    from sklearn.datasets import load_digits

    data = load_digits()
    images = tf.image.resize((data.images / 16.0).astype(np.float32)[..., None], (side, side)).numpy()
    return np.repeat(images, channels, axis=-1), data.target.astype(np.int64)


def _compact(keras):
    """A compact CNN classifier (72,794 parameters): four conv blocks with BatchNormalization, a Dense head."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = inputs
    for filters in (16, 32, 48, 64):
        x = L.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = L.ReLU()(L.BatchNormalization()(x))
        x = L.MaxPooling2D()(x)
    x = L.Dense(96, activation="relu")(L.Flatten()(x))
    return keras.Model(inputs, L.Dense(10, activation="softmax")(x), name="compact_cnn")


def _mobilenet(keras):
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=10)


def _conformance_families(keras) -> dict:
    """The Keras application families of the conformance sweep (tests/test_conformance.py) that need no
    edited layers, small at 32x32 by their own constructors' arguments: name -> constructor."""
    from keras.src.applications import convnext, densenet, efficientnet_v2

    top = dict(weights=None, classes=10, input_shape=(32, 32, 3))
    return {
        "mobilenet_v3_large_035": lambda: keras.applications.MobileNetV3Large(alpha=0.35, include_preprocessing=False, **top),
        "efficientnet_v2_b0_quarter": lambda: efficientnet_v2.EfficientNetV2(0.25, 0.25, 32, name="efficientnetv2-b0",
                                                                             include_preprocessing=False, **top),
        "densenet_2222": lambda: densenet.DenseNet([2, 2, 2, 2], name="densenet121", **top),
        "convnext_1111": lambda: convnext.ConvNeXt([1, 1, 1, 1], [16, 32, 64, 128], default_size=32, name="convnext_tiny", **top),
    }


def _trained(keras, model, images, labels):
    """Trained on 1,200 digits; BatchNormalization's moving statistics set to settle within the few hundred
    steps (MobileNetV2's default momentum, 0.999, would leave them near their initial values)."""
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images[:1200], labels[:1200], epochs=15, batch_size=32, verbose=0)
    accuracy = float(np.mean(model.predict(images[1400:], verbose=0).argmax(1) == labels[1400:]))
    if accuracy < 0.8:
        raise RuntimeError(f"{model.name} reached only {accuracy:.2f} accuracy on held-out digits: not a trained classifier")
    return model


def _profile(folder: Path, name: str, max_size: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.toml").write_text(
        f'name = "{name}"\ndescription = "size search benchmark"\nformats = ["tflite"]\nquantization = {json.dumps(MODES)}\n'
        f'prefer = "size"\n[budget]\nmax_size = "{max_size}"\n[drift]\nmin_top1_agreement = {MIN_TOP1}\n'
    )


def _search(model_path: Path, data: Path, calibration: Path, profiles: Path, out: Path, progress) -> tuple:
    said = []
    started = time.perf_counter()
    result = build(BuildOptions(out=out, model=model_path, validation=data, calibration=calibration, profiles=profiles,
                                latency_runs=3), lambda m: (said.append(m), progress(m)))
    seconds = time.perf_counter() - started
    ranking = sum(float(m) for line in said for m in re.findall(r"layers at \S+ by measured error in ([0-9.]+) s", line))
    return result, round(seconds, 1), round(ranking, 1)


def _ranking_cost(keras, progress) -> dict:
    """Seconds the mixed search's ranking takes on networks with many ops, per weighted op and against one
    run of the ranking images: what ranking costs grows with ops x inference time."""
    from mobilepre import quantize
    from mobilepre.mixed import RANK_IMAGES
    from mobilepre.quantize.mixed import graph_ops, rank_tflite_ops
    from mobilepre.quantize.runtime import signature_outputs

    images = np.random.default_rng(0).random((RANK_IMAGES, 224, 224, 3), np.float32)
    found = {}
    for name, make in (("mobilenet_v2_224", lambda: keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None, classes=10)),
                       ("efficientnet_v2_b0_224", lambda: keras.applications.EfficientNetV2B0(
                           input_shape=(224, 224, 3), weights=None, classes=10, include_preprocessing=False))):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((224, 224, 3), name="pixels")
        model = keras.Model(inputs, make()(inputs))
        content = quantize.convert(model, quantize.QuantizationSettings("tflite", "float32", strip_metadata=False)).files["model.tflite"]
        ops = graph_ops(content)
        started = time.perf_counter()
        signature_outputs(content, images, "pixels")
        one_run = time.perf_counter() - started
        started = time.perf_counter()
        ranked = rank_tflite_ops(content, quantize.Mode.INT4, images, "pixels")
        ranking = time.perf_counter() - started
        found[name] = {"ops": len(ops), "ranked_ops": len(ranked), "ranking_seconds": round(ranking, 2),
                       "one_run_seconds": round(one_run, 3), "ranking_over_runs": round(ranking / (len(ranked) * one_run), 3)}
        progress(f"ranking cost, {name}: {found[name]}")
    return found


def run(progress) -> tuple[dict, list]:
    from mobilepre._tf import keras as load_keras
    from mobilepre import demo

    keras = load_keras()
    out, targets = {"description": DESCRIPTION, "min_top1_agreement": MIN_TOP1, "models": {}}, []
    images, labels = _digits()
    with tempfile.TemporaryDirectory(prefix="mobilepre-bench-size-search-") as tmp:
        tmp = Path(tmp)
        np.save(tmp / "calibration.npy", images[1200:1328])
        np.save(tmp / "validation.npy", images[1400:1797])
        subjects = {"demo": (demo.model_path(), demo.validation_path(), demo.calibration_path())}
        makers = {"compact_cnn": lambda: _compact(keras), "mobilenet_v2_035": lambda: _mobilenet(keras), **_conformance_families(keras)}
        for name, make in makers.items():
            keras.utils.set_random_seed(0)
            try:
                model = _trained(keras, make(), images, labels)
            except RuntimeError as error:  # a family 15 epochs do not train: said, not measured
                out["models"][name] = {"error": str(error)}
                progress(f"{name}: {error}")
                continue
            model.save(tmp / f"{name}.keras")
            subjects[name] = (tmp / f"{name}.keras", tmp / "validation.npy", tmp / "calibration.npy")
        for name, (model_path, validation, calibration) in subjects.items():
            _profile(tmp / name / "open", "open", "64 MiB")
            result, seconds, ranking = _search(model_path, validation, calibration, tmp / name / "open", tmp / name / "out-open", progress)
            tried = {t.candidate: t for t in result.profile("open").format("tflite").tried}
            rows = {k: {"bytes": t.size_bytes, "passed": t.passed, "top1_agreement": t.metric("top1_agreement")} for k, t in tried.items()}
            chosen = result.profile("open").format("tflite").chosen
            entry = {"candidates": rows, "search_seconds": seconds, "ranking_seconds": ranking,
                     "smallest": chosen.candidate if chosen else None, "smallest_bytes": chosen.size_bytes if chosen else None}
            for plain in ("tflite-dynamic", "tflite-int8"):
                if chosen and plain in tried:
                    entry[f"smallest_over_{plain.split('-')[1]}"] = round(chosen.size_bytes / tried[plain].size_bytes, 4)
            int8 = tried.get("tflite-int8")
            if int8 is not None:
                budget = int(int8.size_bytes * TIGHT)
                _profile(tmp / name / "tight", "tight", f"{budget} B")
                tight, tight_seconds, tight_ranking = _search(model_path, validation, calibration, tmp / name / "tight",
                                                              tmp / name / "out-tight", progress)
                fmt = tight.profile("tight").format("tflite")
                found = fmt.chosen
                entry["tight"] = {"max_size": budget, "found": found.candidate if found else None,
                                  "bytes": found.size_bytes if found else None, "search_seconds": tight_seconds,
                                  "ranking_seconds": tight_ranking,
                                  "closest": None if found or fmt.closest is None else "; ".join(fmt.closest.verdict.failures)}
                mixed = next((t for t in fmt.tried if t.mixed), None)
                if mixed is not None:
                    entry["tight"]["mixed"] = {"bytes": mixed.size_bytes, "passed": mixed.passed, "ranked_by": mixed.mixed.get("ranked_by"),
                                               "raised": len(mixed.mixed.get("raised", [])), "steps": len(mixed.mixed.get("steps", []))}
                ratio = (found.size_bytes if found else int8.size_bytes * 10) / int8.size_bytes
                targets.append(Target("size_search", f"smallest TFLite at top-1 >= {MIN_TOP1} under {TIGHT}x int8's bytes / int8, {name}",
                                      round(ratio, 4), TIGHT, "none found under the budget" if not found else ""))
            out["models"][name] = entry
            progress(f"{name}: {entry}")
    out["ranking_cost"] = _ranking_cost(keras, progress)
    return out, targets
