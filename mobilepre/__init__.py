"""mobilepre: preprocessing inside Keras image models, compression, validation and budgeted bundles.

Importing the package does not import TensorFlow. The Python entry points mirror the CLI:
`mobilepre.build(out=..., ...)` returns a `BuildResult` and `mobilepre.check(root, ...)` a
`CheckResult`, the objects the commands print.
"""

from importlib import metadata

from mobilepre.builder import BuildOptions, BuildResult
from mobilepre.builder import build as _build
from mobilepre.check import CheckResult, check
from mobilepre.errors import MobilepreError

__version__ = metadata.version("mobilepre")

__all__ = ["BuildOptions", "BuildResult", "CheckResult", "MobilepreError", "__version__", "build", "check"]


def build(out, model=None, progress=None, **options) -> BuildResult:
    """Build one bundle per device profile into `out`; keyword options as `mobilepre.BuildOptions`."""
    return _build(BuildOptions(out=out, model=model, **options), progress=progress)
