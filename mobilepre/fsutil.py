"""Writing files and folders so that a reader sees the old version or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from mobilepre.errors import MobilepreError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(target: Path):
    """Yield a temporary path beside `target` (same suffix); on success flush it and rename it into place."""
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise MobilepreError(f"cannot write {target}: folder {parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
        _fsync_dir(parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def fsync_tree(root: Path) -> None:
    """Flush every file and folder below `root` to disk."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(dirpath))


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def check_output(target: Path, force: bool, what: str = "output") -> None:
    """Refuse to replace an existing output unless `force`; refuse a missing parent folder."""
    target = Path(target)
    if target.exists() or target.is_symlink():
        if not force:
            raise MobilepreError(f"{what} {target} already exists: pass --force to replace it")
        if target.is_symlink():
            raise MobilepreError(f"{what} {target} is a symlink: remove it or choose another path")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise MobilepreError(f"cannot write {target}: folder {parent} does not exist")


def write_files_atomically(files: dict[str, bytes], target: Path, as_folder: bool) -> None:
    """Write `files` as one file (`as_folder=False`, exactly one entry) or as a folder, replacing `target`.

    Everything is written beside `target` under a temporary name, flushed, then put in place in one
    step (`atomic_file`, `replace_tree`), so a crash at any point leaves the old output or the new one.
    """
    if not as_folder:
        (data,) = files.values()
        with atomic_file(target) as tmp:
            tmp.write_bytes(data)
        return
    staging = make_staging(target)
    try:
        for name, data in sorted(files.items()):
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        fsync_tree(staging)
        replace_tree(staging, target)
    finally:
        remove_tree(staging)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux renameat2(RENAME_EXCHANGE); False where unavailable."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def make_staging(target: Path) -> Path:
    """An empty folder beside `target` (hidden, `.tmp` suffix) to build the new output in."""
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    os.chmod(staging, 0o777 & ~_umask())
    return staging


def replace_tree(staging: Path, target: Path) -> None:
    """Put the complete folder `staging` at `target`.

    An existing `target` is swapped with `staging` in one atomic step where the kernel can
    (renameat2), so a reader or a crash sees the old folder or the new one, never neither; elsewhere
    the old folder is moved aside first. The old content ends in `staging`, for the caller to remove.
    """
    parent = target.parent if str(target.parent) else Path(".")
    if target.exists():
        if not target.is_dir() or target.is_symlink():
            raise MobilepreError(f"{target} exists and is not a folder")
        if not _exchange(staging, target):
            aside = staging.with_name(staging.name + ".old")
            os.rename(target, aside)
            os.rename(staging, target)
            os.rename(aside, staging)
    else:
        os.rename(staging, target)
    _fsync_dir(parent)
