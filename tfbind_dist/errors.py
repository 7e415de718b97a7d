"""The project's user-error types: a mistake in what the user gave, not a bug.

Every message names the file, row, field, sequence or position at fault. The command line
turns exactly these into its one-line `tfbind: error: ...` and exit status 2; any other
exception is a bug and keeps its traceback. In Python, catch `TfbindError` for all of them.
"""
from __future__ import annotations

# A run stopped by SIGTERM/SIGINT after checkpointing (`training/preemption.py`): 128 + SIGTERM, what schedulers
# (Kubernetes, Slurm, Ray) read as "terminated: retry". Here so that the command line needs no training import.
PREEMPTED_EXIT_CODE = 143


class TfbindError(Exception):
    """Base of every user error the package raises on purpose."""


class ConfigError(TfbindError, ValueError):
    """A configuration value or key that cannot be used; the message names it."""


class DataError(TfbindError, ValueError):
    """Unusable input data; the message names the file, row and field."""


class SequenceError(DataError):
    """A sequence that cannot be used (bad character or code, wrong length, none at all): names sequence and position."""


class RunDirError(TfbindError, FileNotFoundError):
    """A path that is not a usable run directory; the message names the file."""


class RunConfigMismatch(TfbindError, ValueError):
    """A run directory holds a run with a different configuration."""


class StorageError(TfbindError, OSError):
    """Storage that cannot take what a command writes (a full disk, a quota, a refused write) or a bucket that
    cannot be reached with the credentials given; the message names the path and what re-running does."""


class MissingExtra(TfbindError, ImportError):
    """An optional dependency a command needs is not installed; the message names the extra to install."""


__all__ = ["TfbindError", "ConfigError", "DataError", "SequenceError", "RunDirError", "RunConfigMismatch",
           "StorageError", "MissingExtra"]
