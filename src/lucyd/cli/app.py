"""The typer application object and the error handling every command shares.

Commands live in ``cmd_*.py`` modules, each a thin layer over a library function;
they register themselves on :data:`app` with ``@app.command()`` and wrap their body
with :func:`handle_errors` so bad input exits non-zero with one line, no traceback.
"""

from __future__ import annotations

import functools
import sys

import typer

from lucyd.errors import LucydError

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


def handle_errors(func):
    """Turn lucyd's own errors (and unreadable files) into a one-line message and exit 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except LucydError as exc:
            fail(str(exc))
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            fail(f"{exc.filename or ''}: {exc.strerror}".lstrip(": "))
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper
