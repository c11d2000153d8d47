"""Keras objects of our own that saved models refer to by name (`mobilepre>GaussianBlur`)."""

from mobilepre._tf import keras

_keras = keras()


@_keras.saving.register_keras_serializable(package="mobilepre")
class GaussianBlur(_keras.initializers.Initializer):
    """Initialises a depthwise kernel (k, k, channels, multiplier) as a normalised 2-D Gaussian per channel."""

    def __init__(self, sigma: float = 1.0):
        self.sigma = float(sigma)

    def __call__(self, shape, dtype=None):
        from mobilepre.frontend import gaussian_kernel
        import numpy as np

        if len(shape) != 4 or shape[0] != shape[1]:
            raise ValueError(f"GaussianBlur initialises square depthwise kernels (k, k, C, M), got shape {shape}")
        g = gaussian_kernel(self.sigma, int(shape[0]))
        kernel = np.broadcast_to(g[:, :, None, None], tuple(int(d) for d in shape)).copy()
        return _keras.ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    def get_config(self):
        return {"sigma": self.sigma}
