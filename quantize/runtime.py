"""The TFLite interpreter: LiteRT (`ai_edge_litert`), or `tflite_runtime` only where it imports cleanly."""

from __future__ import annotations


def interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:  # tflite-runtime 2.14 is the last release and fails under NumPy 2; accept it only if it loads
            from tflite_runtime.interpreter import Interpreter
        except Exception as error:
            raise ImportError("no TFLite interpreter: install ai-edge-litert (pip install ai-edge-litert)") from error
    return Interpreter


def tflite_interpreter(content: bytes, threads: int | None = None):
    """A LiteRT interpreter over `content`, tensors allocated."""
    from ._tf import native_stderr_silenced

    with native_stderr_silenced():  # LiteRT announces its XNNPACK delegate on stderr
        interpreter = interpreter_class()(model_content=content, num_threads=threads)
        interpreter.allocate_tensors()
    return interpreter


def signature_outputs(content: bytes, images, input_name: str) -> dict:
    """Each output of the .tflite `content`'s `serving_default` signature over `images` (one image a run),
    by signature name, dequantized to float64; a float image is quantized (clipped to the type's range)
    where the file takes integers. Two files made from one model are compared by these names, not by
    tensor names or positions, which quantization and each engine may change."""
    import numpy as np

    runner = tflite_interpreter(content).get_signature_runner("serving_default")
    spec, details = runner.get_input_details()[input_name], runner.get_output_details()
    dtype, (scale, zero) = np.dtype(spec["dtype"]), spec["quantization"]
    found: dict = {}
    for i in range(len(images)):
        sample = np.asarray(images[i : i + 1])
        if dtype.kind in "iu" and sample.dtype.kind == "f" and scale:
            info = np.iinfo(dtype)
            sample = np.clip(np.round(sample / scale + zero), info.min, info.max)
        for name, value in runner(**{input_name: sample.astype(dtype)}).items():
            out_scale, out_zero = details[name]["quantization"]
            value = value.astype(np.float64)
            found.setdefault(name, []).append((value - out_zero) * out_scale if out_scale else value)
    return {name: np.concatenate(values) for name, values in found.items()}
