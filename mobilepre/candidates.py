"""The candidates a profile allows (a format, a mode, an int8 I/O type, a sparsity, shared values each), and the
one rule of what a profile allows (`allowed_problem`), which `check` applies to a shipped artifact too."""

from __future__ import annotations

from dataclasses import dataclass

from mobilepre.quantize.settings import Format, IOType, Mode

# Sparsity levels tried after every unpruned mode, on int8 (TF.js: uint8), up to a profile's max_sparsity.
SPARSITY_STEPS = (0.25, 0.5, 0.75, 0.9)
# Shared values per kernel tried after pruning, on the same mode, down to a profile's min_clusters.
CLUSTER_STEPS = (64, 16)


@dataclass(frozen=True, order=True)
class Candidate:
    """One artifact a build may choose.

    Attributes:
        fmt (Format), mode (Mode), io_type (IOType): as the engine names them.
        sparsity (float): share of zero weights the model is pruned to first (0: not pruned).
        target (str): for `mixed`, the profile whose drift budgets choose the layers kept higher (a
            mixed model is found per profile); "" otherwise.
        clusters (int): shared values per kernel the model is clustered to first (0: not clustered).
        qat (bool): full-integer int8 from a model fine-tuned for it first (quantization-aware).
    """

    fmt: Format
    mode: Mode
    io_type: IOType = IOType.FLOAT32
    sparsity: float = 0.0
    target: str = ""
    clusters: int = 0
    qat: bool = False

    def __post_init__(self):
        object.__setattr__(self, "fmt", Format(self.fmt))
        object.__setattr__(self, "mode", Mode(self.mode))
        object.__setattr__(self, "io_type", IOType(self.io_type))

    @property
    def key(self) -> str:
        """e.g. `tflite-int8-uint8io-s50`, `tfjs-uint8-c16`, `tflite-mixed@ios`: the name reports,
        manifests and device timings use."""
        parts = [str(self.fmt), str(self.mode)]
        if self.mode is Mode.INT8 and self.io_type is not IOType.FLOAT32:
            parts.append(f"{self.io_type}io")
        if self.sparsity:
            parts.append(f"s{round(self.sparsity * 100):02d}")
        if self.clusters:
            parts.append(f"c{self.clusters}")
        if self.qat:
            parts.append("qat")
        return "-".join(parts) + (f"@{self.target}" if self.target else "")

    @classmethod
    def from_key(cls, key: str) -> Candidate:
        """The candidate `key` names (sparsity to the percent, as keys give it); ValueError when it names none."""
        name, _, target = key.partition("@")
        parts = name.split("-")
        if len(parts) < 2:
            raise ValueError(f"{key!r} is not a candidate key")
        found = {"fmt": Format(parts[0]), "mode": Mode(parts[1]), "target": target}
        for part in parts[2:]:
            if part.endswith("io") and "io_type" not in found:
                found["io_type"] = IOType(part[:-2])
            elif part[:1] == "s" and part[1:].isdigit() and "sparsity" not in found:
                found["sparsity"] = int(part[1:]) / 100
            elif part[:1] == "c" and part[1:].isdigit() and "clusters" not in found:
                found["clusters"] = int(part[1:])
            elif part == "qat" and "qat" not in found:
                found["qat"] = True
            else:
                raise ValueError(f"{key!r} is not a candidate key")
        candidate = cls(**found)
        if candidate.key != key:
            raise ValueError(f"{key!r} is not a candidate key")
        return candidate


def integer_io(profile, fmt) -> IOType:
    """The I/O type of a full-integer int8 artifact of `fmt` for `profile`: its `io_type` for a .tflite
    (LiteRT.js has no int8 tensors at a model's inputs and outputs, which the profile refuses), float32
    for TF.js, which has no full-integer mode."""
    return profile.io_type if Format(fmt) in (Format.TFLITE, Format.LITERTJS) else IOType.FLOAT32


def allowed_problem(profile, fmt, mode, io_type="float32", sparsity=0.0, clusters=0) -> str | None:
    """Why `profile` does not allow an artifact of this format, mode, I/O type, sparsity and clustering,
    or None when it does. The one rule: the search tries only what it allows, `check` fails what it no
    longer allows."""
    if fmt not in profile.formats:
        return f"profile {profile.name} no longer allows the {fmt} format ({', '.join(map(str, profile.formats))})"
    if mode not in profile.modes_for(fmt):
        return f"profile {profile.name} no longer allows {fmt} {mode} (allowed: {', '.join(map(str, profile.modes_for(fmt)))})"
    wanted_io = str(integer_io(profile, fmt)) if mode == "int8" else "float32"
    if str(io_type) != wanted_io:
        return f"its I/O type is {io_type}, profile {profile.name} wants {wanted_io}"
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or sparsity > profile.max_sparsity + 1e-6:
        return f"its sparsity {sparsity} is over the profile's max_sparsity {profile.max_sparsity}"
    if clusters and (type(clusters) is not int or not profile.min_clusters or clusters < profile.min_clusters):
        allowed = f"min_clusters {profile.min_clusters}" if profile.min_clusters else "no clustering"
        return f"it is clustered to {clusters} shared values, profile {profile.name} allows {allowed}"
    return None


def candidates_for(profile) -> dict[Format, list[Candidate]]:
    """Per format, the candidates a profile allows, highest fidelity first: modes, then growing sparsity,
    then fewer shared values; with an integer `io_type` the candidates with that I/O first."""
    out = {}
    for fmt in profile.formats:
        modes = profile.modes_for(fmt)
        io = integer_io(profile, fmt)
        found = []
        for mode in modes:
            found.append(Candidate(fmt, mode, io if mode is Mode.INT8 else IOType.FLOAT32, target=profile.name if mode is Mode.MIXED else ""))
            if mode is Mode.INT8 and not profile.drift.is_empty():  # tried only when calibrated int8 misses drift
                found.append(Candidate(fmt, mode, io, qat=True))
        # pruning pays off in the integer mode whose zeros compress: int8 (TFLite) or uint8 (TF.js)
        pruned = next((m for m in (Mode.INT8, Mode.UINT8) if m in modes), None)
        if pruned is not None and profile.max_sparsity > 0:
            levels = sorted({s for s in SPARSITY_STEPS if s < profile.max_sparsity} | {profile.max_sparsity})
            found += [Candidate(fmt, pruned, io if pruned is Mode.INT8 else IOType.FLOAT32, s) for s in levels]
        if pruned is not None and profile.min_clusters:  # after pruning: dense kernels, few values
            counts = sorted({c for c in CLUSTER_STEPS if c > profile.min_clusters} | {profile.min_clusters}, reverse=True)
            found += [Candidate(fmt, pruned, io if pruned is Mode.INT8 else IOType.FLOAT32, clusters=c) for c in counts]
        if io is not IOType.FLOAT32:  # the device wants integer I/O: candidates that have it come first
            found.sort(key=lambda c: c.io_type is IOType.FLOAT32)
        out[fmt] = [c for c in found if allowed_problem(profile, c.fmt, c.mode, c.io_type, c.sparsity, c.clusters) is None]
    return out
