"""mobilepre: preprocessing inside Keras image models, compression, validation and budgeted bundles.

Importing the package imports nothing else of it (nor TensorFlow): the compression engine
(`mobilepre.quantize`) and every tool module load on first use. The Python entry points mirror the
CLI: `mobilepre.build(out=..., ...)` returns a `BuildResult` and `mobilepre.check(root, ...)` a
`CheckResult`, the objects the commands print.
"""

from __future__ import annotations

import importlib
import sys
import types

__all__ = ["BuildOptions", "BuildResult", "CheckResult", "MobilepreError", "__version__", "build", "check"]

# The public names and the module each lives in, imported when first asked for (PEP 562).
_LAZY = {
    "BuildOptions": "mobilepre.options",
    "BuildResult": "mobilepre.results",
    "CheckResult": "mobilepre.check",
    "MobilepreError": "mobilepre.errors",
}


class _Package(types.ModuleType):
    """`mobilepre.check` is the release gate's function, as it was when this package imported it eagerly:
    the import system sets a package's attribute to a submodule of the same name when the submodule is
    first imported (`mobilepre/check.py`), which this keeps from replacing the function."""

    @property
    def check(self):
        from mobilepre.check import check

        return check

    @check.setter
    def check(self, module):  # the submodule stays reachable as sys.modules["mobilepre.check"]
        pass


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name == "__version__":  # from package metadata, read when asked (see mobilepre.versions)
        from mobilepre.versions import package_version

        return package_version("mobilepre")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mobilepre' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


def build(out, model=None, progress=None, **options):
    """Build one bundle per device profile into `out`; keyword options as `mobilepre.BuildOptions`.
    Returns a `BuildResult`."""
    from mobilepre.builder import build as run_build
    from mobilepre.options import BuildOptions

    return run_build(BuildOptions(out=out, model=model, **options), progress=progress)
