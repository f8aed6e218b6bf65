"""The one error type for what a user got wrong: a path, an option, a config key, a file's content.

The command line prints a ``FeatflowError`` as one line and exits with code 2; any other exception is a bug in
featflow and keeps its traceback. ``FeatflowError`` is a ``ValueError`` (and ``MissingInput`` also a
``FileNotFoundError``), so code that catches those keeps working.
"""

from __future__ import annotations


class FeatflowError(ValueError):
    """Bad input from the user (an option, a config, a file's content): one line, exit code 2."""


class MissingInput(FeatflowError, FileNotFoundError):
    """A file or folder the user named does not exist (or is not the kind of thing it must be)."""
