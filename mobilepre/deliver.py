"""Copying one verified bundle into an app's assets, resources or public folder (what the build plugins call)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from mobilepre.check import intact_manifest
from mobilepre.errors import EXIT_FAILED, MobilepreError, param
from mobilepre.fsutil import fsync_tree, os_error_message, remove_stale_staging, replace_tree, staging_folder
from mobilepre.manifest import IntegrityError, Manifest, read_manifest
from mobilepre.output import NotAnOutput, read_output
from mobilepre.signing import SIGNATURE_FILE, signature_problem


@dataclass(frozen=True)
class Delivery:
    """One bundle copied into an app.

    Attributes:
        profile (str): the profile whose bundle it is.
        source (Path): the bundle folder it came from.
        dest (Path): the folder that now holds it.
        files (int): files copied (manifest and signature included).
        bytes (int): their size.
        replaced (bool): an earlier copy was there and was replaced.
    """

    profile: str
    source: Path
    dest: Path
    files: int
    bytes: int
    replaced: bool

    def to_dict(self) -> dict:
        return {
            "profile": self.profile, "source": str(self.source), "dest": str(self.dest),
            "files": self.files, "bytes": self.bytes, "replaced": self.replaced,
        }

    def to_text(self) -> str:
        verb = "replaced" if self.replaced else "copied"
        return f"{verb} {self.dest}: bundle of profile {self.profile}, {self.files} files, {self.bytes:,} bytes"


def find_bundle(source: Path, profile: str | None) -> Path:
    """The bundle folder of `profile` in a build output folder (as its report.json names it, `output`),
    or `source` itself when it is a bundle."""
    source = Path(source)
    if not source.is_dir():
        raise MobilepreError(f"{source} is not a folder: give a build output folder (mobilepre build --out) or one bundle")
    if (source / "manifest.json").is_file():
        return source
    try:
        output = read_output(source)
    except NotAnOutput as why:
        raise MobilepreError(f"{source} is neither a build output ({why}) nor a bundle (no manifest.json)") from None
    bundles = sorted(bundle for bundle in output.bundles.values() if bundle)
    if profile is None:
        if len(bundles) != 1:
            raise MobilepreError(f"{source} holds bundles of {len(bundles)} profiles ({', '.join(bundles) or 'none'}): name one with {param('profile')}")
        return source / bundles[0]
    if output.bundles.get(profile) is None:
        raise MobilepreError(
            f"{source} has no bundle for profile {profile!r} (its build failed or did not include it; report.md says why)",
            EXIT_FAILED,
        )
    return source / output.bundles[profile]


def deliver(source: Path, dest: Path, profile: str | None = None, verify_key: Path | None = None) -> Delivery:
    """Verify a bundle (signature with `verify_key`, manifest, every file's size and sha256, artifacts) and
    make `dest` an exact copy of it. `dest` may be missing, empty, or an earlier copy of a bundle (every file
    in it listed in its manifest); anything else is refused, so no file of the app's own is ever removed.
    The copy is staged beside `dest` (a hidden folder, removed after) and swapped into place: `dest` holds the
    old bundle or the new one, never a mix."""
    bundle = find_bundle(source, profile)
    manifest, problem = intact_manifest(bundle, verify_key, profile)
    if problem:
        raise MobilepreError(f"bundle {bundle} failed its check: {problem}; nothing copied", EXIT_FAILED)
    dest = Path(dest)
    inside, bundle_path = dest.resolve(), bundle.resolve()
    if inside == bundle_path or bundle_path in inside.parents or inside in bundle_path.parents:
        raise MobilepreError(f"{dest} is or overlaps the bundle {bundle} it would copy: choose a destination outside it")
    replaced = _replaceable(dest)
    if not dest.parent.is_dir():
        try:
            dest.parent.mkdir(parents=True)
        except OSError as error:
            raise MobilepreError(f"cannot create {os_error_message(error, dest.parent)}") from None
    remove_stale_staging(dest)
    try:
        with staging_folder(dest) as staging:
            files, size = _copy_verified(bundle, manifest, staging / "bundle")
            if verify_key is not None:  # the copy, as copied, is what was signed (no swap between check and copy)
                problem = signature_problem(staging / "bundle", verify_key)
                if problem:
                    raise MobilepreError(f"bundle {bundle} changed while it was copied: the copy {problem}; nothing copied", EXIT_FAILED)
            fsync_tree(staging / "bundle")
            replace_tree(staging / "bundle", dest)
    except OSError as error:
        raise MobilepreError(f"cannot copy the bundle into {dest}: {os_error_message(error)}") from None
    return Delivery(manifest.profile_name or "", bundle, dest, files, size, replaced)


def _replaceable(dest: Path) -> bool:
    """True if `dest` is an earlier bundle copy, False if it is missing or empty; refuse anything else."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise MobilepreError(f"{dest} exists and is not a folder: choose another destination")
    if not dest.exists() or not any(dest.iterdir()):
        return False
    try:
        listed = {f.path for f in read_manifest(dest).files} | {"manifest.json", SIGNATURE_FILE}
    except IntegrityError:
        raise MobilepreError(
            f"{dest} holds files but no intact bundle manifest: it is not a known earlier copy, so nothing in it is "
            "replaced; empty it or choose another destination"
        ) from None
    for path in sorted(dest.rglob("*")):
        relative = path.relative_to(dest).as_posix()
        if path.is_symlink() or (path.is_file() and relative not in listed):
            raise MobilepreError(
                f"{dest} holds {relative}, which its bundle manifest does not list: it may be the app's own file, "
                "so nothing is replaced; move it or choose another destination"
            )
    return True


def _copy_verified(bundle: Path, manifest: Manifest, staging: Path) -> tuple[int, int]:
    """Copy the manifest's files (each checked against its sha256 again), the manifest as it was verified
    (its bytes as read, not read again) and the signature."""
    entries = [(f.path, f.sha256) for f in manifest.files] + [("manifest.json", None)]
    entries += [(SIGNATURE_FILE, None)] if (bundle / SIGNATURE_FILE).is_file() else []
    size = 0
    for relative, sha256 in entries:
        data = manifest.raw if relative == "manifest.json" else (bundle / relative).read_bytes()
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise MobilepreError(f"bundle {bundle}: {relative} changed while it was copied; nothing copied", EXIT_FAILED)
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        size += len(data)
    return len(entries), size
