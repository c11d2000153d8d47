"""Quiet, lazy import of TensorFlow and Keras, so that `--help` and profile commands stay fast."""

import contextlib
import os
import warnings


def quiet_tensorflow():
    """Import TensorFlow with its C++ and Python logging turned down; return the module."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # tensorflow_decision_forests (a tensorflowjs dependency) otherwise prints an advert on import, and
    # when stdout is not a terminal tries to show it through IPython, which fails.
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    import absl.logging

    # TensorFlow's C++ start-up prints a few absl warnings that no environment variable turns off.
    with native_stderr_silenced():
        import tensorflow as tf

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    return tf


def keras():
    quiet_tensorflow()
    import keras as _keras

    return _keras


@contextlib.contextmanager
def native_stderr_silenced():
    """Silence file descriptor 2 (C++ logging of the converters); Python exceptions still carry the errors."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def tensorflowjs_converter():
    """The tensorflowjs SavedModel converter module, imported quietly."""
    quiet_tensorflow()
    with native_stderr_silenced(), warnings.catch_warnings():
        # tensorflow_hub, imported by tensorflowjs, warns that pkg_resources is deprecated.
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        from tensorflowjs.converters import tf_saved_model_conversion_v2

    return tf_saved_model_conversion_v2
