"""`mobilepre.search`: the search order, choices by preference and the rounds, with a fake measure function
(no TensorFlow: what each candidate measures is a table)."""

from types import SimpleNamespace

from mobilepre.measured import Measured
from mobilepre.metrics import OutputDrift, OutputKind
from mobilepre.profiles import Budget, Drift, Profile
from mobilepre.results import Runoff
from mobilepre.runtimes import Latency
from mobilepre.search import search

# candidate key -> (bytes, gzip bytes, top-1 agreement, host latency ms)
TABLE = {
    "tflite-float32": (180_000, 160_000, 1.0, 0.40),
    "tflite-float16": (94_000, 80_000, 1.0, 0.41),
    "tflite-dynamic": (50_000, 44_000, 0.99, 0.30),
    "tflite-int8": (54_000, 46_000, 0.97, 0.10),
    "tflite-int8-qat": (54_000, 46_000, 0.995, 0.10),
    "tflite-int8-s25": (54_000, 38_000, 0.965, 0.10),
    "tflite-int8-s50": (54_000, 30_000, 0.96, 0.10),
}


def measured(candidate) -> Measured:
    """What the table says `candidate` measures: the one measured-candidate type, made without a runtime."""
    size, gzip, top1, _ = TABLE[candidate.key]
    drift = OutputDrift("cls", OutputKind.PROBABILITIES, 0.1, 0.01, 0.01, 0.02, 40.0, 0.99, top1_agreement=top1)
    return Measured(candidate, {}, size, gzip, candidate.sparsity, (drift,))


class FakeEvaluator:
    """What `search` asks of a measurer: measure these candidates, then their host latency."""

    labels = None
    source = SimpleNamespace(macs=1_000_000)

    def __init__(self):
        self.measured, self.rounds, self.runoffs = {}, [], []

    def measure_many(self, candidates, jobs=1):
        self.rounds.append(sorted(c.key for c in candidates))
        for c in candidates:
            if c not in self.measured:
                self.measured[c] = measured(c)

    def host_latency(self, measured, threads, runs=50, browser=None):
        ms = TABLE[measured.key][3]
        return Latency(ms, ms, runs, 0, threads, "litert")

    def runoff(self, keys, threads, backend=None):
        assert backend is None  # these lanes are host-timed LiteRT
        self.runoffs.append(list(keys))
        return Runoff({k: (TABLE[k][3],) * 6 for k in keys})


def profile(name, prefer="fidelity", max_size=1 << 20, top1=0.98, **extra):
    budget = Budget(max_size=max_size, max_latency_ms=extra.pop("max_latency_ms", None), **extra)
    return Profile(name, "test", ("tflite",), ("float32", "float16", "dynamic", "int8"), budget,
                   drift=Drift(min_top1_agreement=top1), prefer=prefer, max_sparsity=0.5)


def chosen(results, name):
    return next(r for r in results if r.profile == name).chosen


def test_fidelity_takes_the_first_that_passes_and_stops():
    evaluator = FakeEvaluator()
    results = search([profile("roomy"), profile("tight", max_size=60_000)], evaluator, None, 5, None)
    assert chosen(results, "roomy").candidate == "tflite-float32"
    assert chosen(results, "tight").candidate == "tflite-dynamic"  # float16 is over 60,000 B
    tried = [t.candidate for t in next(r for r in results if r.profile == "roomy").tried]
    assert tried == ["tflite-float32"]  # stopped at the first pass
    assert evaluator.rounds[0] == ["tflite-float32", "tflite-float32"]  # one round offers each lane's next


def test_int8_qat_is_tried_only_when_calibrated_int8_missed_drift():
    results = search([profile("strict", max_size=55_000, top1=0.99)], FakeEvaluator(), None, 5, None)
    result = results[0]
    assert [t.candidate for t in result.tried] == ["tflite-float32", "tflite-float16", "tflite-dynamic"]  # dynamic fits first
    results = search([profile("int8-only", max_size=55_000, top1=0.99, max_compressed_size=40_000)], FakeEvaluator(), None, 5, None)
    tried = [t.candidate for t in results[0].tried]
    assert "tflite-int8-qat" in tried and results[0].chosen is None
    qat = next(t for t in results[0].tried if t.candidate == "tflite-int8-qat")
    assert qat.qat["baseline"] == "tflite-int8" and qat.qat["missed_before"]


def test_latency_and_size_preferences_compare_every_passing_candidate():
    evaluator = FakeEvaluator()
    results = search([profile("fast", prefer="latency", top1=0.95, max_latency_ms=1.0), profile("small", prefer="size", top1=0.95)], evaluator, None, 5, None)
    assert chosen(results, "fast").candidate == "tflite-int8"
    # the passing candidates of the latency profile, timed against each other once more: the size one has none
    fast = next(r for r in results if r.profile == "fast")
    assert evaluator.runoffs == [[t.candidate for t in fast.tried if t.passed]] and len(evaluator.runoffs[0]) >= 4
    assert chosen(results, "small").candidate == "tflite-dynamic"


def test_nothing_fits_names_the_closest_candidate():
    results = search([profile("impossible", max_size=10_000)], FakeEvaluator(), None, 5, None)
    assert results[0].chosen is None and results[0].closest.candidate == "tflite-dynamic"
    assert results[0].closest.verdict.failures == ["max_size: 50,000 B vs 10,000 B (measured)"]


def test_the_build_table_aligns_long_candidate_keys():
    from mobilepre.budgets import Verdict
    from mobilepre.results import BuildResult, FormatResult, ProfileResult, Trial

    def trial(key):
        return Trial(key, "tflite", "int8", "float32", 0.5, 1000, 900, (), None, Verdict())

    keys = {"a": "tflite-int8", "b-device-with-a-long-name": "tflite-int8-uint8io-s50-c16-qat-long"}
    profiles = tuple(ProfileResult(name, None, (FormatResult(name, "tflite", (trial(key),)),)) for name, key in keys.items())
    table = BuildResult("out", profiles, (), 0, 0, {}).to_text().splitlines()
    ends = {line.index("1,000") + len("1,000") for line in table[1:3]}
    assert ends == {table[0].index("bytes") + len("bytes")}  # every row's bytes under the header's


def test_a_web_profile_ships_one_runtime_chosen_by_its_preference():
    """TF.js and LiteRT.js are alternatives: by total download (model and runtime, gzip) for "size", by
    latency for "latency", by the share of drift budgets used for "fidelity"; a runtime with no
    candidate within budget leaves the other; the bundle ships only the one chosen, and the choice names
    its figures."""
    from mobilepre.budgets import BudgetCheck, LatencyFigure, Verdict
    from mobilepre.results import FormatResult, ProfileResult, Trial, web_choice
    from mobilepre.web_bundle import runtime_download

    def trial(fmt, gzip, ms, top1, passed=True):
        check = BudgetCheck("min_top1_agreement", top1, 0.9, "", passed, 0.0 if passed else 0.5, "measured", output="y")
        return Trial(f"{fmt}-float32", fmt, "float32", "float32", 0.0, 2 * gzip, gzip, (), LatencyFigure(ms, "browser"), Verdict((check,)))

    tfjs = FormatResult("p", "tfjs", (trial("tfjs", 100_000, 2.0, 0.99),))
    lite = FormatResult("p", "litertjs", (trial("litertjs", 60_000, 0.5, 0.95),))
    size = web_choice((tfjs, lite), "size")
    assert size["format"] == "tfjs" and size["compared"]["tfjs"]["download_bytes"] == 100_000 + runtime_download("tfjs")[1]
    assert size["why"].startswith("smaller total download") and "litertjs 2," in size["why"]
    assert web_choice((tfjs, lite), "latency")["format"] == "litertjs"
    fidelity = web_choice((tfjs, lite), "fidelity")
    assert fidelity["format"] == "tfjs" and fidelity["compared"]["tfjs"]["drift_use"] == 0.1 and fidelity["compared"]["litertjs"]["drift_use"] == 0.5
    failed = FormatResult("p", "tfjs", (trial("tfjs", 100_000, 2.0, 0.5, passed=False),))
    only = web_choice((failed, lite), "size")
    assert only["format"] == "litertjs" and only["why"] == "the only web runtime with a candidate within budget (tfjs: none)"
    tflite = FormatResult("p", "tflite", (trial("tflite", 50_000, 0.3, 0.99),))
    result = ProfileResult("p", None, (tflite, failed, lite))
    assert result.passed and [f.format for f in result.shipped] == ["tflite", "litertjs"]
    assert result.set_aside("tfjs").startswith("not shipped: litertjs chosen") and result.set_aside("litertjs") is None
    assert not ProfileResult("p", None, (tflite, failed)).passed


def test_a_candidate_ten_times_slower_than_the_fastest_stays_out_of_the_runoff_and_is_not_tied(monkeypatch):
    monkeypatch.setitem(TABLE, "tflite-float32", (180_000, 160_000, 1.0, 2.0))  # 20x int8's 0.10 ms
    evaluator = FakeEvaluator()
    results = search([profile("fast", prefer="latency", top1=0.95, max_latency_ms=5.0)], evaluator, None, 5, None)
    (runoff,) = evaluator.runoffs
    assert "tflite-float32" not in runoff and "tflite-int8" in runoff and "tflite-float16" in runoff
    assert chosen(results, "fast").candidate == "tflite-int8"
    assert "tflite-float32" not in [t.candidate for t in results[0].latency_tied]
