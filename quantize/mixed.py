"""Mixed precision as data: which layers of a model keep a higher precision than the rest, and the
per-layer quantization error that ranks them.

TFLite: one LiteRT Quantizer recipe, the base precision for every op and an override per raised op
(matched by its output tensor name). TF.js: the converter's dtype map, uint8 for every weight and
float16 for the raised ones.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import numpy as np

from .runtime import signature_outputs
from .settings import MIXED_LEVELS, Format, Mode, QuantizeError

# Bytes a weight takes at each level (TFLite float layers stay float32). int4 in blocks of 32 adds a
# float16 scale per block (measured: a 576x100 dense kernel, 1,800 blocks, +2,424 B over channel-wise).
LEVEL_BYTES: dict[Mode, float] = {Mode.INT4: 0.5, Mode.INT4_BLOCKWISE: 0.5 + 2 / 32, Mode.INT8: 1, Mode.DYNAMIC: 1, Mode.FLOAT32: 4,
                                  Mode.UINT8: 1, Mode.FLOAT16: 2}
# The block size of `Mode.INT4_BLOCKWISE`: a dense kernel's input size must be a multiple of it.
BLOCK = 32
_FULLY_CONNECTED = 9  # the TFLite builtin operator code


@dataclass(frozen=True)
class MixedPrecision:
    """Per-layer precisions of a `mixed` model.

    Attributes:
        base (Mode): every layer not raised: int4, int8 or dynamic (TFLite), uint8 (TF.js).
        raised (tuple[tuple[str, Mode], ...]): (name, precision) of the layers kept higher: a TFLite op's
            output tensor name (as the float .tflite names it) or a TF.js weight name.
    """

    base: Mode
    raised: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "base", Mode(self.base))
        object.__setattr__(self, "raised", tuple(sorted((str(n), Mode(m)) for n, m in self.raised)))

    def format(self) -> Format:
        return Format.TFJS if self.base is Mode.UINT8 else Format.TFLITE

    def check(self) -> None:
        levels = MIXED_LEVELS[self.format()]
        if self.base not in levels[:-1] or self.base is Mode.INT4_BLOCKWISE:  # a per-op rung, not a base
            raise QuantizeError(f"mixed precision base {self.base} is not one of {', '.join(levels[:-1])}")
        for name, mode in self.raised:
            if mode not in levels or levels.index(mode) <= levels.index(self.base):
                raise QuantizeError(f"mixed precision: {name!r} raised to {mode}, which is not above {self.base}")

    @property
    def needs_calibration(self) -> bool:
        return Mode.INT8 in (self.base, *(m for _, m in self.raised))


@dataclass(frozen=True)
class LayerError:
    """How much one layer loses at a precision, for ranking which to raise.

    Attributes:
        name (str): the TFLite op's output tensor name, or the TF.js weight name.
        layer (str): the Keras layer path read from the name, e.g. "digits_cnn/conv_2".
        error (float): in dB, higher loses more. TFLite: the error at the model's outputs when this op
            alone is quantized, as a share of the error when every op is (measured by running float and
            quantized models side by side); TF.js: the weight's rounding noise relative to its RMS.
        weights (int): parameters the layer holds (what raising it costs in bytes).
        blockwise (bool): a TFLite dense op that can take `Mode.INT4_BLOCKWISE` (`graph_ops`).
    """

    name: str
    layer: str
    error: float
    weights: int
    blockwise: bool = False

    def bytes_at(self, mode: Mode) -> float:
        """Bytes the layer's weights take at `mode`: an op that cannot take int4 blocks stays int4 there."""
        return self.weights * LEVEL_BYTES[Mode.INT4 if mode is Mode.INT4_BLOCKWISE and not self.blockwise else mode]

    def to_dict(self) -> dict:
        return {"error_db": round(self.error, 3), "layer": self.layer, "name": self.name, "weights": self.weights}


def layer_path(name: str) -> str:
    """'model_1/backbone_1/conv_2_1/Relu;model_1/...' -> 'backbone/conv_2': the Keras layer path in a
    TFLite tensor name or a TF.js weight name, without the model's own prefix and Keras's call suffixes."""
    first = name.split(";")[0]
    parts = [re.sub(r"_\d+$", "", p) for p in first.split("/")[:-1] if p and not p.startswith("StatefulPartitionedCall")]
    if not parts:
        return first
    return "/".join(parts[1:]) if len(parts) > 1 else parts[0]


# ---------------------------------------------------------------------------------------------- TFLite


def configure_quantizer(engine, plan: MixedPrecision) -> None:
    """Load `plan` into a LiteRT Quantizer: the base for every op, then one override per raised op."""
    _configure(engine, ((".*", plan.base), *((_op_regex(name), mode) for name, mode in plan.raised)))


def _op_regex(name: str) -> str:
    # the quantizer matches an op by its scope: its output tensor names, each followed by ";"
    return f"^{re.escape(name)};"


def _configure(engine, rules) -> None:
    """(scope regex, precision) rules into the quantizer's recipe; a later rule wins where both match."""
    from litert_quantizer import algorithm_manager, qtyping

    every = qtyping.TFLOperationName.ALL_SUPPORTED
    engine.load_quantization_recipe([])
    for regex, mode in rules:
        if mode is Mode.INT4:
            engine.add_weight_only_config(regex, every, 4)
        elif mode is Mode.INT4_BLOCKWISE:  # given only to ops `graph_ops` marks blockwise
            engine.add_dynamic_config(regex, qtyping.TFLOperationName.FULLY_CONNECTED, 4, qtyping.QuantGranularity.BLOCKWISE_32)
        elif mode is Mode.DYNAMIC:
            engine.add_dynamic_config(regex, every, 8)
        elif mode is Mode.INT8:
            engine.add_static_config(regex, every, 8, 8)
        else:
            engine.update_quantization_recipe(regex, every, algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)


def rank_tflite_ops(float_model: bytes, base: Mode, images: np.ndarray, signature_input: str) -> list[LayerError]:
    """The ops `base` quantizes, worst first: each op alone quantized to `base` (every other op float),
    run beside the float model on `images` by the quantizer's own validator, scored by the error it
    causes at the model's outputs as a share of the error of the whole model at `base`."""
    from ._tf import native_stderr_silenced

    feeds = {"serving_default": [{signature_input: images[i : i + 1]} for i in range(len(images))]}
    with native_stderr_silenced():
        from litert_quantizer import quantizer

        def output_mse(rules, ranges=None) -> dict:
            engine = quantizer.Quantizer(bytearray(float_model))
            _configure(engine, rules)
            result = engine.quantize(ranges, enable_progress_bar=False, enable_progress_report=False)
            # compared by signature name: the quantizer's own validator looks an output up by its float tensor
            # name, which in an int8 file names a tensor LiteRT has released ("Tensor data is null")
            got = signature_outputs(bytes(result.quantized_model), images, signature_input)
            return {name: float(np.mean((got[name] - want) ** 2)) for name, want in reference.items()}

        try:
            reference = signature_outputs(float_model, images, signature_input)
            ops = graph_ops(float_model)
            ranges = None
            if base is Mode.INT8:  # activation ranges from one calibration of the whole model
                engine = quantizer.Quantizer(bytearray(float_model))
                _configure(engine, ((".*", base),))
                ranges = engine.calibrate(feeds)
            whole = output_mse(((".*", base),), ranges)
            ranked = []
            for op in ops:
                if base is not Mode.INT8 and not op["weights"]:
                    continue  # weight-only and dynamic modes change only ops that hold weights
                alone = output_mse(((".*", Mode.FLOAT32), (_op_regex(op["output"]), base)), ranges)
                share = sum(alone[name] / whole[name] for name in alone if whole.get(name, 0) > 0)
                ranked.append(LayerError(op["output"], layer_path(op["output"]), round(10 * math.log10(max(share, _FLOOR)), 6),
                                         op["weights"], op["blockwise"]))
        except Exception as error:  # the quantizer raises many types; the message is what the user needs
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise QuantizeError(f"the LiteRT Quantizer could not measure per-layer errors at {base}: {first}") from error
    return sorted(ranked, key=lambda e: (-e.error, e.name))


_FLOOR = 1e-12  # an error share below this (an op quantization leaves exact) counts as this: -120 dB


def graph_ops(float_model: bytes) -> list[dict]:
    """Each op of the main subgraph: its output tensor name, its non-constant input tensor names, the
    float parameters its constant inputs of rank 2 or more hold (kernels, not biases), and whether it
    can take int4 in blocks of 32 (`blockwise`: a FULLY_CONNECTED op whose float kernel's input size is
    a multiple of `BLOCK`; the quantizer refuses the others)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(float_model))
    graph = model.subgraphs[0]
    ops = []
    for op in graph.operators:
        if op.outputs is None or not len(op.outputs):
            continue
        names, weights, kernels = [], 0, []
        for index in op.inputs if op.inputs is not None else []:
            if index < 0:
                continue
            tensor = graph.tensors[index]
            constant = model.buffers[tensor.buffer].data is not None
            shape = tensor.shape.tolist() if tensor.shape is not None else []
            if constant and tensor.type == 0 and len(shape) >= 2:  # 0: FLOAT32
                weights += int(np.prod(shape))
                kernels.append(shape)
            elif not constant:
                names.append(_text(tensor.name))
        code = model.operatorCodes[op.opcodeIndex]
        dense = max(code.builtinCode, code.deprecatedBuiltinCode) == _FULLY_CONNECTED
        blockwise = dense and len(kernels) == 1 and len(kernels[0]) == 2 and kernels[0][1] % BLOCK == 0
        ops.append({"output": _text(graph.tensors[op.outputs[0]].name), "inputs": names, "weights": weights, "blockwise": blockwise})
    return ops


def _text(name) -> str:
    return name.decode() if isinstance(name, bytes) else str(name or "")


# ---------------------------------------------------------------------------------------------- TF.js


def tfjs_dtype_map(plan: MixedPrecision) -> dict:
    """The tensorflowjs converter's `quantization_dtype_map`: uint8 for every weight, float16 for the
    raised ones (names escaped: the converter matches them as fnmatch patterns)."""
    raised = [_fnmatch_literal(name) for name, _ in plan.raised]
    return {"uint8": True, "float16": raised} if raised else {"uint8": True}


def _fnmatch_literal(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def rank_tfjs_weights(float_files: dict[str, bytes]) -> list[LayerError]:
    """Float weights of a float32 TF.js model, worst first by the rounding noise uint8 affine
    quantization adds relative to the weight's RMS (the converter quantizes each tensor over its range:
    outliers widen the step for every value)."""
    document = json.loads(float_files["model.json"])
    data = b"".join(float_files[path] for group in document["weightsManifest"] for path in group["paths"])
    ranked, offset = [], 0
    for group in document["weightsManifest"]:
        for weight in group["weights"]:
            count = int(np.prod(weight["shape"])) if weight["shape"] else 1
            size = count * _DTYPE_BYTES.get(weight["dtype"], 4)
            if weight["dtype"] == "float32" and count > 1:
                values = np.frombuffer(data, "<f4", count, offset).astype(np.float64)
                rms = float(np.sqrt(np.mean(values**2)))
                noise = float(values.max() - values.min()) / 255 / math.sqrt(12)
                if rms > 0 and noise > 0:
                    ranked.append(LayerError(weight["name"], layer_path(weight["name"]), round(20 * math.log10(noise / rms), 6), count))
            offset += size
    return sorted(ranked, key=lambda e: (-e.error, e.name))


_DTYPE_BYTES = {"float32": 4, "int32": 4, "bool": 1, "uint8": 1, "uint16": 2, "float16": 2}
