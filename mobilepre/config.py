"""`--config FILE`: every build option from a TOML file, strictly (an unknown key is an error)."""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from pathlib import Path

from mobilepre.errors import MobilepreError

_PATH_KEYS = {"out", "model", "profiles", "calibration", "validation", "labels", "device_timings"}


def load_build_config(path: Path) -> dict:
    """Read a build config; relative paths in it are relative to the config file's folder."""
    from mobilepre.builder import BuildOptions

    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MobilepreError(f"--config {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise MobilepreError(f"--config {path} cannot be read: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise MobilepreError(f"--config {path}: invalid TOML: {error}") from None
    fields = {f.name: f for f in dataclasses.fields(BuildOptions)}
    options = {}
    for key, value in document.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(sorted(fields))}"
            raise MobilepreError(f"--config {path}: unknown key {key!r}{hint}")
        if key in _PATH_KEYS:
            if not isinstance(value, str):
                raise MobilepreError(f"--config {path}: {key} must be a path string")
            value = (path.parent / value) if not Path(value).is_absolute() else Path(value)
        elif key == "profile":
            if isinstance(value, str):
                value = (value,)
            if not (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
                raise MobilepreError(f"--config {path}: profile must be a name or a list of names")
            value = tuple(value)
        elif key in ("input_range", "input_shape"):
            if not isinstance(value, list):
                raise MobilepreError(f"--config {path}: {key} must be a list of numbers")
            value = tuple(value)
        elif key in ("frontend", "force", "trust_model"):
            if not isinstance(value, bool):
                raise MobilepreError(f"--config {path}: {key} must be true or false")
        elif key in ("jobs", "latency_runs", "prune_epochs"):
            if not isinstance(value, int) or isinstance(value, bool):
                raise MobilepreError(f"--config {path}: {key} must be a whole number")
        options[key] = value
    return options
