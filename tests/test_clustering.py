"""Weight clustering: k-means palettes, fine-tuning that keeps them, and what they do to a download."""

import numpy as np
import pytest

from mobilepre import quantize
from mobilepre.candidates import candidates_for
from mobilepre.candidates import allowed_problem
from mobilepre.errors import MobilepreError
from mobilepre.profiles import Budget, Profile
from mobilepre.quantize.clustering import kmeans_1d
from mobilepre.quantize.pruning import prunable_kernels


def test_kmeans_on_a_line_finds_the_groups_and_keeps_an_outlier():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(-1, 0.01, 500), rng.normal(0.5, 0.01, 500), [8.0]])
    centroids, index = kmeans_1d(values, 3)
    assert sorted(np.round(centroids, 1)) == [-1.0, 0.5, 8.0]
    assert np.abs(centroids[index] - values).max() < 0.05
    few = np.array([1.0, 1.0, 2.0])
    centroids, index = kmeans_1d(few, 16)  # fewer distinct values than clusters: each keeps its own
    assert np.array_equal(centroids[index], few)


def test_settings_are_checked():
    for bad in (1, 257, 16.0, "16"):
        with pytest.raises(quantize.QuantizeError, match="clusters"):
            quantize.ClusterSettings(bad)
    with pytest.raises(quantize.QuantizeError, match="epochs"):
        quantize.ClusterSettings(16, epochs=-1)


def test_clustering_fine_tunes_a_copy_and_keeps_each_kernel_to_its_palette(tiny_model, tiny_images):
    before = [np.array(w) for w in tiny_model.get_weights()]
    result = quantize.cluster(tiny_model, quantize.ClusterSettings(8, epochs=2), tiny_images)
    assert result.fine_tuned and np.isfinite(result.distillation_loss)
    assert all(1 < n <= 8 for n in result.per_layer.values()) and len(result.per_layer) == len(prunable_kernels(tiny_model))
    for kernel in prunable_kernels(result.model):
        assert np.unique(np.asarray(kernel.numpy())).size <= 8
    assert all(np.array_equal(a, b) for a, b in zip(before, tiny_model.get_weights()))  # the source is untouched


def test_a_clustered_int8_model_costs_less_to_download_and_still_runs(tiny_model, tiny_images):
    from tests.conftest import litert_run

    plain = quantize.convert(tiny_model, quantize.QuantizationSettings("tflite", "int8"), tiny_images)
    clustered_model = quantize.cluster(tiny_model, quantize.ClusterSettings(4, epochs=0)).model
    clustered = quantize.convert(clustered_model, quantize.QuantizationSettings("tflite", "int8"), tiny_images)
    assert clustered.size_bytes == plain.size_bytes and clustered.gzip_bytes < plain.gzip_bytes
    assert np.isfinite(litert_run(clustered.files["model.tflite"], tiny_images[:4])).all()


def test_a_model_without_kernels_cannot_be_clustered(keras):
    inputs = keras.Input((8, 8, 1))
    pooling_only = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    with pytest.raises(quantize.CannotPruneError, match="no Conv/Dense kernels to cluster"):
        quantize.cluster(pooling_only, quantize.ClusterSettings(4, epochs=0))


def _profile(**kwargs) -> Profile:
    return Profile("p", "A test profile.", ("tflite", "tfjs"), ("float32", "int8", "uint8"), Budget(1 << 20), **kwargs)


def test_clustered_candidates_come_after_pruning_down_to_min_clusters():
    keys = [c.key for c in candidates_for(_profile(max_sparsity=0.5, min_clusters=16))[quantize.Format.TFJS]]
    assert keys == ["tfjs-float32", "tfjs-uint8", "tfjs-uint8-s25", "tfjs-uint8-s50", "tfjs-uint8-c64", "tfjs-uint8-c16"]
    keys = [c.key for c in candidates_for(_profile(min_clusters=32))[quantize.Format.TFLITE]]
    assert keys == ["tflite-float32", "tflite-int8", "tflite-int8-c64", "tflite-int8-c32"]
    assert [c.key for c in candidates_for(_profile())[quantize.Format.TFLITE]] == ["tflite-float32", "tflite-int8"]


@pytest.mark.parametrize("value", [1, 257, -1, 16.5])
def test_min_clusters_is_zero_or_two_to_256(value):
    with pytest.raises(MobilepreError, match="min_clusters"):
        _profile(min_clusters=value)


def test_check_refuses_a_clustered_artifact_the_profile_does_not_allow():
    artifact = ("tflite", "int8", "float32", 0.0, 16)  # format, quantization, io_type, sparsity, clusters
    assert "allows no clustering" in allowed_problem(_profile(), *artifact)
    assert "allows min_clusters 32" in allowed_problem(_profile(min_clusters=32), *artifact)
    assert allowed_problem(_profile(min_clusters=16), *artifact) is None
