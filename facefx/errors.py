"""One error type for problems a user can fix, and the one-line way stage scripts report it."""

from __future__ import annotations

import functools
import signal
import sys
import threading
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


def interrupt_on_signals() -> Callable[[], None]:
    """From now on SIGTERM and SIGINT raise KeyboardInterrupt; returns the function that restores the old handlers.

    A training loop catches KeyboardInterrupt to save a checkpoint and stop, so `kill PID` stops a run started
    with nohup/& (where the shell makes it ignore SIGINT) at the current step instead of losing what it did since
    the last checkpoint. Outside the main thread signals cannot be handled: a no-op there.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    old = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for s, handler in old.items():
            signal.signal(s, handler)
    return restore
