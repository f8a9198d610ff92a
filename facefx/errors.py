"""One error type for problems a user can fix, and the one-line way stage scripts report it."""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

T = TypeVar("T")


class FacefxError(Exception):
    """A problem with the user's input or setup: the message says what is wrong and what to do."""


def cli_main(fn: Callable[..., T]) -> Callable[..., T]:
    """Wrap a script's main(): a FacefxError becomes one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FacefxError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    return wrapper
