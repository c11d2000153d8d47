"""Fine-tuning by distillation: a compressed student learns to reproduce every output of the float model
on the user's unlabelled images; pruning and clustering put their constraint back after every step."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .export import output_list
from .settings import CannotPruneError, QuantizeError

# Said the same for pruning, clustering and QAT, so a build says it once for all of them.
NO_KERAS_LAYERS = "a SavedModel has no Keras layers to prune, cluster or fine-tune: give the .keras or .h5 model instead"


def check_keras_layers(model) -> None:
    """Fine-tuning needs the model's Keras layers; a SavedModel wrapped for inference has none."""
    if any(type(layer).__name__ == "TFSMLayer" for layer in model.layers):
        raise CannotPruneError(NO_KERAS_LAYERS)


def check_fine_tuning(epochs, batch_size, min_epochs: int = 0) -> None:
    """The fine-tuning settings pruning, clustering and QAT share, checked with one wording."""
    if not isinstance(epochs, int) or epochs < min_epochs:
        raise QuantizeError(f"epochs {epochs!r}: expected a whole number >= {min_epochs}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise QuantizeError(f"batch size {batch_size!r}: expected a whole number >= 1")


def _is_probabilities(y: np.ndarray) -> bool:
    """Class probabilities (distilled with KL divergence): rows of non-negative values that sum to 1."""
    return y.ndim == 2 and bool(np.all(y >= 0)) and bool(np.allclose(y.sum(axis=-1), 1.0, atol=1e-3))


def clone(model):
    """A copy of `model` with its own weights."""
    from ._tf import keras

    copy = keras().models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def distil(
    teacher,
    student,
    images: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    epochs: int,
    batch_size: int = 32,
    learning_rate: float = 3e-4,
    seed: int = 0,
    before_epoch: Callable[[int], None] | None = None,
    before_step: Callable[[], None] | None = None,
    after_step: Callable[[], None] | None = None,
) -> float:
    """Fine-tune `student` towards `teacher` for `epochs` over `images`; the last epoch's mean loss.

    Loss: per output, KL divergence for probability outputs and mean squared error otherwise, summed;
    plus cross-entropy on `labels` when given and the model has one output. Batch-norm statistics stay
    the teacher's (the student runs in inference mode). `before_epoch(epoch)`, `before_step()` and
    `after_step()` let the caller set and re-impose its constraint (masks, shared values, rounding).
    """
    from ._tf import keras, quiet_tensorflow

    tf = quiet_tensorflow()
    k = keras()
    predicted = teacher.predict(images, batch_size=256, verbose=0)
    targets_all = [np.asarray(o, dtype=np.float32) for o in output_list(teacher, predicted)]
    probabilities = [_is_probabilities(o) for o in targets_all]
    use_labels = labels is not None and len(targets_all) == 1  # class labels name one output's classes
    optimizer = k.optimizers.Adam(learning_rate)
    rng = np.random.default_rng(seed)
    trainable = student.trainable_variables

    @tf.function(reduce_retracing=True)
    def step(x, targets, y_true, use_labels):
        with tf.GradientTape() as tape:
            outs = output_list(student, student(x, training=False))
            loss = 0.0
            for target, got, is_probabilities in zip(targets, outs, probabilities):
                if is_probabilities:
                    loss += tf.reduce_mean(k.losses.kl_divergence(target, got))
                else:
                    loss += tf.reduce_mean(tf.square(target - got))
            if use_labels:
                loss += tf.reduce_mean(k.losses.sparse_categorical_crossentropy(y_true, outs[0]))
        grads = tape.gradient(loss, trainable)
        optimizer.apply_gradients(zip(grads, trainable))
        return loss

    loss_value = float("nan")
    for epoch in range(epochs):
        if before_epoch is not None:
            before_epoch(epoch)
        order = rng.permutation(len(images))
        losses = []
        for start in range(0, len(order), batch_size):
            idx = np.sort(order[start : start + batch_size])
            y = labels[idx] if labels is not None else np.zeros(len(idx), dtype=np.int64)
            if before_step is not None:
                before_step()
            losses.append(float(step(images[idx], tuple(t[idx] for t in targets_all), y, use_labels)))
            if after_step is not None:
                after_step()
        loss_value = float(np.mean(losses))
    return loss_value
