"""Quiet, lazy import of TensorFlow and Keras (the one implementation lives in `mobilepre.quantize._tf`)."""

from mobilepre.quantize._tf import keras, quiet_tensorflow

__all__ = ["keras", "quiet_tensorflow"]
