"""Benchmark 4, the seed's claim: preprocessing inside the model (raw uint8 pixels) against outside in NumPy."""

from __future__ import annotations

import time

import numpy as np

from benchmarks.timing import BenchError, median

SHAPE = (224, 224, 3)
CLASSES = 10
RUNS = 60  # per variant and thread count, alternating which variant goes first
WARMUP = 5
IMAGES = 8
MAX_ABS_DIFF = 1e-4  # both sides compute the same function; only float rounding may differ

DESCRIPTION = (
    "Inside: the default front-end (uint8 224x224x3 input, Rescaling to [0, 1], 3x3 Gaussian "
    "DepthwiseConv2D, Conv2D 16x5x5 and 32x3x3 ReLU, BatchNormalization) attached to a small head "
    f"(global average pooling, Dense {CLASSES} softmax), converted to float32 TFLite: one `invoke()` "
    "taking raw pixels. Outside: NumPy does the rescale (uint8 -> float32 x 1/255) and SciPy's "
    "`ndimage.correlate` the same 3x3 per-channel Gaussian (the model's own kernel, zero padding as Keras "
    "'same'; the fastest outside version tried), then a float32 TFLite "
    "model of the remaining layers with the same weights takes the float image. End-to-end per image: "
    "from the uint8 image to the output read back (outside includes NumPy), LiteRT, the two variants "
    f"alternating image by image, {RUNS} images each after {WARMUP} warm-up runs; the ratio is the median of "
    "per-image ratios. On a phone the outside variant would be app code (Kotlin, Swift, JS) instead of NumPy."
)


def blur_outside(pixels: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The front-end's first stages outside the model: pixels / 255, then the 3x3 kernel per channel, zero-padded.

    SciPy's `ndimage.correlate` per channel plane: the fastest of the versions tried (a NumPy
    shift-and-add over the interleaved HWC array took about three times as long), so the comparison
    favours the outside variant rather than the claim.
    """
    from scipy import ndimage

    x = pixels.astype(np.float32) * np.float32(1.0 / 255.0)
    out = np.empty_like(x)
    for n in range(x.shape[0]):
        for c in range(x.shape[-1]):
            out[n, :, :, c] = ndimage.correlate(x[n, :, :, c], kernel[:, :, c], mode="constant", cval=0.0)
    return out


def _models():
    """The model with the front-end inside, and the same model without rescale and denoise (shared weights)."""
    from mobilepre._tf import keras
    from mobilepre.frontend import FrontendSpec, attach, build_frontend

    k = keras()
    k.utils.set_random_seed(0)
    inside_frontend = build_frontend(FrontendSpec(input_shape=SHAPE))
    features = inside_frontend.outputs[0].shape[-1]
    head_input = k.Input((SHAPE[0], SHAPE[1], features))
    pooled = k.layers.GlobalAveragePooling2D()(head_input)
    head = k.Model(head_input, k.layers.Dense(CLASSES, activation="softmax")(pooled), name="head")
    inside = attach(inside_frontend, head, name="inside")
    outside_frontend = build_frontend(FrontendSpec(input_shape=SHAPE, uint8_input=False, denoise=False))
    for layer in outside_frontend.layers[1:]:
        layer.set_weights(inside_frontend.get_layer(layer.name).get_weights())
    outside = attach(outside_frontend, head, name="outside")
    kernel = inside_frontend.get_layer("denoise").get_weights()[0][:, :, :, 0]  # (3, 3, channels)
    return inside, outside, kernel, (inside_frontend, outside_frontend)


def _interpreter(content: bytes, threads: int):
    from mobilepre.quantize.runtime import tflite_interpreter

    interpreter = tflite_interpreter(content, threads=threads)
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]

    def call(batch: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(source, batch)
        interpreter.invoke()
        return interpreter.get_tensor(target)

    return call


def _time_pair(inside_call, outside_call, kernel, images) -> dict:
    """Per-image end-to-end milliseconds of both variants, alternating which goes first."""

    def inside(image):
        t0 = time.perf_counter()
        inside_call(image)
        return (time.perf_counter() - t0) * 1000.0, 0.0

    def outside(image):
        t0 = time.perf_counter()
        blurred = blur_outside(image, kernel)
        t1 = time.perf_counter()
        outside_call(blurred)
        return (time.perf_counter() - t0) * 1000.0, (t1 - t0) * 1000.0

    for k in range(WARMUP):
        inside(images[k % len(images)])
        outside(images[k % len(images)])
    inside_ms, outside_ms, numpy_ms = [], [], []
    for k in range(RUNS):
        image = images[k % len(images)]
        if k % 2 == 0:
            (inside_total, _), (outside_total, numpy_part) = inside(image), outside(image)
        else:
            (outside_total, numpy_part), (inside_total, _) = outside(image), inside(image)
        inside_ms.append(inside_total)
        outside_ms.append(outside_total)
        numpy_ms.append(numpy_part)
    return {
        "inside_ms": round(median(inside_ms), 3),
        "outside_ms": round(median(outside_ms), 3),
        "outside_numpy_ms": round(median(numpy_ms), 3),
        "inside_over_outside": round(median(a / b for a, b in zip(inside_ms, outside_ms)), 4),
    }


def run(progress) -> dict:
    from mobilepre import quantize

    inside, outside, kernel, (inside_frontend, outside_frontend) = _models()
    settings = quantize.QuantizationSettings("tflite", "float32")
    inside_tflite = quantize.convert(inside, settings).files["model.tflite"]
    outside_tflite = quantize.convert(outside, settings).files["model.tflite"]
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (IMAGES, 1, *SHAPE), dtype=np.uint8)

    # Both sides must compute the same thing: the 32 feature maps in Keras, and the outputs in LiteRT.
    sample = images[:2, 0]
    features_inside = inside_frontend(sample).numpy()
    features_outside = outside_frontend(blur_outside(sample, kernel)).numpy()
    features_diff = float(np.abs(features_inside - features_outside).max())
    check_inside, check_outside = _interpreter(inside_tflite, 1), _interpreter(outside_tflite, 1)
    diff = max(float(np.abs(check_inside(x) - check_outside(blur_outside(x, kernel))).max()) for x in images)
    if max(diff, features_diff) > MAX_ABS_DIFF:
        worst = max(diff, features_diff)
        raise BenchError(f"inside and outside variants disagree by {worst:g} (more than {MAX_ABS_DIFF:g})")

    latency = {}
    for threads in (1, 2):
        latency[f"{threads}_thread{'s' if threads > 1 else ''}"] = timed = _time_pair(
            _interpreter(inside_tflite, threads), _interpreter(outside_tflite, threads), kernel, images
        )
        progress(f"{threads} thread(s): inside {timed['inside_ms']} ms, outside {timed['outside_ms']} ms "
                 f"(NumPy {timed['outside_numpy_ms']} ms)")
    inside_bytes = int(images[0].nbytes)
    outside_bytes = int(blur_outside(images[0], kernel).nbytes)
    return {
        "description": DESCRIPTION,
        "max_abs_output_difference": diff,
        "max_abs_feature_difference": features_diff,
        "parameters": {"inside": int(inside.count_params()), "outside": int(outside.count_params())},
        "tflite_bytes": {"inside": len(inside_tflite), "outside": len(outside_tflite)},
        "bytes_to_runtime_per_image": {"inside": inside_bytes, "outside": outside_bytes},
        "bytes_ratio_inside_over_outside": round(inside_bytes / outside_bytes, 4),
        "latency": latency,
    }
