"""mobilepre: preprocessing inside Keras image models, compression, validation and budgeted bundles.

Importing the package does not import TensorFlow. The Python entry points mirror the CLI:
`mobilepre.build(out=..., ...)` returns a `BuildResult` and `mobilepre.check(root, ...)` a
`CheckResult`, the objects the commands print.
"""

from mobilepre.builder import BuildOptions, BuildResult
from mobilepre.builder import build as _build
from mobilepre.check import CheckResult, check
from mobilepre.errors import MobilepreError
from mobilepre.versions import package_version

__all__ = ["BuildOptions", "BuildResult", "CheckResult", "MobilepreError", "__version__", "build", "check"]


def __getattr__(name: str):
    if name == "__version__":  # from package metadata, read when asked (see mobilepre.versions)
        return package_version("mobilepre")
    raise AttributeError(f"module 'mobilepre' has no attribute {name!r}")


def build(out, model=None, progress=None, **options) -> BuildResult:
    """Build one bundle per device profile into `out`; keyword options as `mobilepre.BuildOptions`."""
    return _build(BuildOptions(out=out, model=model, **options), progress=progress)
