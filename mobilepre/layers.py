"""Keras objects of our own that older saved models refer to by name (`mobilepre>GaussianBlur`).

Nothing mobilepre builds today refers to them: front-ends name only stock Keras objects and carry the
Gaussian as kernel weights, so their files load without mobilepre. `GaussianBlur` stays registered so
that files written by earlier versions still load once this module is imported (`mobilepre.models`
does so before loading any model).

Importing this module imports Keras; `mobilepre.frontend` never imports it, so the dependency runs one
way only: this shim uses the front-end's numpy-only `gaussian_kernel`.
"""

import numpy as np

from mobilepre._tf import keras
from mobilepre.frontend import gaussian_kernel

_keras = keras()


@_keras.saving.register_keras_serializable(package="mobilepre")
class GaussianBlur(_keras.initializers.Initializer):
    """Initialises a depthwise kernel (k, k, channels, multiplier) as a normalised 2-D Gaussian per channel.

    Kept for loading files saved by earlier mobilepre versions; new front-ends do not use it.
    """

    def __init__(self, sigma: float = 1.0):
        self.sigma = float(sigma)

    def __call__(self, shape, dtype=None):
        if len(shape) != 4 or shape[0] != shape[1]:
            raise ValueError(f"GaussianBlur initialises square depthwise kernels (k, k, C, M), got shape {shape}")
        g = gaussian_kernel(self.sigma, int(shape[0]))
        kernel = np.broadcast_to(g[:, :, None, None], tuple(int(d) for d in shape)).copy()
        return _keras.ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    def get_config(self):
        return {"sigma": self.sigma}
