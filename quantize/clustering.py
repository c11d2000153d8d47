"""Weight clustering (palettization): each Conv/Dense kernel's values replaced by the nearest of a few
shared values found by k-means, fine-tuned by distillation with the sharing kept after every step. The
kernels stay dense; a quantized file of them compresses well (few distinct codes per channel)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .distil import check_fine_tuning, check_keras_layers, clone, distil
from .pruning import prunable_kernels
from .settings import CannotPruneError, QuantizeError

MIN_CLUSTERS, MAX_CLUSTERS = 2, 256


@dataclass(frozen=True)
class ClusterSettings:
    """How to cluster.

    Attributes:
        clusters (int): shared values per kernel, in [2, 256].
        epochs (int): fine-tuning epochs over the calibration images; 0 is one-shot. Default 30.
        batch_size (int): fine-tuning batch size. Default 32.
        learning_rate (float): Adam learning rate of the fine-tuning. Default 3e-4 (as pruning's).
        include_depthwise (bool): also cluster depthwise kernels. Default False.
        exclude (tuple[str, ...]): layer names never to cluster. Default none.
        seed (int): shuffling seed. Default 0.
    """

    clusters: int
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 3e-4
    include_depthwise: bool = False
    exclude: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self):
        if type(self.clusters) is not int or not MIN_CLUSTERS <= self.clusters <= MAX_CLUSTERS:
            raise QuantizeError(f"clusters {self.clusters!r}: expected a whole number from {MIN_CLUSTERS} to {MAX_CLUSTERS}, e.g. 16")
        check_fine_tuning(self.epochs, self.batch_size)


@dataclass(frozen=True)
class ClusterResult:
    """A clustered copy of the model.

    Attributes:
        model: the clustered Keras model (each kernel holds at most `clusters` distinct values).
        clusters (int): shared values per kernel asked for.
        per_layer (dict[str, int]): distinct values of each clustered kernel, by weight path.
        fine_tuned (bool), distillation_loss (float | None): as for pruning.
    """

    model: object
    clusters: int
    per_layer: dict[str, int] = field(default_factory=dict)
    fine_tuned: bool = False
    distillation_loss: float | None = None


def kmeans_1d(values: np.ndarray, k: int, iterations: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """(centroids, index of each value's centroid): Lloyd's k-means on a line, started from `k` values
    evenly spaced between the smallest and largest (the linear start keeps the rare large weights their
    own centroid, which density-based starts lose); an empty cluster restarts at the value farthest
    from its centroid."""
    flat = values.ravel().astype(np.float64)
    low, high = float(flat.min()), float(flat.max())
    if low == high or flat.size <= k:
        centroids = np.unique(flat)
        return centroids, np.searchsorted(centroids, flat).astype(np.int32)
    centroids = np.linspace(low, high, k)
    for _ in range(iterations):
        index = _nearest(centroids, flat)
        counts = np.bincount(index, minlength=len(centroids))
        sums = np.bincount(index, weights=flat, minlength=len(centroids))
        moved = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        for empty in np.flatnonzero(counts == 0):  # an empty cluster restarts at the worst-served value
            worst = int(np.argmax(np.abs(flat - moved[index])))
            moved[empty] = flat[worst]
            index[worst] = empty
        if np.allclose(moved, centroids):
            break
        centroids = moved
    index = _nearest(centroids, flat)
    used = np.unique(index)  # drop empty clusters
    return centroids[used], np.searchsorted(used, index).astype(np.int32)


def _nearest(centroids: np.ndarray, flat: np.ndarray) -> np.ndarray:
    order = np.argsort(centroids)
    ordered = centroids[order]
    cut = np.searchsorted((ordered[1:] + ordered[:-1]) / 2, flat)
    return order[cut]


def cluster(model, settings: ClusterSettings, images: np.ndarray | None = None, labels: np.ndarray | None = None) -> ClusterResult:
    """Cluster a copy of `model`'s Conv/Dense kernels to `settings.clusters` shared values each, then
    fine-tune it on `images` by distillation from `model`; after every step each shared value becomes
    the mean of the weights that share it, so the kernels keep their palettes."""
    check_keras_layers(model)
    student = clone(model)
    kernels = prunable_kernels(student, settings.include_depthwise, settings.exclude)
    if not kernels:
        raise CannotPruneError(f"model {model.name!r} has no Conv/Dense kernels to cluster")
    if settings.epochs and (images is None or len(images) == 0):
        raise QuantizeError("clustering with fine-tuning needs images: pass calibration images, or epochs=0 for one-shot clustering")
    indices = []
    for kernel in kernels:
        centroids, index = kmeans_1d(np.asarray(kernel.numpy()), settings.clusters)
        indices.append((index, len(centroids)))
        kernel.assign(centroids[index].reshape(kernel.shape).astype(np.float32))

    def share() -> None:
        for kernel, (index, count) in zip(kernels, indices):
            flat = np.asarray(kernel.numpy()).ravel().astype(np.float64)
            means = np.bincount(index, weights=flat, minlength=count) / np.maximum(np.bincount(index, minlength=count), 1)
            kernel.assign(means[index].reshape(kernel.shape).astype(np.float32))

    loss = None
    if settings.epochs:
        loss = distil(model, student, images, labels, epochs=settings.epochs, batch_size=settings.batch_size,
                      learning_rate=settings.learning_rate, seed=settings.seed, after_step=share)
    per_layer = {kernel.path: int(np.unique(np.asarray(kernel.numpy())).size) for kernel in kernels}
    return ClusterResult(student, settings.clusters, per_layer, fine_tuned=bool(settings.epochs), distillation_loss=loss)
