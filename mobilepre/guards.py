"""What keeps a build's output whole while it runs: an OS lock on the output's folder, and signals that
unwind the build like Ctrl-C (so every temporary folder is removed and the previous output stays)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
from pathlib import Path


@contextlib.contextmanager
def build_lock(out: Path, progress):
    """An OS lock on the output's parent folder: a second build beside it waits; a dead process releases it."""
    parent = out.parent if str(out.parent) else Path(".")
    fd = os.open(parent, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another mobilepre build writing into {parent} to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def signals_unwind():
    """SIGINT or SIGTERM (CI cancellation sends one, then the other) unwinds the build like Ctrl-C, once:
    later signals are ignored, so the clean-up of temporary folders cannot itself be interrupted."""

    def handler(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    interrupted = False
    try:
        yield
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if not interrupted:  # once interrupted, stay deaf until the process exits
            for sig, old in previous.items():
                signal.signal(sig, old)
