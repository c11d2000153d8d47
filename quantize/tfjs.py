"""TF.js graph-model conversion with float16 / uint16 / uint8 weight quantization, normalised for determinism."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

from .artifact import Artifact
from .memo import Recent, saved_model_digest
from .mixed import tfjs_dtype_map
from .settings import Format, Mode, QuantizationSettings, QuantizeError, UnsupportedOpsError
from .tfjs_passes import corrected_passes

_DTYPE_MAP = {Mode.FLOAT16: {"float16": True}, Mode.UINT16: {"uint16": True}, Mode.UINT8: {"uint8": True}}
# Fields of model.json the runtime does not read.
_METADATA_KEYS = ("generatedBy", "convertedBy")


def normalise_model_json(raw: bytes, strip_metadata: bool) -> bytes:
    """model.json with sorted keys and no whitespace: the converter's own key order is not stable. The
    signature's output keys sort as the converter ordered the output nodes (TensorFlow flattens a dict of
    outputs by sorted key), so `model.execute` returns the outputs in the order model.json lists them."""
    document = json.loads(raw)
    user = document.get("userDefinedMetadata") or {}
    if len(user.get("structuredOutputKeys") or ()) == 1:
        # One output: `model.predict` keeps returning a plain tensor, as web code expects.
        del user["structuredOutputKeys"]
        if not user:
            del document["userDefinedMetadata"]
    if strip_metadata:
        for key in _METADATA_KEYS:
            document.pop(key, None)
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


# Function-call ops the converter lists beside the real culprit when the culprit sits in a nested function.
_CALL_OPS = frozenset({"StatefulPartitionedCall", "PartitionedCall"})
# Known remedies, by op.
_REMEDIES = {
    "Erf": "exact GELU: use keras.activations.gelu(x, approximate=True) (the tanh form) for TF.js",
    "Erfc": "exact GELU: use keras.activations.gelu(x, approximate=True) (the tanh form) for TF.js",
}


def _unsupported_message(text: str) -> str:
    """The converter's 'Unsupported Ops' text as one line: the real ops, and the fix where one is known."""
    listed = {w.strip(",") for w in text.split("\n", 1)[-1].split() if w.strip(",")}
    ops = sorted(listed - _CALL_OPS) or sorted(listed)
    remedies = sorted({_REMEDIES[op] for op in ops if op in _REMEDIES})
    fix = "; ".join(remedies) if remedies else "change the model for the tfjs format"
    return f"TF.js cannot run these ops: {', '.join(ops)}; {fix}"


def convert_tfjs(saved_model_dir: Path, settings: QuantizationSettings, sparsity: float = 0.0) -> Artifact:
    """Convert the SavedModel at `saved_model_dir` to a TF.js graph model as `settings` ask."""
    from ._tf import native_stderr_silenced, tensorflowjs_converter

    if settings.format is not Format.TFJS:
        raise QuantizeError(f"convert_tfjs got {settings.format.value} settings")
    converter = tensorflowjs_converter()
    dtype_map = tfjs_dtype_map(settings.mixed) if settings.mixed else _DTYPE_MAP.get(settings.mode)
    key = saved_model_digest(saved_model_dir)
    graph = _GRAPHS.get(key)

    with tempfile.TemporaryDirectory(prefix="mobilepre-tfjs-") as out:
        try:
            with native_stderr_silenced(), corrected_passes():
                if graph is not None:  # the optimised graph and weights of an earlier mode: only the weights' encoding differs
                    converter.write_artifacts(**graph, output_graph=str(Path(out) / "model.json"), quantization_dtype_map=dtype_map,
                                              weight_shard_size_bytes=settings.shard_size_bytes)
                else:
                    with _kept_graph(converter) as kept:
                        converter.convert_tf_saved_model(
                            str(saved_model_dir),
                            out,
                            quantization_dtype_map=dtype_map,
                            weight_shard_size_bytes=settings.shard_size_bytes,
                            strip_debug_ops=True,
                            # `model.predict` of a several-output model returns {output name: tensor}
                            use_structured_outputs_names=True,
                        )
                    if kept and all(p.name == "model.json" or p.suffix == ".bin" for p in Path(out).iterdir()):  # no assets copied
                        _GRAPHS.put(key, kept)
        except ValueError as error:
            text = str(error)
            if "Unsupported Ops" in text:
                raise UnsupportedOpsError(_unsupported_message(text)) from error
            raise QuantizeError(f"TF.js conversion ({settings.key}) failed: {text.splitlines()[0]}") from error
        files = {}
        for path in sorted(Path(out).iterdir()):
            data = path.read_bytes()
            if path.name == "model.json":
                data = normalise_model_json(data, settings.strip_metadata)
            files[path.name] = data
    return Artifact(settings=settings, files=files, sparsity=sparsity)


# The converter's optimised graph per SavedModel (`memo`): every mode writes the same graph, with its
# weights encoded as float32, float16, uint16 or uint8; the load, freeze and grappler passes run once.
_GRAPHS = Recent()


@contextlib.contextmanager
def _kept_graph(converter):
    """What the converter hands its `write_artifacts` (graph, weights, signature, the rest but the output
    file, the weights' encoding and the shard size), kept in the dict this yields."""
    kept, original = {}, converter.write_artifacts

    def write_artifacts(topology, weights, output_graph, tf_version, signature_def, **rest):
        shared = {k: v for k, v in rest.items() if k not in ("quantization_dtype_map", "weight_shard_size_bytes")}
        kept.update(topology=topology, weights=weights, tf_version=tf_version, signature_def=signature_def, **shared)
        return original(topology, weights, output_graph, tf_version, signature_def, **rest)

    converter.write_artifacts = write_artifacts
    try:
        yield kept
    finally:
        converter.write_artifacts = original
