"""The candidate cache: measured candidates stored under a hash of everything that decides them, shared by builds.

An entry is a folder `entries/<key>/` holding the artifact's files and `entry.json` (the measurements,
each file's sha256, and a digest of itself). It is written into `tmp/` and renamed into place, under
an exclusive lock on `locks/<key>.lock`; readers take that lock shared, so eviction never removes an
entry being read. A damaged entry (bad JSON, a digest or file hash that does not match) is a miss and
is removed, never a result. The least recently used entries go first when the cache is over its size.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mobilepre.errors import MobilepreError

CACHE_SCHEMA = "mobilepre.cache/1"
DEFAULT_MAX_BYTES = 5 * 1024 ** 3
ENTRY_FILE = "entry.json"
USED_FILE = "used"  # its mtime is the entry's last use (reads touch it; eviction sorts by it)
MAX_ENTRY_BYTES = 64 * 1024 * 1024  # entry.json is read whole: a cap, like every file read whole
STALE_STAGING_S = 3600  # a build's staged entry older than this was left by a killed process
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # artifact file names: no folder, no way out of the entry
_KEY = re.compile(r"[0-9a-f]{64}")  # an entry's folder name: a content key
_STAGED = re.compile(r"[0-9a-f]{16}\.[A-Za-z0-9_]+")  # what `put` stages in tmp/ (mkdtemp's names)
_LAYOUT = ("entries", "locks", "tmp")
TAG_FILE = "CACHEDIR.TAG"  # https://bford.info/cachedir/: backup tools skip the folder
TAG = "Signature: 8a477f597d28d172789f06886806bc55\n# mobilepre's candidate cache: `mobilepre cache clear` empties it.\n"


def default_cache_dir() -> Path:
    """`MOBILEPRE_CACHE`, else `$XDG_CACHE_HOME/mobilepre`, else `~/.cache/mobilepre`."""
    if os.environ.get("MOBILEPRE_CACHE"):
        return Path(os.environ["MOBILEPRE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mobilepre"


def content_key(parts: dict) -> str:
    """The sha256 of `parts` as canonical JSON: equal parts, equal key, whatever their order."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _digest(document: dict) -> str:
    return content_key({k: v for k, v in document.items() if k != "digest"})


def host_identity() -> dict:
    """The hardware a latency was measured on: CPU model, logical CPUs, memory, OS and architecture. Two
    machines of one class (CI runners of one type) share it; a different CPU or core count does not."""
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3)
    return {"cpu": cpu, "cpus": os.cpu_count(), "memory_gib": memory, "system": f"{platform.system()}-{platform.machine()}"}


@functools.cache
def code_fingerprint() -> str:
    """A hash of this package's own files (Python, the TF.js runner, the web page): a build of changed
    code never reuses what older code measured, whatever its version number says."""
    root = Path(__file__).parent
    files = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [d for d in subfolders if d not in ("node_modules", "__pycache__", "demo")]  # never walked
        files += [Path(folder) / name for name in names]
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """One stored candidate: its measurements (`record`), its files, and host latencies by host and slot."""

    key: str
    record: dict
    files: dict
    latency: dict = field(default_factory=dict)  # host id -> {slot: runtimes.Latency.to_dict()}


@dataclass(frozen=True)
class CacheInfo:
    """What `mobilepre cache info` shows.

    Attributes:
        root (str), entries (int), size_bytes (int), max_bytes (int).
    """

    root: str
    entries: int
    size_bytes: int
    max_bytes: int

    def to_dict(self) -> dict:
        return {"entries": self.entries, "max_bytes": self.max_bytes, "root": self.root, "size_bytes": self.size_bytes}

    def to_text(self) -> str:
        from mobilepre.profiles import format_size

        return (f"{self.root}: {self.entries} entries, {format_size(self.size_bytes)} "
                f"of at most {format_size(self.max_bytes)}")


@dataclass
class CacheStats:
    """What one build asked of the cache."""

    hits: int = 0
    misses: int = 0
    writes: int = 0
    damaged: int = 0
    evicted: int = 0
    latency_hits: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class CandidateCache:
    """A folder of cache entries. Every method survives other processes using the same folder at once."""

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES, latency: bool = False):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.latency = latency  # also store and reuse host latencies (measurements: only when asked)
        self.stats = CacheStats()
        self.host = content_key(host_identity())

    # ---------------------------------------------------------------------------------- set-up

    def layout_problem(self) -> str | None:
        """Why the folder's layout is not the cache's own (a sub-folder that is a symlink or not a folder:
        the cache would follow it out of its folder), or None."""
        for sub in _LAYOUT:
            try:
                mode = os.lstat(self.root / sub).st_mode
            except (FileNotFoundError, NotADirectoryError):  # not made yet (or cannot be: `open` says so)
                continue
            if stat.S_ISLNK(mode):
                return f"its {sub}/ is a symlink"
            if not stat.S_ISDIR(mode):
                return f"its {sub} is not a folder"
        return None

    def _check_layout(self, flag: str) -> None:
        problem = self.layout_problem()
        if problem:
            raise MobilepreError(f"{flag} {self.root}: {problem}, which a mobilepre cache never has: nothing read or removed; "
                                 "remove the folder or choose another cache folder")

    def open(self, flag: str = "--cache") -> CandidateCache:
        """Create the folder layout; one line naming the folder when it cannot be used or is not the
        cache's own layout (the cache never follows a symlink out of its folder)."""
        self._check_layout(flag)
        try:
            for sub in _LAYOUT:
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            tag = self.root / TAG_FILE
            if not tag.exists():
                tag.write_text(TAG)
            probe = tempfile.NamedTemporaryFile(dir=self.root / "tmp", delete=True)
            probe.close()
            self._remove_stale_staging()
        except OSError as error:
            raise MobilepreError(f"{flag} {self.root}: cannot be used as a cache folder ({error.strerror or error}): "
                                 "give a writable folder, or pass --no-cache") from None
        return self

    @contextlib.contextmanager
    def _lock(self, key: str, exclusive: bool, wait: bool = True):
        """Yield True holding the entry's lock (shared or exclusive); False when `wait` is off and it is busy."""
        path = self.root / "locks" / f"{key}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise MobilepreError(f"cache {self.root}: locks/{key}.lock is a symlink, which a mobilepre cache never creates: "
                                     "remove the cache folder or choose another") from None
            raise
        try:
            mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB)
            try:
                fcntl.flock(fd, mode)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def _entry(self, key: str) -> Path:
        return self.root / "entries" / key

    # ---------------------------------------------------------------------------------- reading

    def get(self, key: str) -> CacheEntry | None:
        """The entry stored under `key`, checked against its hashes; None for a miss or a damaged entry."""
        try:
            with self._lock(key, exclusive=False):
                entry = self._read(key)
                if entry is not None:
                    with contextlib.suppress(OSError):
                        os.utime(self._entry(key) / USED_FILE)
        except OSError:
            entry = None
        if entry is False:
            self.stats.damaged += 1
            self._remove(key)
            entry = None
        if entry is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return entry

    def _read(self, key: str):
        """The entry, None when absent, False when damaged (a symlink anywhere in it too: never followed)."""
        folder = self._entry(key)
        try:
            if stat.S_ISLNK(os.lstat(folder).st_mode):
                return False
        except FileNotFoundError:
            return None
        except OSError:
            return False
        try:
            if (folder / ENTRY_FILE).stat().st_size > MAX_ENTRY_BYTES:
                return False
            document = json.loads((folder / ENTRY_FILE).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return False
        if (not isinstance(document, dict) or document.get("schema") != CACHE_SCHEMA or document.get("key") != key
                or document.get("digest") != _digest(document) or not isinstance(document.get("files"), dict)):
            return False
        files = {}
        for name, expected in document["files"].items():
            path = folder / "files" / name
            if not _SAFE_NAME.fullmatch(name) or not isinstance(expected, dict):
                return False
            try:
                sized = path.is_file() and not path.is_symlink() and path.stat().st_size == expected.get("bytes")
                data = path.read_bytes() if sized else None
            except OSError:
                data = None
            if data is None or len(data) != expected.get("bytes") or hashlib.sha256(data).hexdigest() != expected.get("sha256"):
                return False
            files[name] = data
        return CacheEntry(key, document["record"], files, document.get("latency") or {})

    # ---------------------------------------------------------------------------------- writing

    def put(self, key: str, record: dict, files: dict, components: dict) -> None:
        """Store a measured candidate under `key` (kept as it is when another build stored it first). A
        cache that cannot be written (full disk) costs this build nothing but the entry."""
        if not all(_SAFE_NAME.fullmatch(name) for name in files):
            raise ValueError(f"cache entry file names must be plain names: {sorted(files)}")
        try:
            staged = Path(tempfile.mkdtemp(prefix=f"{key[:16]}.", dir=self.root / "tmp"))
            try:
                (staged / "files").mkdir()
                for name, data in files.items():
                    (staged / "files" / name).write_bytes(data)
                document = {
                    "components": components, "files": {n: {"bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in files.items()},
                    "key": key, "latency": {}, "record": record, "schema": CACHE_SCHEMA,
                }
                document["digest"] = _digest(document)
                (staged / ENTRY_FILE).write_text(json.dumps(document, sort_keys=True))
                (staged / USED_FILE).touch()
                _fsync_all(staged)
                with self._lock(key, exclusive=True):
                    if self._read(key) is False:  # a damaged entry is replaced
                        shutil.rmtree(self._entry(key), ignore_errors=True)
                    if not self._entry(key).exists():
                        os.rename(staged, self._entry(key))
                        self.stats.writes += 1
            finally:
                shutil.rmtree(staged, ignore_errors=True)
            self.evict()
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM, errno.ENOENT):
                raise

    def discard(self, key: str) -> None:
        """Remove an entry whose record this version cannot use (hashes fine, content not): a miss from now on."""
        self.stats.damaged += 1
        self.stats.hits -= 1
        self.stats.misses += 1
        with contextlib.suppress(OSError), self._lock(key, exclusive=True, wait=False) as locked:
            if locked:
                shutil.rmtree(self._entry(key), ignore_errors=True)

    def latency_for(self, entry: CacheEntry, slot: str) -> dict | None:
        """A host latency stored with `entry` for this host and `slot` (runtime, threads, runs), when latencies are cached."""
        if not self.latency:
            return None
        found = entry.latency.get(self.host, {}).get(slot)
        if found is not None:
            self.stats.latency_hits += 1
        return found

    def add_latency(self, key: str, slot: str, latency: dict) -> None:
        """Record a host latency measured on this host with the entry under `key`, when latencies are cached."""
        if not self.latency:
            return
        with contextlib.suppress(OSError), self._lock(key, exclusive=True):
            folder = self._entry(key)
            entry = self._read(key)
            if not entry:
                return
            document = json.loads((folder / ENTRY_FILE).read_bytes())
            document["latency"].setdefault(self.host, {})[slot] = latency
            document["digest"] = _digest(document)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".entry.")
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(document, sort_keys=True))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, folder / ENTRY_FILE)

    # ---------------------------------------------------------------------------------- size

    def _entries(self) -> list[tuple[float, int, str]]:
        """(last use, bytes, key) of every entry the cache made (a folder named by a key; symlinks and
        anything else are neither counted nor followed)."""
        out = []
        with contextlib.suppress(FileNotFoundError):
            for folder in (self.root / "entries").iterdir():
                with contextlib.suppress(OSError):
                    if not _KEY.fullmatch(folder.name) or not stat.S_ISDIR(os.lstat(folder).st_mode):
                        continue
                    size = sum(os.lstat(os.path.join(d, f)).st_size for d, _, names in os.walk(folder) for f in names)
                    used = os.lstat(folder / USED_FILE).st_mtime if os.path.lexists(folder / USED_FILE) else 0.0
                    out.append((used, size, folder.name))
        return out

    def evict(self) -> None:
        """Remove the least recently used entries until the cache is within `max_bytes` (entries another
        process holds locked are skipped)."""
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        for _, size, key in entries:
            if total <= self.max_bytes:
                break
            with self._lock(key, exclusive=True, wait=False) as locked:
                if locked:
                    shutil.rmtree(self._entry(key), ignore_errors=True)
                    total -= size
                    self.stats.evicted += 1

    def _remove(self, key: str) -> None:
        with contextlib.suppress(OSError), self._lock(key, exclusive=True, wait=False) as locked:
            if locked and self._read(key) is False:
                shutil.rmtree(self._entry(key), ignore_errors=True)

    def info(self) -> CacheInfo:
        entries = self._entries() if (self.root / "entries").is_dir() else []
        return CacheInfo(str(self.root), len(entries), sum(size for _, size, _ in entries), self.max_bytes)

    def clear(self, flag: str = "--cache") -> int:
        """Remove every entry the cache made (waiting for readers); returns how many. The folder itself
        stays, and so does anything in it the cache did not make."""
        self._check_layout(flag)
        removed = 0
        for _, _, key in sorted(self._entries(), key=lambda e: e[2]):
            with self._lock(key, exclusive=True):
                shutil.rmtree(self._entry(key), ignore_errors=True)
                removed += 1
        self._remove_stale_staging()
        return removed

    def _remove_stale_staging(self) -> None:
        """Entries a killed build was staging (a live build renames its own within seconds): only folders
        of the names `put` stages, never a symlink, never outside tmp/."""
        if self.layout_problem():
            return
        with contextlib.suppress(FileNotFoundError):
            for leftover in (self.root / "tmp").iterdir():
                with contextlib.suppress(OSError):
                    info = os.lstat(leftover)
                    if _STAGED.fullmatch(leftover.name) and stat.S_ISDIR(info.st_mode) and time.time() - info.st_mtime > STALE_STAGING_S:
                        shutil.rmtree(leftover, ignore_errors=True)


def _fsync_all(folder: Path) -> None:
    for path in [*folder.rglob("*"), folder]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
