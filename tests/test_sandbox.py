"""`mobilepre.sandbox`: the trial-load child may write only into its scratch folder (Landlock)."""

import subprocess
import sys

import pytest

from mobilepre.sandbox import landlock_abi

pytestmark = pytest.mark.skipif(landlock_abi() < 1, reason="this kernel has no Landlock")

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
    with pytest.raises(MobilepreError, match="could not be loaded|Permission"):
        load_model(tmp_path / "writes.keras", trust=True, isolate=True)
    assert not marker.exists()
