"""`mobilepre.candidates`: what a profile allows is one rule, the search tries only that, and `check` applies it."""

from dataclasses import replace

import pytest

from mobilepre.candidates import Candidate, allowed_problem, candidates_for
from mobilepre.profiles import default_profiles_dir, load_profiles

SHIPPED = load_profiles(default_profiles_dir())


@pytest.mark.parametrize("profile", SHIPPED, ids=lambda p: p.name)
def test_every_candidate_of_a_shipped_profile_is_allowed_by_it(profile):
    found = candidates_for(profile)
    assert found and all(found.values())
    for candidates in found.values():
        for c in candidates:
            assert allowed_problem(profile, c.fmt, c.mode, c.io_type, c.sparsity, c.clusters) is None, c.key
        assert len({c.key for c in candidates}) == len(candidates)  # each tried once


def test_what_a_profile_does_not_allow_is_named():
    profile = next(p for p in SHIPPED if p.name == "npu-int8")  # full int8 with uint8 I/O only
    assert "no longer allows the tfjs format" in allowed_problem(profile, "tfjs", "float32")
    assert "no longer allows tflite float16" in allowed_problem(profile, "tflite", "float16")
    assert allowed_problem(profile, "tflite", "int8", "float32") == f"its I/O type is float32, profile {profile.name} wants uint8"
    assert "max_sparsity" in allowed_problem(profile, "tflite", "int8", "uint8", sparsity=0.99)
    assert "no clustering" in allowed_problem(replace(profile, min_clusters=0), "tflite", "int8", "uint8", clusters=16)
    assert allowed_problem(profile, "tflite", "int8", "uint8") is None


def test_candidate_keys_name_what_makes_them():
    assert Candidate("tflite", "int8", "uint8", 0.5).key == "tflite-int8-uint8io-s50"
    assert Candidate("tfjs", "uint8", clusters=16).key == "tfjs-uint8-c16"
    assert Candidate("tflite", "mixed", target="ios").key == "tflite-mixed@ios"
