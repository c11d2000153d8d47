"""Corrections to graph passes of the pinned tensorflowjs 4.22.0 converter. Remove each when the pin moves
to a release that fixes it (check with the tests in tests/test_tfjs_passes.py).

`normalize_bias_add.normalize_bias_add_op` turns any `Add`/`AddV2` whose first input is a
single-consumer Conv2D, DepthwiseConv2dNative or MatMul into a `BiasAdd`, without looking at the other
operand. Hard-swish's `conv + 3.0` (MobileNetV3), a residual `conv + branch` (ResNet, EfficientNet)
and a scalar offset then become fused convolutions with a "bias" of rank 0 or 4, which TF.js refuses
at run time ("FusedConv2D only supports rank-1 bias"). The corrected pass converts only a real bias:
a rank-1 constant as long as the operation's output channels.
"""

from __future__ import annotations

import contextlib

_FUSABLE = ("Conv2D", "DepthwiseConv2dNative", "MatMul")


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


def _constant(nodes: dict, name: str):
    """The Const node behind `name` (through Identity nodes), or None."""
    node = nodes.get(_node_name(name))
    while node is not None and node.op == "Identity" and node.input:
        node = nodes.get(_node_name(node.input[0]))
    return node if node is not None and node.op == "Const" else None


def _dims(const) -> list[int]:
    return [int(d.size) for d in const.attr["value"].tensor.tensor_shape.dim]


def _output_channels(nodes: dict, op) -> int | None:
    """Channels a Conv2D / DepthwiseConv2dNative / MatMul produces, from its constant weights."""
    weights = _constant(nodes, op.input[1]) if len(op.input) > 1 else None
    if weights is None:
        return None
    dims = _dims(weights)
    if op.op == "Conv2D" and len(dims) == 4:
        return dims[3]
    if op.op == "DepthwiseConv2dNative" and len(dims) == 4:
        return dims[2] * dims[3]
    if op.op == "MatMul" and len(dims) == 2:
        return dims[0] if op.attr["transpose_b"].b else dims[1]
    return None


def normalize_bias_add_op(input_graph_def):
    """As tensorflowjs' pass, but only an add of a rank-1 constant of the output's channel count becomes a
    BiasAdd; every other add stays an add (and is computed correctly)."""
    nodes = {}
    for node in input_graph_def.node:
        if node.name in nodes:
            raise ValueError("Duplicate node names detected for ", node.name)
        nodes[node.name] = node
    consumers: dict[str, int] = {}
    for node in input_graph_def.node:
        for name in {_node_name(i) for i in node.input}:
            consumers[name] = consumers.get(name, 0) + 1
    for node in input_graph_def.node:
        if node.op not in ("AddV2", "Add") or len(node.input) != 2:
            continue
        ancestor = nodes.get(_node_name(node.input[0]))
        if ancestor is None or ancestor.op not in _FUSABLE or consumers.get(ancestor.name, 0) != 1:
            continue
        bias = _constant(nodes, node.input[1])
        channels = _output_channels(nodes, ancestor)
        if bias is not None and channels is not None and _dims(bias) == [channels]:
            node.op = "BiasAdd"
            node.attr["data_format"].s = b"NHWC"
    return input_graph_def


@contextlib.contextmanager
def corrected_passes():
    """Run the tensorflowjs converter with the corrected passes above in place of its own."""
    from tensorflowjs.converters import normalize_bias_add

    original = normalize_bias_add.normalize_bias_add_op
    normalize_bias_add.normalize_bias_add_op = normalize_bias_add_op
    try:
        yield
    finally:
        normalize_bias_add.normalize_bias_add_op = original
