"""`mobilepre check-files`: the bundles some files belong to (what a pre-commit hook is given), each checked on
its own by the release gate's one bundle check."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from mobilepre.check import CheckResult, Finding, check_bundle
from mobilepre.errors import MobilepreError, param
from mobilepre.manifest import MANIFEST_SCHEMA, MAX_MANIFEST_BYTES


def check_files(
    paths, profiles: Path | None = None, measure: bool = False, verify_key: Path | None = None, root: Path = Path("."),
    require_signature: bool = False,
) -> CheckResult:
    """Check the bundles that `paths` belong to (what a pre-commit hook is given: changed files), each on
    its own. A changed profile (a .toml in the profiles folder) checks every bundle under `root`. A
    bundle is a folder whose manifest.json names mobilepre's schema; files in no bundle are not
    mobilepre's and are left alone. Budgets come from `profiles`, else `root`/device_profiles when it
    exists, else the shipped ones."""
    if require_signature and verify_key is None:
        raise MobilepreError(f"{param('require_signature')} needs {param('verify_key')}: the public key whose signatures the bundles must carry")
    root = Path(root)
    if profiles is None and (root / "device_profiles").is_dir():
        profiles = root / "device_profiles"
    profile_folder = Path(profiles).resolve() if profiles is not None else None
    bundles = set()
    for path in map(Path, paths):
        if path.suffix == ".toml" and profile_folder is not None and (
                path.resolve() == profile_folder or profile_folder in path.resolve().parents):
            bundles |= set(_bundles_below(root))
        elif (bundle := _bundle_holding(path, root)) is not None:
            bundles.add(bundle)
    if not bundles:
        return CheckResult(str(root), (), (Finding("bundles", True, "no mobilepre bundle among these files"),))
    results = tuple(
        dataclasses.replace(check_bundle(b, profiles, measure, None, None, verify_key, require_signature), bundle=b.as_posix())  # its path: names repeat
        for b in sorted(bundles)
    )
    return CheckResult(str(root), results, ())


def _is_bundle(folder: Path) -> bool:
    """A folder whose manifest.json names mobilepre's schema, damaged or not (a web app's manifest.json
    does not); a symlinked one counts too, and then fails its check."""
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        with open(manifest, "rb") as f:
            return MANIFEST_SCHEMA.split("/")[0].encode() in f.read(MAX_MANIFEST_BYTES)
    except OSError:
        return manifest.is_symlink()


def _bundle_holding(path: Path, root: Path) -> Path | None:
    """The nearest folder at or above `path`, inside `root`, that is a bundle."""
    top = root.resolve()
    folder = path if path.is_dir() else path.parent
    while True:
        if _is_bundle(folder):
            return folder
        resolved = folder.resolve()
        if resolved == top or top not in resolved.parents:
            return None
        folder = folder.parent


def _bundles_below(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "node_modules")
        if _is_bundle(Path(dirpath)):
            found.append(Path(dirpath))
            dirnames[:] = []
    return found
