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
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from mobilepre import toml_reader as toml
from mobilepre.errors import MobilepreError
from mobilepre.metrics import TOLERANCES, OutputKind
from mobilepre.quantize.settings import MODES_BY_FORMAT, Format, IOType, Mode, mixed_ladder
from mobilepre.sizes import SIZE_UNITS, format_size, parse_size  # noqa: F401  (re-exported)
from mobilepre.toml_reader import read_toml, size_from_toml, size_from_value

# ---------------------------------------------------------------------------------------- vocabulary

# The engine's vocabulary: formats, modes (highest fidelity first, the order a build tries them) and
# full-integer I/O types are `mobilepre.quantize` enums; profiles store those members.
FORMATS: tuple[Format, ...] = tuple(Format)
# every mode a format makes (int4 in blocks is a rung of the mixed search, not a mode a profile lists)
ALL_MODES: tuple[Mode, ...] = tuple(m for m in Mode if any(m in modes for modes in MODES_BY_FORMAT.values()))
IO_TYPES: tuple[IOType, ...] = tuple(IOType)
LATENCY_SOURCES: tuple[str, ...] = ("host", "estimate", "device", "browser")
BROWSER_BACKENDS: tuple[str, ...] = ("wasm", "webgl", "webgpu")  # TF.js's; LiteRT.js runs on wasm and webgpu
WEB_FORMATS: tuple[Format, ...] = (Format.TFJS, Format.LITERTJS)  # alternatives: a web bundle carries one
# What a format's bundle gets among the candidates within every budget (`Profile.prefer`).
PREFERENCES: tuple[str, ...] = ("fidelity", "latency", "size")
# What a budget whose 95% interval straddles its limit counts as (`Profile.on_inconclusive`).
ON_INCONCLUSIVE: tuple[str, ...] = ("warn", "fail", "pass")
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
        max_compressed_size (int | None): gzip bytes of the model (what its download costs). Default None
            (not checked).
        max_download (int | None): gzip bytes a browser downloads on a first visit for a web format: the
            model and the runtime it needs (TF.js or LiteRT.js, `web_bundle.runtime_download`). Needs a
            web format. Default None (not checked).
        max_latency_ms (float | None): milliseconds for one inference of one input. Default None (not
            checked).
        latency_source (str): how latency is obtained: "host" (measured on this machine with the
            profile's threads), "estimate" (the model's MACs divided by `device_gmacs`) or "device"
            (imported TFLite `benchmark_model` timings) or "browser" (web bundles, TF.js or LiteRT.js:
            measured through the bundle's own page in headless Chromium on this machine). Default "host".
        browser_backend (str | None): with latency_source "browser", the backend timed: "wasm" (default),
            "webgl" (TF.js only) or "webgpu" (SwiftShader where the machine has no GPU). Refused otherwise.
        device_gmacs (float | None): the device's sustained billions of multiply-accumulates per second.
            Required when `latency_source` is "estimate", refused otherwise. Default None.
        max_peak_memory (int | None): bytes the runtime may hold for loading the model and one inference:
            LiteRT's resident memory above the process before the interpreter (model, arena, packed
            weights), TF.js's peak tensor bytes (weights included). Default None (not checked).
    """

    max_size: int
    max_compressed_size: int | None = None
    max_download: int | None = None
    max_latency_ms: float | None = None
    latency_source: str = "host"
    device_gmacs: float | None = None
    max_peak_memory: int | None = None
    browser_backend: str | None = None

    @property
    def timed_here(self) -> bool:
        """Whether latency is measured on this machine (LiteRT, Node or Chromium): neither estimated from
        MACs nor imported from the device."""
        return self.latency_source in ("host", "browser")

    def __post_init__(self):
        _check_bytes("budget.max_size", self.max_size)
        if self.max_peak_memory is not None:
            _check_bytes("budget.max_peak_memory", self.max_peak_memory)
        if self.max_compressed_size is not None:
            _check_bytes("budget.max_compressed_size", self.max_compressed_size)
        if self.max_download is not None:
            _check_bytes("budget.max_download", self.max_download)
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
        if self.browser_backend is not None:
            _check_choice("budget.browser_backend", self.browser_backend, BROWSER_BACKENDS)
            if self.latency_source != "browser":
                raise _Invalid(
                    f"budget.browser_backend is only used when latency_source = 'browser' (it is "
                    f"{self.latency_source!r}): remove browser_backend or set latency_source = 'browser'"
                )
        if self.latency_source != "estimate" and self.device_gmacs is not None:
            raise _Invalid(
                f"budget.device_gmacs is only used when latency_source = 'estimate' (it is "
                f"{self.latency_source!r}): remove device_gmacs or set latency_source = 'estimate'"
            )


class Drift:
    """How far a compressed model's outputs may drift from the float32 reference.

    `limits`: tolerance name -> limit, the defaults, applied to every output whose kind the tolerance
    makes sense for (`mobilepre.metrics.TOLERANCES`: a class-score budget never applies to a regression
    output). `outputs`: output name -> `OutputBudget`, tolerances for that output (they replace the
    defaults of the same name) and optionally its kind. `kinds`: output kind -> tolerance name -> limit,
    defaults for every output of that kind (`[drift.kinds.KIND]`: a box regression's relative error, a
    heat map's probability error), replacing the general defaults of the same name. An unset tolerance
    is not checked. `Drift(min_top1_agreement=0.98)` or `Drift({"min_top1_agreement": 0.98},
    outputs={...}, kinds={"regression": {"max_relative_error": 0.05}})`. Frozen, comparable, validated
    on construction.
    """

    __slots__ = ("_limits", "_outputs", "_kinds")

    def __init__(self, limits: Mapping[str, float] | None = None, outputs: Mapping | None = None,
                 kinds: Mapping | None = None, **named: float):
        object.__setattr__(self, "_limits", _checked_limits({**(limits or {}), **named}, "drift"))
        checked = {}
        for name, budget in (outputs or {}).items():
            if not isinstance(budget, OutputBudget):
                raise TypeError("Drift outputs must be OutputBudget values")
            checked[str(name)] = budget
        object.__setattr__(self, "_outputs", tuple(sorted(checked.items())))
        by_kind = {}
        for kind, limits_of_kind in (kinds or {}).items():
            _check_choice("drift.kinds", kind, tuple(OutputKind))
            kind = OutputKind(kind)
            pairs = _checked_limits(dict(limits_of_kind), f"drift.kinds.{kind}")
            _check_meaning(pairs, kind, f"drift.kinds.{kind}.")
            if pairs:
                by_kind[str(kind)] = pairs
        object.__setattr__(self, "_kinds", tuple(sorted(by_kind.items())))

    def __setattr__(self, name, value):
        raise AttributeError("Drift is frozen")

    def get(self, name: str) -> float | None:
        """The default limit of tolerance `name`, or None when it is not set."""
        return dict(self._limits).get(name)

    def items(self) -> tuple[tuple[str, float], ...]:
        """(tolerance name, limit) of every default, in `TOLERANCES` order."""
        return self._limits

    @property
    def outputs(self) -> dict:
        """output name -> OutputBudget."""
        return dict(self._outputs)

    def kind_for(self, output: str):
        budget = self.outputs.get(output)
        return budget.kind if budget else None

    def limits_for(self, output: str, kind) -> dict[str, float]:
        """The tolerances that apply to `output` of `kind`: the defaults its kind has, then its own."""
        limits = {name: limit for name, limit in self._limits if kind in TOLERANCES[name].kinds}
        limits.update(dict(dict(self._kinds).get(str(kind), ())))
        budget = self.outputs.get(output)
        if budget:
            limits.update(dict(budget.limits))
        return limits

    def is_empty(self) -> bool:
        """True when no drift budget is set (allowed, but then any drift passes)."""
        return not self._limits and not self._outputs and not self._kinds

    @property
    def kinds(self) -> dict:
        """output kind -> {tolerance name: limit}: the defaults of `[drift.kinds.KIND]`."""
        return {kind: dict(pairs) for kind, pairs in self._kinds}

    def to_dict(self) -> dict:
        out = dict(self._limits)
        if self._outputs:
            out["outputs"] = {name: budget.to_dict() for name, budget in self._outputs}
        if self._kinds:
            out["kinds"] = self.kinds
        return out

    def __eq__(self, other) -> bool:
        return isinstance(other, Drift) and (self._limits, self._outputs, self._kinds) == (other._limits, other._outputs, other._kinds)

    def __hash__(self) -> int:
        return hash((self._limits, self._outputs, self._kinds))

    def __repr__(self) -> str:
        return f"Drift({dict(self._limits)!r}, outputs={dict(self._outputs)!r}, kinds={self.kinds!r})"


@dataclass(frozen=True)
class OutputBudget:
    """Drift budgets of one named output (`[drift.outputs.NAME]`).

    Attributes:
        limits (tuple[tuple[str, float], ...]): tolerance name -> limit, as pairs in `TOLERANCES` order.
        kind (OutputKind | None): what the output means, overriding the kind inferred from the model.
    """

    limits: tuple = ()
    kind: OutputKind | None = None

    def __post_init__(self):
        limits = _checked_limits(dict(self.limits), "drift.outputs")
        object.__setattr__(self, "limits", limits)
        if self.kind is not None:
            _check_choice("kind", self.kind, tuple(OutputKind))
            object.__setattr__(self, "kind", OutputKind(self.kind))
            _check_meaning(limits, self.kind)

    def to_dict(self) -> dict:
        out = dict(self.limits)
        if self.kind is not None:
            out["kind"] = str(self.kind)
        return out


def _check_meaning(limits: tuple, kind: OutputKind, where: str = "") -> None:
    """Each (tolerance, limit) must make sense for an output of `kind` (`TOLERANCES[name].kinds`)."""
    for name, _ in limits:
        if kind not in TOLERANCES[name].kinds:
            raise _Invalid(f"{where}{name} has no meaning for a {kind} output: it applies to "
                           f"{', '.join(sorted(map(str, TOLERANCES[name].kinds)))} outputs")


def _checked_limits(limits: Mapping, where: str) -> tuple:
    for key, value in limits.items():
        if key not in TOLERANCES:
            raise _Invalid(f"{where}.{key} is not a drift budget: {_suggest(key, tuple(TOLERANCES))}")
        if value is not None:
            tolerance = TOLERANCES[key]
            _check_range(f"{where}.{key}", value, tolerance.low, tolerance.high)
    return tuple((k, float(limits[k])) for k in TOLERANCES if limits.get(k) is not None)


@dataclass(frozen=True)
class Profile:
    """One device class: the formats and quantization modes it can run and the budgets it must meet.

    Validated on construction; `formats` and `quantization` are stored in canonical order (formats as
    in `FORMATS`, modes highest fidelity first), so two profiles listing the same sets are equal.

    Attributes:
        name (str): lower-case letters, digits and dashes, starting with a letter or digit, at most 64
            characters; equals the file stem. Required.
        description (str): one sentence on what the profile stands for. Required.
        formats (tuple[str, ...]): non-empty subset of "tflite", "tfjs", "litertjs" (a .tflite run by
            LiteRT.js in the browser). The web formats, tfjs and litertjs, are alternatives: the bundle
            carries the one its measurements choose (`results.web_choice`). Required.
        quantization (tuple[str, ...]): the modes this device may run; TFLite: float32, float16, dynamic,
            int8; TF.js: float32, float16, uint16, uint8. Each must belong to a listed format and each
            format must get at least one. Required.
        io_type (str): input/output type of a full-integer int8 TFLite model: "float32", "int8" or
            "uint8"; anything but "float32" needs format "tflite" and mode "int8". Default "float32".
        max_sparsity (float): largest share of zero weights a candidate may be pruned to, in [0, 0.95].
            Default 0.0 (no pruning).
        min_clusters (int): fewest shared values per kernel a clustered candidate may have, 0 (no
            clustering) or 2..256; clustered candidates are tried at 64 and 16 shared values down to it.
            Default 0.
        threads (int): CPU threads for inference and host latency, 1..64. Default 1.
        prefer (str): among the candidates within every budget, which one a format's bundle gets:
            "fidelity" (the first in search order, highest fidelity first), "latency" (the lowest
            latency figure; needs `max_latency_ms`) or "size" (the fewest bytes). Default "fidelity".
        web_backends (tuple[str, ...]): the browser backends a web artifact must run right on ("wasm",
            "webgl" (TF.js only), "webgpu"): the chosen web artifact runs on each in Chromium and is judged
            against the reference with the drift budgets; a backend whose outputs miss them is named and
            refused (the manifest's `runtime.backends`; the loader never picks it), and an artifact that
            no listed backend runs right is not shipped. Needs a web format. Default () (the
            validation runtime only).
        require_signature (bool): `check` fails this profile's bundles unless a verify key shows every
            file signed (an unsigned or unverified bundle of it never passes). Default False.
        on_inconclusive (str): what a budget whose 95% interval straddles its limit counts as: "warn"
            (its measured value decides, as a point figure would, and the verdict says it is
            inconclusive and how many images would decide it), "fail" (only a budget the interval
            clears passes: for gates that must not pass by chance) or "pass" (only a budget the
            interval misses fails). Default "warn": an interval that straddles has not shown the
            model wrong, and a small validation set should not turn every close budget into a failure
            nor into a pass.
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
    min_clusters: int = 0
    threads: int = 1
    drift: Drift = Drift()
    prefer: str = "fidelity"
    require_signature: bool = False
    web_backends: tuple = ()
    on_inconclusive: str = "warn"

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise _Invalid(
                f"name {toml.show(self.name)} is not a valid profile name: use lower-case letters, digits "
                "and dashes, e.g. 'android-low-end'"
            )
        _check_description(self.description)
        object.__setattr__(self, "formats", _canonical("formats", self.formats, FORMATS))
        object.__setattr__(self, "quantization", _canonical("quantization", self.quantization, ALL_MODES))
        _check_modes_match_formats(self.formats, self.quantization)
        _check_choice("io_type", self.io_type, IO_TYPES)
        object.__setattr__(self, "io_type", IOType(self.io_type))
        if self.io_type != "float32" and (not {"tflite", "litertjs"} & set(self.formats) or "int8" not in self.quantization):
            raise _Invalid(
                f"io_type {str(self.io_type)!r} applies only to full-integer int8 TFLite models: add 'tflite' to "
                "formats and 'int8' to quantization, or remove io_type"
            )
        if self.io_type == "int8" and "litertjs" in self.formats:
            raise _Invalid("io_type 'int8': LiteRT.js has no int8 tensors at a model's inputs and outputs: use 'uint8' or "
                           "'float32', or give litertjs its own profile")
        _check_range("max_sparsity", self.max_sparsity, 0.0, _MAX_SPARSITY)
        if type(self.min_clusters) is not int or not (self.min_clusters == 0 or 2 <= self.min_clusters <= 256):
            raise _Invalid(f"min_clusters {toml.show(self.min_clusters)} is out of range: use 0 (no clustering) or a whole number from 2 to 256")
        if type(self.threads) is not int or not 1 <= self.threads <= _MAX_THREADS:
            raise _Invalid(f"threads {toml.show(self.threads)} is out of range: use a whole number from 1 to 64")
        if not isinstance(self.budget, Budget) or not isinstance(self.drift, Drift):
            raise TypeError("Profile.budget must be a Budget and Profile.drift a Drift")
        _check_choice("prefer", self.prefer, PREFERENCES)
        _check_choice("on_inconclusive", self.on_inconclusive, ON_INCONCLUSIVE)
        object.__setattr__(self, "web_backends", _canonical("web_backends", tuple(self.web_backends), BROWSER_BACKENDS)
                           if self.web_backends else ())
        if self.web_backends and not set(WEB_FORMATS) & set(self.formats):
            raise _Invalid("web_backends names the browser backends a web artifact must run on; this profile lists no web "
                           "format (tfjs, litertjs): remove it")
        if self.web_backends == ("webgl",) and "tfjs" not in self.formats:
            raise _Invalid("web_backends lists only 'webgl', a TF.js backend; LiteRT.js runs on wasm or webgpu: add one of those")
        if not isinstance(self.require_signature, bool):
            raise _Invalid(f"require_signature {toml.show(self.require_signature)} must be true or false")
        if self.budget.latency_source == "browser" and "tflite" in self.formats:
            raise _Invalid(
                "budget.latency_source 'browser' times web bundles in Chromium; this profile lists tflite: "
                "give the TFLite formats their own profile, or use latency_source = 'host'"
            )
        if self.budget.browser_backend == "webgl" and "litertjs" in self.formats:
            raise _Invalid("budget.browser_backend 'webgl' is a TF.js backend; LiteRT.js runs on wasm or webgpu: use one of those")
        if self.budget.max_download is not None and not set(WEB_FORMATS) & set(self.formats):
            raise _Invalid("budget.max_download is what a browser downloads (model and runtime); this profile lists no web "
                           "format (tfjs, litertjs): remove it or use max_size / max_compressed_size")
        if self.prefer == "latency" and self.budget.max_latency_ms is None:
            raise _Invalid("prefer = 'latency' needs a latency figure to compare: add budget.max_latency_ms")

    def modes_for(self, fmt: str) -> tuple[str, ...]:
        """The listed modes valid for `fmt`, highest fidelity first; () if the profile lacks `fmt`."""
        if fmt not in MODES_BY_FORMAT:
            raise MobilepreError(f"unknown format {toml.show(fmt)}: use one of {', '.join(FORMATS)}")
        if fmt not in self.formats:
            return ()
        return tuple(m for m in MODES_BY_FORMAT[fmt] if m in self.quantization)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able and stable: keys sorted, sizes in bytes, unset optional budgets left out."""
        out: dict[str, Any] = {
            "budget": {f.name: getattr(self.budget, f.name) for f in fields(self.budget) if getattr(self.budget, f.name) is not None},
            "description": self.description,
            "drift": self.drift.to_dict(),
            "formats": [str(f) for f in self.formats],
            "io_type": str(self.io_type),
            "max_sparsity": self.max_sparsity,
            "name": self.name,
            "quantization": [str(m) for m in self.quantization],
            "threads": self.threads,
        }
        if self.prefer != "fidelity":  # left out when default, so earlier manifests read the same
            out["prefer"] = self.prefer
        if self.min_clusters:
            out["min_clusters"] = self.min_clusters
        if self.require_signature:  # left out when default, so earlier manifests read the same
            out["require_signature"] = True
        if self.web_backends:
            out["web_backends"] = list(self.web_backends)
        if self.on_inconclusive != "warn":  # left out when default, so earlier manifests read the same
            out["on_inconclusive"] = self.on_inconclusive
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
        return _profile_from_mapping(data, where, size_from_value)


# ------------------------------------------------------------------------------------------ reading


def load_profile(path: str | Path) -> Profile:
    """Read one profile TOML file. Sizes must carry a unit; `name` must equal the file stem.

    Raises:
        MobilepreError: the file is missing, not a file, over 64 KiB, not UTF-8 or not valid TOML, or
            any error `Profile.from_dict` raises, naming the file.
    """
    path = Path(path)
    where = str(path)
    document = read_toml(path, "profile", MAX_PROFILE_BYTES)
    profile = _profile_from_mapping(document, where, size_from_toml)
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


# ------------------------------------------------------------------------------------- from mapping

_TOP_KEYS = ("name", "description", "formats", "quantization", "io_type", "max_sparsity", "min_clusters", "threads", "prefer",
             "require_signature", "web_backends", "on_inconclusive", "budget", "drift")
_REQUIRED_TOP = ("name", "description", "formats", "quantization", "budget")
_BUDGET_KEYS = tuple(f.name for f in fields(Budget))
_DRIFT_KEYS = (*TOLERANCES, "outputs", "kinds")
_SECTIONS = {"": _TOP_KEYS, "budget": _BUDGET_KEYS, "drift": _DRIFT_KEYS}

_SizeReader = Callable[[Any, str], int]


def _profile_from_mapping(data: Any, where: str, read_size: _SizeReader) -> Profile:
    top = toml.table(data, where, "", "a table of keys")
    toml.check_keys(top, where, "", _SECTIONS)
    for key in _REQUIRED_TOP:
        if key not in top:
            raise MobilepreError(f"{where}: missing required key {key!r}: {_REQUIRED_HINTS[key]}")
    budget_table = toml.table(top["budget"], where, "budget", "a [budget] table")
    toml.check_keys(budget_table, where, "budget", _SECTIONS)
    if "max_size" not in budget_table:
        raise MobilepreError(f"{where}: missing required key 'budget.max_size': add e.g. max_size = \"4 MiB\"")
    drift_table = toml.table(top.get("drift", {}), where, "drift", "a [drift] table")
    toml.check_keys(drift_table, where, "drift", _SECTIONS)

    try:
        budget = Budget(
            max_size=read_size(budget_table["max_size"], f"{where}: budget.max_size"),
            max_compressed_size=toml.optional(budget_table, "max_compressed_size",
                                          lambda v: read_size(v, f"{where}: budget.max_compressed_size")),
            max_download=toml.optional(budget_table, "max_download", lambda v: read_size(v, f"{where}: budget.max_download")),
            max_latency_ms=toml.optional(budget_table, "max_latency_ms", lambda v: toml.number(v, where, "budget.max_latency_ms")),
            latency_source=toml.string(budget_table.get("latency_source", "host"), where, "budget.latency_source"),
            device_gmacs=toml.optional(budget_table, "device_gmacs", lambda v: toml.number(v, where, "budget.device_gmacs")),
            max_peak_memory=toml.optional(budget_table, "max_peak_memory",
                                          lambda v: read_size(v, f"{where}: budget.max_peak_memory")),
            browser_backend=toml.optional(budget_table, "browser_backend", lambda v: toml.string(v, where, "budget.browser_backend")),
        )
        drift = Drift(
            {k: toml.number(v, where, f"drift.{k}") for k, v in drift_table.items() if k not in ("outputs", "kinds")},
            _output_budgets(drift_table.get("outputs", {}), where),
            _kind_budgets(drift_table.get("kinds", {}), where),
        )
        return Profile(
            name=toml.string(top["name"], where, "name"),
            description=toml.string(top["description"], where, "description"),
            formats=toml.string_list(top["formats"], where, "formats"),
            quantization=toml.string_list(top["quantization"], where, "quantization"),
            io_type=toml.string(top.get("io_type", "float32"), where, "io_type"),
            max_sparsity=toml.number(top.get("max_sparsity", 0.0), where, "max_sparsity"),
            min_clusters=toml.integer(top.get("min_clusters", 0), where, "min_clusters"),
            threads=toml.integer(top.get("threads", 1), where, "threads"),
            prefer=toml.string(top.get("prefer", "fidelity"), where, "prefer"),
            require_signature=toml.boolean(top.get("require_signature", False), where, "require_signature"),
            on_inconclusive=toml.string(top.get("on_inconclusive", "warn"), where, "on_inconclusive"),
            web_backends=tuple(toml.string_list(top.get("web_backends", []), where, "web_backends")) if "web_backends" in top else (),
            budget=budget,
            drift=drift,
        )
    except _Invalid as e:
        raise MobilepreError(f"{where}: {e.detail}") from None


def _sub_tables(value: Any, where: str, prefix: str, label: str, keys: tuple):
    """(name, section, table) of each `[prefix.LABEL]` table, its keys checked against `keys`."""
    tables = toml.table(value, where, prefix, f"a table of [{prefix}.{label}] tables")
    for name, table in tables.items():
        section = f"{prefix}.{name}"
        table = toml.table(table, where, section, f"a [{section}] table")
        toml.check_keys(table, where, section, {section: keys})
        yield str(name), section, table


def _output_budgets(value: Any, where: str) -> dict:
    """`[drift.outputs.NAME]` tables: tolerances of one output, and optionally its kind."""
    budgets = {}
    for name, section, table in _sub_tables(value, where, "drift.outputs", "NAME", (*TOLERANCES, "kind")):
        kind = toml.string(table["kind"], where, f"{section}.kind") if "kind" in table else None
        limits = {k: toml.number(v, where, f"{section}.{k}") for k, v in table.items() if k != "kind"}
        try:
            budgets[name] = OutputBudget(tuple(limits.items()), kind)
        except _Invalid as e:
            raise MobilepreError(f"{where}: {section}.{e.detail}") from None
    return budgets


def _kind_budgets(value: Any, where: str) -> dict:
    """`[drift.kinds.KIND]` tables: the default tolerances of every output of one kind."""
    return {kind: {k: toml.number(v, where, f"{section}.{k}") for k, v in table.items()}
            for kind, section, table in _sub_tables(value, where, "drift.kinds", "KIND", tuple(TOLERANCES))}


_REQUIRED_HINTS = {
    "name": "add name = \"<file stem>\"",
    "description": "add description = \"One sentence on the device class.\"",
    "formats": "add e.g. formats = [\"tflite\"]",
    "quantization": "add e.g. quantization = [\"float32\", \"float16\", \"dynamic\", \"int8\"]",
    "budget": "add a [budget] table with at least max_size = \"4 MiB\"",
}


# ------------------------------------------------------------------------------------------- checks


def _check_bytes(key: str, value: Any) -> None:
    if type(value) is not int:
        raise _Invalid(f"{key} must be a whole number of bytes, got {toml.type_name(value)}")
    if value < 0:
        raise _Invalid(f"{key} {value} is negative: a size is zero or more bytes")
    if value == 0:
        raise _Invalid(f"{key} is 0 bytes, which no bundle can meet: give a positive size such as \"4 MiB\"")


def _check_positive(key: str, value: Any, unit: str) -> None:
    if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
        raise _Invalid(f"{key} {toml.show(value)} must be a positive number of {unit}")


def _check_range(key: str, value: Any, low: float, high: float) -> None:
    if type(value) not in (int, float) or not low <= value <= high:  # NaN fails both comparisons
        raise _Invalid(f"{key} {toml.show(value)} is out of range: use a number from {low:g} to {high:g}")


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _Invalid(f"{key} {toml.show(value)} is not valid: {_suggest(value, choices)}")


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
            raise _Invalid(f"{key} lists {toml.show(value)}, which is not valid: {_suggest(value, order)}")
    if len(set(values)) != len(values):
        twice = next(v for v in values if values.count(v) > 1)
        raise _Invalid(f"{key} lists {twice!r} twice: list each once")
    return tuple(v for v in order if v in values)


def _check_modes_match_formats(formats: tuple[str, ...], modes: tuple[str, ...]) -> None:
    for mode in modes:
        homes = [f for f in FORMATS if mode in MODES_BY_FORMAT[f]]
        if not set(homes) & set(formats):
            raise _Invalid(
                f"quantization lists {str(mode)!r}, a {' / '.join(_FORMAT_NAMES[f] for f in homes)} mode, but formats "
                f"is {[str(f) for f in formats]}: add {str(homes[0])!r} to formats or remove {str(mode)!r}"
            )
    for fmt in formats:
        if not set(MODES_BY_FORMAT[fmt]) & set(modes):
            raise _Invalid(
                f"formats lists {str(fmt)!r} but quantization has no {_FORMAT_NAMES[fmt]} mode: add one of "
                f"{', '.join(MODES_BY_FORMAT[fmt])} or remove {str(fmt)!r}"
            )
        if Mode.MIXED in modes and not mixed_ladder(fmt, modes):
            need = (
                "uint8 and float16" if fmt == Format.TFJS
                else "int4, int8 or dynamic, and a higher precision: dynamic (from int4) or a mode with float kernels "
                "(float32, float16, dynamic, int4); a device that allows only int8 gets no float layers"
            )
            raise _Invalid(f"quantization lists 'mixed' but gives {_FORMAT_NAMES[fmt]} layers no two precisions to mix: allow {need}")


_FORMAT_NAMES = {"tflite": "TFLite", "tfjs": "TF.js", "litertjs": "LiteRT.js"}


# ------------------------------------------------------------------------------------------ helpers


def _suggest(value: Any, choices: tuple[str, ...]) -> str:
    choices = tuple(str(c) for c in choices)
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6) if isinstance(value, str) else []
    listed = "use one of " + ", ".join(choices)
    return f"did you mean {close[0]!r}? ({listed})" if close else listed
