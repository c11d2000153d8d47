"""Benchmark 5, start-up: `mobilepre --help` against `python -c pass`, both in fresh processes."""

from __future__ import annotations

from benchmarks.timing import MOBILEPRE, PYTHON, Command, median, paired_ratio, time_commands

DESCRIPTION = (
    "Wall-clock time of a fresh process, from spawn to exit: the `mobilepre` console script printing its "
    "help against the same interpreter doing nothing. TensorFlow is imported only by commands that need it, "
    "so the difference is importing Typer (with its bundled Click) and mobilepre's CLI module."
)


def run(rounds: int, progress) -> dict:
    commands = {
        "mobilepre_help": Command((MOBILEPRE, "--help")),
        "python_pass": Command((PYTHON, "-c", "pass")),
    }
    seconds, _ = time_commands(commands, rounds, lambda message: None)
    ratio = paired_ratio(seconds["mobilepre_help"], seconds["python_pass"])
    medians = {name: round(median(values), 4) for name, values in seconds.items()}
    progress(f"mobilepre --help {medians['mobilepre_help']} s, python -c pass {medians['python_pass']} s")
    return {
        "description": DESCRIPTION,
        "rounds": rounds,
        "seconds": {name: [round(s, 4) for s in values] for name, values in seconds.items()},
        "median_seconds": medians,
        "ratios": {"help_over_python": round(ratio, 4)},
    }
