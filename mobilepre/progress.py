"""What a long command says while it works: a live display on a terminal, one-line events in logs.

A build calls its reporter with events (`reporter("message")`: results, warnings), the step running now
(`stage`), and its progress through the candidates it may try (`plan`, `advance`). `Reporter` does
nothing with any of them (`--quiet`, library callers); `LineReporter` writes events and steps as plain
lines on stderr (CI logs: a step that hangs is the last line); `LiveReporter` draws rich's progress
display on a terminal: the step, a bar over the candidates, elapsed time and an estimate of what is left,
with events printed above it.
"""

from __future__ import annotations

import sys
import time

from mobilepre.errors import one_line, render_params


class Reporter:
    """Says nothing. The base of every reporter, and what a plain callable becomes (`as_reporter`)."""

    def __call__(self, message: str) -> None:
        pass

    def stage(self, text: str) -> None:
        """The step running now, e.g. "converting tflite-int8"."""

    def plan(self, total: int) -> None:
        """The most candidates the build may measure (the bar's length)."""

    def advance(self, count: int = 1) -> None:
        """`count` more candidates measured or found needless."""

    def close(self) -> None:
        pass


class _Callback(Reporter):
    def __init__(self, callback):
        self._callback = callback

    def __call__(self, message: str) -> None:
        self._callback(render_params(message))  # a library caller reads the library's parameter names


def as_reporter(progress) -> Reporter:
    """A `Reporter` for `progress`: itself, a plain `callable(message)` taking only events, or silence."""
    if isinstance(progress, Reporter):
        return progress
    return _Callback(progress) if callable(progress) else Reporter()


class LineReporter(Reporter):
    """Events and steps as `mobilepre: ...` lines on stderr, steps with the seconds since the start.

    Steps are written from the start of the search (`plan`) on: loading the model and the data is quick
    and is where bad inputs are found, and a bad input must stay one line on stderr."""

    def __init__(self, stream=None, names=None):
        self._stream = stream or sys.stderr
        self._names = names or {}  # parameter names -> the words to show (the CLI's flags)
        self._started = time.monotonic()
        self._done = 0
        self._total = None

    def __call__(self, message: str) -> None:
        print(f"mobilepre: {one_line(render_params(message, self._names))}", file=self._stream, flush=True)

    def stage(self, text: str) -> None:
        if self._total is None:
            return
        counted = f" ({self._done}/{self._total})" if self._total else ""
        print(f"mobilepre: [{time.monotonic() - self._started:.0f} s]{counted} {one_line(text)}", file=self._stream, flush=True)

    def plan(self, total: int) -> None:
        self._total = total

    def advance(self, count: int = 1) -> None:
        self._done = min(self._total, self._done + count) if self._total else self._done + count


class LiveReporter(Reporter):
    """rich's live progress display on stderr (a terminal): spinner, step, bar, counts, elapsed, left."""

    def __init__(self, names=None):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.table import Column

        self._console = Console(stderr=True, highlight=False)
        step = Column(no_wrap=True, overflow="ellipsis", ratio=1)  # the step gives way first on a narrow terminal
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}", markup=False, table_column=step), BarColumn(bar_width=16),
            MofNCompleteColumn(), TextColumn("candidates"), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
            console=self._console, transient=True,
        )
        self._task = self._progress.add_task("starting", total=None)
        self._names = names or {}
        self._progress.start()

    def __call__(self, message: str) -> None:
        self._progress.console.print(f"mobilepre: {one_line(render_params(message, self._names))}", markup=False, highlight=False)

    def stage(self, text: str) -> None:
        self._progress.update(self._task, description=one_line(text))

    def plan(self, total: int) -> None:
        self._progress.update(self._task, total=total)

    def advance(self, count: int = 1) -> None:
        self._progress.advance(self._task, count)

    def close(self) -> None:
        self._progress.stop()


def reporter_for(quiet: bool, stream=None, names=None) -> Reporter:
    """`--quiet`: silence; stderr a terminal: the live display; else plain lines. Parameters named in
    events are shown as `names` maps them (the CLI passes its flags)."""
    stream = stream or sys.stderr
    if quiet:
        return Reporter()
    if stream.isatty():
        return LiveReporter(names)
    return LineReporter(stream, names)
