"""The bundle manifest: its schema, how a bundle's files and manifest are written, the seal that makes any
change to it detectable, and how a manifest is read back strictly."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from mobilepre.artifacts import io_contract
from mobilepre.formats import FORMATS
from mobilepre.web_bundle import runtime_entry
from mobilepre.metrics import OutputKind
from mobilepre.quantize.settings import engine_for

MANIFEST_SCHEMA = "mobilepre.manifest/1"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
_SAFE_PART = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class IntegrityError(Exception):
    """A bundle is not what its manifest says (exit 1, not bad input)."""


def _canonical(document: dict) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def seal_manifest(manifest: dict) -> bytes:
    """The manifest's bytes, with `manifest_sha256` over its canonical form without that key.

    The seal catches damage to the manifest itself (a flipped byte anywhere); it is not a signature:
    someone who edits a manifest on purpose can re-seal it. Sign bundles in the release pipeline for that.
    """
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return _canonical({**body, "manifest_sha256": hashlib.sha256(_canonical(body)).hexdigest()})


def manifest_seal_problem(raw: bytes, manifest: dict) -> str | None:
    """Why `raw` is not a sealed canonical manifest, or None."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    if manifest.get("manifest_sha256") != hashlib.sha256(_canonical(body)).hexdigest():
        return "manifest.json does not match its own manifest_sha256 (modified or damaged)"
    if raw != _canonical(manifest):
        return "manifest.json is not in canonical form (modified or damaged)"
    return None


def artifact_path(fmt: str) -> str:
    """Where a format's artifact lives in a bundle."""
    return FORMATS[fmt].artifact


def bundle_files(profile, chosen: list, source_info: dict, data: dict, versions: dict, created: str | None,
                 input_range: tuple = (0.0, 1.0)) -> dict[str, bytes]:
    """The files of one profile's bundle, manifest.json last (it lists the others with sha256).

    `chosen` holds, per format, (trial, files): the chosen `search.Trial` as byte-stable files hold it
    and the artifact's files by name.
    """
    files: dict[str, bytes] = {}
    artifacts = []
    verdicts = {}
    for trial, artifact_files in chosen:
        row = FORMATS[trial.format]
        prefix = row.prefix()
        for name, content in artifact_files.items():
            files[prefix + name] = content
        path = artifact_path(trial.format)
        artifacts.append(
            {
                "bytes": trial.size_bytes,
                "candidate": trial.candidate,
                "drift": [dict(d) for d in trial.drift],
                "engine": trial.engine or str(engine_for(trial.format, trial.quantization)),
                "files": sorted(prefix + n for n in artifact_files),
                "format": trial.format,
                "gzip_bytes": trial.gzip_bytes,
                "io": io_contract(trial.format, artifact_files, source_info, input_range),
                "io_type": trial.io_type,
                "latency": None if trial.latency is None else trial.latency.to_dict(),
                "path": path,
                "quantization": trial.quantization,
                "sha256": hashlib.sha256(files[path]).hexdigest(),
                "sparsity": trial.sparsity,
                **({"mixed": _mixed_summary(trial.mixed)} if trial.mixed else {}),
                **({"clusters": trial.clusters} if trial.clusters else {}),
                **({"qat": True} if trial.qat is not None else {}),
                **({"metadata": trial.metadata} if trial.metadata is not None else {}),
                **({"engine_choice": trial.engine_choice} if trial.engine_choice is not None else {}),
                **({"runtime": runtime_entry(row.web_runtime, trial.gzip_bytes, trial.backends)} if row.web_runtime else {}),
            }
        )
        verdicts[trial.format] = trial.verdict.to_dict()
        if row.page_files:  # a web bundle opens in a browser as it is: its loader page (and runtime) beside the model
            files.update(row.page_files())
    manifest = {
        "artifacts": sorted(artifacts, key=lambda a: a["path"]),
        "data": data,
        "files": [
            {"bytes": len(content), "path": name, "sha256": hashlib.sha256(content).hexdigest()}
            for name, content in sorted(files.items())
        ],
        "profile": profile.to_dict(),
        "schema": MANIFEST_SCHEMA,
        "source": source_info,
        "verdict": verdicts,
        "versions": versions,
    }
    if created:
        manifest["created"] = created
    files["manifest.json"] = seal_manifest(manifest)
    return files


def _mixed_summary(mixed: dict) -> dict:
    """What an app needs to know of a mixed artifact: its base precision and the layers kept higher,
    each with what it cost in bytes (the search's steps stay in report.json)."""
    return {"base": mixed["base"], "raised": [{k: r[k] for k in ("bytes", "layer", "name", "to")} for r in mixed["raised"]]}


# ------------------------------------------------------------------------------------------ reading


def safe_relative(path: str) -> bool:
    """A bundle-relative path with no way out: no absolute path, `..`, empty part or odd character."""
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    parts = path.split("/")
    return all(p not in ("", ".", "..") and set(p) <= _SAFE_PART for p in parts)


@dataclass(frozen=True)
class ListedFile:
    """One file a manifest lists: its bundle-relative path, size and sha256."""

    path: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class ManifestArtifact:
    """One artifact a manifest claims (a claim: `check` holds it against the files).

    Attributes:
        path (str): the artifact's path in the bundle (`model.tflite`, `tfjs/model.json`).
        format (str), candidate (str), quantization, io_type, sparsity, clusters: as the build recorded
            them (the last four as written, checked where they are used: `candidates.allowed_problem`).
        files (tuple[str, ...]): the artifact's files (its path alone when the manifest lists none).
        drift (tuple[dict, ...]): per output, the drift the build measured (entries that are not an
            output's drift are left out).
    """

    path: str
    format: str
    candidate: str
    quantization: object = None
    io_type: object = "float32"
    sparsity: object = 0.0
    clusters: object = 0
    files: tuple = ()
    drift: tuple = ()
    claims: dict = field(default_factory=dict, compare=False, repr=False)  # the manifest's entry as written

    def run_path(self, bundle: Path) -> Path:
        """What a runtime is given: the .tflite file, or the TF.js folder."""
        path = Path(bundle) / self.path
        return path.parent if FORMATS[self.format].folder else path

    @classmethod
    def from_dict(cls, data: dict) -> ManifestArtifact:
        files = data.get("files")
        files = tuple(files) if isinstance(files, list) and all(isinstance(f, str) for f in files) else (data["path"],)
        recorded = data.get("drift")
        drift = tuple(d for d in recorded if _is_output_drift(d)) if isinstance(recorded, list) else ()
        return cls(data["path"], data["format"], data["candidate"], data.get("quantization"), data.get("io_type", "float32"),
                   data.get("sparsity", 0.0), data.get("clusters", 0), files, drift, dict(data))


@dataclass(frozen=True)
class Manifest:
    """A bundle's manifest as read and checked (`read_manifest`).

    Attributes:
        raw (bytes): manifest.json exactly as read: what its seal and a signature cover, and what a
            verified copy writes.
        document (dict): the parsed JSON.
        files (tuple[ListedFile, ...]): every listed file, sorted by path.
        artifacts (tuple[ManifestArtifact, ...]).
        profile (dict): the profile the bundle was built for, as the build read it.
        source (dict): the model the bundle was built from (identity, input, MACs, outputs, stages).
        labels (bool): the build's validation images had labels.
    """

    raw: bytes
    document: dict
    files: tuple
    artifacts: tuple
    profile: dict
    source: dict
    labels: bool = False

    @property
    def profile_name(self):
        return self.profile.get("name")

    @classmethod
    def parse(cls, raw: bytes, document: dict) -> Manifest:
        validation = (document.get("data") or {}).get("validation") if isinstance(document.get("data"), dict) else None
        return cls(raw, document, tuple(ListedFile(e["path"], e["bytes"], e["sha256"]) for e in document["files"]),
                   tuple(ManifestArtifact.from_dict(a) for a in document["artifacts"]), document["profile"], document["source"],
                   bool(validation.get("labels", False)) if isinstance(validation, dict) else False)


def _is_output_drift(entry) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry.get("kind") in set(OutputKind)


def read_manifest(bundle: Path) -> Manifest:
    """A bundle's manifest, checked before it is trusted: a regular file under the size cap, JSON, the
    schema, safe sorted paths, and its seal. Raises `IntegrityError`."""
    path = Path(bundle) / "manifest.json"
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise IntegrityError("manifest.json is missing") from None
    if not stat.S_ISREG(info.st_mode):
        raise IntegrityError("manifest.json is not a regular file")
    if info.st_size > MAX_MANIFEST_BYTES:
        raise IntegrityError(f"manifest.json is {info.st_size} bytes, over the {MAX_MANIFEST_BYTES} limit")
    raw = path.read_bytes()
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise IntegrityError(f"manifest.json is not valid JSON: {error}") from None
    _check_schema(manifest)
    problem = manifest_seal_problem(raw, manifest)
    if problem:
        raise IntegrityError(problem)
    return Manifest.parse(raw, manifest)


def _check_schema(manifest) -> None:
    if not isinstance(manifest, dict):
        raise IntegrityError("manifest.json is not a JSON object")
    if manifest.get("schema") != MANIFEST_SCHEMA:
        raise IntegrityError(f"manifest.json schema is {manifest.get('schema')!r}, expected {MANIFEST_SCHEMA!r}")
    for key, kind in (("files", list), ("artifacts", list), ("profile", dict), ("source", dict)):
        if not isinstance(manifest.get(key), kind):
            raise IntegrityError(f"manifest.json: {key} is missing or not a {kind.__name__}")
    for i, entry in enumerate(manifest["files"]):
        if not (
            isinstance(entry, dict)
            and safe_relative(entry.get("path"))
            and isinstance(entry.get("bytes"), int)
            and isinstance(entry.get("sha256"), str)
            and len(entry["sha256"]) == 64
        ):
            raise IntegrityError(f"manifest.json: files[{i}] is not a safe relative path with bytes and sha256")
    listed = [e["path"] for e in manifest["files"]]
    if len(set(listed)) != len(listed) or listed != sorted(listed) or "manifest.json" in listed:
        raise IntegrityError("manifest.json: the file list must be sorted, without duplicates or manifest.json itself")
    for i, artifact in enumerate(manifest["artifacts"]):
        if not (
            isinstance(artifact, dict)
            and artifact.get("format") in FORMATS
            and artifact.get("path") in listed
            and isinstance(artifact.get("candidate"), str)
        ):
            raise IntegrityError(f"manifest.json: artifacts[{i}] has no format, listed path and candidate")
