"""Scans a user's model file before Keras or TensorFlow loads it, and refuses what could run code or read files.

Keras and TensorFlow both say a model is a program and that no scanner is complete; this module is a
second fence in front of Keras `safe_mode`, not a replacement for it. It imports neither TensorFlow nor
Keras: it reads the file's own structure with `zipfile`, `json` and `h5py`, and decides before anything
is deserialised.

What is refused, and what `--trust-model` (`trust=True`) lifts:

- Always refused, trusted or not (these harm our own process whatever the author meant):
  - `.keras` archives: absolute or `..` member names, symlink members, duplicate member names, more
    than `MAX_ZIP_MEMBERS` members, more than `MAX_UNCOMPRESSED_BYTES` in total, or a member over
    `BOMB_FLOOR_BYTES` that expands more than `MAX_COMPRESSION_RATIO` times. All decided from the
    central directory; nothing is extracted. The weights file inside gets the HDF5 checks below.
  - HDF5 (`.h5`, `.hdf5`, and `model.weights.h5` inside a `.keras`): external links, soft links that
    do not resolve to an object inside the file through hard links only, datasets with external
    storage, virtual datasets.
  - SavedModel folders: symlinks that resolve outside the folder.
  - A config over `MAX_CONFIG_BYTES`, nested deeper than `MAX_CONFIG_DEPTH`, or not valid JSON.
- Refused unless trusted (these are the model's own code, which a trusting user accepts):
  - the config scan: `Lambda`-like layers and serialised functions anywhere in the config, a
    `module` or `registered_name` package outside `ALLOWED_PACKAGES`, and suspicious strings
    (loader and file APIs, `exec`/`eval` calls, paths and URLs where data should be);
  - the SavedModel op scan: ops that run Python or read and write files.

The SavedModel op scan is a heuristic: it looks in `saved_model.pb` for the exact op name stored as a
length-prefixed protobuf string (every node's `op` field is one), without parsing the graph, because
the parser would import TensorFlow. A string constant spelled exactly like a refused op also trips it.
The checkpoint ops every SavedModel's saver uses (`SaveV2`, `RestoreV2`, `MergeV2Checkpoints`, ...) are
not refused, so a graph that calls them in its serving signature is not caught.
"""

import builtins
import json
import os
import re
import stat
import zipfile
from pathlib import Path

from mobilepre.errors import MobilepreError, param
from mobilepre.graph_scan import GraphParseError, refused_ops

MAX_ZIP_MEMBERS = 10_000
MAX_UNCOMPRESSED_BYTES = 2 * 1024**3  # 2 GiB across all members of a .keras archive
BOMB_FLOOR_BYTES = 1024**2  # members at or below 1 MiB are too small to be a bomb
MAX_COMPRESSION_RATIO = 100
MAX_CONFIG_BYTES = 64 * 1024**2
MAX_CONFIG_DEPTH = 200
MAX_SAVED_MODEL_PB_BYTES = 2 * 1024**3  # protobuf's own limit

# Root packages a config may name in `module` or as `pkg>` in `registered_name`. Keras 3 itself writes
# only `keras...` modules and bare registered names; `tensorflow` appears in TypeSpec configs and
# `tf_keras` in models from the legacy Keras 2 package. `builtins` and `numpy` are not packages of
# model objects and are left out; see `_check_module` for the one `builtins` form Keras writes.
ALLOWED_PACKAGES = frozenset({"keras", "tf_keras", "tensorflow", "mobilepre"})

# Layers and operations that carry Python code or load another model from a path.
_CODE_CLASS_NAMES = frozenset({"Lambda", "__lambda__", "TFOpLambda", "SlicingOpLambda", "TFSMLayer"})
# Keys under which Keras serialises a function (Lambda, VectorizedMap, tf_keras Lambda and TFOpLambda).
_FUNCTION_KEYS = ("function", "function_type")

# Identifiers that have no business in a model config, matched as whole identifiers anywhere in a string.
_FORBIDDEN_IDENTIFIERS = frozenset(
    {
        "enable_unsafe_deserialization",
        "get_file",
        "load_model",
        "TFSMLayer",
        "__import__",
        "__builtins__",
        "__globals__",
        "__subclasses__",
        "__reduce__",
        "func_load",
        "subprocess",
    }
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CODE_CALL = re.compile(r"\b(?:exec|eval)\s*\(|\bos\s*\.\s*(?:system|popen|exec\w*|spawn\w*)\b")
_CODE_NAMES = frozenset({"exec", "eval"})  # refused as a whole value, e.g. the name of a function
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://|^file:", re.IGNORECASE)
_PATH = re.compile(r"^(?:/|~$|~[\w.-]*[/\\]|[A-Za-z]:[\\/]|\\\\)|(?:^|[/\\])\.\.(?:[/\\]|$)")

_ACCEPTED = "a .keras archive, a .h5/.hdf5 file or a SavedModel folder (with saved_model.pb)"
_TRUST_HINT = f"if you trust this file, pass {param('trust')}"


def scan_model(path: Path, trust: bool = False) -> str:
    """Check the model at `path` before anything loads it; return its format.

    Returns "keras", "h5" or "saved_model". Raises MobilepreError (exit code 2) naming the file, the
    problem and what to do. `trust=True` skips the checks of the model's own content (see the module
    docstring) but never the ones that protect this process.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise MobilepreError(f"{path}: folder has no saved_model.pb; give {_ACCEPTED}")
        _scan_saved_model(path, trust)
        return "saved_model"
    if not path.is_file():
        raise MobilepreError(f"{path}: no such file; give {_ACCEPTED}")
    suffix = path.suffix.lower()
    if suffix == ".keras":
        _scan_keras(path, trust)
        return "keras"
    if suffix in (".h5", ".hdf5"):
        _scan_h5_model(path, trust)
        return "h5"
    raise MobilepreError(f"{path}: unknown model format {suffix or '(no extension)'!r}; give {_ACCEPTED}")


def _refuse(path, problem: str, remedy: str = "re-save the model with Keras or use another file") -> MobilepreError:
    return MobilepreError(f"{path}: {problem}; {remedy}")


# --- .keras archives -------------------------------------------------------------------------------


def _scan_keras(path: Path, trust: bool) -> None:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise _refuse(path, f"is not a readable .keras (zip) archive ({e})") from None
    with archive:
        members = archive.infolist()
        _check_zip_directory(path, members)
        names = {info.filename for info in members}
        if "config.json" not in names:
            raise _refuse(path, "has no config.json, so it is not a Keras model archive")
        if "model.weights.h5" in names:
            _scan_inner_weights(path, archive)
        config_bytes = _read_member(path, archive, "config.json")
    config = _parse_config(path, "config.json", config_bytes)
    if not trust:
        _scan_config(path, "config.json", config)


def _check_zip_directory(path: Path, members: list) -> None:
    if len(members) > MAX_ZIP_MEMBERS:
        raise _refuse(path, f"archive has {len(members)} members, more than the {MAX_ZIP_MEMBERS} allowed")
    seen = set()
    total_bytes = 0
    for info in members:
        name = info.filename
        if name in seen:
            raise _refuse(path, f"archive member {name!r} appears twice")
        seen.add(name)
        if _is_unsafe_member_name(name):
            raise _refuse(path, f"archive member {name!r} is an absolute path or climbs out with '..'")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise _refuse(path, f"archive member {name!r} is a symbolic link")
        total_bytes += info.file_size
        if total_bytes > MAX_UNCOMPRESSED_BYTES:
            raise _refuse(path, f"archive expands to more than {_mib(MAX_UNCOMPRESSED_BYTES)}")
        if info.file_size > BOMB_FLOOR_BYTES and info.file_size > MAX_COMPRESSION_RATIO * info.compress_size:
            raise _refuse(
                path,
                f"archive member {name!r} expands from {info.compress_size} bytes to {_mib(info.file_size)}, "
                f"more than {MAX_COMPRESSION_RATIO}x (a decompression bomb)",
            )


def _is_unsafe_member_name(name: str) -> bool:
    if "\x00" in name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return True
    return ".." in re.split(r"[/\\]", name)


def _read_member(path: Path, archive: zipfile.ZipFile, name: str) -> bytes:
    info = archive.getinfo(name)
    if info.file_size > MAX_CONFIG_BYTES:
        raise _refuse(path, f"{name} is {_mib(info.file_size)}, more than the {_mib(MAX_CONFIG_BYTES)} allowed")
    try:
        with archive.open(info) as member:
            # The directory may lie about the size; never read more than the limit.
            data = member.read(MAX_CONFIG_BYTES + 1)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise _refuse(path, f"{name} cannot be read from the archive ({e})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise _refuse(path, f"{name} is more than the {_mib(MAX_CONFIG_BYTES)} allowed")
    return data


def _scan_inner_weights(path: Path, archive: zipfile.ZipFile) -> None:
    import h5py

    # Keras opens the weights from memory with h5py; an external link there reads a file as well.
    where = f"{path} (model.weights.h5)"
    try:
        with archive.open("model.weights.h5") as member, h5py.File(member, "r") as h5:
            _check_h5_structure(where, h5)
    except MobilepreError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise _refuse(where, f"is not a readable HDF5 weights file ({e})") from None


# --- HDF5 ------------------------------------------------------------------------------------------


def _scan_h5_model(path: Path, trust: bool) -> None:
    import h5py

    try:
        h5 = h5py.File(path, "r")
    except OSError as e:
        raise _refuse(path, f"is not a readable HDF5 file ({e})") from None
    try:
        with h5:
            _check_h5_structure(path, h5)
            if "model_config" not in h5.attrs:
                raise _refuse(path, "has no model_config: it holds weights only", "save the whole model, not only its weights")
            configs = {name: _read_h5_attr(path, h5, name) for name in ("model_config", "training_config") if name in h5.attrs}
    except (OSError, RuntimeError, KeyError, ValueError) as e:
        raise _refuse(path, f"is a damaged HDF5 file ({e})") from None
    for name, raw in configs.items():
        config = _parse_config(path, name, raw)
        if not trust:
            _scan_config(path, name, config)


def _check_h5_structure(where, h5) -> None:
    import h5py

    problems = []

    def check_link(name, link):
        if isinstance(link, h5py.ExternalLink):
            problems.append(f"HDF5 link {name!r} points to another file ({link.filename}:{link.path})")
        elif isinstance(link, h5py.SoftLink):
            if not _soft_link_stays_inside(h5, name, link.path):
                problems.append(f"HDF5 soft link {name!r} points outside the file's objects ({link.path})")
        elif not isinstance(link, h5py.HardLink):
            problems.append(f"HDF5 link {name!r} is a user-defined link, which Keras never writes")
        return problems[0] if problems else None

    # Links first: visititems below must not be asked to step through a link to another file.
    h5.visititems_links(check_link)
    if not problems:

        def check_object(name, obj):
            if isinstance(obj, h5py.Dataset):
                if obj.external:
                    problems.append(f"HDF5 dataset {name!r} keeps its data in external files")
                elif obj.is_virtual:
                    problems.append(f"HDF5 dataset {name!r} is a virtual dataset mapped from other files")
            return problems[0] if problems else None

        h5.visititems(check_object)
    if problems:
        raise _refuse(where, problems[0], "re-save the model with Keras; such files can read other files")


def _soft_link_stays_inside(h5, link_name: str, target: str) -> bool:
    """True if `target` names an existing object reached from the root through hard links only."""
    import h5py

    parent = link_name.rsplit("/", 1)[0] if "/" in link_name else ""
    absolute = target if target.startswith("/") else f"{parent}/{target}"
    parts = [p for p in absolute.split("/") if p]
    if any(p in (".", "..") for p in parts):
        return False
    group = h5
    for part in parts:
        if not isinstance(group, h5py.Group):
            return False
        link = group.get(part, getlink=True)
        if not isinstance(link, h5py.HardLink):
            return False
        group = group[part]
    return True


def _read_h5_attr(path: Path, h5, name: str):
    size = h5.attrs.get_id(name).get_storage_size()
    if size > MAX_CONFIG_BYTES:
        raise _refuse(path, f"{name} is {_mib(size)}, more than the {_mib(MAX_CONFIG_BYTES)} allowed")
    value = h5.attrs[name]
    if hasattr(value, "tolist") and not isinstance(value, (bytes, str)):
        value = value.tolist()
    if not isinstance(value, (bytes, str)):
        raise _refuse(path, f"{name} is not a JSON string")
    return value


# --- SavedModel ------------------------------------------------------------------------------------


def _scan_saved_model(path: Path, trust: bool) -> None:
    root = os.path.realpath(path)
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            entry = os.path.join(folder, name)
            if os.path.islink(entry) and not _is_within(os.path.realpath(entry), root):
                raise _refuse(
                    path,
                    f"{os.path.relpath(entry, path)} is a symbolic link to {os.readlink(entry)}, outside the folder",
                    "copy the file into the folder instead of linking to it",
                )
    if trust:
        return
    pb = path / "saved_model.pb"
    size = pb.stat().st_size
    if size > MAX_SAVED_MODEL_PB_BYTES:
        raise _refuse(path, f"saved_model.pb is {_mib(size)}, more than protobuf's {_mib(MAX_SAVED_MODEL_PB_BYTES)}")
    try:
        graph = pb.read_bytes()
    except OSError as e:
        raise _refuse(path, f"saved_model.pb cannot be read ({e})") from None
    try:
        refused = refused_ops(graph)
    except GraphParseError as error:
        raise _refuse(path, f"saved_model.pb is not a SavedModel graph: {error}") from None
    if refused:
        first = refused[0]
        others = sorted({r.op for r in refused} - {first.op})
        more = f" (and {', '.join(others[:5])}{'...' if len(others) > 5 else ''})" if others else ""
        raise _refuse(
            path,
            f"{first.where} uses the op {first.op}{more}, which is not a pure numeric op: it may print, read or "
            "write files, run Python or decode data, and mobilepre runs no such op from an untrusted model",
            _TRUST_HINT,
        )


def _is_within(target: str, root: str) -> bool:
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


# --- the config scan -------------------------------------------------------------------------------


def _parse_config(path: Path, name: str, raw) -> object:
    if len(raw) > MAX_CONFIG_BYTES:
        raise _refuse(path, f"{name} is more than the {_mib(MAX_CONFIG_BYTES)} allowed")
    try:
        config = json.loads(raw)
    except RecursionError:
        raise _refuse(path, f"{name} is nested deeper than {MAX_CONFIG_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise _refuse(path, f"{name} is not valid JSON ({e})") from None
    # Keras deserialises recursively; a config deeper than this only serves to exhaust its stack.
    stack = [(config, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_CONFIG_DEPTH:
            raise _refuse(path, f"{name} is nested deeper than {MAX_CONFIG_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((child, depth + 1) for child in value.values())
        elif isinstance(value, list):
            stack.extend((child, depth + 1) for child in value)
    return config


def _scan_config(path: Path, name: str, config) -> None:
    """Walk every dict and list of `config`; refuse the first thing that could run code or read files."""
    stack = [(config, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict):
            problem = _object_problem(value)
            if problem:
                key, what = problem
                raise _refuse(path, f"{name}, at {_show(_join(where, key))}, {what}", _TRUST_HINT)
            children = []
            for key, child in value.items():
                child_where = _join(where, key)
                what = _string_problem(key)
                if what:
                    raise _refuse(path, f"{name}, at {_show(child_where)}, key {_clip(key)!r} {what}", _TRUST_HINT)
                children.append((child, child_where))
            stack.extend(reversed(children))
        elif isinstance(value, list):
            stack.extend((child, f"{where}[{i}]") for i, child in reversed(list(enumerate(value))))
        elif isinstance(value, str):
            what = _string_problem(value)
            if what:
                raise _refuse(path, f"{name}, at {_show(where)}, value {_clip(value)!r} {what}", _TRUST_HINT)


def _object_problem(obj: dict) -> tuple[str, str] | None:
    """(key, what is wrong) for a serialised Keras object that could run code or load another model."""
    for key in _FUNCTION_KEYS:
        if key in obj:
            return key, "holds a serialised Python function (as Lambda layers do)"
    class_name = obj.get("class_name")
    if class_name is not None:
        what = _name_problem("class_name", class_name)
        if what:
            return "class_name", what
        if class_name.rpartition(">")[2] in _CODE_CLASS_NAMES:
            return "class_name", f"has a {class_name} layer, which runs Python code or loads another model"
    module = obj.get("module")
    if module is not None:
        what = _module_problem(module, class_name, obj.get("config"))
        if what:
            return "module", what
    registered = obj.get("registered_name")
    if registered is not None:
        what = _name_problem("registered_name", registered)
        if what:
            return "registered_name", what
    return None


def _module_problem(module, class_name, config) -> str | None:
    if not isinstance(module, str):
        return f"has module {module!r}, which is not a module name"
    root = module.split(".", 1)[0]
    if root in ALLOWED_PACKAGES:
        return None
    # Keras serialises its built-in functions (activations, losses, metrics) as module "builtins" with
    # the function's bare name, and resolves that name only inside Keras; a name Python's own builtins
    # define (eval, exec, open, getattr...) is what older Keras versions imported instead.
    if (
        module == "builtins"
        and class_name == "function"
        and isinstance(config, str)
        and _IDENTIFIER.fullmatch(config)
        and not hasattr(builtins, config)
    ):
        return None
    return f"names module {module!r}, outside the allowed packages ({', '.join(sorted(ALLOWED_PACKAGES))})"


def _name_problem(field: str, name) -> str | None:
    """A class or registered name is `Name` (Keras's own) or `package>Name` with an allowed package."""
    if not isinstance(name, str):
        return f"has {field} {name!r}, which is not a name"
    package, sep, bare = name.rpartition(">")
    if not _IDENTIFIER.fullmatch(bare) or (sep and package not in ALLOWED_PACKAGES):
        return f"has {field} {_clip(name)!r}, outside the allowed packages ({', '.join(sorted(ALLOWED_PACKAGES))})"
    return None


def _string_problem(text: str) -> str | None:
    for token in _IDENTIFIER.findall(text):
        if token in _FORBIDDEN_IDENTIFIERS:
            return f"mentions {token}, which loads code, models or files"
    if text.strip() in _CODE_NAMES or _CODE_CALL.search(text):
        return "looks like Python code that runs commands"
    if _URL.search(text):
        return "is a URL where data should be"
    if _PATH.search(text):
        return "is a file path where data should be"
    return None


def _join(where: str, key: str) -> str:
    if _IDENTIFIER.fullmatch(key):
        return f"{where}.{key}" if where else key
    return f"{where}[{json.dumps(key)}]"


def _show(where: str) -> str:
    return where or "the top level"


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _mib(size_bytes: int) -> str:
    return f"{size_bytes / 1024**2:.1f} MiB"
