"""The overhead benchmark's baseline: the same artifacts as `mobilepre build`, by hand, in one script.

What a user would write without mobilepre: load the demo model, export one SavedModel, call the TFLite
converter and the tensorflowjs converter directly with the options mobilepre uses, write each artifact,
run the validation images through LiteRT and TF.js-on-Node (the same runtime calls a build makes) and
compare with the Keras outputs. Prints one JSON line: per artifact, its bytes, the sha256 of its files
(TF.js: the weight shards; mobilepre rewrites model.json) and its top-1 agreement.

Usage: python -m benchmarks.direct_convert OUT_DIR tflite:float32 tflite:int8 tfjs:float32 tfjs:uint8
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

MAX_CALIBRATION_SAMPLES = 500  # as quantize.tflite: the converter calibrates on at most this many
TFJS_DTYPES = {"float16": {"float16": True}, "uint16": {"uint16": True}, "uint8": {"uint8": True}}


def tflite_converter(tf, saved_model: Path, mode: str, calibration):
    """TFLiteConverter set up as mobilepre sets it up for one mode (float32 I/O)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.exclude_conversion_metadata = True
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode in ("float16", "dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode == "int8":
        samples = calibration[:MAX_CALIBRATION_SAMPLES]
        converter.representative_dataset = lambda: ([samples[i : i + 1]] for i in range(len(samples)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    wanted = [tuple(spec.split(":")) for spec in argv[1:]]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    import keras
    import numpy as np
    import tensorflow as tf
    from tensorflowjs.converters import tf_saved_model_conversion_v2

    from mobilepre import demo
    from mobilepre.runtimes import run_tfjs, run_tflite

    model = keras.models.load_model(demo.model_path(), compile=False)
    calibration = np.load(demo.calibration_path())["images"]
    validation = np.load(demo.validation_path())["images"]
    saved_model = out / "saved_model"
    pixels = model.inputs[0]
    signature = [tf.TensorSpec((None, *pixels.shape[1:]), dtype=pixels.dtype, name="pixels")]
    model.export(str(saved_model), format="tf_saved_model", input_signature=signature, verbose=False)
    reference = np.asarray(model.predict(validation, batch_size=256, verbose=0)).argmax(axis=1)

    report = {}
    for fmt, mode in wanted:
        key = f"{fmt}-{mode}"
        if fmt == "tflite":
            content = tflite_converter(tf, saved_model, mode, calibration).convert()
            (out / f"{key}.tflite").write_bytes(content)
            outputs = run_tflite(content, validation).outputs[0]
            files = {"model.tflite": content}
        else:
            folder = out / key
            tf_saved_model_conversion_v2.convert_tf_saved_model(
                str(saved_model),
                str(folder),
                quantization_dtype_map=TFJS_DTYPES.get(mode),
                weight_shard_size_bytes=4 * 1024 * 1024,
                strip_debug_ops=True,
            )
            outputs = run_tfjs(folder, validation).outputs[0]
            files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "model.json"}
        report[key] = {
            "bytes": sum(len(b) for b in files.values()),
            "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
            "top1_agreement": float(np.mean(outputs.argmax(axis=1) == reference)),
        }
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
