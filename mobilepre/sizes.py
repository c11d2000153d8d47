"""Sizes with units: "5 MiB" and "5 MB" parsed exactly into bytes, and bytes shown to people."""

from __future__ import annotations

import re
from decimal import ROUND_FLOOR, Decimal

from mobilepre.errors import MobilepreError

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




def _show(value, limit: int = 40) -> str:
    """A short one-line repr of a user's value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
