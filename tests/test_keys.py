"""`mobilepre.keys`: every cache key derived from one BuildContext; each thing a result depends on changes its key."""

import dataclasses
from types import SimpleNamespace

import numpy as np

from mobilepre.candidates import Candidate
from mobilepre.keys import BuildContext, candidate_key, loaded_key, reference_key
from mobilepre.profiles import Budget, Drift, Profile

SOURCE = SimpleNamespace(identity="model-sha", stages={"rescale": None, "luma": True}, input_dtype="uint8", input_shape=(32, 32, 3))
DATA = {"calibration": {"sha256": "cal"}, "validation": {"sha256": "val"}}
CONTEXT = dataclasses.replace(BuildContext.of(SOURCE, DATA, np.arange(4)), outputs=({"name": "cls", "kind": "probabilities"},),
                              sdk={"name": "demo"})
INT8 = Candidate("tflite", "int8")


def key(context=CONTEXT, candidate=INT8, shard=4 << 20, epochs=30, profile=None):
    return candidate_key(context, candidate, shard, epochs, profile)


def test_the_same_context_gives_the_same_keys():
    again = dataclasses.replace(BuildContext.of(SOURCE, DATA, np.arange(4)), outputs=CONTEXT.outputs, sdk=CONTEXT.sdk)
    assert key(again) == key() and reference_key(again) == reference_key(CONTEXT)


def test_each_part_of_the_context_changes_a_candidates_key():
    for field, value in (("model", "other"), ("stages", None), ("input_shape", (64, 64, 3)), ("calibration_sha256", "x"),
                         ("validation_sha256", "x"), ("labels_sha256", None), ("outputs", ()), ("sdk", None),
                         ("toolchain", {"tensorflow": "0"}), ("code", "x"), ("system", "x")):
        assert key(dataclasses.replace(CONTEXT, **{field: value})) != key(), field


def test_the_reference_depends_on_model_stages_images_and_toolchain_only():
    assert reference_key(dataclasses.replace(CONTEXT, calibration_sha256="x", labels_sha256=None, outputs=(), sdk=None)) == reference_key(CONTEXT)
    assert reference_key(dataclasses.replace(CONTEXT, validation_sha256="x")) != reference_key(CONTEXT)


def test_what_makes_a_candidate_changes_its_key():
    keys = {key(candidate=c) for c in (INT8, Candidate("tflite", "int8", "uint8"), Candidate("tflite", "int8", sparsity=0.5),
                                        Candidate("tflite", "int8", clusters=16), Candidate("tflite", "int8", qat=True))}
    assert len(keys) == 5
    pruned = Candidate("tflite", "int8", sparsity=0.5)
    assert key(candidate=pruned, epochs=2) != key(candidate=pruned) and key(epochs=2) == key()  # epochs count for fine-tuned ones only
    tfjs = Candidate("tfjs", "uint8")
    assert key(candidate=tfjs, shard=1 << 20) != key(candidate=tfjs) and key(shard=1 << 20) == key()
    mixed = Candidate("tflite", "mixed", target="p")
    loose = Profile("p", "A test profile.", ("tflite",), ("int4", "int8", "mixed"), Budget(max_size=1 << 20), drift=Drift(min_top1_agreement=0.9))
    strict = dataclasses.replace(loose, drift=Drift(min_top1_agreement=0.99))
    assert key(candidate=mixed, profile=loose) != key(candidate=mixed, profile=strict)


def test_a_loaded_model_key_is_the_files_bytes(tmp_path):
    model = tmp_path / "m.keras"
    model.write_bytes(b"one")
    first = loaded_key(model, None, False)
    assert loaded_key(model, None, True) != first and loaded_key(model, (8, 8, 3), False) != first
    model.write_bytes(b"two")
    assert loaded_key(model, None, False) != first
