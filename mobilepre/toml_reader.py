"""The one strict TOML reader, for profiles and `--config`: regular files only, a size cap, UTF-8, unknown
keys refused with the closest valid key, values checked by type (sizes with units)."""

from __future__ import annotations

import difflib
import math
import os
import stat
import tomllib
from pathlib import Path
from typing import Any, Callable, Mapping

from mobilepre.errors import MobilepreError
from mobilepre.sizes import parse_size


def read_regular_file(path: Path, what: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; a folder, FIFO, device or larger file is one
    clear error (reading `/dev/zero` or a FIFO would never end)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise MobilepreError(f"{what} {path} does not exist: check the path") from None
    except OSError as error:
        raise MobilepreError(f"{what} {path} cannot be read: {error.strerror or error}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise MobilepreError(f"{what} {path} is a folder: give a file")
        if not stat.S_ISREG(info.st_mode):
            raise MobilepreError(f"{what} {path} is not a regular file (a device, FIFO or socket): give a file")
        if info.st_size > max_bytes:
            raise MobilepreError(f"{what} {path} is {info.st_size:,} bytes, over the {max_bytes:,}-byte limit for such a file: check the file")
        try:
            raw = f.read(max_bytes + 1)
        except OSError as error:
            raise MobilepreError(f"{what} {path} cannot be read: {error.strerror or error}") from None
    if len(raw) > max_bytes:
        raise MobilepreError(f"{what} {path} is over the {max_bytes:,}-byte limit for such a file: check the file")
    return raw


def read_toml(path: Path, what: str, max_bytes: int = 64 * 1024) -> dict[str, Any]:
    """Parse a TOML file strictly: regular file, at most `max_bytes`, UTF-8 (a byte-order mark is fine)."""
    raw = read_regular_file(path, what, max_bytes)
    try:
        text = raw.decode("utf-8-sig")  # tolerate the byte-order mark some editors write
    except UnicodeDecodeError as e:
        raise MobilepreError(
            f"{what} {path} is not UTF-8 (byte {raw[e.start]:#04x} at offset {e.start}): save it as UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise MobilepreError(f"{what} {path}: not valid TOML: {one_line(str(e))}") from None
    except RecursionError:
        raise MobilepreError(f"{what} {path}: not valid TOML: values nested too deeply") from None


def check_keys(table: Mapping, where: str, section: str, sections: Mapping[str, tuple[str, ...]]) -> None:
    """Refuse a key of `table` that is not in `sections[section]`, saying where it belongs or the closest
    valid key. `sections` maps a table name ("" for the top level) to its keys."""
    valid = sections[section]
    for key in table:
        if key in valid:
            continue
        shown = key_name(section, key)
        home = [s for s, keys in sections.items() if s != section and key in keys]
        if home == [""]:
            hint = "it belongs at the top of the file, before any [table] header"
        elif home:
            hint = f"it belongs in the [{home[0]}] table"
        else:
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
            hint = f"did you mean {key_name(section, close[0])!r}?" if close else f"valid keys: {', '.join(valid)}"
        raise MobilepreError(f"{where}: unknown key {show(shown)}: {hint}")


# ------------------------------------------------------------------------------------------ values


def table(value: Any, where: str, key: str, what: str) -> dict:
    if not isinstance(value, dict):
        named = repr(key) if key else "a profile"
        raise MobilepreError(f"{where}: {named} must be {what}, got {type_name(value)}")
    return value


def string(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str):
        raise MobilepreError(f"{where}: {key} must be a string, got {type_name(value)} {show(value)}")
    return value


def string_list(value: Any, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise MobilepreError(f"{where}: {key} must be a list of strings, e.g. {key} = [\"float32\"], got {show(value)}")
    return tuple(value)


def number(value: Any, where: str, key: str) -> float:
    if type(value) not in (int, float):
        raise MobilepreError(f"{where}: {key} must be a number, got {type_name(value)} {show(value)}")
    if not math.isfinite(value):
        raise MobilepreError(f"{where}: {key} must be a finite number, got {show(value)}")
    return float(value)


def integer(value: Any, where: str, key: str) -> int:
    if type(value) is not int:
        raise MobilepreError(f"{where}: {key} must be a whole number, got {type_name(value)} {show(value)}")
    return value


def boolean(value: Any, where: str, key: str) -> bool:
    if type(value) is not bool:
        raise MobilepreError(f"{where}: {key} must be true or false, got {type_name(value)} {show(value)}")
    return value


def size_from_value(value: Any, where: str) -> int:
    """A size from a mapping: a unit string, or whole bytes as `Profile.to_dict` writes them."""
    if type(value) is int:
        if value < 0:
            raise MobilepreError(f"{where} {value} is negative: a size is zero or more bytes")
        return value
    if isinstance(value, str):
        return parse_size(value, where)
    raise MobilepreError(f"{where} must be a size string such as \"4 MiB\", got {type_name(value)}")


def size_from_toml(value: Any, where: str) -> int:
    """A size in a TOML file: always a string with a unit, so "5" is never guessed to be bytes."""
    if type(value) in (int, float):
        raise MobilepreError(f"{where} {show(value)} has no unit: write e.g. '{value} MiB' or '{value} MB'")
    return size_from_value(value, where)


def optional(mapping: Mapping, key: str, read: Callable[[Any], Any]) -> Any:
    return read(mapping[key]) if key in mapping else None


# ------------------------------------------------------------------------------------------ helpers


def key_name(section: str, key: Any) -> str:
    return f"{section}.{key}" if section else str(key)


def show(value: Any, limit: int = 40) -> str:
    """A short one-line repr of a user's value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(text: str) -> str:
    return " ".join(text.split())


def type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)
