"""The bundle manifest: its schema name and the seal that makes any change to it detectable."""

from __future__ import annotations

import hashlib
import json

MANIFEST_SCHEMA = "mobilepre.manifest/1"


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
