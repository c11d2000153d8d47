"""Quiet, lazy import of TensorFlow and Keras (the one implementation lives in `quantize._tf`)."""

from quantize._tf import keras, quiet_tensorflow

__all__ = ["keras", "quiet_tensorflow"]
