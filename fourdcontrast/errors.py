"""Errors a person can fix: a configuration, a ``--set`` value, a path or an output folder that cannot be
used. The command line (:mod:`fourdcontrast.cli`) prints their message on one line
(``fourdcontrast: error: …``) and exits with status 2, without a traceback (``--debug`` shows it); every
other exception is an internal error and keeps its traceback.

They subclass ``ValueError``, so library callers that catch ``ValueError`` keep working.
"""

from __future__ import annotations

__all__ = ["ConfigError", "InputError", "RunFolderError"]


class InputError(ValueError):
    """An input of a command that cannot be used; the message names the file or folder, the field and
    value where there is one, and what is expected."""


class ConfigError(InputError):
    """A configuration file or ``--set`` override that cannot be used: unknown name, badly typed or
    out-of-range value, missing file."""


class RunFolderError(InputError):
    """An output folder that already holds a run (and neither ``--resume`` nor ``--overwrite`` was given),
    or a ``--resume`` with nothing to resume."""
