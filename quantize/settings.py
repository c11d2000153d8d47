"""The compression vocabulary: formats, modes and one settings value, shared by code and CLI strings."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .mixed import MixedPrecision


class QuantizeError(Exception):
    """The model or the data cannot be compressed as asked; the message says what, where, and what to do."""


class UnsupportedOpsError(QuantizeError):
    """The model holds ops the format's runtime cannot run: every mode of that format fails the same way."""


class CannotPruneError(QuantizeError):
    """The model has nothing pruning can work on: every sparsity fails the same way."""


class Format(StrEnum):
    """What a device loads: a .tflite for LiteRT, a TF.js graph model, or a .tflite run by LiteRT.js in a
    browser (the same bytes as a TFLite artifact, converted by the TFLite engines: `engine_format`)."""

    TFLITE = "tflite"
    TFJS = "tfjs"
    LITERTJS = "litertjs"


def engine_format(fmt) -> Format:
    """The format the converters make for `fmt`: LiteRT.js runs .tflite files, so LITERTJS is TFLITE."""
    fmt = Format(fmt)
    return Format.TFLITE if fmt is Format.LITERTJS else fmt


class Mode(StrEnum):
    """Quantization modes. TFLite: float32, float16, dynamic, int16x8, int8, mixed, int4. TF.js: float32,
    float16, uint16, uint8, mixed."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    DYNAMIC = "dynamic"  # TFLite dynamic-range: int8 weights, float activations quantized on the fly
    INT16X8 = "int16x8"  # TFLite int16 activations, int8 weights, calibrated; float I/O
    INT8 = "int8"  # TFLite full-integer, calibrated
    INT4 = "int4"  # TFLite int4 weights only, float activations (weights dequantized for float kernels)
    UINT16 = "uint16"  # TF.js weights as uint16 (affine), dequantized at load
    UINT8 = "uint8"  # TF.js weights as uint8 (affine), dequantized at load
    MIXED = "mixed"  # per layer: TFLite int4 / int8 / float, TF.js uint8 / float16 (`mixed.MixedPrecision`)
    # a precision of single layers in a TFLite mixed model, never a mode of its own: int4 weights in
    # blocks of 32 input values, each block its own scale, run by dynamic-range kernels; the LiteRT
    # Quantizer gives it to FULLY_CONNECTED ops whose input size is a multiple of 32 (`blocks_allowed`)
    INT4_BLOCKWISE = "int4-block32"


class Engine(StrEnum):
    """What makes an artifact: TensorFlow's TFLite converter, Google's LiteRT Quantizer (over the
    converter's float32 .tflite), or the tensorflowjs converter."""

    TFLITE_CONVERTER = "tflite-converter"
    LITERT_QUANTIZER = "litert-quantizer"
    TENSORFLOWJS = "tensorflowjs"


class IOType(StrEnum):
    """Input and output tensor type of a full-integer TFLite model."""

    FLOAT32 = "float32"
    INT8 = "int8"
    UINT8 = "uint8"


# Highest fidelity first: the order in which a build tries modes.
MODES_BY_FORMAT: dict[Format, tuple[Mode, ...]] = {
    Format.TFLITE: (Mode.FLOAT32, Mode.FLOAT16, Mode.DYNAMIC, Mode.INT16X8, Mode.INT8, Mode.MIXED, Mode.INT4),
    Format.TFJS: (Mode.FLOAT32, Mode.FLOAT16, Mode.UINT16, Mode.UINT8, Mode.MIXED),
    # LiteRT.js 2.5.3 has no int8 or int16 tensors at its I/O and no int16x8 kernels (int8 is full
    # integer with float or uint8 I/O)
    Format.LITERTJS: (Mode.FLOAT32, Mode.FLOAT16, Mode.DYNAMIC, Mode.INT8, Mode.MIXED, Mode.INT4),
}

# Which engine makes each TFLite mode: whichever made the smaller file at no more drift, measured in
# LiteRT on the demo and a MobileNetV2 (`benchmarks/engines.py`). Dynamic: the quantizer's file is
# 0.97-0.98x the converter's, drift equal or lower. int4: only the quantizer makes it. int8: the
# converter's file is smaller (0.97x on MobileNetV2) and it gives int8/uint8 I/O. float16: the converter.
# int16x8 (None): no engine is better on every model (on a trained digits CNN the converter's file gave
# max abs 0.007 and the quantizer's 0.029; the converter cannot quantize a uint8 input's Cast to 16x8),
# so both make it and each file is measured against the float model in LiteRT (`tflite.convert_tflite`).
TFLITE_ENGINE: dict[Mode, Engine | None] = {
    Mode.FLOAT32: Engine.TFLITE_CONVERTER,
    Mode.FLOAT16: Engine.TFLITE_CONVERTER,
    Mode.DYNAMIC: Engine.LITERT_QUANTIZER,
    Mode.INT16X8: None,
    Mode.INT8: Engine.TFLITE_CONVERTER,
    Mode.INT4: Engine.LITERT_QUANTIZER,
    Mode.MIXED: Engine.LITERT_QUANTIZER,  # one recipe, an override per raised op
}

# The TFLite modes the LiteRT Quantizer makes (`quantize.recipes.RECIPES`).
QUANTIZER_MODES = (Mode.DYNAMIC, Mode.INT16X8, Mode.INT8, Mode.INT4, Mode.MIXED)

# Per format, the precisions a layer of a mixed model can have, lowest first: int4 weights (float
# kernels), int4 in blocks of 32 (dense layers only), full-integer int8, int8 weights (dynamic-range
# kernels), float; TF.js: uint8 or float16.
MIXED_LEVELS: dict[Format, tuple[Mode, ...]] = {
    Format.TFLITE: (Mode.INT4, Mode.INT4_BLOCKWISE, Mode.INT8, Mode.DYNAMIC, Mode.FLOAT32),
    Format.TFJS: (Mode.UINT8, Mode.FLOAT16),
}
# TFLite modes that run float kernels: a device allowing none of them (an NPU) gets no float layer.
FLOAT_KERNEL_MODES = (Mode.FLOAT32, Mode.FLOAT16, Mode.DYNAMIC, Mode.INT4)


def mixed_ladder(fmt: Format, allowed) -> tuple[Mode, ...]:
    """The precisions a mixed model of `fmt` may give its layers, given the modes a device allows:
    lowest first; () when there is nothing to raise a layer to.

    TFLite starts at int4 weights if allowed, else full-integer int8, else dynamic-range int8; layers
    rise to int8 weights (dynamic-range) from int4 when dynamic or int8 is allowed, and to float only
    when the device runs float kernels at all (a device that allows only int8, an NPU, never gets a
    float layer). TF.js starts at uint8 and raises to float16 when float16 or float32 is allowed.
    (`blocks_allowed` says when a raised dense layer may come back down to int4 in blocks.)
    """
    allowed = {Mode(m) for m in allowed} & set(MODES_BY_FORMAT[Format(fmt)])
    fmt = engine_format(fmt)
    if fmt is Format.TFJS:
        levels = [Mode.UINT8] if Mode.UINT8 in allowed else []
        if levels and allowed & {Mode.FLOAT16, Mode.FLOAT32}:
            levels.append(Mode.FLOAT16)
    else:
        if Mode.INT4 in allowed:
            levels = [Mode.INT4] + ([Mode.DYNAMIC] if allowed & {Mode.DYNAMIC, Mode.INT8} else [])
        elif Mode.INT8 in allowed:
            levels = [Mode.INT8]
        elif Mode.DYNAMIC in allowed:
            levels = [Mode.DYNAMIC]
        else:
            levels = []
        if levels and allowed & set(FLOAT_KERNEL_MODES):
            levels.append(Mode.FLOAT32)
    return tuple(levels) if len(levels) > 1 else ()


def blocks_allowed(fmt: Format, allowed) -> bool:
    """Whether a mixed model of `fmt` may give a dense layer int4 in blocks of 32 (`Mode.INT4_BLOCKWISE`,
    run by dynamic-range kernels): its ladder rises from int4 to dynamic-range int8, and the format is a
    .tflite that LiteRT runs (not LiteRT.js, where it is unverified)."""
    return Format(fmt) is Format.TFLITE and mixed_ladder(fmt, allowed)[:2] == (Mode.INT4, Mode.DYNAMIC)


def engine_for(fmt: Format, mode: Mode) -> Engine | None:
    """What makes a mode's artifact by default; None where both TFLite engines make it and the better file
    is kept by measurement (int16x8)."""
    return Engine.TENSORFLOWJS if Format(fmt) is Format.TFJS else TFLITE_ENGINE[Mode(mode)]


# Bytes one weight takes in each mode, for the size floor (parameters x bytes per weight).
BYTES_PER_WEIGHT: dict[Mode, float] = {
    Mode.FLOAT32: 4,
    Mode.FLOAT16: 2,
    Mode.DYNAMIC: 1,
    Mode.INT16X8: 1,
    Mode.INT8: 1,
    Mode.INT4: 0.5,
    Mode.UINT16: 2,
    Mode.UINT8: 1,
}


@dataclass(frozen=True)
class QuantizationSettings:
    """How to turn a float model into one artifact.

    Attributes:
        format (Format): `tflite` or `tfjs`.
        mode (Mode): one of `MODES_BY_FORMAT[format]`.
        io_type (IOType): input/output type of a full-integer (`int8`) TFLite model; float32 keeps
            float I/O with quantize/dequantize ops inside. Ignored for other modes. Default float32.
            A model whose input is already uint8 (a front-end taking raw pixels) keeps its uint8 input.
        float_layers (tuple[str, ...]): Keras layer names to keep in float in `int8` / `dynamic` TFLite
            models (selective quantization). Default none.
        shard_size_bytes (int): TF.js weight shard size. Default 4 MiB, the converter's own default.
        strip_metadata (bool): leave out conversion metadata the runtime does not need (TFLite
            conversion metadata; TF.js `generatedBy`/`convertedBy`). Default True.
        allow_select_tf_ops (bool): let TFLite fall back to TensorFlow ops (needs the Flex delegate on
            the device, which LiteRT's Python interpreter here does not have). Default False.
        engine (Engine | None): what makes the artifact; None chooses per mode (`TFLITE_ENGINE`; layers
            kept in float need the converter; int16x8 is made by both and the file measured closer to the
            float model kept, `Artifact.engine` then says which). The LiteRT Quantizer makes dynamic, int16x8, int8 (float
            I/O), int4 and mixed; the converter every TFLite mode but int4 and mixed.
        mixed (MixedPrecision | None): the per-layer precisions of a `mixed` model (required there,
            refused elsewhere); a build finds them against a profile's drift budgets.
    """

    format: Format
    mode: Mode
    io_type: IOType = IOType.FLOAT32
    float_layers: tuple[str, ...] = ()
    shard_size_bytes: int = 4 * 1024 * 1024
    strip_metadata: bool = True
    allow_select_tf_ops: bool = False
    engine: Engine | None = None
    mixed: MixedPrecision | None = None

    def __post_init__(self):
        try:
            object.__setattr__(self, "format", Format(self.format))
        except ValueError:
            raise QuantizeError(f"format {self.format!r} is not one of tflite, tfjs") from None
        if self.format is Format.LITERTJS:
            raise QuantizeError("format 'litertjs' is a .tflite that LiteRT.js runs: convert it as tflite")
        try:
            mode = Mode(self.mode)
        except ValueError:
            mode = None
        if mode not in MODES_BY_FORMAT[self.format]:
            allowed = ", ".join(m.value for m in MODES_BY_FORMAT[self.format])
            raise QuantizeError(f"mode {self.mode!r} is not a {self.format.value} mode: use one of {allowed}")
        object.__setattr__(self, "mode", mode)
        try:
            object.__setattr__(self, "io_type", IOType(self.io_type))
        except ValueError:
            raise QuantizeError(f"io type {self.io_type!r} is not one of float32, int8, uint8") from None
        if self.io_type is not IOType.FLOAT32 and mode is not Mode.INT8:
            raise QuantizeError(f"io type {self.io_type.value} needs the full-integer int8 mode, not {mode.value}")
        if self.float_layers and mode not in (Mode.INT8, Mode.DYNAMIC):
            raise QuantizeError("keeping layers in float (float_layers) applies to the int8 and dynamic modes only")
        if (mode is Mode.MIXED) != (self.mixed is not None):
            raise QuantizeError(
                "mode mixed needs its per-layer precisions (a build finds them against a profile's drift budgets)"
                if self.mixed is None else "per-layer precisions (mixed) apply to the mixed mode only"
            )
        if self.mixed is not None:
            if self.mixed.format() is not self.format:
                raise QuantizeError(f"mixed precision based on {self.mixed.base} is not a {self.format.value} plan")
            self.mixed.check()
        if not isinstance(self.shard_size_bytes, int) or self.shard_size_bytes < 1024:
            raise QuantizeError(f"shard size {self.shard_size_bytes!r} must be a whole number of bytes >= 1024")
        object.__setattr__(self, "float_layers", tuple(self.float_layers))
        object.__setattr__(self, "engine", self._resolve_engine())

    def _resolve_engine(self) -> Engine:
        if self.engine is None:
            return Engine.TFLITE_CONVERTER if self.float_layers else engine_for(self.format, self.mode)
        try:
            engine = Engine(self.engine)
        except ValueError:
            raise QuantizeError(f"engine {self.engine!r} is not one of {', '.join(e.value for e in Engine)}") from None
        if (self.format is Format.TFJS) != (engine is Engine.TENSORFLOWJS):
            raise QuantizeError(f"the {engine.value} engine does not make {self.format.value} models")
        if engine is Engine.LITERT_QUANTIZER and (self.mode not in QUANTIZER_MODES or self.io_type is not IOType.FLOAT32 or self.float_layers):
            raise QuantizeError(f"the LiteRT Quantizer makes {', '.join(QUANTIZER_MODES)} models with float32 I/O and no float layers")
        if engine is Engine.TFLITE_CONVERTER and self.mode in (Mode.INT4, Mode.MIXED):
            raise QuantizeError(f"TensorFlow's converter does not make {self.mode} models: use the litert-quantizer engine")
        return engine

    @property
    def needs_calibration(self) -> bool:
        if self.mixed is not None:
            return self.mixed.needs_calibration
        return self.mode in (Mode.INT8, Mode.INT16X8)


    @property
    def key(self) -> str:
        """A short stable name, e.g. `tflite-int8-uint8io`, used for file names and caches."""
        parts = [self.format.value, self.mode.value]
        if self.mode is Mode.INT8 and self.io_type is not IOType.FLOAT32:
            parts.append(f"{self.io_type.value}io")
        if self.float_layers:
            parts.append("float-" + "+".join(self.float_layers))
        if self.mixed is not None:
            parts.append(self.mixed.base.value + (f"-{len(self.mixed.raised)}raised" if self.mixed.raised else ""))
        if self.format is Format.TFLITE and self.engine is not None and self.engine is not TFLITE_ENGINE[self.mode] and not self.float_layers:
            parts.append(self.engine.value)
        return "-".join(parts)
