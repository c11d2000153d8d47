"""Device profiles: what each target can run and the size, latency and drift budgets it must meet.

A profile is a TOML file in `device_profiles/`, read strictly: an unknown or misspelt key, a wrong type,
a size without a unit or a negative budget is a `MobilepreError` naming the file and the key. No
TensorFlow or numpy here, so profile commands stay fast.
"""

from __future__ import annotations

import difflib
import importlib.resources
import math
import re
import tomllib
from dataclasses import dataclass, fields
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any, Callable, Mapping

from mobilepre.errors import MobilepreError

# --------------------------------------------------------------------------------------------- sizes

# Exact unit symbols. B must be upper case (b is a bit); M and G must be upper case (m is milli); the
# decimal kilo is accepted both as the SI symbol `kB` and the common `KB`. Anything else, including
# `mb`, `Mb`, `MIB` or `kib`, is refused with the spellings we do accept.
SIZE_UNITS: dict[str, int] = {
    "B": 1,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
}
_SIZE_RE = re.compile(r"\s*(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))\s*(?P<unit>\S*)\s*", re.ASCII)
_MAX_NUMBER_CHARS = 30  # keeps Decimal arithmetic trivial; no real budget needs more digits
_EXAMPLE = "write e.g. '5 MiB' or '5 MB'"


def parse_size(text: str, where: str) -> int:
    """Parse a size with a required unit into whole bytes.

    Units: `B`; decimal `kB`/`KB` (1000), `MB` (1000**2), `GB` (1000**3); binary `KiB` (1024), `MiB`
    (1024**2), `GiB` (1024**3). The unit's case is significant (`mb` could mean millibits or megabits, so
    it is refused with a suggestion). A space between number and unit is optional. Decimals are
    allowed and computed exactly, then rounded down to whole bytes, so a budget is never loosened:
    "1.5 MiB" is 1572864 and "1.0001 KiB" is 1024.

    Args:
        text: e.g. "2 MiB", "1.5MB", "300 KiB", "4096 B".
        where: what is being parsed, for the error, e.g. "device_profiles/x.toml: budget.max_size".

    Raises:
        MobilepreError: empty text, no unit, unknown unit, a negative, non-finite or malformed number.
    """
    if not isinstance(text, str):
        raise MobilepreError(f"{where} {_show(text)} is not a size: {_EXAMPLE}")
    if not text.strip():
        raise MobilepreError(f"{where} is empty: {_EXAMPLE}")
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        raise MobilepreError(f"{where} {_show(text)} is not a size: {_EXAMPLE}")
    number, unit = match["number"], match["unit"]
    if number.startswith("-") and any(c in "123456789" for c in number):
        raise MobilepreError(f"{where} {_show(text)} is negative: a size is zero or more bytes")
    if len(number) > _MAX_NUMBER_CHARS:
        raise MobilepreError(f"{where} {_show(text)} has too many digits: {_EXAMPLE}")
    if not unit:
        raise MobilepreError(f"{where} {_show(text)} has no unit: write e.g. '{number} MiB' or '{number} MB'")
    if unit not in SIZE_UNITS:
        raise MobilepreError(f"{where} {_show(text)} has an unknown unit {_show(unit)}: {_unit_hint(unit)}")
    bytes_exact = Decimal(number) * SIZE_UNITS[unit]
    return int(bytes_exact.to_integral_value(rounding=ROUND_FLOOR))


def _unit_hint(unit: str) -> str:
    prefix = unit[:1].upper()
    if unit.lower() in ("kb", "mb", "gb", "kib", "mib", "gib"):
        decimal, binary = ("kB" if prefix == "K" else f"{prefix}B"), f"{prefix}iB"
        return (f"units are case-sensitive: write {decimal!r} ({SIZE_UNITS[decimal]} bytes) or {binary!r} "
                f"({SIZE_UNITS[binary]} bytes)")
    if unit.lower() == "b":
        return "write 'B' for bytes (a lower-case b means bits)"
    return "use one of " + ", ".join(SIZE_UNITS)


def format_size(n: int) -> str:
    """Bytes for people, in binary units: 512 -> "512 B", 1572864 -> "1.5 MiB", 1234567 -> "1.18 MiB".

    Exact multiples show no decimals; other values show at most two, so the text is for display only
    (the exact count belongs in `--json` output). Negative values (a gap to a budget) keep their sign.
    """
    sign, n = ("-", -n) if n < 0 else ("", n)
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            value = f"{n / scale:.2f}".rstrip("0").rstrip(".")
            return f"{sign}{value} {unit}"
    return f"{sign}{n} B"


# ---------------------------------------------------------------------------------------- vocabulary

FORMATS: tuple[str, ...] = ("tflite", "tfjs")
# Highest fidelity first: the order in which a build tries them.
MODES_BY_FORMAT: dict[str, tuple[str, ...]] = {
    "tflite": ("float32", "float16", "dynamic", "int8"),
    "tfjs": ("float32", "float16", "uint16", "uint8"),
}
ALL_MODES: tuple[str, ...] = ("float32", "float16", "dynamic", "uint16", "int8", "uint8")
IO_TYPES: tuple[str, ...] = ("float32", "int8", "uint8")
LATENCY_SOURCES: tuple[str, ...] = ("host", "estimate", "device")
MAX_PROFILE_BYTES = 64 * 1024
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_MAX_DESCRIPTION_CHARS = 300
_MAX_SPARSITY = 0.95
_MAX_THREADS = 64


class _Invalid(MobilepreError):
    """A value a constructor refused; `from_dict` re-raises it with the file it came from."""

    def __init__(self, detail: str):
        super().__init__(f"profile: {detail}")
        self.detail = detail


# ------------------------------------------------------------------------------------------ schema


@dataclass(frozen=True)
class Budget:
    """What a bundle may cost on the device. Validated on construction.

    Attributes:
        max_size (int): bytes on disk of the whole bundle. Required, more than 0.
        max_compressed_size (int | None): gzip bytes of the bundle (what a download costs). Default None
            (not checked).
        max_latency_ms (float | None): milliseconds for one inference of one input. Default None (not
            checked).
        latency_source (str): how latency is obtained: "host" (measured on this machine with the
            profile's threads), "estimate" (the model's MACs divided by `device_gmacs`) or "device"
            (imported TFLite `benchmark_model` timings). Default "host".
        device_gmacs (float | None): the device's sustained billions of multiply-accumulates per second.
            Required when `latency_source` is "estimate", refused otherwise. Default None.
    """

    max_size: int
    max_compressed_size: int | None = None
    max_latency_ms: float | None = None
    latency_source: str = "host"
    device_gmacs: float | None = None

    def __post_init__(self):
        _check_bytes("budget.max_size", self.max_size)
        if self.max_compressed_size is not None:
            _check_bytes("budget.max_compressed_size", self.max_compressed_size)
        if self.max_latency_ms is not None:
            _check_positive("budget.max_latency_ms", self.max_latency_ms, "milliseconds")
        _check_choice("budget.latency_source", self.latency_source, LATENCY_SOURCES)
        if self.device_gmacs is not None:
            _check_positive("budget.device_gmacs", self.device_gmacs, "billions of MACs per second")
        if self.latency_source == "estimate" and self.device_gmacs is None:
            raise _Invalid(
                "budget.latency_source 'estimate' needs budget.device_gmacs: add the device's sustained "
                "billions of multiply-accumulates per second, e.g. device_gmacs = 5.0"
            )
        if self.latency_source != "estimate" and self.device_gmacs is not None:
            raise _Invalid(
                f"budget.device_gmacs is only used when latency_source = 'estimate' (it is "
                f"{self.latency_source!r}): remove device_gmacs or set latency_source = 'estimate'"
            )


@dataclass(frozen=True)
class Drift:
    """How far a compressed model's outputs may drift from the float32 reference. Every attribute
    defaults to None, meaning not checked.

    Attributes:
        min_top1_agreement (float | None): share of inputs whose top-1 class matches the reference, in
            [0, 1].
        min_top5_agreement (float | None): share of inputs whose reference top-1 class is in the
            candidate's top 5, in [0, 1].
        max_abs_error (float | None): largest absolute output difference, >= 0.
        max_mean_abs_error (float | None): mean absolute output difference, >= 0.
        max_rmse (float | None): root mean square output difference, >= 0.
        min_psnr_db (float | None): peak signal-to-noise ratio of the outputs in dB, >= 0.
        min_cosine (float | None): cosine similarity of the output vectors, in [-1, 1].
        max_accuracy_drop (float | None): accuracy against labels lost relative to the reference, in
            [0, 1]; only checked when labels are given.
    """

    min_top1_agreement: float | None = None
    min_top5_agreement: float | None = None
    max_abs_error: float | None = None
    max_mean_abs_error: float | None = None
    max_rmse: float | None = None
    min_psnr_db: float | None = None
    min_cosine: float | None = None
    max_accuracy_drop: float | None = None

    def __post_init__(self):
        ranges = {
            "min_top1_agreement": (0.0, 1.0),
            "min_top5_agreement": (0.0, 1.0),
            "max_abs_error": (0.0, math.inf),
            "max_mean_abs_error": (0.0, math.inf),
            "max_rmse": (0.0, math.inf),
            "min_psnr_db": (0.0, math.inf),
            "min_cosine": (-1.0, 1.0),
            "max_accuracy_drop": (0.0, 1.0),
        }
        for key, (low, high) in ranges.items():
            value = getattr(self, key)
            if value is not None:
                _check_range(f"drift.{key}", value, low, high)

    def is_empty(self) -> bool:
        """True when no drift budget is set (allowed, but then any drift passes)."""
        return all(getattr(self, f.name) is None for f in fields(self))


@dataclass(frozen=True)
class Profile:
    """One device class: the formats and quantization modes it can run and the budgets it must meet.

    Validated on construction; `formats` and `quantization` are stored in canonical order (formats as
    in `FORMATS`, modes highest fidelity first), so two profiles listing the same sets are equal.

    Attributes:
        name (str): lower-case letters, digits and dashes, starting with a letter or digit, at most 64
            characters; equals the file stem. Required.
        description (str): one sentence on what the profile stands for. Required.
        formats (tuple[str, ...]): non-empty subset of "tflite", "tfjs". Required.
        quantization (tuple[str, ...]): the modes this device may run; TFLite: float32, float16, dynamic,
            int8; TF.js: float32, float16, uint16, uint8. Each must belong to a listed format and each
            format must get at least one. Required.
        io_type (str): input/output type of a full-integer int8 TFLite model: "float32", "int8" or
            "uint8"; anything but "float32" needs format "tflite" and mode "int8". Default "float32".
        max_sparsity (float): largest share of zero weights a candidate may be pruned to, in [0, 0.95].
            Default 0.0 (no pruning).
        threads (int): CPU threads for inference and host latency, 1..64. Default 1.
        budget (Budget): size and latency budgets. Required (at least `max_size`).
        drift (Drift): drift budgets against the float32 reference. Default: none set.
    """

    name: str
    description: str
    formats: tuple[str, ...]
    quantization: tuple[str, ...]
    budget: Budget
    io_type: str = "float32"
    max_sparsity: float = 0.0
    threads: int = 1
    drift: Drift = Drift()

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise _Invalid(
                f"name {_show(self.name)} is not a valid profile name: use lower-case letters, digits "
                "and dashes, e.g. 'android-low-end'"
            )
        _check_description(self.description)
        object.__setattr__(self, "formats", _canonical("formats", self.formats, FORMATS))
        object.__setattr__(self, "quantization", _canonical("quantization", self.quantization, ALL_MODES))
        _check_modes_match_formats(self.formats, self.quantization)
        _check_choice("io_type", self.io_type, IO_TYPES)
        if self.io_type != "float32" and ("tflite" not in self.formats or "int8" not in self.quantization):
            raise _Invalid(
                f"io_type {self.io_type!r} applies only to full-integer int8 TFLite models: add 'tflite' to "
                "formats and 'int8' to quantization, or remove io_type"
            )
        _check_range("max_sparsity", self.max_sparsity, 0.0, _MAX_SPARSITY)
        if type(self.threads) is not int or not 1 <= self.threads <= _MAX_THREADS:
            raise _Invalid(f"threads {_show(self.threads)} is out of range: use a whole number from 1 to 64")
        if not isinstance(self.budget, Budget) or not isinstance(self.drift, Drift):
            raise TypeError("Profile.budget must be a Budget and Profile.drift a Drift")

    def modes_for(self, fmt: str) -> tuple[str, ...]:
        """The listed modes valid for `fmt`, highest fidelity first; () if the profile lacks `fmt`."""
        if fmt not in MODES_BY_FORMAT:
            raise MobilepreError(f"unknown format {_show(fmt)}: use one of {', '.join(FORMATS)}")
        if fmt not in self.formats:
            return ()
        return tuple(m for m in MODES_BY_FORMAT[fmt] if m in self.quantization)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able and stable: keys sorted, sizes in bytes, unset optional budgets left out."""
        out: dict[str, Any] = {
            "budget": _without_none(self.budget),
            "description": self.description,
            "drift": _without_none(self.drift),
            "formats": list(self.formats),
            "io_type": self.io_type,
            "max_sparsity": self.max_sparsity,
            "name": self.name,
            "quantization": list(self.quantization),
            "threads": self.threads,
        }
        return dict(sorted(out.items()))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "profile") -> Profile:
        """Read a profile from a parsed TOML document or from `to_dict()` output, strictly.

        Sizes may be unit strings ("2 MiB") or whole bytes (as `to_dict` writes them). `where` names the
        source in errors, e.g. the file path.

        Raises:
            MobilepreError: unknown or misspelt key (with the closest valid key), missing required key,
                wrong type, or a value out of range, naming `where` and the key.
        """
        return _profile_from_mapping(data, where, _size_from_value)


# ------------------------------------------------------------------------------------------ reading


def load_profile(path: str | Path) -> Profile:
    """Read one profile TOML file. Sizes must carry a unit; `name` must equal the file stem.

    Raises:
        MobilepreError: the file is missing, not a file, over 64 KiB, not UTF-8 or not valid TOML, or
            any error `Profile.from_dict` raises, naming the file.
    """
    path = Path(path)
    where = str(path)
    document = _parse_toml(_read_text(path), where)
    profile = _profile_from_mapping(document, where, _size_from_toml)
    if profile.name != path.stem:
        raise MobilepreError(
            f"{where}: name {profile.name!r} does not match the file name: rename the file to "
            f"{profile.name}.toml or set name = {path.stem!r}"
        )
    return profile


def load_profiles(dir_or_file: str | Path) -> list[Profile]:
    """Read one profile file, or every `*.toml` in a folder (not recursive, dotfiles skipped), sorted by
    name.

    Raises:
        MobilepreError: the path does not exist, the folder has no .toml files, two files declare the
            same name, or any error `load_profile` raises.
    """
    path = Path(dir_or_file)
    if path.is_file():
        return [load_profile(path)]
    if not path.is_dir():
        raise MobilepreError(f"{path}: no such profile file or folder: give a .toml file or a folder of them")
    files = sorted(p for p in path.glob("*.toml") if not p.name.startswith(".") and p.is_file())
    if not files:
        raise MobilepreError(f"{path}: folder has no .toml profiles: add one, e.g. copy a file from device_profiles/")
    profiles: dict[str, Profile] = {}
    sources: dict[str, Path] = {}
    for file in files:
        profile = load_profile(file)
        if profile.name in profiles:
            raise MobilepreError(
                f"{file}: profile name {profile.name!r} is also used by {sources[profile.name]}: rename one"
            )
        profiles[profile.name] = profile
        sources[profile.name] = file
    return [profiles[name] for name in sorted(profiles)]


def default_profiles_dir() -> Path:
    """The shipped profiles: `device_profiles/` in the repository, package data `mobilepre.device_profiles`
    in an installed wheel."""
    return Path(str(importlib.resources.files("mobilepre.device_profiles")))


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_PROFILE_BYTES + 1)
    except FileNotFoundError:
        raise MobilepreError(f"{path}: no such profile file: check the path") from None
    except IsADirectoryError:
        raise MobilepreError(f"{path}: is a folder, not a profile file: give a .toml file") from None
    except OSError as e:
        raise MobilepreError(f"{path}: cannot read the profile: {e.strerror or e}") from None
    if len(raw) > MAX_PROFILE_BYTES:
        raise MobilepreError(f"{path}: profile is over 64 KiB: a profile is a few lines of TOML, check the file")
    try:
        return raw.decode("utf-8-sig")  # tolerate the byte-order mark some editors write
    except UnicodeDecodeError as e:
        raise MobilepreError(
            f"{path}: profile is not UTF-8 (byte {raw[e.start]:#04x} at offset {e.start}): save it as UTF-8"
        ) from None


def _parse_toml(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise MobilepreError(f"{where}: not valid TOML: {_one_line(str(e))}") from None
    except RecursionError:
        raise MobilepreError(f"{where}: not valid TOML: values nested too deeply") from None


# ------------------------------------------------------------------------------------- from mapping

_TOP_KEYS = ("name", "description", "formats", "quantization", "io_type", "max_sparsity", "threads",
             "budget", "drift")
_REQUIRED_TOP = ("name", "description", "formats", "quantization", "budget")
_BUDGET_KEYS = tuple(f.name for f in fields(Budget))
_DRIFT_KEYS = tuple(f.name for f in fields(Drift))
_SECTIONS = {"": _TOP_KEYS, "budget": _BUDGET_KEYS, "drift": _DRIFT_KEYS}

_SizeReader = Callable[[Any, str], int]


def _profile_from_mapping(data: Any, where: str, read_size: _SizeReader) -> Profile:
    top = _table(data, where, "", "a table of keys")
    _check_keys(top, where, "")
    for key in _REQUIRED_TOP:
        if key not in top:
            raise MobilepreError(f"{where}: missing required key {_key('', key)!r}: {_REQUIRED_HINTS[key]}")
    budget_table = _table(top["budget"], where, "budget", "a [budget] table")
    _check_keys(budget_table, where, "budget")
    if "max_size" not in budget_table:
        raise MobilepreError(f"{where}: missing required key 'budget.max_size': add e.g. max_size = \"4 MiB\"")
    drift_table = _table(top.get("drift", {}), where, "drift", "a [drift] table")
    _check_keys(drift_table, where, "drift")

    try:
        budget = Budget(
            max_size=read_size(budget_table["max_size"], f"{where}: budget.max_size"),
            max_compressed_size=_optional(budget_table, "max_compressed_size",
                                          lambda v: read_size(v, f"{where}: budget.max_compressed_size")),
            max_latency_ms=_optional(budget_table, "max_latency_ms", lambda v: _number(v, where, "budget.max_latency_ms")),
            latency_source=_string(budget_table.get("latency_source", "host"), where, "budget.latency_source"),
            device_gmacs=_optional(budget_table, "device_gmacs", lambda v: _number(v, where, "budget.device_gmacs")),
        )
        drift = Drift(**{k: _number(v, where, f"drift.{k}") for k, v in drift_table.items()})
        return Profile(
            name=_string(top["name"], where, "name"),
            description=_string(top["description"], where, "description"),
            formats=_string_list(top["formats"], where, "formats"),
            quantization=_string_list(top["quantization"], where, "quantization"),
            io_type=_string(top.get("io_type", "float32"), where, "io_type"),
            max_sparsity=_number(top.get("max_sparsity", 0.0), where, "max_sparsity"),
            threads=_integer(top.get("threads", 1), where, "threads"),
            budget=budget,
            drift=drift,
        )
    except _Invalid as e:
        raise MobilepreError(f"{where}: {e.detail}") from None


_REQUIRED_HINTS = {
    "name": "add name = \"<file stem>\"",
    "description": "add description = \"One sentence on the device class.\"",
    "formats": "add e.g. formats = [\"tflite\"]",
    "quantization": "add e.g. quantization = [\"float32\", \"float16\", \"dynamic\", \"int8\"]",
    "budget": "add a [budget] table with at least max_size = \"4 MiB\"",
}


def _check_keys(table: dict, where: str, section: str) -> None:
    valid = _SECTIONS[section]
    for key in table:
        if key in valid:
            continue
        shown = _key(section, key)
        home = [s for s, keys in _SECTIONS.items() if s != section and key in keys]
        if home == [""]:
            hint = "it belongs at the top of the file, before any [table] header"
        elif home:
            hint = f"it belongs in the [{home[0]}] table"
        else:
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
            hint = f"did you mean {_key(section, close[0])!r}?" if close else f"valid keys: {', '.join(valid)}"
        raise MobilepreError(f"{where}: unknown key {_show(shown)}: {hint}")


def _size_from_value(value: Any, where: str) -> int:
    """A size from a mapping: a unit string, or whole bytes as `to_dict` writes them."""
    if type(value) is int:
        if value < 0:
            raise MobilepreError(f"{where} {value} is negative: a size is zero or more bytes")
        return value
    if isinstance(value, str):
        return parse_size(value, where)
    raise MobilepreError(f"{where} must be a size string such as \"4 MiB\", got {_type_name(value)}")


def _size_from_toml(value: Any, where: str) -> int:
    """A size in a profile file: always a string with a unit, so "5" is never guessed to be bytes."""
    if type(value) in (int, float):
        raise MobilepreError(f"{where} {_show(value)} has no unit: write e.g. '{value} MiB' or '{value} MB'")
    return _size_from_value(value, where)


def _optional(table: dict, key: str, read: Callable[[Any], Any]) -> Any:
    return read(table[key]) if key in table else None


def _table(value: Any, where: str, key: str, what: str) -> dict:
    if not isinstance(value, dict):
        named = repr(key) if key else "a profile"
        raise MobilepreError(f"{where}: {named} must be {what}, got {_type_name(value)}")
    return value


def _string(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str):
        raise MobilepreError(f"{where}: {key} must be a string, got {_type_name(value)} {_show(value)}")
    return value


def _string_list(value: Any, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise MobilepreError(
            f"{where}: {key} must be a list of strings, e.g. {key} = [\"float32\"], got {_show(value)}"
        )
    return tuple(value)


def _number(value: Any, where: str, key: str) -> float:
    if type(value) not in (int, float):
        raise MobilepreError(f"{where}: {key} must be a number, got {_type_name(value)} {_show(value)}")
    if not math.isfinite(value):
        raise MobilepreError(f"{where}: {key} must be a finite number, got {_show(value)}")
    return float(value)


def _integer(value: Any, where: str, key: str) -> int:
    if type(value) is not int:
        raise MobilepreError(f"{where}: {key} must be a whole number, got {_type_name(value)} {_show(value)}")
    return value


# ------------------------------------------------------------------------------------------- checks


def _check_bytes(key: str, value: Any) -> None:
    if type(value) is not int:
        raise _Invalid(f"{key} must be a whole number of bytes, got {_type_name(value)}")
    if value < 0:
        raise _Invalid(f"{key} {value} is negative: a size is zero or more bytes")
    if value == 0:
        raise _Invalid(f"{key} is 0 bytes, which no bundle can meet: give a positive size such as \"4 MiB\"")


def _check_positive(key: str, value: Any, unit: str) -> None:
    if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
        raise _Invalid(f"{key} {_show(value)} must be a positive number of {unit}")


def _check_range(key: str, value: Any, low: float, high: float) -> None:
    if type(value) not in (int, float) or not low <= value <= high:  # NaN fails both comparisons
        raise _Invalid(f"{key} {_show(value)} is out of range: use a number from {low:g} to {high:g}")


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _Invalid(f"{key} {_show(value)} is not valid: {_suggest(value, choices)}")


def _check_description(value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid("description is empty: write one sentence on what the profile stands for")
    if "\n" in value or "\r" in value or len(value) > _MAX_DESCRIPTION_CHARS:
        raise _Invalid(f"description must be one sentence on one line, at most {_MAX_DESCRIPTION_CHARS} characters")


def _canonical(key: str, values: Any, order: tuple[str, ...]) -> tuple[str, ...]:
    values = tuple(values) if isinstance(values, (list, tuple)) else values
    if not isinstance(values, tuple) or not values:
        raise _Invalid(f"{key} must be a non-empty list: {_suggest(None, order)}")
    for value in values:
        if value not in order:
            raise _Invalid(f"{key} lists {_show(value)}, which is not valid: {_suggest(value, order)}")
    if len(set(values)) != len(values):
        twice = next(v for v in values if values.count(v) > 1)
        raise _Invalid(f"{key} lists {twice!r} twice: list each once")
    return tuple(v for v in order if v in values)


def _check_modes_match_formats(formats: tuple[str, ...], modes: tuple[str, ...]) -> None:
    for mode in modes:
        homes = [f for f in FORMATS if mode in MODES_BY_FORMAT[f]]
        if not set(homes) & set(formats):
            raise _Invalid(
                f"quantization lists {mode!r}, a {' / '.join(_FORMAT_NAMES[f] for f in homes)} mode, but formats "
                f"is {list(formats)}: add {homes[0]!r} to formats or remove {mode!r}"
            )
    for fmt in formats:
        if not set(MODES_BY_FORMAT[fmt]) & set(modes):
            raise _Invalid(
                f"formats lists {fmt!r} but quantization has no {_FORMAT_NAMES[fmt]} mode: add one of "
                f"{', '.join(MODES_BY_FORMAT[fmt])} or remove {fmt!r}"
            )


_FORMAT_NAMES = {"tflite": "TFLite", "tfjs": "TF.js"}


# ------------------------------------------------------------------------------------------ helpers


def _without_none(obj: Budget | Drift) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in sorted(fields(obj), key=lambda f: f.name)
            if getattr(obj, f.name) is not None}


def _suggest(value: Any, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6) if isinstance(value, str) else []
    listed = "use one of " + ", ".join(choices)
    return f"did you mean {close[0]!r}? ({listed})" if close else listed


def _key(section: str, key: Any) -> str:
    return f"{section}.{key}" if section else str(key)


def _show(value: Any, limit: int = 40) -> str:
    """A short one-line repr of a user's value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a table"}
    return names.get(type(value), type(value).__name__)
