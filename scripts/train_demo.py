"""Train the demo digit classifier that ships in `mobilepre/demo/`, with its calibration and validation images.

Deterministic and offline: scikit-learn's bundled 8x8 handwritten digits are upscaled to 32x32 raw uint8
pixels given as RGB (grey ink: R = G = B, as a camera gives a grey page), split 80/20 (stratified, fixed
seed), and a small CNN is trained end to end behind the default front-end, which takes RGB and turns it
into luma inside the model (a fixed 1x1 convolution, ITU-R BT.601). The saved model names only stock Keras objects (the Gaussian denoise kernel travels as
weights), so `keras.models.load_model` reads it without mobilepre. Run from the repository root:

    .venv/bin/python scripts/train_demo.py
"""

from __future__ import annotations

import contextlib
import json
import time
import zipfile
from pathlib import Path

import numpy as np

from mobilepre.frontend import FrontendSpec, attach, build_frontend
from mobilepre.fsutil import atomic_file

SEED = 0
IMAGE_SIZE = 32
TEST_FRACTION = 0.2
EPOCHS = 20
BATCH_SIZE = 32
LEARNING_RATE = 1e-3
CALIBRATION_IMAGES = 128
DEMO_DIR = Path(__file__).resolve().parent.parent / "mobilepre" / "demo"


def load_digit_pixels(tf) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as raw uint8 RGB pixels (N, 32, 32, 3), grey (R = G = B), and int64 labels (N,)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    # The digits are ink intensities 0..16; scale to 0..255 before resizing so rounding happens once.
    small = digits.images.astype(np.float32)[..., None] * (255.0 / 16.0)
    large = tf.image.resize(small, (IMAGE_SIZE, IMAGE_SIZE), method="bilinear").numpy()
    pixels = np.clip(np.round(large), 0, 255).astype(np.uint8)
    return np.repeat(pixels, 3, axis=-1), digits.target.astype(np.int64)


def build_classifier(keras, input_shape: tuple[int, int, int]):
    """A small CNN from front-end features to ten digit probabilities."""
    inputs = keras.Input(shape=input_shape, name="features")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv_1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool_1")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv_2")(x)
    x = keras.layers.MaxPooling2D(4, name="pool_2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="digit")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def build_demo_model(keras):
    frontend = build_frontend(FrontendSpec(input_shape=(IMAGE_SIZE, IMAGE_SIZE, 1)))
    classifier = build_classifier(keras, tuple(int(d) for d in frontend.outputs[0].shape[1:]))
    return attach(frontend, classifier, name="demo_digits")


@contextlib.contextmanager
def shipped_file(path: Path):
    """`atomic_file`, but world-readable: its temporary files are 0600, too strict for package data."""
    with atomic_file(path) as tmp:
        yield tmp
        tmp.chmod(0o644)


def require_stock_keras_only(path: Path) -> None:
    """Refuse to ship a model whose config names a mobilepre object: users load it without mobilepre."""
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
    if '"mobilepre' in config:
        raise SystemExit(f"{path}: the model's config refers to a mobilepre object; the demo must be plain Keras")


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    with shipped_file(path) as tmp:
        np.savez_compressed(tmp, **arrays)


def main() -> None:
    from sklearn.model_selection import train_test_split

    from mobilepre._tf import keras as load_keras, quiet_tensorflow

    tf = quiet_tensorflow()
    keras = load_keras()
    # The machine is shared; one thread each keeps training polite and costs little on 32x32 images.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()

    pixels, labels = load_digit_pixels(tf)
    train_images, test_images, train_labels, test_labels = train_test_split(
        pixels, labels, test_size=TEST_FRACTION, stratify=labels, random_state=SEED
    )

    model = build_demo_model(keras)
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    started = time.perf_counter()
    model.fit(train_images, train_labels, batch_size=BATCH_SIZE, epochs=EPOCHS, shuffle=True, verbose=2)
    training_s = time.perf_counter() - started

    # Ship an uncompiled copy: no optimizer state in the file, and loading it needs no training set-up.
    shipped = build_demo_model(keras)
    shipped.set_weights(model.get_weights())
    predicted = shipped.predict(test_images, batch_size=128, verbose=0).argmax(axis=1)
    test_accuracy = float(np.mean(predicted == test_labels))

    rng = np.random.default_rng(SEED)
    chosen = np.sort(rng.choice(len(train_images), size=CALIBRATION_IMAGES, replace=False))

    with shipped_file(DEMO_DIR / "demo.keras") as tmp:
        shipped.save(tmp)
        require_stock_keras_only(tmp)
    save_npz(DEMO_DIR / "calibration.npz", images=train_images[chosen], labels=train_labels[chosen])
    save_npz(DEMO_DIR / "validation.npz", images=test_images, labels=test_labels)
    info = {
        "epochs": EPOCHS,
        "keras_version": keras.__version__,
        "parameters": int(shipped.count_params()),
        "seed": SEED,
        "tensorflow_version": tf.__version__,
        "test_accuracy": test_accuracy,
        "test_size": int(len(test_images)),
        "train_size": int(len(train_images)),
    }
    with shipped_file(DEMO_DIR / "demo.json") as tmp:
        tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")

    print(f"trained {EPOCHS} epochs in {training_s:.1f} s")
    print(f"test accuracy {test_accuracy:.4f} ({int(np.sum(predicted == test_labels))}/{len(test_labels)})")


if __name__ == "__main__":
    main()
