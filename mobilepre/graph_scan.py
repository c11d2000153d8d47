"""A SavedModel's graph checked against an allowlist of pure numeric ops, before TensorFlow loads it.

A SavedModel is a program: besides maths, its ops can print to any file (`PrintV2` with
`output_stream="file://..."`), read and write files (datasets, readers, `TFRecord` writers), run Python
(`PyFunc`) or run a graph kept as a string (`DatasetFromGraph`), and resource initializers run while
`tf.saved_model.load` restores the model. A denylist of names is bypassed by any op it forgot, so
every op of the main graph and of every function in the library (initializers and restored functions
included) must be on `PURE_OPS`. The one exception: the checkpoint ops (`SaveV2`, `RestoreV2`, ...)
in the save and restore functions that TensorFlow's own saver writes, and only in functions that
nothing but the saver's graph nodes call.

The protobuf classes come from `tensorboard.compat.proto` (TensorFlow's own `.proto` files, installed
with TensorFlow's tensorboard dependency), so parsing does not import TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

# Ops that compute on tensors and variables and nothing else: no files, no printing, no Python, no
# strings decoded into graphs or data, no queues, tables or datasets. What Keras 3 and
# `tf.saved_model.save` write for image models (measured on the keras.applications families, U-Net,
# detection and embedding heads), and the few neighbours of those ops a model can reasonably hold.
# Loops (`While`) are left out: an image model has none, and a loop can run for ever.
PURE_OPS = frozenset(
    """
    Abs Acos Acosh Add AddN AddV2 All Any ArgMax ArgMin Asin Asinh Atan Atan2 Atanh AvgPool AvgPool3D
    BatchMatMul BatchMatMulV2 BatchMatMulV3 BatchToSpaceND BiasAdd BiasAddV1 BroadcastArgs BroadcastTo
    Cast Ceil CheckNumerics CheckNumericsV2 ClipByValue CombinedNonMaxSuppression Concat ConcatV2 Const
    Conv2D Conv2DBackpropInput Conv3D Conv3DBackpropInputV2 Cos Cosh Cumprod Cumsum DepthToSpace
    DepthwiseConv2dNative Dilation2D Div DivNoNan Einsum Elu EnsureShape Equal Erf Erfc Exp ExpandDims Expm1
    FakeQuantWithMinMaxArgs FakeQuantWithMinMaxVars FakeQuantWithMinMaxVarsPerChannel Fill Floor FloorDiv
    FloorMod FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3 GatherNd GatherV2 Greater GreaterEqual
    Identity IdentityN If IsFinite IsInf IsNan L2Loss LRN LeakyRelu Less LessEqual LinSpace Log Log1p
    LogSoftmax LogicalAnd LogicalNot LogicalOr MatMul Max MaxPool MaxPool3D MaxPoolV2 Maximum Mean Min
    Minimum MirrorPad Mod Mul Neg NoOp NonMaxSuppressionV3 NonMaxSuppressionV4 NonMaxSuppressionV5
    NotEqual OneHot OnesLike Pack Pad PadV2 PartitionedCall Placeholder PlaceholderWithDefault Pow
    PreventGradient Prod QuantizeAndDequantizeV2 QuantizeAndDequantizeV3 QuantizeAndDequantizeV4 Range
    Rank RealDiv Reciprocal Relu Relu6 Reshape ResizeArea ResizeBicubic ResizeBilinear
    ResizeNearestNeighbor Reverse ReverseV2 Rint Round Rsqrt ScaleAndTranslate Select SelectV2 Selu Shape
    ShapeN Sigmoid Sign Sin Sinh Size Slice Snapshot Softmax Softplus Softsign SpaceToBatchND SpaceToDepth
    Split SplitV Sqrt Square SquaredDifference Squeeze StatefulPartitionedCall StatelessIf
    StopGradient StridedSlice Sub Sum Tan Tanh TensorScatterAdd TensorScatterUpdate Tile
    TopKV2 Transpose TruncateDiv Unpack Where ZerosLike
    VarHandleOp ReadVariableOp AssignVariableOp AssignAddVariableOp AssignSubVariableOp
    VarIsInitializedOp DestroyResourceOp DisableCopyOnRead ResourceGather
    """.split()
)

# The checkpoint ops of TensorFlow's saver: allowed only in functions that nothing but the saver's own
# graph nodes call (`tf.saved_model.load` restores variables with its own code, not with these).
SAVER_OPS = frozenset(
    "SaveV2 RestoreV2 MergeV2Checkpoints ShardedFilename StringJoin StaticRegexFullMatch".split()
)


@dataclass(frozen=True)
class RefusedOp:
    """An op outside the allowlist: which, and where (the function, or "the main graph")."""

    op: str
    where: str
    node: str


class GraphParseError(Exception):
    """saved_model.pb is not a SavedModel protobuf."""


def refused_ops(saved_model_pb: bytes) -> list[RefusedOp]:
    """Every op of `saved_model_pb` that is not allowed, in a stable order (empty when all are)."""
    from tensorboard.compat.proto import meta_graph_pb2  # protobuf only: no TensorFlow import

    refused = []
    for raw in _meta_graph_bytes(saved_model_pb):
        try:
            meta_graph = meta_graph_pb2.MetaGraphDef.FromString(raw)
        except Exception as error:  # protobuf's DecodeError and friends
            raise GraphParseError(f"a meta graph does not parse ({type(error).__name__})") from None
        refused += _refused_in(meta_graph)
    return refused


def _refused_in(meta_graph) -> list[RefusedOp]:
    graph = meta_graph.graph_def
    functions = {f.signature.name: f for f in graph.library.function}
    saver_nodes = set()
    if meta_graph.HasField("saver_def"):
        saver = meta_graph.saver_def
        saver_nodes = {saver.save_tensor_name.split(":")[0].lstrip("^"), saver.restore_op_name.split(":")[0].lstrip("^")}
    other_roots = set(meta_graph.object_graph_def.concrete_functions)
    saver_roots = set()
    for node in graph.node:
        (saver_roots if node.name in saver_nodes else other_roots).update(_called(node, functions))
    reached_by_saver = _closure(saver_roots, functions)
    # Anything not reached from the saver alone counts as reachable by the model: orphans included.
    reached_by_model = _closure(other_roots | (set(functions) - reached_by_saver), functions)
    saver_only = set(functions) - reached_by_model

    refused = [RefusedOp(node.op, "the main graph", node.name) for node in graph.node if node.op not in PURE_OPS]
    for name in sorted(functions):
        allowed = PURE_OPS | SAVER_OPS if name in saver_only else PURE_OPS
        refused += [RefusedOp(n.op, f"function {name}", n.name) for n in functions[name].node_def
                    if n.op not in allowed and n.op not in functions]
    return refused


def _called(node, functions) -> set[str]:
    """The library functions a node calls: as its op, or through a function-valued attribute."""
    called = {node.op} if node.op in functions else set()
    for attr in node.attr.values():
        if attr.HasField("func"):
            called.add(attr.func.name)
        called.update(f.name for f in attr.list.func)
    return called & set(functions)


def _closure(roots: set[str], functions) -> set[str]:
    seen, stack = set(), list(roots)
    while stack:
        name = stack.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        for node in functions[name].node_def:
            stack.extend(_called(node, functions) - seen)
    return seen


def _meta_graph_bytes(data: bytes) -> list[bytes]:
    """The `meta_graphs` (field 2) of a `SavedModel` message, read field by field."""
    out, i = [], 0
    while i < len(data):
        key, i = _varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(data, i)
        elif wire == 2:
            length, i = _varint(data, i)
            if i + length > len(data):
                raise GraphParseError("a field runs past the end of the file")
            if field == 2:
                out.append(data[i:i + length])
            i += length
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise GraphParseError(f"unknown wire type {wire}")
    if not out:
        raise GraphParseError("no meta graph")
    return out


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if i >= len(data) or shift > 63:
            raise GraphParseError("a truncated or overlong varint")
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i
