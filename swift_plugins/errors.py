"""One error base for everything medres raises on purpose, and the one place it is reported.

A `MedresError` is a problem with the user's input, data or run (not a bug): its message names
the dataset, split, row and file where they are known, and `medres` prints it as one line (plus
a log tail for a failed `swift` run) with no traceback. `MEDRES_DEBUG=1` shows the traceback.
"""
from __future__ import annotations

import os
import sys
import traceback
from contextlib import contextmanager
from typing import Iterator

from .vocabulary import TRUE_STRINGS, Env

EXIT_OK, EXIT_CHECK_FAILED, EXIT_ERROR = 0, 1, 2


class MedresError(Exception):
    """Base of every error medres raises deliberately; `exit_code` is what `medres` exits with."""
    exit_code = EXIT_ERROR


class UsageError(MedresError, ValueError):
    """A command line or option that cannot work; the message says what would."""


class RegistryError(MedresError, ValueError):
    """A registry file is malformed; the message names the file and the field."""


class DataError(MedresError, ValueError):
    """A source row cannot become a training/evaluation row; the message names the row."""


class ImageDecodeError(DataError):
    """An image cannot be decoded or converted; the message names where it came from."""


class PolicyError(MedresError, ValueError):
    """A resolution policy setting is invalid or cannot be applied."""


class TokenMismatchError(MedresError, RuntimeError):
    """The template produced a different number of visual tokens than the policy planned."""


class PredictionsError(MedresError, ValueError):
    """A predictions file cannot be scored; the message names the file and line."""


class ScoreError(MedresError, ValueError):
    """Predictions and entry do not fit together (e.g. a gold answer outside the label set)."""


class PrepareError(MedresError, RuntimeError):
    """The raw input cannot be prepared; the message names the file, row or item."""


class LaunchError(MedresError, ValueError):
    """A training launch that cannot reach the recipe's batch, or lacks what it needs."""


class RunError(MedresError, RuntimeError):
    """A `swift` (or `medres train`) subprocess failed; the message holds the cell, log path and tail."""
    exit_code = EXIT_CHECK_FAILED


class GridError(MedresError, RuntimeError):
    """A grid, sweep or probe cannot run as configured (e.g. a cell computed with other settings)."""


class StudyError(MedresError, RuntimeError):
    """A study cannot run as configured (e.g. an arm trained with other settings)."""


def debug_enabled() -> bool:
    return os.environ.get(Env.DEBUG, '').strip().lower() in TRUE_STRINGS


def report(error: MedresError, prog: str = 'medres') -> int:
    """Print `error` for a user (traceback only with MEDRES_DEBUG=1); the exit code to use."""
    if debug_enabled():
        traceback.print_exception(error)
    print(f'{prog}: error: {error}', file=sys.stderr, flush=True)
    return error.exit_code


@contextmanager
def exit_on_error(prog: str) -> Iterator[None]:
    """Inside ms-swift's process: a MedresError ends it with its message, not a traceback."""
    try:
        yield
    except MedresError as e:
        raise SystemExit(report(e, prog)) from None


def install_excepthook(prog: str) -> None:
    """In a process medres does not own (ms-swift's): an uncaught MedresError prints as one line."""
    previous = sys.excepthook
    if getattr(previous, '_medres', False):
        return

    def hook(kind, value, tb):
        if isinstance(value, MedresError) and not debug_enabled():
            print(f'{prog}: error: {value}', file=sys.stderr, flush=True)
            return
        previous(kind, value, tb)

    hook._medres = True
    sys.excepthook = hook
