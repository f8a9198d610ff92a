"""One error type for problems a user can fix, the exit codes of every command, and the one way a command
reports an error or a signal.

Exit codes (every command; docs/cli.md lists each command's common errors):
    0    the command did what was asked
    2    bad input, options or surroundings the user can fix (missing file, full disk, read-only folder):
         one line on stderr says what is wrong and what to do
    1    an internal failure (a bug): one line naming it and where to report it
    130  stopped by Ctrl-C (SIGINT); 143 stopped by SIGTERM (`kill PID`). Nothing half-written is left behind.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2
# Where bugs go; no public URL is fixed yet, so the line names the tracker (set the URL here once there is one).
REPORT_TO = "the facefx issue tracker"
EXIT_CODES_EPILOG = ("exit codes: 0 done; 2 bad input or options (one line says what to fix; nothing is "
                     "overwritten or left half-written); 1 internal error (please report it to "
                     f"{REPORT_TO}); 130 stopped by Ctrl-C; 143 stopped by SIGTERM. See docs/cli.md.")


class FacefxError(Exception):
    """A problem with the user's input or setup: the message says what is wrong and what to do."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or `kill`: a KeyboardInterrupt (so every `except KeyboardInterrupt` cleans up alike) that remembers
    its signal, so the command exits 128 + signal number (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


_last_signal: int | None = None  # the signal that stopped the current command, also where a loop caught it
_deferring = 0  # depth of deferred_interrupts() blocks
_pending: int | None = None  # a signal that arrived inside one, raised when the outermost block ends


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGTERM/SIGINT (as interrupt_on_signals raises them) until the block ends.

    A KeyboardInterrupt raised between two bytecodes of a Python wrapper around native code (MediaPipe's detector,
    ONNX Runtime, OpenCV's video I/O) can leave that code's state half-updated, and closing it then crashed the
    process (SIGSEGV instead of exit 143). Wrapped around each such call, the interrupt lands just after it.
    """
    global _deferring, _pending
    if threading.current_thread() is not threading.main_thread():  # signals are only ever handled in the main
        yield
        return
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if not _deferring and _pending is not None:
        signum, _pending = _pending, None
        raise Interrupted(signum)


def interrupt_exit_code(err: BaseException | None) -> int:
    """128 + the signal behind a KeyboardInterrupt (a plain KeyboardInterrupt is Ctrl-C: 130)."""
    return 128 + getattr(err, "signum", signal.SIGINT)


def epilog(extra: str = "") -> str:
    """The --help epilog every command shares: its exit codes (plus an optional command-specific line)."""
    return (extra.rstrip() + "\n\n" if extra else "") + EXIT_CODES_EPILOG


# Errors from the operating system that the user can fix: one line and exit 2, not a traceback.
_USER_OS_ERRORS = {errno.ENOSPC: "the disk is full; free some space and run again",
                   errno.EDQUOT: "the disk quota is exceeded; free some space and run again",
                   errno.EACCES: "permission denied; pick a folder you can write to",
                   errno.EPERM: "permission denied; pick a folder you can write to",
                   errno.EROFS: "the file system is read-only; pick a writable folder",
                   errno.ENOTDIR: "a file is in the way where a folder is needed; pass another path",
                   errno.EEXIST: "it already exists; pass another path or remove it",
                   errno.ENAMETOOLONG: "the name is too long; pass a shorter path"}


def os_error_message(err: OSError) -> str | None:
    """One line for an OSError the user can fix (disk full, read-only, permission, a missing path), or None for
    other errors."""
    if err.errno == errno.ENOENT and err.filename:
        return f"cannot find {err.filename}: no such file or folder; check the path"
    advice = _USER_OS_ERRORS.get(err.errno or -1)
    if advice is None:
        return None
    where = f"cannot write {err.filename}" if err.filename else "cannot write the output"
    return f"{where}: {advice}"


def cli_main(fn: Callable[..., T]) -> Callable[..., T]:
    """Wrap a command's main(): SIGTERM and SIGINT stop it cleanly (exit 143/130, partial files removed by the
    code they unwind through); a FacefxError, or an OSError such as a full disk, becomes one line on stderr and
    exit 2; anything else is a bug: it propagates, and the command's excepthook prints one line saying where to
    report it (exit 1; FACEFX_DEBUG=1 shows the traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        global _last_signal, _pending
        _last_signal = _pending = None
        # Anything else is a bug. It propagates (so a caller in the same process, a test, sees it) and, at the
        # top of a command, Python exits with 1 after calling sys.excepthook: one line there, not a traceback.
        if sys.excepthook is sys.__excepthook__:
            sys.excepthook = _report_bug
        restore = interrupt_on_signals()
        unraisable = sys.unraisablehook
        sys.unraisablehook = _quiet_interrupts(unraisable)
        try:
            result = fn(*args, **kwargs)
        except FacefxError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        except KeyboardInterrupt as err:
            print(f"interrupted ({signal.Signals(interrupt_exit_code(err) - 128).name}); nothing half-written was kept",
                  file=sys.stderr)
            sys.exit(interrupt_exit_code(err))
        except OSError as err:
            msg = os_error_message(err)
            if msg is None:
                raise  # not one a user can fix: a bug, reported by _report_bug
            print(f"error: {msg}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        finally:
            restore()
            sys.unraisablehook = unraisable
        if _last_signal is not None and not (isinstance(result, int) and result):
            # A training loop catches the interrupt to save a checkpoint and returns normally; the exit code still
            # says the run was stopped, not finished. (A command returning its own exit code, webcam.py, says it.)
            print(f"stopped by {signal.Signals(_last_signal).name}", file=sys.stderr)
            sys.exit(128 + _last_signal)
        return result

    return wrapper


def _quiet_interrupts(hook: Callable) -> Callable:
    """A signal that lands while a finalizer (__del__, a generator's close) runs cannot propagate; Python would
    print it as 'Exception ignored ... Traceback'. The signal is remembered (_last_signal) and sets the exit
    code, so that report is noise: drop it, pass on every other one."""

    def hook_(unraisable) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            hook(unraisable)
    return hook_


def _report_bug(kind: type[BaseException], err: BaseException, tb) -> None:
    """sys.excepthook of a command: an unexpected exception is one line naming it and where to report it
    (Python then exits with 1); FACEFX_DEBUG=1 shows the traceback as well."""
    if os.environ.get("FACEFX_DEBUG") or not isinstance(err, Exception):
        sys.__excepthook__(kind, err, tb)
        if not isinstance(err, Exception):
            return
    text = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
    print(f"internal error: {kind.__name__}: {text} (a bug in facefx; please report it to {REPORT_TO} with the "
          "command; FACEFX_DEBUG=1 shows the traceback)", file=sys.stderr)


def interrupt_on_signals() -> Callable[[], None]:
    """From now on SIGTERM and SIGINT raise Interrupted (a KeyboardInterrupt); returns the function that restores
    the old handlers.

    Every command installs it (cli_main), so `kill PID` unwinds like Ctrl-C: staged folders and temp files are
    removed on the way out, and a training loop, which catches KeyboardInterrupt, saves a checkpoint and stops
    (also for a run started with nohup/&, where the shell makes it ignore SIGINT). Outside the main thread
    signals cannot be handled: a no-op there.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum, _frame):
        global _last_signal, _pending
        _last_signal = int(signum)
        if _deferring:
            _pending = int(signum)  # deferred_interrupts() raises it once the native call has returned
            return
        raise Interrupted(signum)

    old = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for s, handler in old.items():
            signal.signal(s, handler)
    return restore
