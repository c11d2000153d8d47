"""What an artifact is, derived from its own bytes: format, quantization mode, I/O types and shapes, bytes
and gzip bytes. A manifest is a claim; the artifact is the fact: `check` compares them and judges the facts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mobilepre.quantize.artifact import gzip_size
from mobilepre.artifacts import shapes
from mobilepre.tflite_reader import tflite_io, tflite_tensor_types

_INTEGER = ("int8", "uint8")


@dataclass(frozen=True)
class ArtifactFacts:
    """What the files of one artifact are.

    Attributes:
        format (str): "tflite" (a TFLite flatbuffer), "litertjs" (one in a LiteRT.js bundle's litertjs/
            folder) or "tfjs" (a graph model's model.json).
        mode (str): the quantization its tensors show: TFLite "float32", "float16" (float16 constants),
            "dynamic" (int8 constants, float activations), "int8" (integer activations), "int16x8" (int16
            activations), "int4" (int4 constants) or "mixed" (int4 and int8 constants); TF.js "float32",
            "float16", "uint16", "uint8" or "mixed" (by the weights' stored dtypes).
        io_type (str): an int8 model's integer I/O type ("int8", "uint8"), else "float32".
        inputs (tuple[tuple[str, tuple], ...]): each input's dtype and shape (TFLite).
        size_bytes (int), gzip_bytes (int): of the artifact's files.
        shapes (str): "static" when every tensor's size is fixed in the file, else "dynamic".
    """

    format: str
    mode: str
    io_type: str
    inputs: tuple
    size_bytes: int
    gzip_bytes: int
    shapes: str = "static"


def artifact_facts(bundle: Path, path: str, files) -> ArtifactFacts:
    """The facts of the artifact at `path` in `bundle` (verified before: `check`'s integrity), whose files are `files`."""
    contents = [(Path(bundle) / f).read_bytes() for f in files]
    size, compressed = sum(len(c) for c in contents), sum(gzip_size(c) for c in contents)
    data = (Path(bundle) / path).read_bytes()
    if data[4:8] == b"TFL3":  # in a LiteRT.js bundle's litertjs/ folder, a .tflite the browser runs
        return _tflite(data, path, size, compressed, "litertjs" if Path(path).parent.name == "litertjs" else "tflite")
    return _tfjs(data, size, compressed)


def _tflite(data: bytes, where: str, size: int, compressed: int, fmt: str = "tflite") -> ArtifactFacts:
    io = tflite_io(data, where)
    io_indices = {t["index"] for t in io["inputs"] + io["outputs"]}
    types = tflite_tensor_types(data, where)
    constants = {dtype for dtype, constant in types if constant}
    activations = {dtype for i, (dtype, constant) in enumerate(types) if not constant and i not in io_indices}
    if "int16" in activations:
        mode = "int16x8"
    elif activations & set(_INTEGER):
        mode = "int8"
    elif "int4" in constants:
        mode = "mixed" if "int8" in constants else "int4"
    elif "int8" in constants:
        mode = "dynamic"
    elif "float16" in constants:
        mode = "float16"
    else:
        mode = "float32"
    output = io["outputs"][0]["dtype"] if io["outputs"] else "float32"
    io_type = output if mode == "int8" and output in _INTEGER else "float32"
    inputs = tuple((t["dtype"], tuple(t["shape"])) for t in io["inputs"])
    return ArtifactFacts(fmt, mode, io_type, inputs, size, compressed, shapes(fmt, {"model.tflite": data}))


def _tfjs(data: bytes, size: int, compressed: int) -> ArtifactFacts:
    model = json.loads(data.decode("utf-8"))
    stored = set()
    for group in model.get("weightsManifest", []):
        for weight in group.get("weights", []):
            if weight.get("dtype") == "float32":
                stored.add((weight.get("quantization") or {}).get("dtype", "float32"))
    mode = next(iter(stored)) if len(stored) == 1 else ("mixed" if stored else "float32")
    return ArtifactFacts("tfjs", mode, "float32", (), size, compressed, shapes("tfjs", {"model.json": data}))


def claim_problems(facts: ArtifactFacts, claims: dict) -> list[str]:
    """Where a manifest's claims about an artifact differ from its facts (empty when they agree)."""
    problems = []
    if claims.get("format") != facts.format:
        problems.append(f"its format is {facts.format}, the manifest says {claims.get('format')}")
    claimed_mode = claims.get("quantization")
    if claimed_mode != facts.mode and claimed_mode != "mixed":  # a mixed model's layers may all end at one precision
        problems.append(f"its tensors are {facts.mode}, the manifest says {claimed_mode}")
    if claims.get("io_type", "float32") != facts.io_type:
        problems.append(f"its I/O type is {facts.io_type}, the manifest says {claims.get('io_type', 'float32')}")
    for label, fact in (("bytes", facts.size_bytes), ("gzip_bytes", facts.gzip_bytes)):
        if claims.get(label) != fact:
            said = claims.get(label)
            problems.append(f"its files are {fact:,} {label.replace('_', ' ')}, the manifest says "
                            + (f"{said:,}" if isinstance(said, int) and not isinstance(said, bool) else repr(said)))
    claimed_shapes = (claims.get("io") or {}).get("shapes", "dynamic")  # manifests before static graphs said nothing
    if claimed_shapes != facts.shapes:
        problems.append(f"its tensor shapes are {facts.shapes}, the manifest says {claimed_shapes}")
    claimed_inputs = (claims.get("io") or {}).get("inputs")
    if facts.inputs and isinstance(claimed_inputs, list):
        said = tuple((str(i.get("dtype")), tuple(i.get("shape") or ())) for i in claimed_inputs if isinstance(i, dict))
        if said != facts.inputs:
            problems.append(f"its inputs are {list(facts.inputs)}, the manifest says {list(said)}")
    return problems
