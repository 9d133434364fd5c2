"""The typer application object and the error handling every command shares.

Commands live in ``cmd_*.py`` modules, each a thin layer over a library function;
they register themselves on :data:`app` with ``@app.command()`` and wrap their body
with :func:`handle_errors` so bad input exits non-zero with one line, no traceback.
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
import warnings

import typer

from lucyd.errors import LucydError, LucydWarning

app = typer.Typer(
    name="lucyd",
    help="Restore fluorescence microscopy images: PSFs, deconvolution, synthetic data, networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: exit status for errors in the user's input or files
EXIT_BAD_INPUT = 2


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so that ``finally`` blocks and
    :func:`lucyd.io.atomic.atomic_path` remove partial outputs, as they do on Ctrl-C."""


def _raise_terminated(signum, frame):
    raise Terminated()


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, LucydWarning):
        typer.echo(f"warning: {message}", err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def handle_errors(func):
    """Turn lucyd's own errors (and unreadable files) into a one-line message and exit 2.

    Warnings of class :class:`~lucyd.errors.LucydWarning` are printed as ``warning: ...``
    lines. SIGTERM becomes :class:`Terminated` while the command runs (exit 143 after the
    clean-up); Ctrl-C (SIGINT) exits 130 after the same clean-up.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", LucydWarning)
                warnings.showwarning = _show_warning
                return func(*args, **kwargs)
        except LucydError as exc:
            fail(str(exc))
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            fail(f"{exc.filename or ''}: {exc.strerror}".lstrip(": "))
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            sys.exit(130)
        except Terminated:
            typer.echo("terminated", err=True)
            sys.exit(143)
        finally:
            if in_main_thread:
                signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)

    return wrapper
