"""Numbers with their uncertainty (issue 29): intervals of drift and latency, the three verdicts a budget gets
from one, what a profile says inconclusive means, and latency choices that follow only what the timings
resolve."""

import dataclasses

import numpy as np
import pytest

from mobilepre import intervals
from mobilepre.budgets import LatencyFigure, Measurement, Verdict, judge
from mobilepre.errors import MobilepreError
from mobilepre.profiles import Budget, Drift, Profile
from mobilepre.results import LATENCY_MARGIN, FormatResult, Runoff, Trial
from mobilepre.validate import output_drift


def test_wilson_intervals_match_their_closed_form_and_stay_inside_zero_and_one():
    low, high = intervals.wilson(40, 40)
    assert low == pytest.approx(0.9124, abs=1e-4) and high == pytest.approx(1.0)  # the 40 of 40: below 0.92
    assert intervals.wilson(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    low, high = intervals.wilson(50, 100)
    assert low == pytest.approx(1 - high) and low == pytest.approx(0.4038, abs=1e-4)
    assert intervals.wilson(0, 0) == (0.0, 1.0)


def test_a_median_interval_is_the_binomial_order_statistics():
    runs = list(range(1, 51))  # 1..50 ms
    assert intervals.median_interval(runs) == (18, 33)  # x(18), x(33): the textbook 95% interval for n = 50
    assert intervals.median_interval(reversed(runs)) == (18, 33)
    assert intervals.median_interval([3, 1, 2]) is None  # too few runs for a 95% interval: judged as a point
    with pytest.raises(ValueError):
        intervals.median_interval([])


def test_the_images_that_would_decide_a_share():
    assert intervals.shares_needed(1.0, 0.99, "min") == 381  # every image agreeing: 381 clear 0.99
    assert intervals.shares_needed(0.985, 0.99, "min") > 1000
    assert intervals.shares_needed(0.99, 0.99, "min") is None  # on the limit: no count decides it
    assert intervals.scaled_needed(0.02, 0.0, 0.04, 0.03, 100) == 400  # half-width 0.02 must shrink to 0.01


def test_drift_intervals_are_deterministic_and_hold_their_estimate():
    rng = np.random.default_rng(3)
    reference = rng.random((200, 10))
    candidate = reference + rng.normal(0, 0.05, reference.shape)
    labels = rng.integers(0, 10, 200)
    first = output_drift(reference, candidate, labels, "probabilities", "cls")
    again = output_drift(reference.copy(), candidate.copy(), labels, "probabilities", "cls")
    assert first.to_dict() == again.to_dict() and first.images == 200
    for metric, (low, high) in first.intervals.items():
        assert low <= getattr(first, metric) <= high, metric
    hits = int(round(first.top1_agreement * 200))
    assert first.intervals["top1_agreement"] == intervals.wilson(hits, 200)
    assert "max_abs_error" not in first.intervals  # a maximum over these images is exact, not estimated
    masks = rng.random((12, 8, 8, 3))
    segmentation = output_drift(masks, masks + rng.normal(0, 0.2, masks.shape), kind="segmentation", name="mask")
    low, high = segmentation.intervals["mean_iou"]
    assert low <= segmentation.mean_iou <= high and high - low > 0


def _profile(on_inconclusive="warn", **drift):
    return Profile("p", "A test profile.", ("tflite",), ("float32",), Budget(max_size=10**6, max_latency_ms=10.0),
                   drift=Drift(drift), on_inconclusive=on_inconclusive)


def _measured(top1: float, images: int) -> Measurement:
    hits = round(top1 * images)
    output = {"name": "cls", "kind": "probabilities", "top1_agreement": top1, "images": images,
              "intervals": {"top1_agreement": list(intervals.wilson(hits, images))}}
    return Measurement(100, 90, (output,))


LATENCY = LatencyFigure(1.0, "host", interval=(0.9, 1.1), runs=50)


def test_a_budget_judged_on_few_images_is_inconclusive_and_says_how_many_would_decide_it():
    verdict = judge(_profile(min_top1_agreement=0.99), _measured(1.0, 40), LATENCY)
    check = verdict.check("min_top1_agreement")
    assert check.inconclusive and check.passed and check.needed == 381  # "warn": the figure decides, flagged
    assert "inconclusive, about 381 validation images would decide it" in check.message
    assert verdict.passed and verdict.warnings == [check.message]
    assert "inconclusive at 95%: min_top1_agreement[cls] ~381 images" in verdict.note
    assert check.to_dict()["outcome"] == "inconclusive" and check.to_dict()["needed"] == 381
    assert Verdict.from_dict(verdict.to_dict()).to_dict() == verdict.to_dict()
    clear = judge(_profile(min_top1_agreement=0.99), _measured(1.0, 400), LATENCY).check("min_top1_agreement")
    assert clear.outcome == "pass" and not clear.inconclusive and clear.needed is None


@pytest.mark.parametrize("policy, top1, passed", [
    ("warn", 1.0, True), ("warn", 0.975, False),  # straddling: the measured figure decides
    ("fail", 1.0, False), ("fail", 0.975, False),  # only a cleared budget passes
    ("pass", 1.0, True), ("pass", 0.975, True),  # only a missed budget fails
])
def test_what_inconclusive_means_is_the_profiles_choice(policy, top1, passed):
    check = judge(_profile(policy, min_top1_agreement=0.98), _measured(top1, 40), LATENCY).check("min_top1_agreement")
    assert check.inconclusive and check.passed is passed


def test_an_interval_on_the_wrong_side_fails_whatever_the_profile_says():
    check = judge(_profile("pass", min_top1_agreement=0.99), _measured(0.5, 40), LATENCY).check("min_top1_agreement")
    assert check.outcome == "fail" and not check.passed and check.gap > 0


def test_latency_budgets_get_the_same_three_verdicts_from_the_timed_runs():
    profile = _profile("fail", min_top1_agreement=0.5)
    near = judge(profile, _measured(1.0, 40), LatencyFigure(9.8, "host", interval=(9.5, 10.4), runs=50)).check("max_latency_ms")
    assert near.inconclusive and not near.passed and "timed runs would decide it" in near.message
    assert judge(profile, _measured(1.0, 40), LatencyFigure(5.0, "host", interval=(4.9, 5.1), runs=50)).check("max_latency_ms").passed
    estimate = judge(profile, _measured(1.0, 40), LatencyFigure(9.8, "estimate")).check("max_latency_ms")
    assert estimate.passed and estimate.outcome is None  # an estimate has no spread: judged as a point


def test_on_inconclusive_is_checked_and_written_only_when_not_the_default():
    with pytest.raises(MobilepreError, match="on_inconclusive 'maybe' is not valid"):
        _profile("maybe")
    assert "on_inconclusive" not in _profile().to_dict() and _profile("fail").to_dict()["on_inconclusive"] == "fail"
    assert Profile.from_dict(_profile("fail").to_dict()).on_inconclusive == "fail"


def _trial(key: str, ms: float, spread: float) -> Trial:
    latency = LatencyFigure(ms, "host", interval=(ms - spread, ms + spread), runs=50)
    return Trial(key, "tflite", key, "float32", 0.0, 100, 90, (), latency, Verdict(()))


def test_a_latency_choice_ships_the_first_in_search_order_among_candidates_the_timings_cannot_order():
    tied = FormatResult("p", "tflite", (_trial("float32", 1.10, 0.02), _trial("float16", 1.30, 0.02), _trial("int8", 1.00, 0.02)), "latency")
    assert tied.chosen.candidate == "float32"  # 10% apart: within the margin
    assert [t.candidate for t in tied.latency_tied] == ["float32", "int8"]
    assert tied.to_dict()["latency_tied"] == ["float32", "int8"]
    overlapping = FormatResult("p", "tflite", (_trial("float32", 2.0, 0.8), _trial("int8", 1.0, 0.3)), "latency")
    assert overlapping.chosen.candidate == "float32"  # 2x apart, but the intervals overlap
    resolved = FormatResult("p", "tflite", (_trial("float32", 1.0 + 2 * LATENCY_MARGIN, 0.01), _trial("int8", 1.0, 0.01)), "latency")
    assert resolved.chosen.candidate == "int8" and "latency_tied" not in resolved.to_dict()
    stable = tied.without_host_figures()
    assert stable.chosen.candidate == "float32" and "latency_tied" not in stable.to_dict()  # host figures stay in timings.json
    assert FormatResult.from_dict(tied.to_dict()).to_dict()["latency_tied"] == ["float32", "int8"]


def test_a_runoff_pairs_rounds_so_a_load_both_candidates_meet_cannot_reorder_them():
    rng = np.random.default_rng(7)
    load = rng.choice([1.0, 1.0, 3.0, 6.0], size=15)  # each round's load, met by every candidate in it
    noise = lambda: rng.uniform(0.97, 1.03, size=15)  # noqa: E731
    runoff = Runoff({"float32": tuple(0.41 * load * noise()), "float16": tuple(0.21 * load * noise()),
                     "int8": tuple(0.14 * load * noise()), "dynamic": tuple(0.15 * load * noise())})
    assert runoff.fastest() == "int8"
    ratios = runoff.ratios()
    assert ratios["float16"][1] > 1 + LATENCY_MARGIN and ratios["float32"][0] == pytest.approx(0.41 / 0.14, rel=0.05)
    assert runoff.tied() == ["int8", "dynamic"]  # 7% apart: within the margin; float16 1.5x: resolved
    trials = tuple(_trial(k, 1.0, 0.01) for k in ("float32", "float16", "dynamic", "int8"))
    # their own timings (all 1.0 ms) would tie all four; the run-off decides
    result = FormatResult("p", "tflite", trials, "latency", runoff=runoff)
    assert result.chosen.candidate == "dynamic" and [t.candidate for t in result.latency_tied] == ["dynamic", "int8"]
    entry = result.to_dict()
    assert entry["runoff"]["rounds"] == 15 and entry["latency_tied"] == ["dynamic", "int8"]
    assert FormatResult.from_dict(entry).chosen.candidate == "dynamic"
    assert "runoff" not in result.without_host_figures().to_dict()  # host figures: timings.json only
    for bad in ({}, {"round_medians_ms": {"a": []}}, {"round_medians_ms": {"a": [1.0], "b": [1.0, 2.0]}},
                {"round_medians_ms": {"a": ["1"]}}, {"round_medians_ms": {"a": [0.0]}}, {"round_medians_ms": {"a": [float("nan")]}}):
        with pytest.raises(ValueError):  # a damaged timings.json or cache entry: refused, never a traceback or a choice
            Runoff.from_dict(bad)
    # rounds that cannot order them (each faster in half the rounds): tied whatever their medians
    flip = Runoff({"a": (1.0, 2.0) * 5, "b": (2.0, 1.0) * 5})
    assert sorted(flip.tied()) == ["a", "b"]


def test_a_latency_figure_round_trips_with_its_interval_and_drops_it_with_the_host_figures():
    figure = LatencyFigure(1.5, "host", {"threads": 2}, interval=(1.4, 1.7), runs=50)
    assert LatencyFigure.from_dict(figure.to_dict()) == figure
    assert figure.without_host_figures() == LatencyFigure(None, "host", {"threads": 2})
    assert dataclasses.replace(figure, source="estimate").without_host_figures().ms == 1.5
