"""The one error type for a user's mistake, the exit codes the CLI documents, and where the compression
engine's errors become ours."""

from __future__ import annotations

import contextlib

from mobilepre.quantize.settings import QuantizeError

EXIT_OK = 0
EXIT_FAILED = 1  # a budget, tolerance or integrity check failed
EXIT_BAD_INPUT = 2  # bad input or usage: nothing was written


class MobilepreError(Exception):
    """A mistake in what the user gave us: one line saying what, where, and what to do.

    Attributes:
        message (str): the line the CLI prints.
        exit_code (int): `EXIT_BAD_INPUT` (default) or `EXIT_FAILED`.
    """

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


@contextlib.contextmanager
def engine_errors(where: str | None = None):
    """Turn the compression engine's `QuantizeError` into a `MobilepreError` (bad input, exit 2), with
    the model or file it concerns in front. The one place the translation happens."""
    try:
        yield
    except QuantizeError as error:
        raise MobilepreError(f"{where}: {error}" if where else str(error)) from None

