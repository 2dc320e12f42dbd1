"""The one exception tree of the project.

Every error the library raises on bad input or a bad artefact is an ``AssistantError``, so callers
(the server, the CLIs) can catch one type and show its message. Messages name the bad value and what
would be valid. ``ConfigError`` and ``DataError`` are also ``ValueError`` so that code written against
plain Python conventions still catches them. :func:`report_errors` is how every command-line tool
shows them: ``error: <message>`` on stderr and exit code 2, no traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec

P = ParamSpec("P")


class AssistantError(Exception):
    """Base class of every error raised by this project on bad input or bad artefacts."""


class ConfigError(AssistantError, ValueError):
    """A configuration value is out of range, of the wrong type, or inconsistent with another."""


class DataError(AssistantError, ValueError):
    """A data file (dialogs, FAQ, queries) is missing or malformed.

    The message names the file, the 1-based line number and the field where it applies.
    """


class ModelError(AssistantError):
    """A model cannot be built, loaded or run (wrong kind, incompatible tokenizer, bad state)."""


class CheckpointError(ModelError):
    """A model directory is missing files, or its contents disagree with each other or the code."""


class RetrievalError(AssistantError):
    """An FAQ index cannot be built, loaded or searched."""


def report_errors(main: Callable[P, int]) -> Callable[P, int]:
    """Decorate a command's ``main``: an :class:`AssistantError` it raises becomes ``error: <message>``
    on stderr and exit code 2 (no traceback). Other exceptions (bugs) propagate with their traceback;
    argparse's own usage errors exit 2 before ``main``'s body runs.
    """

    @functools.wraps(main)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except AssistantError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return wrapper
