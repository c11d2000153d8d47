"""TFLite modes made by Google's LiteRT Quantizer from the converter's float32 .tflite: dynamic-range
int8, int4 weights and int16x8, each one of its stock recipes."""

from __future__ import annotations

import numpy as np

from .checks import check_calibration
from .export import INPUT_NAME
from .mixed import MixedPrecision, configure_quantizer
from .settings import Mode, QuantizeError

# LiteRT Quantizer recipe (a function of `litert_quantizer.recipe`) per mode.
RECIPES = {
    Mode.DYNAMIC: "dynamic_wi8_afp32",  # int8 channelwise weights, activations quantized on the fly
    Mode.INT4: "weight_only_wi4_afp32",  # int4 channelwise weights, dequantized for float kernels
    Mode.INT16X8: "static_wi8_ai16",  # int8 weights, int16 activations from calibration; float I/O (`_recipe`)
    Mode.INT8: "static_wi8_ai8",  # int8 weights and activations, float I/O (the converter makes int8 builds)
}
# The quantizer calibrates one image per interpreter run, keeping every tensor's range: slower per
# image than the converter's calibration, and ranges settle long before 200 images.
MAX_CALIBRATION_SAMPLES = 200


def _recipe(mode: Mode):
    """The stock recipe of `mode`; int16x8 with float inputs and outputs kept float (the stock recipe
    quantizes them to int16, a contract few apps can feed: with its scale of 1/32768 an input of 1.0 rounds
    to 32768, which wraps to -32768 in an app that does not clip; measured on a digits CNN, top-1 fell
    from 0.995 to 0.5)."""
    from litert_quantizer import recipe, recipe_manager
    from litert_quantizer.algorithm_manager import AlgorithmName
    from litert_quantizer.qtyping import TFLOperationName

    if mode is not Mode.INT16X8:
        return getattr(recipe, RECIPES[mode])()
    manager = recipe_manager.RecipeManager()
    manager.add_static_config(regex=".*", operation_name=TFLOperationName.ALL_SUPPORTED, activation_num_bits=16,
                              weight_num_bits=8, algorithm_key=AlgorithmName.MIN_MAX_UNIFORM_QUANT)
    for end in (TFLOperationName.INPUT, TFLOperationName.OUTPUT):
        manager.add_quantization_config(regex=".*", operation_name=end, algorithm_key=AlgorithmName.NO_QUANTIZE)
    return manager.get_quantization_recipe()


def quantize_tflite(float_model: bytes, mode: Mode, calibration: np.ndarray | None = None,
                    mixed: MixedPrecision | None = None) -> bytes:
    """`float_model` (a float32 .tflite with a `serving_default` signature taking `pixels`) quantized by
    the mode's recipe, or for `mixed` by the per-layer precisions; calibrated on `calibration` where the
    recipe quantizes activations."""
    from ._tf import native_stderr_silenced

    if mode not in RECIPES and not (mode is Mode.MIXED and mixed is not None):
        raise QuantizeError(f"the LiteRT Quantizer makes {', '.join(RECIPES)} and mixed models, not {mode}")
    with native_stderr_silenced():
        from litert_quantizer import quantizer

        try:
            engine = quantizer.Quantizer(bytearray(float_model))
            if mixed is not None:
                configure_quantizer(engine, mixed)
            else:
                engine.load_quantization_recipe(_recipe(mode))
            ranges = None
            if engine.need_calibration:
                check_calibration(calibration)
                samples = calibration[:MAX_CALIBRATION_SAMPLES]
                ranges = engine.calibrate({"serving_default": [{INPUT_NAME: samples[i : i + 1]} for i in range(len(samples))]})
            result = engine.quantize(ranges, enable_progress_bar=False, enable_progress_report=False)
        except QuantizeError:
            raise
        except Exception as error:  # the quantizer raises many types; the message is what the user needs
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise QuantizeError(f"the LiteRT Quantizer could not make the {mode} model: {first}") from error
    return bytes(result.quantized_model)
