"""`mobilepre.measured.Measured`: one frozen shape from the runtime to the reports, round-tripping through the
cache's record and the reports' dict without losing a figure."""

import pytest

from mobilepre.candidates import Candidate
from mobilepre.measured import Measured
from mobilepre.metrics import OutputDrift, OutputKind
from mobilepre.quantize.artifact import gzip_size

DRIFT = (OutputDrift("cls", OutputKind.PROBABILITIES, 0.25, 0.01, 0.02, 0.03, 38.5, 0.999, top1_agreement=0.975, top5_agreement=1.0),
         OutputDrift("box", OutputKind.REGRESSION, 0.5, 0.05, 0.04, 0.06, 30.1, 0.98))


def sample(**changes):
    files = {"model.tflite": b"TFL3 bytes" * 100}
    base = Measured(Candidate("tflite", "int8", "uint8", 0.5), files, 1000, gzip_size(files["model.tflite"]), 0.500001, DRIFT,
                    peak_memory_bytes=1_234_567, metadata={"carries": ["labels"], "note": None})
    return base.with_latency(2, 0.123456789).with_latency(1, 0.2)


def test_the_cache_record_round_trips_every_figure():
    m = sample()
    back = Measured.from_record(m.candidate, m.to_record(), m.files)
    assert back == Measured(m.candidate, m.files, m.size_bytes, m.gzip_bytes, m.sparsity, m.drift, peak_memory_bytes=m.peak_memory_bytes,
                            metadata=m.metadata)  # host latencies are not part of a record
    assert back.measurement(True) == m.measurement(True)


def test_the_report_dict_round_trips_and_rounds_host_figures_once():
    m = sample()
    data = m.to_dict()
    assert data["candidate"] == "tflite-int8-uint8io-s50" and data["latency_ms"] == {"1": 0.2, "2": 0.1235}
    assert data["sparsity"] == 0.500001 and data["drift"][0] == {"kind": "probabilities", "name": "cls", **DRIFT[0].metrics()}
    again = Measured.from_dict(data)
    assert again.to_dict() == data and again.files == {}


@pytest.mark.parametrize("damage", [
    {"drift": "not a list"}, {"error": 5}, {"size_bytes": "big"}, {"drift": [{"name": "cls", "kind": "nonsense"}]},
    {"drift": [{"name": "cls", "kind": "probabilities", "max_abs_error": True}]}, {"sparsity": None},
])
def test_a_record_that_is_not_a_measurement_is_refused(damage):
    m = sample()
    with pytest.raises((KeyError, TypeError, ValueError)):
        Measured.from_record(m.candidate, {**m.to_record(), **damage}, m.files)


def test_a_tflite_record_without_its_file_is_refused():
    m = sample()
    with pytest.raises(ValueError):
        Measured.from_record(m.candidate, m.to_record(), {})


def test_steps_return_new_values():
    m = sample()
    failed = m.with_run_error("LiteRT: boom")
    assert failed.error == "LiteRT: boom" and not failed.final and m.error is None and m.final
    assert Measured.failed(m.candidate, "converter refused").final
    with pytest.raises(AttributeError):
        m.size_bytes = 1  # frozen


def test_a_record_whose_sizes_are_not_its_files_is_refused():
    m = sample()
    with pytest.raises(ValueError, match="sizes"):
        Measured.from_record(m.candidate, {**m.to_record(), "size_bytes": 53_713}, m.files)
