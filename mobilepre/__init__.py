"""mobilepre: preprocessing inside Keras image models, compression, validation and budgeted bundles.

Importing the package does not import TensorFlow. The Python entry points mirror the CLI:
`mobilepre.build(out=..., ...)` and `mobilepre.check(root, ...)` return the result objects the
commands print.
"""

__version__ = "0.1.0"


def build(out, model=None, progress=None, **options):
    """Build one bundle per device profile into `out`; keyword options as `mobilepre.builder.BuildOptions`."""
    from mobilepre.builder import BuildOptions
    from mobilepre.builder import build as run

    return run(BuildOptions(out=out, model=model, **options), progress=progress)


def check(root, **options):
    """Check bundles under `root` against their manifests and budgets; see `mobilepre.gate.check`."""
    from mobilepre.gate import check as run

    return run(root, **options)
