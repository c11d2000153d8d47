"""Loading the user's model (scanned first, trial-loaded in a child process) and naming it by content."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobilepre.errors import MobilepreError, engine_errors, one_line, param
from mobilepre.frontend import FrontendSpec, attach, build_frontend, luma_layer, set_luma_weights
from mobilepre.macs import count_macs
from mobilepre.metrics import OutputKind
from mobilepre.quantize.export import INPUT_NAME, is_signature_key, model_input_spec, model_output_names, output_list
from mobilepre.safety import scan_model
from mobilepre.sandbox import blocked_write


@dataclass(frozen=True)
class OutputSpec:
    """One output of a model: its name (the Keras output name), what it means, and its shape.

    Attributes:
        name (str).
        kind (OutputKind): inferred from the model (final activation, rank, shape), else from the
            reference's values, and overridable by a profile (`[drift.outputs.NAME] kind = "..."`).
        shape (tuple): per-image shape.
        evidence (str): how the kind was found, for reports ("softmax activation", "rank 4", ...).
    """

    name: str
    kind: OutputKind
    shape: tuple
    evidence: str = ""

    def to_dict(self) -> dict:
        return {"evidence": self.evidence, "kind": str(self.kind), "name": self.name, "shape": list(self.shape)}


def infer_outputs(model) -> tuple:
    """Each output's name and kind, from the layer that produces it.

    Class scores need a softmax (probabilities); a linear vector stays regression unless a profile says
    `kind = "logits"` (treating box coordinates as classes is the error this avoids); an L2-normalised
    vector is an embedding; a rank-4 output with a softmax over channels is segmentation, else an image.
    """
    names = model_output_names(model)
    inputs = getattr(model, "inputs", None) or []
    input_hw = tuple(int(d) if d is not None else -1 for d in inputs[0].shape[1:3]) if inputs and len(inputs[0].shape) == 4 else None
    specs = []
    for name, tensor in zip(names, model.outputs):
        shape = tuple(int(d) if d is not None else -1 for d in tensor.shape[1:])
        specs.append(_spec(str(name), shape, _producer(tensor), input_hw))
    return tuple(specs)


def _producer(tensor):
    """The layer that computes `tensor`, looking inside nested models (a front-end attached to a classifier)."""
    history = getattr(tensor, "_keras_history", None)
    if not history:
        return None
    layer, node, index = history
    while True:
        if type(layer).__name__ == "Identity":  # an output renamed (`frontend.attach`): what it passes on
            try:
                inner = getattr(layer._inbound_nodes[node].input_tensors[0], "_keras_history", None)
            except (AttributeError, IndexError):
                inner = None
        elif getattr(layer, "layers", None) and getattr(layer, "outputs", None):
            inner = getattr(layer.outputs[index], "_keras_history", None)
        else:
            break
        if not inner:
            break
        layer, node, index = inner
    return layer


def _spec(name: str, shape: tuple, layer, input_hw: tuple | None = None) -> OutputSpec:
    kind_name = type(layer).__name__
    if kind_name == "Softmax":
        activation = "softmax"
    else:
        function = getattr(layer, "activation", None)
        activation = getattr(function, "__name__", None) if function is not None else None
    if kind_name in ("UnitNormalization",):
        return OutputSpec(name, OutputKind.EMBEDDING, shape, "L2-normalised")
    if len(shape) == 3:
        # a map coarser than the input is a detector's grid (one cell per stride), not a mask or a picture
        known = input_hw is not None and min(*shape[:2], *input_hw) > 0
        coarser = known and shape[0] * shape[1] < input_hw[0] * input_hw[1]
        grid = f"a {shape[0]}x{shape[1]} map of a {input_hw[0]}x{input_hw[1]} input" if known else ""
        if activation == "sigmoid" and (coarser or shape[-1] not in (3, 4)):  # a heat map, a person mask
            return OutputSpec(name, OutputKind.PROBABILITY_MAP, shape, "sigmoid over a rank-4 output" + (f", {grid}" if coarser else ""))
        if activation == "softmax" and shape[-1] >= 2:
            if coarser:
                return OutputSpec(name, OutputKind.PROBABILITY_MAP, shape, f"softmax over channels of {grid}")
            return OutputSpec(name, OutputKind.SEGMENTATION, shape, "softmax over channels of a rank-4 output")
        if coarser or shape[-1] not in (1, 3, 4):
            return OutputSpec(name, OutputKind.REGRESSION, shape, f"rank-4 {activation or 'linear'} output, "
                              + (grid if coarser else f"{shape[-1]} channels"))
        return OutputSpec(name, OutputKind.IMAGE, shape, "rank-4 output with an image's size and channels")
    if len(shape) == 1 and activation == "softmax" and shape[-1] >= 2:
        return OutputSpec(name, OutputKind.PROBABILITIES, shape, "softmax activation")
    if len(shape) == 1 and activation is None:
        return OutputSpec(name, OutputKind.REGRESSION, shape, "unknown activation")
    return OutputSpec(name, OutputKind.REGRESSION, shape, f"{activation or 'no'} activation")


def settle_kinds(specs: tuple, reference: list) -> tuple:
    """Outputs whose layer said nothing (a wrapped SavedModel): a vector of values in [0, 1] that sum to 1
    on every image is probabilities."""
    settled = []
    for spec, values in zip(specs, reference):
        if spec.evidence == "unknown activation" and values.ndim == 2 and values.shape[1] >= 2:
            if values.min() >= 0 and values.max() <= 1 and np.allclose(values.sum(axis=1), 1.0, atol=1e-3):
                spec = OutputSpec(spec.name, OutputKind.PROBABILITIES, spec.shape, "values sum to 1 on every image")
        settled.append(spec)
    return tuple(settled)


@dataclass(frozen=True)
class SourceModel:
    """A float reference model ready for compression.

    Attributes:
        model: the Keras model (a SavedModel is wrapped in a Keras model around its serving signature).
        path (str): where it came from ("<memory>" for a model passed in by a Python caller).
        format (str): "keras", "h5", "saved_model" or "memory".
        identity (str): sha256 of the model's config and weights. A `.keras` archive embeds its save
            date, so the file's bytes are not an identity; this is.
        input_shape (tuple[int, int, int]): per-image input shape.
        input_dtype (str): "uint8" or "float32".
        outputs (tuple[OutputSpec, ...]): each output's name and kind, in the model's order.
        reference (ReferenceChild | None): the same model loaded in a sandboxed child process, which
            runs every reference inference (`reference_outputs`); None when loads are not isolated.
        stages (dict | None): the pixel stages a build put in front of the user's model
            (`with_stages`: {"rescale": [low, high] or None, "luma": bool}); None for the model as loaded.
    """

    model: object
    path: str
    format: str
    identity: str
    input_shape: tuple
    input_dtype: str
    outputs: tuple = ()
    reference: object = dataclasses.field(default=None, compare=False, repr=False)
    stages: dict | None = None

    @property
    def parameters(self) -> int:
        return int(self.model.count_params())

    @property
    def luma(self) -> bool:
        """A build put the RGB-to-luma stage in front of the user's one-channel model."""
        return bool(self.stages and self.stages.get("luma"))

    @functools.cached_property
    def macs(self) -> int:
        """Multiply-accumulates per image, counted once from the model's layers."""
        return count_macs(self.model)


def model_identity(model) -> str:
    """sha256 over the canonical config and every weight's path, dtype, shape and bytes."""
    digest = hashlib.sha256()
    try:
        config = model.get_config()
    except Exception:  # a wrapped SavedModel has no serialisable config; its weights still name it
        config = {"class": type(model).__name__}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for variable in model.weights:
        value = np.ascontiguousarray(np.asarray(variable.numpy()))
        digest.update(f"{variable.path}|{value.dtype}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def from_keras(model, input_shape: tuple | None = None, path: str = "<memory>", fmt: str = "memory") -> SourceModel:
    """Wrap an in-memory Keras model (a Python caller's, or one just loaded) as a SourceModel."""
    inputs = getattr(model, "inputs", None) or []
    if input_shape is None and len(inputs) == 1 and any(d is None for d in tuple(inputs[0].shape)[1:]):
        raise MobilepreError(f"model {path} has dynamic input dimensions {tuple(inputs[0].shape)[1:]}: give {param('input_shape')} "
                             "H,W,C (e.g. 224,224,3) to fix them")
    with engine_errors(path):
        shape, dtype = model_input_spec(model, input_shape)
    if dtype not in ("uint8", "float32"):
        raise MobilepreError(f"{path}: input dtype {dtype} is not supported; mobilepre handles uint8 or float32 images")
    if len(shape) != 3:
        raise MobilepreError(f"{path}: input shape {shape} is not an image (H, W, C)")
    return SourceModel(model, path, fmt, model_identity(model), shape, dtype, infer_outputs(model))


def isolated_loads() -> bool:
    """Whether user models load and run in a sandboxed child (off only with MOBILEPRE_ISOLATE_LOADS=0)."""
    return os.environ.get("MOBILEPRE_ISOLATE_LOADS", "1") != "0"


def load_model(path, trust: bool = False, input_shape: tuple | None = None, isolate: bool | None = None,
               custom_objects: tuple = ()) -> SourceModel:
    """Load a `.keras`, `.h5` or SavedModel folder as a SourceModel.

    The file is scanned before Keras sees it (`mobilepre.safety`), then, with `isolate` (default: on,
    unless the environment sets MOBILEPRE_ISOLATE_LOADS=0), loaded first in a child process, so that a
    file that crashes TensorFlow's native loader becomes an error here instead of killing this process,
    and code that slipped past the scan cannot write files: on Linux with Landlock the child may write
    only into its own scratch folder (`mobilepre.sandbox`). The child stays: every reference inference
    of the float model runs there, under the same restriction (`ReferenceChild`).
    The child costs one TensorFlow start-up, overlapped with this process's own.

    `custom_objects`: modules (a dotted name importable from the working folder, or a `.py` file) whose
    import registers the model's own Keras classes; imported, in this process and in the child, only
    with `trust` (importing runs their code). Their source is part of the model's identity.
    """
    if isolate is None:
        isolate = isolated_loads()
    path = Path(path)
    if not path.exists():
        raise MobilepreError(f"model {path} does not exist")
    custom_objects = tuple(str(m) for m in custom_objects)
    if custom_objects and not trust:
        raise MobilepreError(f"{param('custom_objects')} imports and runs {', '.join(custom_objects)}: pass {param('trust_model')} "
                             "as well if you trust that code")
    code_digest = custom_code_digest(custom_objects)  # a module that cannot be found is said before any load
    fmt = scan_model(path, trust=trust)
    child = None
    if isolate:
        # The child loads the model while this process imports TensorFlow (the costly part of both),
        # so on two cores the isolation costs little; this process touches the model only after the
        # child has loaded it without crashing.
        child = ReferenceChild(path, fmt, trust, custom_objects)
        try:
            _import_keras()
            child.wait_loaded()
        except BaseException:
            child.close()
            raise
    model = _load(path, fmt, trust, custom_objects)
    source = from_keras(model, input_shape, str(path), fmt)
    if code_digest:
        source = dataclasses.replace(source, identity=hashlib.sha256(f"{source.identity}:{code_digest}".encode()).hexdigest())
    return dataclasses.replace(source, reference=child)


def _custom_module(entry: str) -> tuple[str, Path | None]:
    """(module name, its .py file or None for a dotted name) of one `custom_objects` entry."""
    if entry.endswith(".py"):
        path = Path(entry)
        if not path.is_file():
            raise MobilepreError(f"{param('custom_objects')} {entry}: no such file: give a .py file or a module importable from {Path.cwd()}")
        return "mobilepre_custom_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12], path
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", entry):
        raise MobilepreError(f"{param('custom_objects')} {entry!r}: expected a module name like my_layers or pkg.layers, or a .py file")
    return entry, None


def custom_code_digest(custom_objects: tuple) -> str:
    """A hash of the custom modules' source files (a changed layer is another model), or "" for none."""
    if not custom_objects:
        return ""
    import importlib.util

    digest = hashlib.sha256()
    for entry in custom_objects:
        name, path = _custom_module(entry)
        if path is None:
            with _cwd_on_path():
                spec = importlib.util.find_spec(name)
            if spec is None or not spec.origin or not Path(spec.origin).is_file():
                raise MobilepreError(f"{param('custom_objects')} {entry}: no module of that name is importable from {Path.cwd()}: "
                                     "give its dotted name from this folder, or its .py file")
            path = Path(spec.origin)
        digest.update(entry.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _cwd_on_path():
    added = str(Path.cwd()) not in sys.path
    if added:
        sys.path.insert(0, str(Path.cwd()))
    try:
        yield
    finally:
        if added and str(Path.cwd()) in sys.path:
            sys.path.remove(str(Path.cwd()))


def import_custom_objects(custom_objects: tuple) -> None:
    """Import each custom module, so the Keras classes it registers are known to `load_model`."""
    import importlib
    import importlib.util

    sys.dont_write_bytecode = True  # a sandboxed child may not write __pycache__ beside the user's code
    for entry in custom_objects:
        name, path = _custom_module(entry)
        try:
            if path is None:
                with _cwd_on_path():
                    importlib.import_module(name)
            elif name not in sys.modules:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                spec.loader.exec_module(module)
        except MobilepreError:
            raise
        except Exception as error:  # noqa: BLE001 - the user's module failing is one line naming it
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise MobilepreError(f"{param('custom_objects')} {entry}: importing it failed ({type(error).__name__}: {one_line(first)})") from None


def with_stages(source: SourceModel, input_range: tuple | None = None, luma: bool = False) -> SourceModel:
    """`source` behind the pixel stages a build adds inside the model: with `input_range`, a uint8 input
    rescaled to that range (`build --frontend`); with `luma`, 3-channel RGB pixels turned into the one
    channel of a grayscale model (ITU-R BT.601). The result keeps `source`'s identity (the user's model)
    and records the stages in `stages`, so `check` can rebuild the same reference."""
    if input_range is not None and source.input_dtype == "uint8":
        raise MobilepreError(f"{param('frontend')}: model {source.path} already takes uint8 pixels")
    luma = bool(luma) and source.input_shape[-1] == 1
    if input_range is None and not luma:
        return source
    stages = {"rescale": None if input_range is None else [float(v) for v in input_range], "luma": luma}
    frontend = stages_frontend(source.input_shape, source.input_dtype, stages)
    fused = from_keras(attach(frontend, source.model), path=source.path, fmt=source.format)
    child = source.reference.with_stages(stages) if source.reference is not None else None
    return dataclasses.replace(fused, identity=source.identity, stages=stages, reference=child)


def stages_frontend(input_shape: tuple, input_dtype: str, stages: dict):
    """The Keras front-end of `with_stages` for a model taking `input_shape` / `input_dtype`.

    Rescaling (a float model) comes first and the luma stage after it, as in `mobilepre frontend`. A
    model that takes uint8 itself gets its luma rounded (+0.5, then its own input's cast truncates), so
    a grey pixel given as R = G = B reaches it unchanged; such a graph keeps that cast, where a model
    whose own front-end was built RGB (`mobilepre frontend`) has none.
    """
    from mobilepre._tf import keras

    rescale = stages.get("rescale")
    luma = bool(stages.get("luma")) and input_shape[-1] == 1
    if rescale is not None or input_dtype != "uint8":
        spec = FrontendSpec(input_shape=tuple(input_shape), uint8_input=rescale is not None, denoise=False, features=(),
                            normalize="none", rescale_range=tuple(rescale) if rescale else (0.0, 1.0), rgb_input=luma)
        return build_frontend(spec, name="stages")
    k = keras()
    height, width, _ = input_shape
    inputs = k.Input(shape=(height, width, 3), dtype="uint8", name="pixels")
    x = k.layers.Rescaling(1.0, name="to_float")(inputs)
    layer = luma_layer(k)
    x = layer(x)
    set_luma_weights(layer)
    x = k.layers.Rescaling(1.0, offset=0.5, name="luma_round")(x)
    return k.Model(inputs, x, name="stages")


def _load(path: Path, fmt: str, trust: bool, custom_objects: tuple = ()):
    from mobilepre._tf import keras

    import mobilepre.layers  # noqa: F401  registers mobilepre>GaussianBlur, named by files from earlier versions

    k = keras()
    if custom_objects and trust:
        import_custom_objects(custom_objects)
    try:
        if fmt == "saved_model":
            return _wrap_saved_model(k, path)
        return k.models.load_model(path, compile=False, safe_mode=not trust)
    except MobilepreError:
        raise
    except Exception as error:
        blocked = blocked_write(error)
        if blocked:
            raise MobilepreError(f"model {path} tried to write {blocked} while it loaded, and the sandbox blocked it: "
                                 "code in a model may write nothing outside its scratch folder, trusted or not") from None
        missing = _missing_class(error)
        if missing:
            raise MobilepreError(
                f"model {path} uses the class {missing}, which no imported code defines: pass {param('custom_objects')} MODULE "
                f"(the module or .py file that defines and registers it) with {param('trust_model')}") from None
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise MobilepreError(f"model {path} could not be loaded by Keras: {first}") from None


def _missing_class(error: BaseException) -> str | None:
    """The class Keras could not find, from anywhere in the exception's chain ("Could not locate class
    'Name'"), or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        found = re.search(r"Could not locate (?:class|function) '([^']+)'", str(error))
        if found:
            return one_line(found.group(1))
        error = error.__cause__ or error.__context__
    return None


def _wrap_saved_model(k, path: Path):
    from mobilepre._tf import quiet_tensorflow

    tf = quiet_tensorflow()
    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise MobilepreError(f"SavedModel {path} has no serving_default signature to convert")
    specs = list(signature.structured_input_signature[1].values())
    if len(specs) != 1:
        raise MobilepreError(f"SavedModel {path} has {len(specs)} inputs; mobilepre handles one image input")
    spec = specs[0]
    layer = k.layers.TFSMLayer(str(path), call_endpoint="serving_default")
    inputs = k.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype.name, name=INPUT_NAME)
    outputs = layer(inputs)
    if isinstance(outputs, dict):
        # each output keeps the name its signature gave it (an Identity layer carries the name)
        outputs = [k.layers.Identity(name=key)(outputs[key]) if is_signature_key(key) and key != INPUT_NAME else outputs[key]
                   for key in sorted(outputs)]
        outputs = outputs[0] if len(outputs) == 1 else outputs
    return k.Model(inputs, outputs, name=path.name or "saved_model")


# The child answers on a duplicate of its stdout; whatever the model or TensorFlow prints goes to stderr.
# It exits with os._exit (TensorFlow's interpreter teardown costs about a second and has nothing to
# clean up here), when this process closes its stdin or dies.
_CHILD = """
import json
import os
import sys
from pathlib import Path
answers = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
from mobilepre.sandbox import restrict_writes
os.environ["TMPDIR"] = sys.argv[4]
restrict_writes([sys.argv[4]])  # from here on, nothing in this process writes outside its scratch folder
from mobilepre.models import _load, serve_references
from mobilepre.errors import MobilepreError, one_line
try:
    model = _load(Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", tuple(json.loads(sys.argv[5])))
except MobilepreError as error:  # its parameters still marked: the parent names them as its caller does
    print(one_line(error.template), file=sys.stderr, flush=True)
    os._exit(2)
except BaseException as error:
    print(f"{type(error).__name__}: {error}", file=sys.stderr, flush=True)
    os._exit(1)
serve_references(model, answers)
os._exit(0)
"""
LOAD_TIMEOUT_S = 600.0


def serve_references(model, answers) -> None:
    """The child's side: say `ready`, then for each request line (JSON: images, outputs, rescale) run the
    float model on the images and write its outputs, answering `ok` or `error: ...`, until stdin closes."""
    answers.write("ready\n")
    fused = {}
    for line in sys.stdin:
        try:
            request = json.loads(line)
            runner = model
            if request.get("stages"):
                key = json.dumps(request["stages"], sort_keys=True)
                if key not in fused:
                    frontend = stages_frontend(tuple(model.inputs[0].shape[1:]), model.inputs[0].dtype, request["stages"])
                    fused[key] = attach(frontend, model)
                runner = fused[key]
            images = np.load(request["images"], allow_pickle=False)
            outputs = output_list(runner, runner.predict(images, batch_size=256, verbose=0))
            np.savez(request["outputs"], *[np.asarray(o, dtype=np.float32) for o in outputs])
            answers.write("ok\n")
        except Exception as error:  # the model's own failure on these images: said to the parent in one line
            answers.write(f"error: {_reason(error)}\n")


def _reason(error: Exception) -> str:
    """The line of an exception that says what went wrong: Keras re-raises a layer's error with a banner
    ("Exception encountered when calling ...") and colour codes, keeping the original as its context; a
    write the sandbox refused is named as such."""
    blocked = blocked_write(error)
    if blocked:
        return f"it tried to write {blocked} while it ran, and the sandbox blocked it (a model may write nothing outside its scratch folder)"
    while error.__cause__ or error.__context__:
        error = error.__cause__ or error.__context__
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line and not line.startswith("Exception encountered when calling")]
    return lines[0] if lines else type(error).__name__


def _import_keras() -> None:
    from mobilepre._tf import keras

    keras()
    import mobilepre.layers  # noqa: F401


class ReferenceChild:
    """The user's float model loaded in a child process that may write only into its scratch folder
    (Landlock, where the kernel has it): the first load, and every reference inference, happen there,
    so code that slipped past the scans cannot write outside it, and a crash of TensorFlow is an error
    line here. Closed when no SourceModel holds it any more, or when this process ends.
    """

    def __init__(self, path: Path, fmt: str, trust: bool, custom_objects: tuple = ()):
        self.path = Path(path)
        self.stages = None  # the pixel stages of `with_stages`, in a view
        self._lock = threading.Lock()  # one request at a time: they share the scratch files
        self._scratch = Path(tempfile.mkdtemp(prefix="mobilepre-load-"))
        stderr = open(self._scratch / "stderr.txt", "w")
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(self.path), fmt, "1" if trust else "0", str(self._scratch),
                 json.dumps([str(m) for m in custom_objects])],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
            )
        finally:
            stderr.close()
        self._finalizer = weakref.finalize(self, _stop_child, self._process, self._scratch)

    def with_stages(self, stages: dict) -> "ReferenceChild":
        """A view of the same child that runs the model behind the pixel stages of `with_stages`."""
        view = copy.copy(self)  # the same process, scratch folder, lock and finalizer
        view.stages = dict(stages)
        view._owner = self  # the child lives while any view of it does
        return view

    def close(self) -> None:
        self._finalizer()

    def wait_loaded(self) -> None:
        """Wait until the child has loaded the model; a crash or a refusal becomes one line."""
        if self._answer(LOAD_TIMEOUT_S) != "ready":
            self._raise_death("TensorFlow's native loader")

    def predict(self, images: np.ndarray) -> list:
        """The float model's outputs on `images`, computed in the child."""
        with self._lock:
            return self._predict(images)

    def _predict(self, images: np.ndarray) -> list:
        request = {"images": str(self._scratch / "images.npy"), "outputs": str(self._scratch / "outputs.npz"), "stages": self.stages}
        np.save(request["images"], np.ascontiguousarray(images), allow_pickle=False)
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
        except OSError:  # the child is gone
            self._raise_death("TensorFlow running the float model")
        answer = self._answer(max(LOAD_TIMEOUT_S, float(len(images))))
        if answer is None:
            self._raise_death("TensorFlow running the float model")
        if answer.startswith("error: "):
            raise MobilepreError(f"model {self.path} could not run on the images: {answer[len('error: '):]}")
        with np.load(request["outputs"], allow_pickle=False) as saved:
            outputs = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        for name in ("images.npy", "outputs.npz"):
            (self._scratch / name).unlink(missing_ok=True)
        return outputs

    def _answer(self, timeout_s: float) -> str | None:
        ready, _, _ = select.select([self._process.stdout], [], [], timeout_s)
        if not ready:
            self.close()
            raise MobilepreError(f"model {self.path}: loading or running it took longer than {timeout_s:g} s")
        line = self._process.stdout.readline()
        return line.strip() if line else None

    def _raise_death(self, what: str) -> None:
        try:
            code = self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            code = None
        try:
            stderr = (self._scratch / "stderr.txt").read_text(errors="replace")
        except OSError:
            stderr = ""
        self.close()
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            raise MobilepreError(f"model {self.path} crashed {what} ({name}); the file is damaged or hostile")
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        raise MobilepreError(lines[-1] if lines else f"model {self.path}: {what} stopped (exit code {code})")


def _stop_child(process: subprocess.Popen, scratch: Path) -> None:
    try:
        if process.stdin and not process.stdin.closed:
            process.stdin.close()  # the child's loop ends
        process.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        process.kill()
        process.wait()
    finally:
        if process.stdout:
            process.stdout.close()
        shutil.rmtree(scratch, ignore_errors=True)
