"""Every cache key of a build, derived from one `BuildContext`: what a cached result depends on, said once.

A build makes its context once (`BuildContext.of`) from the model, its stages and the hashed images;
when the float model has run, `with_outputs` adds the output kinds and the SDK contract, which every
candidate's metadata and judging depend on. The keys below are the only places a key is assembled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobilepre import quantize
from mobilepre.cache import CACHE_SCHEMA, code_fingerprint, content_key
from mobilepre.candidates import Candidate
from mobilepre.quantize.pruning import PruneSettings
from mobilepre.quantize.settings import Format, engine_for
from mobilepre.versions import toolchain_versions


@dataclass(frozen=True)
class BuildContext:
    """What every cached result of one build depends on. Made once per build, never changed (a new
    value with `with_outputs`).

    Attributes:
        model (str): the model file's identity (`SourceModel.identity`: a hash of weights and config).
        stages (dict | None): the pixel stages the build put in front of it (`models.with_stages`).
        input_dtype (str), input_shape (tuple[int, ...]): what the model takes.
        calibration_sha256 (str), validation_sha256 (str): the images, as `data.dataset_info` hashes them.
        labels_sha256 (str | None): the validation labels, when there are any.
        outputs (tuple[dict, ...]): each output's name, kind and shape (`OutputSpec.to_dict()`); empty
            until the float model has run.
        sdk (dict | None): the I/O contract the artifacts carry (`SdkContract` as a dict).
        toolchain (dict): package versions that decide an artifact's bytes.
        code (str): a hash of mobilepre's own code.
        system (str): OS and machine, e.g. "Linux-x86_64".
    """

    model: str
    stages: dict | None
    input_dtype: str
    input_shape: tuple
    calibration_sha256: str
    validation_sha256: str
    labels_sha256: str | None = None
    outputs: tuple = ()
    sdk: dict | None = None
    toolchain: dict = dataclasses.field(default_factory=dict)
    code: str = ""
    system: str = ""

    @classmethod
    def of(cls, source, data: dict, labels) -> BuildContext:
        """The context of a build of `source` on images described by `data` (`{"calibration": info,
        "validation": info}`, `data.dataset_info`) with validation `labels` (an array or None)."""
        labels_sha256 = None if labels is None else hashlib.sha256(np.ascontiguousarray(labels).tobytes()).hexdigest()
        return cls(
            model=source.identity, stages=source.stages, input_dtype=source.input_dtype, input_shape=tuple(source.input_shape),
            calibration_sha256=data["calibration"]["sha256"], validation_sha256=data["validation"]["sha256"],
            labels_sha256=labels_sha256, toolchain=toolchain_versions(), code=code_fingerprint(),
            system=platform.system() + "-" + platform.machine(),
        )

    def with_outputs(self, outputs, sdk) -> BuildContext:
        """This context once the outputs' kinds (`OutputSpec`s) and the SDK contract are settled."""
        return dataclasses.replace(self, outputs=tuple(spec.to_dict() for spec in outputs), sdk=dataclasses.asdict(sdk))

    def _common(self) -> dict:
        return {"code": self.code, "input": [self.input_dtype, list(self.input_shape)], "model": self.model,
                "schema": CACHE_SCHEMA, "stages": self.stages, "system": self.system, "toolchain": self.toolchain,
                "validation": self.validation_sha256}


def reference_key(context: BuildContext) -> str:
    """The float model's outputs on the validation images: model, stages, images, toolchain and code."""
    return content_key(context._common() | {"reference": True})


def candidate_key(context: BuildContext, candidate: Candidate, shard_size: int, prune_epochs: int, profile=None) -> str:
    """A measured candidate: the whole context (calibration, labels, output kinds and SDK contract too) and
    what makes this candidate: format, mode, I/O; TF.js shard size; pruning, clustering or fine-tuning
    settings; for a mixed candidate, the precision ladder and drift budgets of `profile`, which choose
    its layers."""
    parts = context._common() | {
        "calibration": context.calibration_sha256, "labels": context.labels_sha256,
        "outputs": list(context.outputs), "sdk": context.sdk,
        "candidate": {"clusters": candidate.clusters, "format": str(candidate.fmt), "io_type": str(candidate.io_type),
                      "mode": str(candidate.mode), "qat": candidate.qat, "sparsity": candidate.sparsity},
    }
    if candidate.fmt is Format.TFJS:
        parts["shard_size"] = shard_size
    if candidate.sparsity or candidate.clusters or candidate.qat:
        settings = (PruneSettings(candidate.sparsity, epochs=prune_epochs) if candidate.sparsity
                    else quantize.ClusterSettings(candidate.clusters, epochs=prune_epochs) if candidate.clusters
                    else quantize.QATSettings())
        parts["fine_tuning"] = {"epochs": prune_epochs, "settings": repr(settings)}
    if candidate.fmt is Format.TFLITE and engine_for(candidate.fmt, candidate.mode) is None:
        parts["engine"] = "measured"  # both engines make it; the file measured closer is kept
    if candidate.mode is quantize.Mode.MIXED:
        parts["mixed"] = {"drift": profile.drift.to_dict(), "ladder": [str(m) for m in profile.modes_for(str(candidate.fmt))]}
    return content_key(parts)


def file_digest(model: Path) -> str:
    """The sha256 of a model file, or of a SavedModel folder's files with their relative names."""
    model = Path(model)
    files = sorted(p for p in model.rglob("*") if p.is_file()) if model.is_dir() else [model]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(model).as_posix().encode() if model.is_dir() else b"")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def loaded_key(model: Path, input_shape, trust: bool) -> str:
    """This model file, byte for byte, loaded in the sandboxed child before (with this toolchain and code)."""
    return content_key({"code": code_fingerprint(), "file": file_digest(model), "input_shape": input_shape, "loaded": True,
                        "schema": CACHE_SCHEMA, "toolchain": toolchain_versions(), "trust": trust})


SECRET_BYTES = 32


def machine_secret(cache_root: Path) -> bytes | None:
    """A secret of this machine's user, kept outside every cache folder (`$XDG_STATE_HOME/mobilepre/cache-secret`,
    else `~/.local/state/...`, mode 600), made on first use. A record that lets a build skip a safety step
    (the sandboxed trial load) must carry its mark (`safety_mark`): whoever can write a shared cache cannot
    forge it. None when it cannot be kept (or would lie inside the cache): then nothing skips a safety step."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    path = Path(base) / "mobilepre" / "cache-secret"
    try:
        if Path(cache_root).resolve() in path.resolve().parents:
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(os.urandom(SECRET_BYTES))
            except FileExistsError:  # another build made it first
                pass
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            secret = f.read(SECRET_BYTES + 1)
    except OSError:
        return None
    return secret if len(secret) == SECRET_BYTES else None


def safety_mark(secret: bytes, key: str) -> str:
    """The mark that makes a cache record of `key` this machine's own (an HMAC with `machine_secret`)."""
    return hmac.new(secret, key.encode("ascii"), hashlib.sha256).hexdigest()


def has_safety_mark(record: dict, secret: bytes | None, key: str) -> bool:
    return secret is not None and isinstance(record.get("mark"), str) and hmac.compare_digest(record["mark"], safety_mark(secret, key))
