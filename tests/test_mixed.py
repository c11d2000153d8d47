"""Mixed precision: the ladder a device allows, per-layer precisions in real TFLite and TF.js files, and
the search that raises the fewest layers until a profile's drift budgets hold."""

import json

import numpy as np
import pytest

from mobilepre import quantize
from mobilepre.builder import build
from mobilepre.errors import MobilepreError
from mobilepre.mixed import BLOCK_STEPS, MAX_STEPS, _cumulative, per_byte
from mobilepre.profiles import load_profile
from mobilepre.quantize.mixed import LayerError, MixedPrecision, graph_ops, rank_tflite_ops, rank_tfjs_weights
from mobilepre.tflite_reader import tflite_bytes
from mobilepre.quantize.settings import Mode, blocks_allowed, mixed_ladder
from mobilepre.validate import run_candidate
from tests.conftest import write_artifact, warm_options
from tests.test_build import write_profile

INT4, DYNAMIC, INT8, FLOAT32, BLOCKS = Mode.INT4, Mode.DYNAMIC, Mode.INT8, Mode.FLOAT32, Mode.INT4_BLOCKWISE


@pytest.mark.parametrize("allowed, ladder", [
    (["float32", "int8", "int4", "mixed"], (INT4, DYNAMIC, FLOAT32)),
    (["int4", "mixed"], (INT4, FLOAT32)),  # int4 runs float kernels: float layers are allowed
    (["dynamic", "mixed"], (DYNAMIC, FLOAT32)),
    (["float16", "int8", "mixed"], (INT8, FLOAT32)),  # full-integer with a few float layers
    (["int8", "mixed"], ()),  # an NPU: no float layer, nothing to mix
    (["int16x8", "int8", "mixed"], ()),
])
def test_the_tflite_ladder_follows_what_the_device_allows(allowed, ladder):
    assert mixed_ladder("tflite", allowed) == ladder
    # raised dense layers may come back down to int4 blocks where the ladder rises from int4 to int8 weights,
    # in .tflite files for LiteRT (LiteRT.js runs .tflite files too, but blocks are unverified there)
    assert blocks_allowed("tflite", allowed) is (ladder[:2] == (INT4, DYNAMIC))
    assert blocks_allowed("litertjs", allowed) is False


def test_int4_in_blocks_is_a_rung_never_a_mode_or_a_base(tmp_path):
    with pytest.raises(quantize.QuantizeError, match="not one of"):
        quantize.QuantizationSettings("tflite", "mixed", mixed=MixedPrecision(BLOCKS))
    with pytest.raises(quantize.QuantizeError):
        quantize.QuantizationSettings("tflite", "int4-block32")
    path = write_profile(tmp_path, "blocks", 'formats = ["tflite"]\nquantization = ["int4-block32"]\n[budget]\nmax_size = "1 MiB"\n')
    with pytest.raises(MobilepreError, match="int4-block32"):
        load_profile(path)


@pytest.fixture(scope="module")
def dense_model(keras):
    """Two dense layers: 64 inputs (a multiple of 32: int4 in blocks of 32 fits) and 20 (it does not)."""
    keras.utils.set_random_seed(2)
    inputs = keras.Input((8, 8, 1), name="pixels")
    hidden = keras.layers.Dense(20, activation="relu", name="wide")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="head")(hidden))


def test_a_dense_op_raised_to_int4_in_blocks_keeps_int4_with_a_scale_per_block_and_runs(dense_model, tmp_path):
    from tensorflow.lite.tools import flatbuffer_utils

    images = np.random.default_rng(3).random((8, 8, 8, 1), np.float32)
    float_model = quantize.convert(dense_model, quantize.QuantizationSettings("tflite", "float32", strip_metadata=False)).files["model.tflite"]
    ops = {op["output"]: op for op in graph_ops(float_model) if op["weights"]}
    assert sorted(op["blockwise"] for op in ops.values()) == [False, True]  # the 64-input kernel only
    wide = next(name for name, op in ops.items() if op["blockwise"])
    sizes, outputs = {}, {}
    for label, plan in {"int4": MixedPrecision(INT4), "blocks": MixedPrecision(INT4, ((wide, BLOCKS),)),
                        "dynamic": MixedPrecision(INT4, ((wide, DYNAMIC),))}.items():
        artifact = quantize.convert(dense_model, quantize.QuantizationSettings("tflite", "mixed", mixed=plan), images)
        content = artifact.files["model.tflite"]
        sizes[label] = len(content)
        _, run = run_candidate(write_artifact(artifact, tmp_path / label), images)
        outputs[label] = run.outputs[0]
        if label == "blocks":
            graph = flatbuffer_utils.read_model_from_bytearray(bytearray(content)).subgraphs[0]
            blocked = [t for t in graph.tensors if t.quantization is not None and t.quantization.detailsType == 2]  # BlockwiseQuantization
            assert [(int(t.type), t.quantization.details.blockSize, t.shape.tolist()) for t in blocked] == [(17, 32, [20, 64])]
    # a float16 scale per block of 32 (40 blocks, 80 B) instead of the 20 channels' float scale and int64 zero
    # point (240 B): on a kernel this narrow, blocks are smaller than channel-wise int4; on a wide one (over 192 inputs) larger
    assert sizes["blocks"] < sizes["int4"] < sizes["dynamic"]
    assert np.isfinite(outputs["blocks"]).all() and not np.array_equal(outputs["blocks"], outputs["int4"])
    ranked = rank_tflite_ops(float_model, INT4, images, "pixels")
    assert {e.name: e.blockwise for e in ranked} == {name: op["blockwise"] for name, op in ops.items()}
    # what the search predicts a layer costs there: a float16 scale per 32 weights; int4 where blocks do not fit
    assert next(e for e in ranked if e.blockwise).bytes_at(BLOCKS) == 1280 * (0.5 + 2 / 32)
    assert next(e for e in ranked if not e.blockwise).bytes_at(BLOCKS) == 200 * 0.5


def test_the_tfjs_ladder_is_uint8_then_float16():
    assert mixed_ladder("tfjs", ["float16", "uint8", "mixed"]) == (Mode.UINT8, Mode.FLOAT16)
    assert mixed_ladder("tfjs", ["uint8", "mixed"]) == ()
    assert mixed_ladder("tfjs", ["float32", "float16", "int8"]) == ()  # a TFLite mode does not count


def test_a_profile_that_cannot_mix_is_refused_at_load(tmp_path):
    path = write_profile(tmp_path, "npu", 'formats = ["tflite"]\nquantization = ["int8", "mixed"]\n[budget]\nmax_size = "1 MiB"\n')
    with pytest.raises(MobilepreError, match="no two precisions to mix.*allows only int8 gets no float layers"):
        load_profile(path)


def test_mixed_settings_need_a_plan_above_their_base():
    with pytest.raises(quantize.QuantizeError, match="mode mixed needs its per-layer precisions"):
        quantize.QuantizationSettings("tflite", "mixed")
    with pytest.raises(quantize.QuantizeError, match="apply to the mixed mode only"):
        quantize.QuantizationSettings("tflite", "int8", mixed=MixedPrecision(INT4))
    with pytest.raises(quantize.QuantizeError, match="not above int8"):
        quantize.QuantizationSettings("tflite", "mixed", mixed=MixedPrecision(INT8, (("conv", INT4),)))
    with pytest.raises(quantize.QuantizeError, match="not a tfjs plan"):
        quantize.QuantizationSettings("tfjs", "mixed", mixed=MixedPrecision(INT4))
    settings = quantize.QuantizationSettings("tflite", "mixed", mixed=MixedPrecision(INT4, (("b", DYNAMIC), ("a", FLOAT32))))
    assert settings.engine is quantize.Engine.LITERT_QUANTIZER and settings.key == "tflite-mixed-int4-2raised"


def test_quantize_mixed_from_the_cli_points_to_build(tiny_model, tmp_path):
    from tests.conftest import run_cli

    path = tmp_path / "m.keras"
    tiny_model.save(path)
    done = run_cli("quantize", str(path), "--to", "tflite", "--mode", "mixed", "--out", str(tmp_path / "m.tflite"))
    assert done.returncode == 2 and "a build finds them against a profile's drift budgets" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "m.tflite").exists()


def _tensor_types(content: bytes) -> dict:
    """Constant tensors of rank >= 2 by the name of the op that consumes them: their flatbuffer type."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    graph = model.subgraphs[0]
    types = {}
    for op in graph.operators:
        for index in op.inputs:
            tensor = graph.tensors[index]
            if index >= 0 and model.buffers[tensor.buffer].data is not None and len(tensor.shape) >= 2:
                types.setdefault(int(op.outputs[0]), []).append(int(tensor.type))
    return types


def test_a_tflite_plan_keeps_the_raised_op_at_its_precision_and_runs(tiny_model, tiny_images, tmp_path):
    float_model = quantize.convert(tiny_model, quantize.QuantizationSettings("tflite", "float32", strip_metadata=False)).files["model.tflite"]
    weighted = [op["output"] for op in graph_ops(float_model) if op["weights"]]
    assert len(weighted) >= 2
    plan = MixedPrecision(INT4, ((weighted[-1], FLOAT32), (weighted[-2], DYNAMIC)))  # the largest kernels
    artifact = quantize.convert(tiny_model, quantize.QuantizationSettings("tflite", "mixed", mixed=plan), tiny_images)
    content = artifact.files["model.tflite"]
    kinds = sorted(t for types in _tensor_types(content).values() for t in types)
    # flatbuffer types: 0 float32, 9 int8, 17 int4. The quantizer leaves the 3-weight RGB-to-luma kernel
    # float in every int4 model (too small to quantize); besides it, the raised float kernel, one int8,
    # the rest int4.
    all_int4 = quantize.convert(tiny_model, quantize.QuantizationSettings("tflite", "int4"), tiny_images)
    plain = sorted(t for types in _tensor_types(all_int4.files["model.tflite"]).values() for t in types)
    assert plain.count(0) == 1 and plain.count(17) == len(weighted) - 1
    assert kinds.count(0) == 2 and kinds.count(9) == 1 and kinds.count(17) == len(weighted) - 3
    assert all_int4.size_bytes < artifact.size_bytes
    path = write_artifact(artifact, tmp_path / "mixed")
    _, run = run_candidate(path, tiny_images[:4])
    assert np.isfinite(run.outputs[0]).all()


def test_full_integer_int8_with_a_float_op_runs(tiny_model, tiny_images, tmp_path):
    float_model = quantize.convert(tiny_model, quantize.QuantizationSettings("tflite", "float32", strip_metadata=False)).files["model.tflite"]
    weighted = [op["output"] for op in graph_ops(float_model) if op["weights"]]
    plan = MixedPrecision(INT8, ((weighted[-1], FLOAT32),))
    artifact = quantize.convert(tiny_model, quantize.QuantizationSettings("tflite", "mixed", mixed=plan), tiny_images)
    kinds = sorted(t for types in _tensor_types(artifact.files["model.tflite"]).values() for t in types)
    assert kinds.count(0) == 1 and kinds.count(9) == len(weighted) - 1
    _, run = run_candidate(write_artifact(artifact, tmp_path / "mixed"), tiny_images[:4])
    assert np.isfinite(run.outputs[0]).all()


def test_tflite_ranking_measures_every_weighted_op(tiny_model, tiny_images):
    float_model = quantize.convert(tiny_model, quantize.QuantizationSettings("tflite", "float32", strip_metadata=False)).files["model.tflite"]
    ranked = rank_tflite_ops(float_model, INT4, tiny_images[:4], "pixels")
    assert {e.name for e in ranked} == {op["output"] for op in graph_ops(float_model) if op["weights"]}
    assert [e.error for e in ranked] == sorted((e.error for e in ranked), reverse=True)
    assert all(e.weights > 0 and e.layer for e in ranked)


def test_ops_are_raised_by_the_drift_they_remove_per_byte():
    cheap_and_bad = LayerError("a", "a", -3.0, 100)  # half the error, 100 parameters
    costly_and_worse = LayerError("b", "b", 0.0, 10_000)  # all the error, 100x the bytes
    free = LayerError("c", "c", -20.0, 0)  # no weights: raising it costs no bytes
    order = per_byte([costly_and_worse, cheap_and_bad, free], INT4, Mode.INT8)
    assert [e.name for e in order] == ["c", "a", "b"]  # by error alone it would be b, a, c
    assert _cumulative(order, INT4, Mode.INT8) == [0.0, 50.0, 5050.0]  # half a byte more per parameter


def test_where_a_tflite_files_bytes_go(tiny_model, tiny_images):
    spent = {}
    for mode in ("float32", "int8"):
        data = quantize.convert(tiny_model, quantize.QuantizationSettings("tflite", mode), calibration=tiny_images).files["model.tflite"]
        spent[mode] = tflite_bytes(data)
        parts = ("weights", "biases", "quantization", "graph", "metadata")
        assert sum(spent[mode][k] for k in parts) == spent[mode]["total"] == len(data) and all(spent[mode][k] >= 0 for k in parts)
        assert spent[mode]["floor_bytes"] == spent[mode]["parameters"] > 0
    # the same kernels at 4 bytes and at 1 byte a weight; biases int32 in both; scales only when quantized
    assert spent["float32"]["weights"] == 4 * spent["int8"]["weights"] and spent["float32"]["biases"] == spent["int8"]["biases"]
    assert spent["float32"]["quantization"] == 0 < spent["int8"]["quantization"]
    assert spent["float32"]["parameters"] == spent["int8"]["parameters"]


def test_a_tfjs_plan_keeps_the_raised_weight_in_float16_and_runs(tiny_model, tiny_images, tmp_path):
    float_files = quantize.convert(tiny_model, quantize.QuantizationSettings("tfjs", "float32")).files
    ranked = rank_tfjs_weights(float_files)
    plan = MixedPrecision(Mode.UINT8, ((ranked[0].name, Mode.FLOAT16),))
    artifact = quantize.convert(tiny_model, quantize.QuantizationSettings("tfjs", "mixed", mixed=plan))
    weights = {w["name"]: w for g in json.loads(artifact.files["model.json"])["weightsManifest"] for w in g["weights"]}
    assert weights[ranked[0].name]["quantization"]["dtype"] == "float16"
    assert all(weights[e.name]["quantization"]["dtype"] == "uint8" for e in ranked[1:])
    _, run = run_candidate(write_artifact(artifact, tmp_path / "tfjs"), tiny_images[:4])
    assert np.isfinite(run.outputs[0]).all()


@pytest.fixture(scope="module")
def mixed_build(tmp_path_factory):
    """The demo model under a drift budget int4 misses (max abs error about 0.125) and dynamic meets
    (about 0.011): the mixed search must raise some layers, not all."""
    root = tmp_path_factory.mktemp("mixed")
    profiles = root / "profiles"
    write_profile(profiles, "mixer", 'formats = ["tflite", "tfjs"]\nquantization = ["float16", "dynamic", "int4", "uint8", "mixed"]\n'
                  'prefer = "size"\n[budget]\nmax_size = "1 MiB"\n[drift]\nmax_abs_error = 0.1\n')
    # int4 is 28.5 kB on the demo and misses max_abs_error 0.1; 29,000 B leaves room for about a kilobyte of raised
    # weights (this profile finds no candidate: its bundle is not written, mixer's is)
    write_profile(profiles, "squeezed", 'formats = ["tflite"]\nquantization = ["dynamic", "int4", "mixed"]\n'
                  '[budget]\nmax_size = "29000 B"\n[drift]\nmax_abs_error = 0.1\n')
    out = root / "out"
    return build(warm_options(out=out, profiles=profiles, latency_runs=3)), out


@pytest.mark.slow
def test_the_mixed_search_raises_some_layers_and_meets_the_drift_budget(mixed_build):
    result, out = mixed_build
    report = json.loads((out / "report.json").read_text())
    tried = {t["candidate"]: t for f in next(p for p in report["profiles"] if p["name"] == "mixer")["formats"] for t in f["tried"]}
    mixed, int4, dynamic = tried["tflite-mixed@mixer"], tried["tflite-int4"], tried["tflite-dynamic"]
    assert not int4["verdict"]["passed"] and dynamic["verdict"]["passed"]
    assert mixed["verdict"]["passed"] and mixed["drift"][0]["max_abs_error"] <= 0.1
    assert int4["bytes"] < mixed["bytes"] < dynamic["bytes"]
    detail = mixed["mixed"]
    assert detail["base"] == "int4" and detail["ladder"] == ["int4", "dynamic", "float32"]
    # prefer = "size": ops raised by the error each removes per byte it costs (the free luma conv first), some not all
    assert detail["ranked_by"] == "error removed per byte (the profile prefers size)"
    assert 1 <= len(detail["raised"]) < 8 and all(r["to"] == "dynamic" and r["bytes"] > 0 and r["layer"] for r in detail["raised"])
    steps = detail["steps"]
    assert 2 <= len(steps) <= MAX_STEPS + BLOCK_STEPS and steps[0]["raised"] == 0 and not steps[0]["passed"]
    # the fewest raised: every step with fewer raised layers missed the budget
    assert all(not s["passed"] for s in steps if s["raised"] < len(detail["raised"]))
    # the dense head (1,024 inputs) was raised, so the search tried it back in int4 blocks of 32, verified:
    # on the demo that misses (max abs error over 0.1) and the head stays in int8 weights
    assert any(r["layer"] == "digits_cnn/digit" for r in detail["raised"])
    assert [(s["in_blocks"], s["passed"]) for s in steps if "in_blocks" in s] == [(1, False)]
    # prefer = "size": the mixed model is the smallest passing TFLite candidate
    assert result.profile("mixer").format("tflite").chosen.candidate == "tflite-mixed@mixer"


def test_the_manifest_names_the_raised_layers_and_their_bytes(mixed_build):
    _, out = mixed_build
    manifest = json.loads((out / "mixer" / "manifest.json").read_text())
    artifact = next(a for a in manifest["artifacts"] if a["format"] == "tflite")
    report = json.loads((out / "report.json").read_text())
    tried = next(t for f in next(p for p in report["profiles"] if p["name"] == "mixer")["formats"] for t in f["tried"] if t["candidate"] == artifact["candidate"])
    assert artifact["quantization"] == "mixed" and artifact["engine"] == "litert-quantizer"
    assert artifact["mixed"]["raised"] == [{k: r[k] for k in ("bytes", "layer", "name", "to")} for r in tried["mixed"]["raised"]]


def test_a_tfjs_mixed_model_that_needs_nothing_raised_is_the_uint8_model(mixed_build):
    _, out = mixed_build
    report = json.loads((out / "report.json").read_text())
    tried = {t["candidate"]: t for f in next(p for p in report["profiles"] if p["name"] == "mixer")["formats"] for t in f["tried"]}
    mixed, uint8 = tried["tfjs-mixed@mixer"], tried["tfjs-uint8"]
    assert uint8["verdict"]["passed"] and mixed["mixed"]["raised"] == [] and mixed["bytes"] == uint8["bytes"]
    assert len(mixed["mixed"]["steps"]) == 1


@pytest.mark.slow
def test_the_mixed_search_raises_no_more_than_the_size_budget_leaves_room_for_and_says_how_far_it_got(mixed_build):
    """The search stops where the budget leaves no room, measured, and says so (it never tries a plan over it)."""
    result, out = mixed_build
    tried = {t.candidate: t for t in result.profile("squeezed").format("tflite").tried}
    mixed = tried["tflite-mixed@squeezed"]
    assert not mixed.passed and mixed.mixed["ranked_by"].startswith("error removed per byte")
    stopped = mixed.mixed["at_size_budget"]
    assert stopped["max_size"] == 29000 and 0 <= stopped["raised"] < stopped["ops"] and "drift still misses" in stopped["note"]
    assert all(step["bytes"] <= 29000 for step in mixed.mixed["steps"])
    assert not (out / "squeezed").exists() and (out / "mixer" / "manifest.json").is_file()


def test_raised_dense_layers_come_back_down_to_int4_in_blocks_where_drift_holds(keras):
    """A kernel with one outlier weight per output channel: channel-wise int4 scales each channel by its
    outlier and rounds the rest to zero; blocks of 32 scale the other blocks by their own values. A plan
    that raised it to int8 weights gets it back in blocks, verified in LiteRT, and smaller; the head (20
    inputs, no whole block) stays where it was."""
    from types import SimpleNamespace

    from mobilepre.mixed import _into_blocks
    from tests.conftest import litert_run

    keras.utils.set_random_seed(5)
    inputs = keras.Input((8, 8, 8), name="pixels")  # 512 inputs: 16 blocks a channel
    hidden = keras.layers.Dense(20, activation="relu", name="wide")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="head")(hidden))
    kernel, bias = model.get_layer("wide").get_weights()
    kernel[0, :] = 20 * np.abs(kernel).max()
    model.get_layer("wide").set_weights([kernel, bias])
    images = np.random.default_rng(4).random((16, 8, 8, 8), np.float32)
    float_model = quantize.convert(model, quantize.QuantizationSettings("tflite", "float32", strip_metadata=False)).files["model.tflite"]
    reference = litert_run(float_model, images)
    ops = {op["output"]: op for op in graph_ops(float_model) if op["weights"]}
    wide = next(name for name, op in ops.items() if op["blockwise"])
    head = next(name for name, op in ops.items() if not op["blockwise"])

    def error_and_bytes(plan):
        content = quantize.convert(model, quantize.QuantizationSettings("tflite", "mixed", mixed=plan), images).files["model.tflite"]
        return float(np.abs(litert_run(content, images) - reference).max()), len(content)

    raised = MixedPrecision(INT4, ((wide, DYNAMIC), (head, DYNAMIC)))
    errors = {label: error_and_bytes(plan) for label, plan in {
        "int4": MixedPrecision(INT4, ((head, DYNAMIC),)), "raised": raised, "blocks": MixedPrecision(INT4, ((wide, BLOCKS), (head, DYNAMIC)))}.items()}
    assert max(errors["raised"][0], errors["blocks"][0]) < errors["int4"][0] / 2, errors
    limit = (max(errors["raised"][0], errors["blocks"][0]) + errors["int4"][0]) / 2
    steps = []

    def step(plan):
        error, size = error_and_bytes(plan)
        steps.append(plan)
        return SimpleNamespace(error=None, size_bytes=size), error <= limit

    ranking = [LayerError(wide, "wide", 0.0, ops[wide]["weights"], True), LayerError(head, "head", -3.0, ops[head]["weights"], False)]
    plan, measured, _ = _into_blocks((raised, SimpleNamespace(error=None, size_bytes=errors["raised"][1]), ranking), step)
    assert plan == MixedPrecision(INT4, ((wide, BLOCKS), (head, DYNAMIC))) and len(steps) == 1
    assert measured.size_bytes == errors["blocks"][1] < errors["raised"][1]
    # under a limit the blocks miss, the plan stays as it passed
    limit = errors["blocks"][0] / 2
    assert _into_blocks((raised, SimpleNamespace(error=None, size_bytes=errors["raised"][1]), ranking), step)[0] == raised
