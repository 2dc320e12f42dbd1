"""The one exception tree of the project.

Every error the library raises on bad input or a bad artefact is an ``AssistantError``, so callers
(the server, the CLIs) can catch one type and show its message. Messages name the bad value and what
would be valid. ``ConfigError`` and ``DataError`` are also ``ValueError`` so that code written against
plain Python conventions still catches them.
"""


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
