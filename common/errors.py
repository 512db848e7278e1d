"""Usage errors: one clear line, exit status 2, nothing already written is touched.

Every entry script wraps its ``main`` with :func:`exit_on_usage_error`. Library code raises
:class:`UsageError` (or a subclass) when a flag, file or checkpoint is not what it must be; the message
names the flag or file and says what was expected.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

USAGE_EXIT_CODE = 2


class UsageError(Exception):
    """Bad input from the user: a flag value, a missing or corrupt file, a mismatching checkpoint."""


def fail(message: str) -> None:
    """Print ``error: <message>`` as one line on stderr and exit with status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(USAGE_EXIT_CODE)


def exit_on_usage_error(main: Callable[..., T]) -> Callable[..., T]:
    """Decorator for entry points: turn a :class:`UsageError` into one line on stderr and exit 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UsageError as err:
            fail(str(err).splitlines()[0] if str(err) else type(err).__name__)

    return wrapper
