"""Exceptions that lucyd reports to users as a single, specific line.

Every check on user input raises one of these, so that the CLI can print the
message without a traceback and library users can catch one base class.
"""

from __future__ import annotations


class LucydError(Exception):
    """Base class of all errors lucyd raises on purpose."""


class InputError(LucydError, ValueError):
    """Bad input data or parameters (shape, dimensionality, non-finite values, ...)."""


class FileFormatError(LucydError, OSError):
    """A file that is missing, unreadable, truncated or of an unsupported kind."""


class LucydWarning(UserWarning):
    """Something the user should know that does not stop the job (e.g. voxel sizes that
    disagree); the CLI prints it as one ``warning: ...`` line."""
