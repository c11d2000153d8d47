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
