"""Multiply-accumulates per image, counted from a Keras model's layers (sub-models included)."""

from __future__ import annotations

import math


def _layer_macs(layer) -> int:
    kind = type(layer).__name__
    try:
        out_shape = tuple(layer.output.shape[1:])
        in_shape = tuple(layer.input.shape[1:])
    except (AttributeError, ValueError):
        return 0
    if any(d is None for d in out_shape) or any(d is None for d in in_shape):
        return 0
    outputs = math.prod(out_shape)
    if kind in ("Conv2D", "Conv1D", "Conv3D"):
        kernel = math.prod(layer.kernel_size)
        groups = getattr(layer, "groups", 1) or 1
        return outputs * kernel * in_shape[-1] // groups
    if kind == "DepthwiseConv2D":
        return outputs * math.prod(layer.kernel_size)
    if kind == "SeparableConv2D":
        depthwise = math.prod(out_shape[:-1]) * in_shape[-1] * layer.depth_multiplier * math.prod(layer.kernel_size)
        return depthwise + outputs * in_shape[-1] * layer.depth_multiplier
    if kind == "Conv2DTranspose":
        return math.prod(in_shape) * math.prod(layer.kernel_size) * layer.filters
    if kind == "Dense":
        return outputs * in_shape[-1]
    return 0


def count_macs(model) -> int:
    """MACs of one image through `model`: convolutions and dense layers (the rest is a rounding error)."""
    total = 0
    for layer in model.layers:
        if getattr(layer, "layers", None):
            total += count_macs(layer)
        else:
            total += _layer_macs(layer)
    return int(total)
