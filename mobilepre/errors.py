"""The one error type for a user's mistake, the exit codes the CLI documents, and where the compression
engine's errors become ours."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping

from mobilepre.quantize.settings import QuantizeError

EXIT_OK = 0
EXIT_FAILED = 1  # a budget, tolerance or integrity check failed
EXIT_BAD_INPUT = 2  # bad input or usage: nothing was written


_PARAMETER = re.compile("\u27e6([a-z][a-z0-9_]*)\u27e7")  # a parameter's name between ⟦ and ⟧, see `param`


def one_line(text: str) -> str:
    """`text` with every character that is not printable escaped (`\\n`, `\\x1b`, `\\u2028`, ...): a file or
    layer name from a user's files can never start a new log line, a CI workflow command (`::error`) or a
    build tool's `warning:` line, nor move a terminal's cursor."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def render_params(text: str, names: Mapping[str, str] | None = None) -> str:
    """`text` with each parameter marked by `param` named as `names` maps it (the CLI passes its flags),
    others bare: what any line that may name a parameter (an error, a warning) goes through before it is shown."""
    names = names or {}
    return _PARAMETER.sub(lambda m: names.get(m.group(1), m.group(1)), str(text))


def param(name: str) -> str:
    """A library parameter named in an error message (`f"{param('jobs')} 0: expected ..."`): a Python
    caller reads `jobs`, a CLI user reads the flag the CLI maps it to (`--jobs`, `MobilepreError.render`).
    The library speaks in its parameters; only the CLI knows its flags."""
    return f"\u27e6{name}\u27e7"


class MobilepreError(Exception):
    """A mistake in what the user gave us: one line saying what, where, and what to do.

    Attributes:
        message (str): the line, naming parameters as the library names them (`input_shape`).
        exit_code (int): `EXIT_BAD_INPUT` (default) or `EXIT_FAILED`.
    """

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.template = message  # with the parameters marked (`param`)
        self.message = self.render({})
        self.exit_code = exit_code

    def render(self, names: Mapping[str, str]) -> str:
        """The line with each parameter named as `names` maps it (the CLI passes its flags); others bare."""
        return one_line(render_params(self.template, names))

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

