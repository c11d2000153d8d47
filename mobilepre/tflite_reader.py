"""Reading a TFLite flatbuffer without trusting it: the structural verifier and the I/O reader (pure Python).

The TFLite builder documents that it does not validate untrusted input and the Python LiteRT
interpreter can crash the whole process on a malformed flatbuffer; TF.js fetches whatever
`weightsManifest` names, `..` and absolute URLs included. So `check` runs these verifiers first and
only hands an artifact to a runtime once they pass.

`verify_tflite` is a *structural* verifier written here in pure Python, not flatc's generated
verifier and not a guarantee that the runtime will not crash. It bounds-checks every table, vtable,
vector and string it follows (and their alignment), and walks the parts of the TFLite schema (v3)
that the interpreter indexes with numbers taken from the file: buffers (inline data, or offset and
size for models over 2 GB), tensors (buffer index, shape, type, quantization, constant data long
enough), operators (opcode index, input, output and intermediate tensor indices), subgraph inputs
and outputs, signatures and metadata. It also checks the dataflow rules whose breach crashed LiteRT
in our fuzzing: every tensor is written by at most one operator, and never a subgraph input or a
constant. It does not look inside builtin-option tables beyond their headers (so a bad offset in,
say, a RESHAPE's `new_shape` is not caught), nor inside sparsity or custom-quantization tables, nor
at control-flow ops' subgraph indices, nor at how much memory the activations need.
Field slots follow the generated reader in `ai_edge_litert/schema_py_generated.py`; we do not use
that reader because it does not check bounds (and importing `ai_edge_litert` loads libLiteRt.so).
"""

from __future__ import annotations

import math
import struct

from mobilepre.errors import MobilepreError

TFLITE_IDENTIFIER = b"TFL3"
TFLITE_SCHEMA_VERSION = 3
# Root offset, file identifier, the root table's soffset and a minimal vtable.
TFLITE_MIN_BYTES = 16
# flatc's generated verifiers stop at one million tables by default; so do we, which also bounds the
# time a hostile file (many offsets pointing at one table) can cost.
TFLITE_MAX_TABLES = 1_000_000

# TensorType value -> (name, bytes per element; None where the size is not fixed or not whole bytes).
TFLITE_TENSOR_TYPES: dict[int, tuple[str, int | None]] = {
    0: ("float32", 4),
    1: ("float16", 2),
    2: ("int32", 4),
    3: ("uint8", 1),
    4: ("int64", 8),
    5: ("string", None),
    6: ("bool", 1),
    7: ("int16", 2),
    8: ("complex64", 8),
    9: ("int8", 1),
    10: ("float64", 8),
    11: ("complex128", 16),
    12: ("uint64", 8),
    13: ("resource", None),
    14: ("variant", None),
    15: ("uint32", 4),
    16: ("uint16", 2),
    17: ("int4", None),
    18: ("bfloat16", 2),
    19: ("int2", None),
    20: ("uint4", None),
    21: ("float8_e4m3fn", 1),
    22: ("float8_e5m2", 1),
}


class _Malformed(Exception):
    """A problem in the file; `verify_tflite` prefixes it with the file's name."""


class _Reader:
    """Bounds-checked little-endian reads of a flatbuffer; every position is checked before it is read."""

    def __init__(self, data: bytes):
        self.data = data
        self.size = len(data)
        self.tables_seen = 0

    def need(self, pos: int, length: int, what: str) -> None:
        if pos < 0 or length < 0 or pos + length > self.size:
            raise _Malformed(f"{what} at byte {pos} (+{length}) lies outside the file ({self.size} bytes)")

    def scalar(self, fmt: str, pos: int, what: str):
        self.need(pos, struct.calcsize(fmt), what)
        return struct.unpack_from("<" + fmt, self.data, pos)[0]

    def table(self, pos: int, what: str) -> _Table:
        """The table at `pos`; `what` is its path from the root ("" for the root itself)."""
        self.tables_seen += 1
        if self.tables_seen > TFLITE_MAX_TABLES:
            raise _Malformed(f"more than {TFLITE_MAX_TABLES} tables")
        what = what or "root table"
        if pos % 4:
            raise _Malformed(f"{what}: table at byte {pos} is not 4-byte aligned")
        vtable = pos - self.scalar("i", pos, f"{what} (table)")
        if vtable % 2:
            raise _Malformed(f"{what}: vtable at byte {vtable} is not 2-byte aligned")
        vtable_bytes = self.scalar("H", vtable, f"{what} (vtable)")
        table_bytes = self.scalar("H", vtable + 2, f"{what} (vtable)")
        if vtable_bytes < 4 or vtable_bytes % 2:
            raise _Malformed(f"{what}: vtable at byte {vtable} has a bad size {vtable_bytes}")
        if table_bytes < 4:
            raise _Malformed(f"{what}: table at byte {pos} has a bad size {table_bytes}")
        self.need(vtable, vtable_bytes, f"{what} (vtable)")
        self.need(pos, table_bytes, f"{what} (table)")
        return _Table(self, pos, vtable, vtable_bytes, table_bytes, "" if what == "root table" else what)


class _Table:
    """One flatbuffer table; fields are read by vtable slot (slot 0 is the schema's first field).

    `what` is the table's path from the root (`subgraphs[0].tensors[5]`), used in every message.
    """

    def __init__(self, reader: _Reader, pos: int, vtable: int, vtable_bytes: int, table_bytes: int, what: str):
        self.r = reader
        self.pos = pos
        self.vtable = vtable
        self.vtable_bytes = vtable_bytes
        self.table_bytes = table_bytes
        self.what = what

    def child(self, name: str) -> str:
        return f"{self.what}.{name}" if self.what else name

    def _field(self, slot: int, size: int, name: str) -> int | None:
        entry = 4 + 2 * slot
        if entry >= self.vtable_bytes:
            return None
        offset = self.r.scalar("H", self.vtable + entry, f"{self.child(name)} (vtable entry)")
        if offset == 0:
            return None
        if offset + size > self.table_bytes:
            raise _Malformed(f"{self.child(name)}: field lies outside its table")
        pos = self.pos + offset
        if pos % size:
            raise _Malformed(f"{self.child(name)}: field at byte {pos} is not {size}-byte aligned")
        return pos

    def scalar(self, slot: int, fmt: str, default, name: str):
        pos = self._field(slot, struct.calcsize(fmt), name)
        return default if pos is None else self.r.scalar(fmt, pos, self.child(name))

    def _target(self, slot: int, name: str) -> int | None:
        pos = self._field(slot, 4, name)
        return None if pos is None else pos + self.r.scalar("I", pos, self.child(name))

    def table(self, slot: int, name: str) -> _Table | None:
        pos = self._target(slot, name)
        return None if pos is None else self.r.table(pos, self.child(name))

    def vector(self, slot: int, elem_bytes: int, name: str) -> tuple[int, int] | None:
        """(position of the first element, length) of a vector field, or None when the field is absent."""
        pos = self._target(slot, name)
        if pos is None:
            return None
        if pos % 4:
            raise _Malformed(f"{self.child(name)}: vector at byte {pos} is not 4-byte aligned")
        length = self.r.scalar("I", pos, f"{self.child(name)} (vector length)")
        self.r.need(pos + 4, length * elem_bytes, f"{self.child(name)} (vector of {length})")
        return pos + 4, length

    def numbers(self, slot: int, fmt: str, name: str) -> list:
        found = self.vector(slot, struct.calcsize(fmt), name)
        if found is None:
            return []
        start, length = found
        return list(struct.unpack_from(f"<{length}{fmt}", self.r.data, start))

    def tables(self, slot: int, name: str) -> list[_Table]:
        found = self.vector(slot, 4, name)
        if found is None:
            return []
        start, length = found
        out = []
        for i in range(length):
            elem = start + 4 * i
            out.append(self.r.table(elem + self.r.scalar("I", elem, self.child(name)), self.child(f"{name}[{i}]")))
        return out

    def string(self, slot: int, name: str) -> str | None:
        found = self.vector(slot, 1, name)
        if found is None:
            return None
        start, length = found
        if self.r.scalar("B", start + length, f"{self.child(name)} (terminator)") != 0:
            raise _Malformed(f"{self.child(name)}: string is not NUL-terminated")
        try:
            return self.r.data[start : start + length].decode("utf-8")
        except UnicodeDecodeError:
            raise _Malformed(f"{self.child(name)}: string is not UTF-8") from None


def _check_index(value: int, count: int, what: str, noun: str, allow_optional: bool = False) -> None:
    if allow_optional and value == -1:
        return
    if not 0 <= value < count:
        raise _Malformed(f"{what} is {value}, out of range (there are {count} {noun})")


def _root(data: bytes) -> _Table:
    if len(data) < TFLITE_MIN_BYTES:
        raise _Malformed(f"only {len(data)} bytes, too short for a TFLite flatbuffer (at least {TFLITE_MIN_BYTES})")
    if data[4:8] != TFLITE_IDENTIFIER:
        raise _Malformed(f"file identifier is {bytes(data[4:8])!r}, expected {TFLITE_IDENTIFIER!r}")
    reader = _Reader(data)
    root = reader.scalar("I", 0, "root offset")
    if not 8 <= root <= len(data) - 4:
        raise _Malformed(f"root table offset {root} lies outside the file ({len(data)} bytes)")
    return reader.table(root, "")


def _check_buffers(model: _Table, data_size: int) -> list[int | None]:
    """Check every buffer's bytes lie inside the file; return each buffer's byte count (None: no data)."""
    sizes: list[int | None] = []
    for buffer in model.tables(4, "buffers"):
        found = buffer.vector(0, 1, "data")
        offset = buffer.scalar(1, "Q", 0, "offset")
        size = buffer.scalar(2, "Q", 0, "size")
        # Models over 2 GB keep their data after the flatbuffer; offset and size (from the start of the
        # file) replace `data`. Offsets 0 and 1 are placeholders the interpreter ignores.
        if offset > 1:
            if offset + size > data_size:
                raise _Malformed(
                    f"{buffer.what}: data at byte {offset} (+{size}) lies outside the file ({data_size} bytes)"
                )
            sizes.append(size)
        elif found is not None and found[1] > 0:
            sizes.append(found[1])
        else:
            sizes.append(None)
    return sizes


def _check_quantization(tensor: _Table, rank: int) -> None:
    quantization = tensor.table(4, "quantization")
    if quantization is None:
        return
    quantization.vector(0, 4, "min")
    quantization.vector(1, 4, "max")
    scale = quantization.vector(2, 4, "scale")
    zero_point = quantization.vector(3, 8, "zero_point")
    quantization.table(5, "details")
    dimension = quantization.scalar(6, "i", 0, "quantized_dimension")
    scales = 0 if scale is None else scale[1]
    zero_points = 0 if zero_point is None else zero_point[1]
    if scale is not None and zero_point is not None and scales != zero_points:
        raise _Malformed(f"{quantization.what}: {scales} scales but {zero_points} zero points")
    if scales > 1 and not 0 <= dimension < rank:
        raise _Malformed(f"{quantization.what}: quantized_dimension {dimension} is outside the tensor's rank {rank}")


def _check_tensor(tensor: _Table, buffer_sizes: list[int | None]) -> bool:
    """Check one tensor; return whether it holds constant data."""
    shape = tensor.numbers(0, "i", "shape")
    if any(d < 0 for d in shape):
        raise _Malformed(f"{tensor.child('shape')} {shape} has a negative dimension")
    type_code = tensor.scalar(1, "b", 0, "type")
    if type_code not in TFLITE_TENSOR_TYPES:
        raise _Malformed(f"{tensor.child('type')} is {type_code}, not a known TensorType")
    buffer = tensor.scalar(2, "I", 0, "buffer")
    _check_index(buffer, len(buffer_sizes), tensor.child("buffer"), "buffers")
    tensor.string(3, "name")
    _check_quantization(tensor, len(shape))
    sparsity = tensor.table(6, "sparsity")
    tensor.numbers(7, "i", "shape_signature")
    tensor.tables(9, "variant_tensors")
    # The interpreter maps constant data without copying it; the buffer must hold the whole tensor.
    element_bytes = TFLITE_TENSOR_TYPES[type_code][1]
    available = buffer_sizes[buffer]
    if element_bytes is not None and available is not None and sparsity is None:
        needed = math.prod(shape) * element_bytes
        if needed > available:
            raise _Malformed(f"{tensor.what}: needs {needed} bytes of constant data, buffer {buffer} holds {available}")
    return available is not None


def _check_operator(op: _Table, tensors: int, opcodes: int, data_size: int) -> list[int]:
    """Check one operator; return the tensors it writes."""
    _check_index(op.scalar(0, "I", 0, "opcode_index"), opcodes, op.child("opcode_index"), "operator codes")
    for j, index in enumerate(op.numbers(1, "i", "inputs")):
        _check_index(index, tensors, op.child(f"inputs[{j}]"), "tensors", allow_optional=True)
    outputs = op.numbers(2, "i", "outputs")
    for j, index in enumerate(outputs):
        _check_index(index, tensors, op.child(f"outputs[{j}]"), "tensors")
    op.table(4, "builtin_options")
    op.vector(5, 1, "custom_options")
    op.vector(7, 1, "mutating_variable_inputs")
    for j, index in enumerate(op.numbers(8, "i", "intermediates")):
        _check_index(index, tensors, op.child(f"intermediates[{j}]"), "tensors")
    offset = op.scalar(9, "Q", 0, "large_custom_options_offset")
    size = op.scalar(10, "Q", 0, "large_custom_options_size")
    if offset > 1 and offset + size > data_size:
        raise _Malformed(f"{op.what}: custom options at byte {offset} (+{size}) lie outside the file ({data_size} bytes)")
    op.table(12, "builtin_options_2")
    return outputs


def _check_subgraph(subgraph: _Table, buffer_sizes: list[int | None], opcodes: int, data_size: int) -> int:
    """Check one subgraph; return its number of tensors."""
    tensors = subgraph.tables(0, "tensors")
    constant = [_check_tensor(tensor, buffer_sizes) for tensor in tensors]
    inputs = subgraph.numbers(1, "i", "inputs")
    for name, indices in (("inputs", inputs), ("outputs", subgraph.numbers(2, "i", "outputs"))):
        for j, index in enumerate(indices):
            _check_index(index, len(tensors), subgraph.child(f"{name}[{j}]"), "tensors")
    # Tensors are written once. LiteRT 2.x segfaults in invoke() when an operator writes a subgraph
    # input, and constant data is mapped read-only.
    written_by: dict[int, str] = {}
    for op in subgraph.tables(3, "operators"):
        for index in _check_operator(op, len(tensors), opcodes, data_size):
            if index in written_by:
                raise _Malformed(f"{op.what} writes tensor {index}, already written by {written_by[index]}")
            if index in inputs:
                raise _Malformed(f"{op.what} writes tensor {index}, an input of the subgraph")
            if constant[index]:
                raise _Malformed(f"{op.what} writes tensor {index}, which holds constant data")
            written_by[index] = op.what
    subgraph.string(4, "name")
    return len(tensors)


def _check_signatures(model: _Table, tensor_counts: list[int]) -> None:
    for signature in model.tables(7, "signature_defs"):
        signature.string(2, "signature_key")
        index = signature.scalar(4, "I", 0, "subgraph_index")
        _check_index(index, len(tensor_counts), signature.child("subgraph_index"), "subgraphs")
        for name, slot in (("inputs", 0), ("outputs", 1)):
            for tensor_map in signature.tables(slot, name):
                tensor_map.string(0, "name")
                tensor = tensor_map.scalar(1, "I", 0, "tensor_index")
                _check_index(tensor, tensor_counts[index], tensor_map.child("tensor_index"), "tensors")


def _walk_tflite(data: bytes) -> None:
    model = _root(data)
    version = model.scalar(0, "I", 0, "version")
    if version != TFLITE_SCHEMA_VERSION:
        raise _Malformed(f"schema version {version}, expected {TFLITE_SCHEMA_VERSION}")
    opcodes = model.tables(1, "operator_codes")
    for opcode in opcodes:
        opcode.string(1, "custom_code")
    model.string(3, "description")
    buffer_sizes = _check_buffers(model, len(data))
    subgraphs = model.tables(2, "subgraphs")
    if not subgraphs:
        raise _Malformed("the model has no subgraphs")
    tensor_counts = [_check_subgraph(subgraph, buffer_sizes, len(opcodes), len(data)) for subgraph in subgraphs]
    for i, index in enumerate(model.numbers(5, "i", "metadata_buffer")):
        _check_index(index, len(buffer_sizes), f"metadata_buffer[{i}]", "buffers")
    for metadata in model.tables(6, "metadata"):
        metadata.string(0, "name")
        _check_index(metadata.scalar(1, "I", 0, "buffer"), len(buffer_sizes), metadata.child("buffer"), "buffers")
    _check_signatures(model, tensor_counts)
    model.tables(8, "external_buffer_groups")
    model.tables(9, "external_buffers")


def _refuse_tflite(where: str, problem: str) -> MobilepreError:
    return MobilepreError(f"{where}: not a valid TFLite model: {problem}")


def verify_tflite(data: bytes, where: str) -> None:
    """Check the structure of a TFLite flatbuffer before any interpreter parses it.

    Args:
        data (bytes): the whole .tflite file.
        where (str): how to name the file in the error (usually its path).

    Raises:
        MobilepreError: naming `where` and the first problem found. Any failure while reading the bytes
            becomes this error, so arbitrary input never raises anything else.
    """
    try:
        _walk_tflite(bytes(data))
    except _Malformed as exc:
        raise _refuse_tflite(where, str(exc)) from None
    except Exception as exc:  # a reader bug on hostile bytes must still read as a refusal, not a crash
        raise _refuse_tflite(where, f"unreadable ({type(exc).__name__}: {exc})") from exc


def _tensor_io(tensor: _Table, index: int) -> dict:
    quantization = tensor.table(4, "quantization")
    scale, zero_point = 0.0, 0
    if quantization is not None:
        scales = quantization.numbers(2, "f", "scale")
        zero_points = quantization.numbers(3, "q", "zero_point")
        if len(scales) == 1:
            scale, zero_point = scales[0], zero_points[0] if zero_points else 0
    return {
        "index": index,
        "name": tensor.string(3, "name") or "",
        "shape": tensor.numbers(0, "i", "shape"),
        "dtype": TFLITE_TENSOR_TYPES[tensor.scalar(1, "b", 0, "type")][0],
        "quantization": (scale, zero_point),
    }


def tflite_io(data: bytes, where: str = "TFLite model") -> dict:
    """Inputs and outputs of subgraph 0, read from the flatbuffer (no interpreter), after verifying it.

    Returns:
        dict: `{"inputs": [...], "outputs": [...], "signature": {"inputs": {key: tensor index}, "outputs":
        {...}}}`, tensors in the model's order (the signature maps `serving_default`'s names to tensor
        indices); each tensor entry has `index` (tensor
        index), `name`, `shape` (list of int), `dtype` (numpy name, e.g. "float32", "int8") and
        `quantization` (`(scale, zero_point)`, `(0.0, 0)` unless quantized per tensor), as LiteRT's
        `get_input_details` reports them.

    Raises:
        MobilepreError: when `verify_tflite` refuses the file.
    """
    verify_tflite(data, where)
    try:
        subgraph = _root(bytes(data)).tables(2, "subgraphs")[0]
        tensors = subgraph.tables(0, "tensors")
        io = {
            label: [_tensor_io(tensors[i], i) for i in subgraph.numbers(slot, "i", label)]
            for label, slot in (("inputs", 1), ("outputs", 2))
        }
        io["signature"] = {"inputs": {}, "outputs": {}}
        for signature in _root(bytes(data)).tables(7, "signature_defs"):
            if signature.string(2, "signature_key") == "serving_default":
                for label, slot in (("inputs", 0), ("outputs", 1)):
                    io["signature"][label] = {m.string(0, "name"): m.scalar(1, "I", 0, "tensor_index") for m in signature.tables(slot, label)}
        return io
    except _Malformed as exc:
        raise _refuse_tflite(where, str(exc)) from None


def tflite_dynamic_tensors(data: bytes, where: str = "TFLite model") -> list[tuple[str, list[int]]]:
    """(name, shape signature) of every tensor of subgraph 0 whose size is known only at run time (a -1 in
    its `shape_signature`), read from the flatbuffer after verifying it: empty for a static graph, which
    static-shape accelerators (LiteRT's GPU and NPU delegates, LiteRT.js on WebGPU) require."""
    verify_tflite(data, where)
    try:
        found = []
        for i, tensor in enumerate(_root(bytes(data)).tables(2, "subgraphs")[0].tables(0, "tensors")):
            signature = tensor.numbers(7, "i", "shape_signature")
            if any(d < 0 for d in signature):
                found.append((tensor.string(3, "name") or f"tensor {i}", list(signature)))
        return found
    except _Malformed as exc:
        raise _refuse_tflite(where, str(exc)) from None


def tflite_tensor_types(data: bytes, where: str = "TFLite model") -> list[tuple[str, bool]]:
    """(dtype, holds constant data) of every tensor of subgraph 0, read from the flatbuffer after verifying it:
    what a model's precision is, whatever a manifest claims."""
    verify_tflite(data, where)
    try:
        model = _root(bytes(data))
        buffers = _check_buffers(model, len(data))
        out = []
        for tensor in model.tables(2, "subgraphs")[0].tables(0, "tensors"):
            buffer = tensor.scalar(2, "I", 0, "buffer")
            out.append((TFLITE_TENSOR_TYPES[tensor.scalar(1, "b", 0, "type")][0], buffers[buffer] is not None))
        return out
    except _Malformed as exc:
        raise _refuse_tflite(where, str(exc)) from None


def tflite_bytes(data: bytes, where: str = "TFLite model") -> dict:
    """Where a .tflite file's bytes go, read from the flatbuffer after verifying it: `weights` (constant
    tensors of rank 2 or more: kernels), `biases` (other constant tensors), `quantization` (scales, zero
    points, min and max vectors), `metadata` (the buffers the model's metadata entries name), `graph`
    (everything else: operators, tensor tables, names, signatures, padding), `total`; `parameters` (elements
    of constant float or integer tensors) and `floor_bytes` (one byte per parameter, what int8 weights
    cannot go below), each buffer counted once."""
    verify_tflite(data, where)
    try:
        model = _root(bytes(data))
        sizes = _check_buffers(model, len(data))
        metadata = {m.scalar(1, "I", 0, "buffer") for m in model.tables(6, "metadata")}
        seen, out = set(), {"weights": 0, "biases": 0, "quantization": 0, "metadata": 0}
        counted = set()  # quantization vectors by position: tensors may share one (`share_vectors`)
        parameters = 0
        for buffer in sorted(metadata):
            if buffer < len(sizes) and sizes[buffer]:
                out["metadata"] += sizes[buffer]
                seen.add(buffer)
        for subgraph in model.tables(2, "subgraphs"):
            for tensor in subgraph.tables(0, "tensors"):
                quantization = tensor.table(4, "quantization")
                if quantization is not None:
                    for slot, size in ((0, 4), (1, 4), (2, 4), (3, 8)):
                        found = quantization.vector(slot, size, "quantization")
                        if found is not None and found[0] not in counted:
                            counted.add(found[0])
                            out["quantization"] += 4 + found[1] * size
                buffer = tensor.scalar(2, "I", 0, "buffer")
                if buffer in seen or buffer >= len(sizes) or not sizes[buffer]:
                    continue
                seen.add(buffer)
                shape = tensor.numbers(0, "i", "shape")
                out["weights" if len(shape) >= 2 else "biases"] += sizes[buffer]
                parameters += math.prod(shape) if shape else 1
        out["total"] = len(data)
        out["graph"] = len(data) - sum(out[k] for k in ("weights", "biases", "quantization", "metadata"))
        out["parameters"] = parameters
        out["floor_bytes"] = parameters
        return out
    except _Malformed as exc:
        raise _refuse_tflite(where, str(exc)) from None
