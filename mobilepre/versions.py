"""Versions from package metadata: this tool's, and the toolchain's that bundles record."""

from __future__ import annotations

TFJS_RUNTIME = "@tensorflow/tfjs 4.22.0, @tensorflow/tfjs-backend-wasm 4.22.0"  # pinned in tfjs_runner's lockfile


def package_version(name: str) -> str | None:
    # importlib.metadata costs about 20 ms of start-up (it parses e-mail headers): imported when asked.
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def toolchain_versions() -> dict:
    """What a bundle was made with: the versions that decide its bytes."""
    names = ("ai-edge-litert", "keras", "litert-quantizer", "mobilepre", "numpy", "tensorflow", "tensorflowjs")
    return {**{name: package_version(name) for name in names}, "tfjs-runtime": TFJS_RUNTIME}
