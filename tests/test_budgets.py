"""`mobilepre.budgets.judge`: one pure verdict per candidate and profile, shared by build and check."""

import math

import pytest

from mobilepre.budgets import BudgetCheck, LatencyFigure, Measurement, Verdict, judge
from mobilepre.metrics import TOLERANCES
from mobilepre.profiles import Budget, Drift, Profile
from mobilepre.validate import OutputDrift


def profile(**budget_and_drift):
    budget = {k: v for k, v in budget_and_drift.items() if k in Budget.__dataclass_fields__}
    drift = {k: v for k, v in budget_and_drift.items() if k in TOLERANCES}
    return Profile("p", "A test profile.", ("tflite",), ("float32", "int8"), Budget(**budget), drift=Drift(drift))


def test_every_budget_met_passes_with_zero_gaps():
    verdict = judge(profile(max_size=1000, max_compressed_size=800, min_top1_agreement=0.9),
                    Measurement(900, 700, {"top1_agreement": 0.95}))
    assert verdict.passed and verdict.gap == 0.0 and verdict.failures == []
    assert [c.name for c in verdict.checks] == ["max_size", "max_compressed_size", "min_top1_agreement"]
    assert verdict.check("max_size") == BudgetCheck("max_size", 900, 1000, "B", True, 0.0, "measured")


def test_each_failure_names_value_limit_and_relative_gap():
    verdict = judge(profile(max_size=1000, max_latency_ms=10.0, min_top1_agreement=0.9, max_abs_error=0.5),
                    Measurement(1500, 1400, {"top1_agreement": 0.45, "max_abs_error": 0.25}),
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
        "min_top1_agreement: 0.45 vs 0.9 (measured)",
    ]


def test_a_metric_not_measured_fails_with_an_unbounded_gap_but_accuracy_needs_labels():
    strict = profile(max_size=1000, min_top1_agreement=0.9, max_accuracy_drop=0.01)
    verdict = judge(strict, Measurement(10, 10, {"cosine": 1.0}))
    top1 = verdict.check("min_top1_agreement")
    assert not top1.passed and math.isinf(top1.gap) and "needs a class-score output" in top1.message
    assert verdict.check("max_accuracy_drop") is None  # no labels: documented as not checked
    with_labels = judge(strict, Measurement(10, 10, {"top1_agreement": 1.0}, labels=True))
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
    stable = verdict.without_host_latency()
    assert stable.check("max_latency_ms").value is None and not stable.passed
    assert "over budget on the build host" in stable.failures[0]


def test_verdicts_round_trip_through_json_shapes():
    verdict = judge(profile(max_size=1000, max_latency_ms=5.0, min_cosine=0.99),
                    Measurement(1200, 10, {"cosine": 0.5}), LatencyFigure(None, "device", missing="no timing"))
    assert Verdict.from_dict(verdict.to_dict()) == verdict


def test_one_table_names_every_drift_metric():
    metrics = set(OutputDrift.__dataclass_fields__)
    assert {t.metric for t in TOLERANCES.values()} <= metrics
    assert Drift(min_top1_agreement=0.5) == Drift({"min_top1_agreement": 0.5})
    with pytest.raises(Exception, match="did you mean 'min_top1_agreement'"):
        Drift(min_top1_agreemnt=0.5)
