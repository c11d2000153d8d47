"""Checking compressed artifacts (TFLite flatbuffers, TF.js graph-model folders) before any runtime parses them,
and the I/O contract they state.

The TFLite builder documents that it does not validate untrusted input and the Python LiteRT
interpreter can crash the whole process on a malformed flatbuffer; TF.js fetches whatever
`weightsManifest` names, `..` and absolute URLs included. So `check` runs these verifiers first and
only hands an artifact to a runtime once they pass. The TFLite verifier and reader live in
`mobilepre.tflite_reader` (re-exported here); the TF.js folder verifier is below.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import struct
from pathlib import Path

from mobilepre.errors import MobilepreError
from mobilepre.tflite_reader import tflite_dynamic_tensors, tflite_io, verify_tflite  # noqa: F401  (the artifact verifiers, one import)
from mobilepre.litert_child import ordered_keys
from mobilepre.quantize.export import signature_output_keys

TFJS_MODEL_JSON_MAX_BYTES = 64 * 1024 * 1024
# Bytes per value as TF.js reads them (tfjs-core io/types.ts DTYPE_VALUE_SIZE_MAP); `string` weights are
# length-prefixed and measured from the shard bytes instead.
TFJS_DTYPE_BYTES = {"float32": 4, "float16": 2, "int32": 4, "uint16": 2, "uint8": 1, "bool": 1, "complex64": 8}
_TFJS_STRING_LENGTH_BYTES = 4
# A weight path is URL-relative to model.json in TF.js: allow only plain names, so no `..`, `%2e%2e`,
# scheme (`https:`), query, fragment, backslash or NUL can change what gets fetched.
_TFJS_PATH_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")


# ---------------------------------------------------------------------------------------------- TF.js


def _refuse_tfjs(where: str, problem: str) -> MobilepreError:
    return MobilepreError(f"{where}: not a valid TF.js graph model: {problem}")


def _regular_file(path: Path, where: str, label: str) -> os.stat_result:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise _refuse_tfjs(where, f"{label} is missing") from None
    except OSError as exc:
        raise _refuse_tfjs(where, f"{label} cannot be read ({exc.strerror})") from None
    if stat.S_ISLNK(info.st_mode):
        raise _refuse_tfjs(where, f"{label} is a symbolic link")
    if not stat.S_ISREG(info.st_mode):
        raise _refuse_tfjs(where, f"{label} is not a regular file")
    return info


def _read_model_json(folder: Path, where: str) -> dict:
    path = folder / "model.json"
    info = _regular_file(path, where, "model.json")
    if info.st_size > TFJS_MODEL_JSON_MAX_BYTES:
        raise _refuse_tfjs(where, f"model.json is {info.st_size} bytes, over the {TFJS_MODEL_JSON_MAX_BYTES} limit")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            raw = f.read(TFJS_MODEL_JSON_MAX_BYTES + 1)
    except OSError as exc:
        raise _refuse_tfjs(where, f"model.json cannot be read ({exc.strerror})") from None
    if len(raw) > TFJS_MODEL_JSON_MAX_BYTES:
        raise _refuse_tfjs(where, f"model.json is over the {TFJS_MODEL_JSON_MAX_BYTES} byte limit")
    try:
        model = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _refuse_tfjs(where, "model.json is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise _refuse_tfjs(where, f"model.json is not JSON ({exc})") from None
    if not isinstance(model, dict):
        raise _refuse_tfjs(where, "model.json is not a JSON object")
    if model.get("format") != "graph-model":
        raise _refuse_tfjs(where, f"model.json format is {model.get('format')!r}, expected 'graph-model'")
    if not isinstance(model.get("modelTopology"), dict):
        raise _refuse_tfjs(where, "model.json has no modelTopology object")
    if not isinstance(model.get("weightsManifest"), list):
        raise _refuse_tfjs(where, "model.json has no weightsManifest list")
    return model


def _weight_path(folder: Path, root: Path, name, where: str) -> Path:
    """Check one `paths` entry is a plain relative name of a regular file inside the folder; return its path."""
    if not isinstance(name, str) or not name:
        raise _refuse_tfjs(where, f"weight path {name!r} is not a non-empty string")
    if "\0" in name:
        raise _refuse_tfjs(where, f"weight path {name!r} contains NUL")
    if "\\" in name:
        raise _refuse_tfjs(where, f"weight path {name!r} contains a backslash")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise _refuse_tfjs(where, f"weight path {name!r} is absolute")
    parts = name.split("/")
    if ".." in parts:
        raise _refuse_tfjs(where, f"weight path {name!r} has a '..' component")
    for part in parts:
        if not _TFJS_PATH_PART.fullmatch(part):
            raise _refuse_tfjs(
                where, f"weight path {name!r}: component {part!r} is not a plain file name ([A-Za-z0-9._-])"
            )
    path = folder.joinpath(*parts)
    _regular_file(path, where, f"weight file {name!r}")
    # The file itself is no symlink; a symlinked folder on the way could still lead outside.
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise _refuse_tfjs(where, f"weight path {name!r} cannot be resolved") from None
    if not resolved.is_relative_to(root):
        raise _refuse_tfjs(where, f"weight path {name!r} resolves outside the folder")
    return path


def _shape_values(weight: dict, where: str) -> int:
    shape = weight.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise _refuse_tfjs(where, f"weight {weight.get('name')!r} has shape {shape!r}, expected non-negative integers")
    return math.prod(shape)


class _Shards:
    """A group's shards read as one byte stream, which is how TF.js lays a group's weights out."""

    def __init__(self, paths: list[Path], sizes: list[int]):
        self.paths = paths
        self.sizes = sizes
        self.total = sum(sizes)
        self._files: dict[int, object] = {}

    def read(self, offset: int, length: int) -> bytes:
        out = b""
        for i, size in enumerate(self.sizes):
            if offset >= size:
                offset -= size
                continue
            if i not in self._files:
                self._files[i] = open(self.paths[i], "rb")
            f = self._files[i]
            f.seek(offset)
            out += f.read(min(length - len(out), size - offset))
            offset = 0
            if len(out) == length:
                break
        return out

    def close(self) -> None:
        for f in self._files.values():
            f.close()


def _group_bytes(weights: list, shards: _Shards, where: str) -> int:
    """How many bytes the group's weight specs take, measuring string weights from the shards."""
    offset = 0
    for weight in weights:
        if not isinstance(weight, dict) or not isinstance(weight.get("name"), str):
            raise _refuse_tfjs(where, f"weight spec {weight!r} has no name")
        name, dtype = weight["name"], weight.get("dtype")
        values = _shape_values(weight, where)
        quantization = weight.get("quantization")
        if quantization is not None:
            if not isinstance(quantization, dict) or quantization.get("dtype") not in ("uint8", "uint16", "float16"):
                raise _refuse_tfjs(where, f"weight {name!r} has an unknown quantization {quantization!r}")
            offset += values * TFJS_DTYPE_BYTES[quantization["dtype"]]
        elif dtype == "string":
            if offset + values * _TFJS_STRING_LENGTH_BYTES > shards.total:
                raise _refuse_tfjs(where, f"string weight {name!r} runs past the end of its shards")
            for _ in range(values):
                prefix = shards.read(offset, _TFJS_STRING_LENGTH_BYTES)
                if len(prefix) < _TFJS_STRING_LENGTH_BYTES:
                    raise _refuse_tfjs(where, f"string weight {name!r} runs past the end of its shards")
                offset += _TFJS_STRING_LENGTH_BYTES + struct.unpack("<I", prefix)[0]
        elif dtype in TFJS_DTYPE_BYTES:
            offset += values * TFJS_DTYPE_BYTES[dtype]
        else:
            raise _refuse_tfjs(where, f"weight {name!r} has unknown dtype {dtype!r}")
    return offset


def verify_tfjs_folder(folder: Path, where: str) -> dict:
    """Check a TF.js graph-model folder before TF.js loads it; return the parsed model.json.

    Checks that `model.json` is a regular file (not a symlink) under `TFJS_MODEL_JSON_MAX_BYTES`, UTF-8
    JSON with `format` "graph-model", a `modelTopology` object and a `weightsManifest` list; that every
    weight path is a plain relative name (no `..`, absolute path, URL scheme, backslash or NUL) that
    stays inside `folder` and names a regular file, not a symlink; and that each group's shards hold
    exactly the bytes its weight specs describe (quantized weights count their quantized dtype).

    Raises:
        MobilepreError: naming `where` and the first problem found.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise _refuse_tfjs(where, f"{folder} is not a folder")
    root = folder.resolve()
    model = _read_model_json(folder, where)
    for g, group in enumerate(model["weightsManifest"]):
        if not isinstance(group, dict) or not isinstance(group.get("paths"), list):
            raise _refuse_tfjs(where, f"weightsManifest[{g}] has no paths list")
        if not isinstance(group.get("weights"), list):
            raise _refuse_tfjs(where, f"weightsManifest[{g}] has no weights list")
        paths = [_weight_path(folder, root, name, where) for name in group["paths"]]
        sizes = [path.stat().st_size for path in paths]
        shards = _Shards(paths, sizes)
        try:
            expected = _group_bytes(group["weights"], shards, where)
        except OSError as exc:
            raise _refuse_tfjs(where, f"weightsManifest[{g}]: a shard cannot be read ({exc.strerror})") from None
        finally:
            shards.close()
        if expected != shards.total:
            raise _refuse_tfjs(
                where, f"weightsManifest[{g}]: the weight specs need {expected} bytes, the shards hold {shards.total}"
            )
    return model


def io_contract(fmt: str, files: dict, source_info: dict, input_range: tuple) -> dict:
    """What an app needs to call the artifact: each input and output with its name in the model (the Keras
    output name), its name and position in this format, dtype, shape, quantization, and what it means
    (an output's kind; an input's value range)."""
    outputs = source_info.get("outputs", [])
    wanted = list(signature_output_keys([spec["name"] for spec in outputs]))
    value_range = [0, 255] if source_info.get("input_dtype") == "uint8" else list(input_range)
    if fmt in ("tflite", "litertjs"):
        io = tflite_io(files["model.tflite"])
        position = {t["index"]: i for i, t in enumerate(io["outputs"])}
        by_index = {t["index"]: t for t in io["inputs"] + io["outputs"]}
        signature = io["signature"]
        keys = ordered_keys(signature["outputs"], wanted)
        inputs = [
            {"name": key, "dtype": by_index[i]["dtype"], "shape": by_index[i]["shape"], "tensor_index": i,
             "tensor_name": by_index[i]["name"], "quantization": list(by_index[i]["quantization"]),
             **_input_range(by_index[i]["dtype"], by_index[i]["quantization"], value_range),
             "color_space": _color_space(by_index[i]["shape"])}
            for key, i in sorted(signature["inputs"].items())
        ]
        out = []
        for spec, key in zip(outputs, keys):
            index = signature["outputs"][key]
            tensor = by_index[index]
            out.append({"name": spec["name"], "kind": spec["kind"], "signature_name": key, "output_position": position[index],
                        "tensor_index": index, "tensor_name": tensor["name"], "dtype": tensor["dtype"], "shape": tensor["shape"],
                        "quantization": list(tensor["quantization"])})
        return {"inputs": inputs, "outputs": out, "shapes": shapes(fmt, files)}
    signature = json.loads(files["model.json"]).get("signature", {})

    def shape(spec):
        return tfjs_tensor(spec)[0]

    def dtype(spec):
        return tfjs_tensor(spec)[1]

    inputs = [{"name": key, "node": spec.get("name"), "dtype": dtype(spec), "shape": shape(spec), "value_range": value_range,
               "color_space": _color_space(shape(spec))}
              for key, spec in sorted((signature.get("inputs") or {}).items())]
    keys = ordered_keys(signature.get("outputs") or {}, wanted)
    # `model.execute(x)` returns the outputs in the converter's node order, which is the sorted order of
    # the signature's names; `model.predict(x)` of a several-output model returns them by name.
    position = {key: i for i, key in enumerate(sorted(keys))}
    out = [{"name": spec["name"], "kind": spec["kind"], "signature_name": key, "output_position": position[key],
            "node": signature["outputs"][key].get("name"), "dtype": dtype(signature["outputs"][key]), "shape": shape(signature["outputs"][key])}
           for spec, key in zip(outputs, keys)]
    return {"inputs": inputs, "outputs": out, "shapes": shapes(fmt, files)}


def dynamic_shapes_problem(fmt: str, files: dict) -> str | None:
    """Why a `.tflite` exported with a static batch is not a static graph (an op whose output size depends
    on the data), or None: every TFLite artifact is checked before it is judged (TF.js models keep a
    dynamic batch, `quantize.export.export_for`)."""
    if fmt not in ("tflite", "litertjs"):
        return None
    dynamic = tflite_dynamic_tensors(files["model.tflite"])
    if not dynamic:
        return None
    name, signature = dynamic[0]
    return (f"{len(dynamic)} of its tensors have a size known only at run time (first: {name} {signature}); "
            "static-shape accelerators (LiteRT's GPU and NPU delegates, LiteRT.js) refuse it")


def litertjs_problem(content: bytes, where: str) -> str | None:
    """Why LiteRT.js 2.5.3 cannot run the .tflite `content`, or None: it takes static shapes only and has
    no int8 or int16 tensors at a model's inputs and outputs (float32 and uint8 only)."""
    io = tflite_io(content, where)
    if tflite_dynamic_tensors(content, where):
        return f"{where} has tensors of dynamic shape, which LiteRT.js refuses: build it with a static batch"
    for side in ("inputs", "outputs"):
        for tensor in io[side]:
            if tensor["dtype"] not in ("float32", "uint8"):
                return (f"{where}: {side[:-1]} {tensor['name']} is {tensor['dtype']}, which LiteRT.js has no tensors for "
                        "(float32 or uint8 only): use float or uint8 I/O")
    if len(io["inputs"]) != 1:
        return f"{where} has {len(io['inputs'])} inputs; mobilepre runs one-input image models"
    return None


def shapes(fmt: str, files: dict) -> str:
    """"static" when every tensor's size is fixed in the artifact itself (TFLite: every tensor's shape
    signature; TF.js: the signature's inputs and outputs), else "dynamic": what static-shape accelerators
    and LiteRT.js need, read from the file, never assumed."""
    if fmt in ("tflite", "litertjs"):
        return "dynamic" if tflite_dynamic_tensors(files["model.tflite"]) else "static"
    signature = json.loads(files["model.json"]).get("signature", {})
    specs = [*(signature.get("inputs") or {}).values(), *(signature.get("outputs") or {}).values()]
    return "dynamic" if any(d < 0 for spec in specs for d in tfjs_tensor(spec)[0]) else "static"


def _input_range(dtype: str, quantization, value_range: list) -> dict:
    """An input's `value_range` in the tensor's own units: what an app feeds. A float model quantized with
    integer I/O (int8 with uint8 or int8 input) takes `value / scale + zero_point` of the float range,
    which `real_range` then states (for a [0, 1] model calibrated on full-range images, a uint8 input
    takes raw pixels 0..255)."""
    scale, zero = (list(quantization) + [0.0, 0])[:2]
    limits = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}.get(dtype)
    if not scale or limits is None:
        return {"value_range": value_range}
    units = [min(max(round(v / scale + zero), limits[0]), limits[1]) for v in value_range]
    return {"value_range": units, "real_range": value_range}


def tfjs_tensor(spec: dict) -> tuple[list, str]:
    """(shape, dtype) of a tensor in a TF.js `model.json` signature: `[-1, 32, 32, 3]`, "uint8"."""
    return [int(d.get("size", -1)) for d in spec.get("tensorShape", {}).get("dim", [])], spec.get("dtype", "").replace("DT_", "").lower()


def _color_space(shape) -> str:
    channels = shape[-1] if shape else None
    return {1: "GRAYSCALE", 3: "RGB", 4: "RGBA"}.get(channels, "OTHER")


def io_lines(io: dict) -> list[str]:
    """The I/O contract as lines for people: each input, then each output in the Keras model's order."""
    lines = [f"  input   {t['name']} {t['dtype']} {t['shape']} {t.get('color_space', '')} values {t['value_range']}".replace("  values", " values")
             for t in io.get("inputs", [])]
    for t in io.get("outputs", []):
        lines.append(f"  output  {t['name']} ({t['kind']}) as {t['signature_name']}, position {t['output_position']}, {t['dtype']} {t['shape']}")
    return lines
