"""Quiet, lazy import of TensorFlow and Keras, so that `--help` and profile commands stay fast."""

import os


def quiet_tensorflow():
    """Import TensorFlow with its C++ and Python logging turned down; return the module."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import absl.logging

    # TensorFlow's C++ start-up prints a few absl warnings that no environment variable turns off;
    # silence file descriptor 2 for the import only.
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    return tf


def keras():
    quiet_tensorflow()
    import keras as _keras

    return _keras
