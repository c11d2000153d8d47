"""Side-by-side measurement: interleaved rounds, paired ratios, medians, and the targets they are held to."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MOBILEPRE = str(Path(sys.executable).parent / "mobilepre")

# The environment every child process gets, the same on both sides of a comparison: TensorFlow's
# logging down, oneDNN off (as mobilepre's own import sets it, so the baseline computes the same way).
CHILD_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "KERAS_BACKEND": "tensorflow",
    "TFDF_DISABLE_WELCOME_MESSAGE": "1",
}


class BenchError(Exception):
    """A benchmark could not measure what it should (a side failed, or the two sides did different work)."""


@dataclass(frozen=True)
class Command:
    """One side of a timed comparison: a command line and the environment variables it adds."""

    argv: tuple[str, ...]
    env: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """A figure held to a limit from issue 7.

    Attributes:
        benchmark (str): which benchmark measured it.
        name (str): what the figure is.
        value (float): the measured ratio.
        limit (float): the largest ratio that meets the target.
        note (str): how the figure reads, and why when the target is not met.
    """

    benchmark: str
    name: str
    value: float
    limit: float
    note: str = ""

    @property
    def met(self) -> bool:
        return self.value <= self.limit

    def to_dict(self) -> dict:
        return {
            "benchmark": self.benchmark,
            "name": self.name,
            "value": round(self.value, 4),
            "limit": self.limit,
            "met": self.met,
            "note": self.note,
        }


def rotated(names: list[str], round_index: int) -> list[str]:
    """The order of one round: each side goes first in turn, so a slow spell of the host hits all sides."""
    k = round_index % len(names)
    return names[k:] + names[:k]


def time_commands(commands: dict[str, Command], rounds: int, progress: Callable[[str], None]) -> tuple[dict, dict]:
    """Wall-clock seconds of each command, `rounds` times, interleaved; and each command's last stdout.

    A command that exits non-zero stops the benchmark: a failed side would make its ratio meaningless.
    """
    seconds = {name: [] for name in commands}
    stdout = {}
    for r in range(rounds):
        for name in rotated(list(commands), r):
            command = commands[name]
            env = {**os.environ, **CHILD_ENV, **command.env}
            started = time.perf_counter()
            result = subprocess.run(command.argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
            elapsed = time.perf_counter() - started
            if result.returncode != 0:
                tail = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or ["no output"])[-1]
                raise BenchError(f"{name} ({' '.join(command.argv)}) exited {result.returncode}: {tail}")
            seconds[name].append(elapsed)
            stdout[name] = result.stdout
        progress(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {seconds[n][-1]:.2f} s" for n in commands))
    return seconds, stdout


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median of per-round ratios: each ratio compares two figures measured back to back."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def median(values: list[float]) -> float:
    return statistics.median(values)


def load_average() -> list[float]:
    """The host's 1, 5 and 15 minute load averages: how busy the shared machine was."""
    return [round(v, 2) for v in os.getloadavg()]
