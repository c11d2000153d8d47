"""`mobilepre.budgets.judge`: one pure verdict per candidate and profile, shared by build and check."""

import math

import pytest

from mobilepre.budgets import BudgetCheck, LatencyFigure, Measurement, Verdict, judge
from mobilepre.metrics import TOLERANCES
from mobilepre.profiles import Budget, Drift, OutputBudget, Profile
from mobilepre.validate import OutputDrift


def profile(outputs=None, **budget_and_drift):
    budget = {k: v for k, v in budget_and_drift.items() if k in Budget.__dataclass_fields__}
    drift = {k: v for k, v in budget_and_drift.items() if k in TOLERANCES}
    return Profile("p", "A test profile.", ("tflite",), ("float32", "int8"), Budget(**budget), drift=Drift(drift, outputs))


def scores(**metrics):
    """One class-score output named `cls` with these metrics."""
    return ({"name": "cls", "kind": "probabilities", **metrics},)


def test_every_budget_met_passes_with_zero_gaps():
    verdict = judge(profile(max_size=1000, max_compressed_size=800, min_top1_agreement=0.9),
                    Measurement(900, 700, scores(top1_agreement=0.95)))
    assert verdict.passed and verdict.gap == 0.0 and verdict.failures == []
    assert [c.name for c in verdict.checks] == ["max_size", "max_compressed_size", "min_top1_agreement"]
    assert verdict.check("max_size") == BudgetCheck("max_size", 900, 1000, "B", True, 0.0, "measured")


def test_each_failure_names_value_limit_and_relative_gap():
    verdict = judge(profile(max_size=1000, max_latency_ms=10.0, min_top1_agreement=0.9, max_abs_error=0.5),
                    Measurement(1500, 1400, scores(top1_agreement=0.45, max_abs_error=0.25)),
                    LatencyFigure(12.5, "host", {"threads": 2}))
    assert not verdict.passed
    assert verdict.check("max_size").gap == pytest.approx(0.5)
    assert verdict.check("max_latency_ms").gap == pytest.approx(0.25) and verdict.check("max_latency_ms").source == "host"
    assert verdict.check("min_top1_agreement").gap == pytest.approx(0.5)
    assert verdict.check("max_abs_error").passed
    assert verdict.gap == pytest.approx(0.5)
    assert verdict.failures == [
        "max_size: 1,500 B vs 1,000 B (measured)",
        "max_latency_ms: 12.500 ms vs 10.000 ms (host)",
        "min_top1_agreement[cls]: 0.45 vs 0.9 (measured)",
    ]


def test_a_metric_not_measured_fails_with_an_unbounded_gap_but_accuracy_needs_labels():
    strict = profile(max_size=1000, min_top1_agreement=0.9, max_accuracy_drop=0.01)
    verdict = judge(strict, Measurement(10, 10, scores(cosine=1.0)))
    top1 = verdict.check("min_top1_agreement")
    assert not top1.passed and math.isinf(top1.gap) and "top1_agreement was not measured" in top1.message
    assert verdict.check("max_accuracy_drop") is None  # no labels: documented as not checked
    with_labels = judge(strict, Measurement(10, 10, scores(top1_agreement=1.0), labels=True))
    assert not with_labels.check("max_accuracy_drop").passed


def test_latency_figure_is_obtained_before_judging_never_by_it():
    timed = profile(max_size=1000, max_latency_ms=5.0)
    with pytest.raises(ValueError, match="obtain the latency figure"):
        judge(timed, Measurement(10, 10))
    skipped = judge(timed, Measurement(10, 10), LatencyFigure(None, "host", skipped=True, missing="not measured (--no-measure)"))
    assert skipped.passed and skipped.check("max_latency_ms").source == "not measured"
    missing = judge(timed, Measurement(10, 10), LatencyFigure(None, "device", missing="no device timing for x"))
    assert not missing.passed and "no device timing" in missing.failures[0]


def test_an_unusable_candidate_fails_whatever_its_numbers():
    verdict = judge(profile(max_size=1000), Measurement(0, 0, error="TF.js could not run it"))
    assert not verdict.passed and math.isinf(verdict.gap) and verdict.failures == ["unusable: TF.js could not run it"]


def test_host_latency_is_blanked_for_byte_stable_files_but_keeps_its_outcome():
    verdict = judge(profile(max_size=1000, max_latency_ms=5.0), Measurement(10, 10), LatencyFigure(7.0, "host"))
    stable = verdict.without_host_figures()
    assert stable.check("max_latency_ms").value is None and not stable.passed
    assert "over budget on the build host" in stable.failures[0]


def test_peak_memory_is_a_budget_blanked_like_host_latency():
    budget = profile(max_size=1000, max_peak_memory=4096)
    within = judge(budget, Measurement(10, 10, peak_memory_bytes=4000))
    over = judge(budget, Measurement(10, 10, peak_memory_bytes=8192, peak_memory_source="measured"))
    unknown = judge(budget, Measurement(10, 10))
    assert within.passed and within.check("max_peak_memory").value == 4000
    assert over.failures == ["max_peak_memory: 8,192 B vs 4,096 B (measured)"] and over.check("max_peak_memory").gap == 1.0
    assert not unknown.passed and "not measured on this platform" in unknown.failures[0]
    # LiteRT's resident memory differs by host: byte-stable files keep the outcome; TF.js's exact figure stays
    assert within.without_host_figures().check("max_peak_memory").value is None and within.without_host_figures().passed
    assert over.without_host_figures().check("max_peak_memory").value == 8192
    assert judge(profile(max_size=1000), Measurement(10, 10, peak_memory_bytes=10**9)).check("max_peak_memory") is None


def test_verdicts_round_trip_through_json_shapes():
    verdict = judge(profile(max_size=1000, max_latency_ms=5.0, min_cosine=0.99),
                    Measurement(1200, 10, scores(cosine=0.5)), LatencyFigure(None, "device", missing="no timing"))
    assert Verdict.from_dict(verdict.to_dict()) == verdict


def test_one_table_names_every_drift_metric():
    metrics = set(OutputDrift.__dataclass_fields__)
    assert {t.metric for t in TOLERANCES.values()} <= metrics
    assert Drift(min_top1_agreement=0.5) == Drift({"min_top1_agreement": 0.5})
    with pytest.raises(Exception, match="did you mean 'min_top1_agreement'"):
        Drift(min_top1_agreemnt=0.5)


# --- drift per output, by what the output means -------------------------------------------------------


DETECTOR = (
    {"name": "box", "kind": "regression", "max_abs_error": 0.4, "relative_error": 0.01, "cosine": 0.999, "top1_agreement": 0.87},
    {"name": "landmarks", "kind": "regression", "max_abs_error": 0.2, "relative_error": 0.02, "cosine": 0.999},
    {"name": "face", "kind": "probabilities", "top1_agreement": 1.0, "max_abs_error": 0.01, "cosine": 1.0},
)


def test_a_class_score_budget_is_never_applied_to_a_regression_output():
    """The detector case: top-1 of the box regression (0.87) is not a budget; the face scores' top-1 is."""
    verdict = judge(profile(max_size=10**6, min_top1_agreement=0.97, min_cosine=0.99), Measurement(10, 10, DETECTOR))
    assert verdict.passed
    assert [c.label for c in verdict.checks if c.name == "min_top1_agreement"] == ["min_top1_agreement[face]"]
    assert sorted(c.output for c in verdict.checks if c.name == "min_cosine") == ["box", "face", "landmarks"]


def test_per_output_budgets_replace_the_defaults_for_that_output():
    tight_box = {"box": OutputBudget((("max_relative_error", 0.005),), "regression")}
    verdict = judge(profile(tight_box, max_size=10**6, min_top1_agreement=0.97), Measurement(10, 10, DETECTOR))
    assert not verdict.passed and verdict.failures == ["max_relative_error[box]: 0.01 vs 0.005 (measured)"]


def test_a_budget_with_no_meaning_for_the_declared_kind_is_refused_when_read():
    with pytest.raises(Exception, match="min_top1_agreement has no meaning for a regression output"):
        OutputBudget((("min_top1_agreement", 0.9),), "regression")


def test_one_table_names_every_drift_metric_and_every_kind_has_budgets():
    from mobilepre.metrics import OutputKind

    metrics = set(OutputDrift.__dataclass_fields__)
    assert {t.metric for t in TOLERANCES.values()} <= metrics
    for kind in OutputKind:
        assert any(kind in t.kinds for t in TOLERANCES.values() if t.kinds != frozenset(OutputKind)) or kind in (OutputKind.REGRESSION, OutputKind.PROBABILITY_MAP)  # their error, as every kind
