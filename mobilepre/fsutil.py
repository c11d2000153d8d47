"""Writing files and folders so that a reader sees the old version or the new one, never half of one."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from mobilepre.errors import MobilepreError, param


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


def check_output(
    target: Path,
    force: bool,
    what: str = "output",
    inputs: tuple = (),
    replaceable: Callable[[Path], str | None] | None = None,
) -> None:
    """Refuse an output that would lose something, before any work is done.

    `target` may not be, nor contain, any of `inputs` (the files and folders the run reads) or the
    working directory. An existing `target` is replaced only with `force`, and then only when
    `replaceable(target)` finds nothing wrong (it returns why the path is not a previous output of this
    tool, or None). The parent folder must exist and be writable.
    """
    target = Path(target)
    resolved = target.resolve()
    for path in (*[Path(p) for p in inputs if p is not None], Path.cwd()):
        inside = path.resolve()
        if inside == resolved or resolved in inside.parents:
            shown = "the working directory" if path == Path.cwd() else str(path)
            raise MobilepreError(f"{what} {target} would replace {shown}, which this run reads: choose an output outside it")
    empty_folder = target.is_dir() and not target.is_symlink() and not any(target.iterdir())
    if (target.exists() or target.is_symlink()) and not empty_folder:  # an empty folder (made by a build tool) holds nothing to lose
        if not force:
            raise MobilepreError(f"{what} {target} already exists: pass {param('force')} to replace it")
        if target.is_symlink():
            raise MobilepreError(f"{what} {target} is a symlink: remove it or choose another path")
        problem = replaceable(target) if replaceable else None
        if problem:
            raise MobilepreError(f"{what} {target} is not a previous output of mobilepre ({problem}): {param('force')} replaces only those; choose another path")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise MobilepreError(f"cannot write {target}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MobilepreError(f"cannot write {target}: folder {parent} is not writable")


def os_error_message(error: OSError, path: Path | str | None = None) -> str:
    """One line for an OS error: the path and what the errno means."""
    where = path or error.filename or "a file"
    meaning = os.strerror(error.errno) if error.errno else str(error)
    hint = {errno.ENOSPC: ": free some space", errno.EDQUOT: ": free some space", errno.EROFS: ": choose a writable folder",
            errno.EACCES: ": check the permissions", errno.EBUSY: ": choose another path"}.get(error.errno, "")
    return f"{where}: {meaning}{hint}"


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
    with staging_folder(target) as folder:
        for name, data in sorted(files.items()):
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        fsync_tree(folder)
        replace_tree(folder, target)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux renameat2(RENAME_EXCHANGE); False where unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


@contextlib.contextmanager
def staging_folder(target: Path, kind: str = "new"):
    """A fresh hidden folder beside `target` (`.NAME.KIND.XXXXXXXX.tmp`), removed on exit.

    Its owner holds an OS lock on it (flock on the folder) for as long as it lives, so a folder left by
    a killed process is provably abandoned: `remove_stale_staging` removes exactly those.
    """
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    path = Path(tempfile.mkdtemp(prefix=f".{target.name}.{kind}.", suffix=".tmp", dir=parent))
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.chmod(path, 0o777 & ~_umask())
        yield path
    finally:
        remove_tree(path)
        os.close(fd)


def remove_stale_staging(target: Path) -> list[Path]:
    """Remove the staging folders beside `target` whose owner is gone (their lock is free); return them."""
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    removed = []
    for entry in sorted(parent.glob(f".{glob_escape(target.name)}.*.tmp")):
        if entry.is_symlink() or not entry.is_dir():
            continue
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its owner is alive
        else:
            remove_tree(entry)
            removed.append(entry)
        finally:
            os.close(fd)
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


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


# ------------------------------------------------------------------------- what --force may replace


def tflite_file_problem(path: Path) -> str | None:
    """Why `path` is not a TFLite file an earlier run wrote (None when it is one)."""
    if not path.is_file():
        return "it is not a file"
    with open(path, "rb") as f:
        head = f.read(8)
    return None if head[4:8] == b"TFL3" else "it is not a .tflite file"


def keras_file_problem(path: Path) -> str | None:
    """Why `path` is not a Keras archive an earlier run wrote (None when it is one)."""
    if not path.is_file():
        return "it is not a file"
    with open(path, "rb") as f:
        head = f.read(4)
    return None if head == b"PK\x03\x04" else "it is not a .keras archive"


def tfjs_folder_problem(path: Path) -> str | None:
    """Why `path` is not a TF.js graph-model folder an earlier run wrote (None when it is one)."""
    if not path.is_dir():
        return "it is not a folder"
    names = sorted(p.name for p in path.iterdir())
    if "model.json" not in names:
        return "it has no model.json"
    extra = [n for n in names if n != "model.json" and not (n.endswith(".bin") and (path / n).is_file())]
    return f"it holds {extra[0]}, which a TF.js conversion does not write" if extra else None
