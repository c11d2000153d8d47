"""`--config FILE`: every build option from a TOML file, read by the one strict reader."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mobilepre import toml_reader as toml
from mobilepre.options import BuildOptions
from mobilepre.errors import MobilepreError, param
from mobilepre.profiles import parse_size

MAX_CONFIG_BYTES = 64 * 1024
_PATH_KEYS = {"out", "model", "profiles", "calibration", "validation", "labels", "device_timings", "sign_key", "class_names", "baseline", "cache"}
_BOOL_KEYS = {"frontend", "rgb_input", "force", "trust_model", "allow_degenerate_reference", "cache_latency"}
_INT_KEYS = {"jobs", "latency_runs", "prune_epochs"}
_NUMBER_LIST_KEYS = {"input_range", "input_shape"}


def load_build_config(path: Path) -> dict:
    """Read a build config into `BuildOptions` keywords; relative paths are relative to the file's folder."""
    path = Path(path)
    where = f"{param('config')} {path}"
    document = toml.read_toml(path, param('config'), MAX_CONFIG_BYTES)
    keys = tuple(f.name for f in dataclasses.fields(BuildOptions) if f.name != "config")
    toml.check_keys(document, where, "", {"": keys})
    options = {}
    for key, value in document.items():
        if key in _PATH_KEYS:
            value = toml.string(value, where, key)
            value = Path(value) if Path(value).is_absolute() else path.parent / value
        elif key == "profile":
            names = (value,) if isinstance(value, str) else value
            value = toml.string_list(names, where, key)
        elif key == "custom_objects":  # module names as they are; a .py file relative to this file's folder
            names = toml.string_list((value,) if isinstance(value, str) else value, where, key)
            value = tuple(str(path.parent / n) if n.endswith(".py") and not Path(n).is_absolute() else n for n in names)
        elif key in _NUMBER_LIST_KEYS:
            if not isinstance(value, list):
                raise MobilepreError(f"{where}: {key} must be a list of numbers")
            value = tuple(value)
        elif key in _BOOL_KEYS:
            value = toml.boolean(value, where, key)
        elif key in _INT_KEYS:
            value = toml.integer(value, where, key)
        elif key in ("shard_size", "cache_max_bytes"):
            value = parse_size(toml.string(value, where, key), f"{where}: {key}")
        options[key] = value
    options["config"] = path
    return options
