"""`mobilepre.sandbox`: the trial-load child may write only into its scratch folder (Landlock)."""

import subprocess
import sys

import pytest

from mobilepre.sandbox import landlock_abi
from tests.conftest import skip_or_fail



@pytest.fixture(autouse=True)
def landlock():
    """Landlock is what stops a model's writes: a kernel without it skips here, and fails under CI=true."""
    if landlock_abi() < 1:
        skip_or_fail("this kernel has no Landlock")

PROBE = """
import sys
from mobilepre.sandbox import restrict_writes
assert restrict_writes([sys.argv[1]])
open(sys.argv[1] + "/inside.txt", "w").write("ok")
open("/dev/null", "w").write("ok")
for target in (sys.argv[2] + "/outside.txt", sys.argv[1] + "/../escape.txt"):
    try:
        open(target, "w").write("written")
    except PermissionError:
        continue
    raise SystemExit("wrote " + target)
"""


def test_writes_outside_the_scratch_folder_are_refused(tmp_path):
    scratch, outside = tmp_path / "scratch", tmp_path / "outside"
    scratch.mkdir()
    outside.mkdir()
    result = subprocess.run([sys.executable, "-c", PROBE, str(scratch), str(outside)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (scratch / "inside.txt").read_text() == "ok"
    assert list(outside.iterdir()) == [] and not (tmp_path / "escape.txt").exists()


def test_the_trial_load_runs_sandboxed_and_still_loads_real_models(tmp_path):
    from mobilepre import demo
    from mobilepre.models import load_model

    source = load_model(demo.model_path(), isolate=True)
    assert source.input_dtype == "uint8"


def test_code_run_while_loading_cannot_write_outside(tmp_path, keras):
    """A model whose Lambda writes a file when Keras rebuilds it (as code that slipped past the scanner
    would): the sandboxed trial load cannot write the file, and the load is refused."""
    from mobilepre.errors import MobilepreError
    from mobilepre.models import load_model

    marker = tmp_path / "outside" / "marker.txt"
    marker.parent.mkdir()
    writes = eval(f"lambda x: (open({str(marker)!r}, 'w').write('pwned'), x)[1]")  # noqa: S307  test fixture
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(writes)(keras.layers.Dense(2)(inputs)))
    model.save(tmp_path / "writes.keras")
    marker.unlink()  # calling the layer while building wrote it once, here
    with pytest.raises(MobilepreError) as refused:
        load_model(tmp_path / "writes.keras", trust=True, isolate=True)
    assert f"tried to write {marker} while it loaded, and the sandbox blocked it" in str(refused.value)
    assert "Exception encountered" not in str(refused.value) and not marker.exists()


def test_reference_inference_runs_in_the_sandboxed_child(tmp_path):
    """Every reference inference of a user's model runs in the confined child, and gives what Keras gives."""
    import numpy as np

    from mobilepre import demo
    from mobilepre.models import load_model
    from mobilepre.validate import reference_outputs

    source = load_model(demo.model_path(), isolate=True)
    images = np.random.default_rng(0).integers(0, 256, (5, *source.input_shape), dtype=np.uint8)
    (child,), _ = reference_outputs(source, images)
    np.testing.assert_allclose(child, source.model.predict(images, verbose=0), atol=1e-6)
    process = source.reference._process
    assert process.poll() is None
    source.reference.close()
    assert process.poll() is not None  # closed with its source


@pytest.mark.slow
@pytest.mark.parametrize("channels", [3, 1])
def test_build_stages_reference_runs_the_same_stages_in_the_child(tmp_path, keras, channels):
    import numpy as np

    from mobilepre.models import load_model, with_stages
    from mobilepre.validate import reference_outputs

    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, channels))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs)))
    model.save(tmp_path / "float.keras")
    source = load_model(tmp_path / "float.keras", isolate=True)
    fused = with_stages(source, (-1.0, 1.0), luma=True)
    assert fused.input_dtype == "uint8" and fused.input_shape == (8, 8, 3) and fused.identity == source.identity
    assert fused.reference.stages == {"rescale": [-1.0, 1.0], "luma": channels == 1}
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    (child,), _ = reference_outputs(fused, images)
    np.testing.assert_allclose(child, fused.model.predict(images, verbose=0), atol=1e-6)


def test_code_run_by_reference_inference_cannot_write_outside(tmp_path, keras):
    """A trusted model whose Lambda writes a file only when it runs on real images (not while Keras
    rebuilds it): the write happens in the sandboxed child, is refused, and the marker never appears."""
    import numpy as np

    from mobilepre.errors import MobilepreError
    from mobilepre.models import load_model
    from mobilepre.validate import reference_outputs

    marker = tmp_path / "outside" / "marker.txt"
    marker.parent.mkdir()
    writes = eval(f"lambda x: (open({str(marker)!r}, 'w').write('pwned') if x.shape[0] is not None else 0, x)[1]")  # noqa: S307
    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, keras.layers.Lambda(writes)(keras.layers.Flatten()(inputs)))
    model.save(tmp_path / "writes.keras")
    assert not marker.exists()
    source = load_model(tmp_path / "writes.keras", trust=True, isolate=True)
    assert not marker.exists()
    with pytest.raises(MobilepreError, match=f"could not run on the images: it tried to write {marker} while it ran, and the sandbox blocked it"):
        reference_outputs(source, np.zeros((2, 4, 4, 1), np.float32))
    assert not marker.exists()
    source.model.predict(np.zeros((2, 4, 4, 1), np.float32), verbose=0)
    assert marker.exists()  # the same call in this process writes it: the child is what stopped it
