"""The model-input format shared by every reply model: role and FAQ markers, (context -> reply)
training examples, and the one rendering of a conversation as model input (:func:`format_context`).

The canonical file formats (dialogs, FAQ, queries) are ``assistant/data.py``; this module knows no
files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from assistant.data import Dialog, Turn
from assistant.errors import DataError

#: Marker put before each turn's text in model input; also SentencePiece user-defined symbols.
ROLE_MARKERS: dict[str, str] = {"customer": "<customer>", "agent": "<agent>"}
#: Marker put before the grounding FAQ answer in model input.
FAQ_MARKER = "<faq>"
SPECIAL_MARKERS: tuple[str, ...] = (ROLE_MARKERS["customer"], ROLE_MARKERS["agent"], FAQ_MARKER)


@dataclass(frozen=True)
class Example:
    """A reply-model training example: the turns before an agent turn, and that agent turn.

    Attributes:
        dialog_id: the dialog it came from.
        turn_index: index of the target agent turn in the dialog (0-based).
        context: the preceding turns, oldest first (at most ``max_context_turns``).
        target: the agent turn's text.
    """

    dialog_id: str
    turn_index: int
    context: tuple[Turn, ...]
    target: str


def build_examples(dialogs: Sequence[Dialog], max_context_turns: int) -> list[Example]:
    """Turn dialogs into (context → agent reply) examples, one per agent turn.

    An agent turn with no earlier turn (an opening greeting) has an empty context and is kept: the
    model learns to open a conversation too.

    Args:
        dialogs: validated dialogs.
        max_context_turns: keep at most this many turns before each agent turn (the most recent).

    Raises:
        DataError: ``max_context_turns`` is below 1.
    """
    if max_context_turns < 1:
        raise DataError(f"max_context_turns must be >= 1, got {max_context_turns}")
    examples = []
    for dialog in dialogs:
        for i, turn in enumerate(dialog.turns):
            if turn.role != "agent":
                continue
            context = dialog.turns[max(0, i - max_context_turns) : i]
            examples.append(Example(dialog_id=dialog.id, turn_index=i, context=context, target=turn.text))
    return examples


def format_context(turns: Sequence[Turn], grounding: str | None = None) -> str:
    """Render dialog turns (and an optional FAQ answer to ground on) as one model-input string.

    The format, shared by every reply model::

        <customer> {text} <agent> {text} ... <customer> {text} <faq> {answer}

    The ``<faq>`` part comes last and only when ``grounding`` is given. Models that must shorten the
    input drop tokens from the left, so the oldest turns go first and the latest customer message and
    the grounding answer are kept.

    Args:
        turns: oldest first.
        grounding: the FAQ answer the reply should be grounded on, if any.
    """
    parts = [f"{ROLE_MARKERS[t.role]} {t.text}" for t in turns]
    if grounding:
        parts.append(f"{FAQ_MARKER} {grounding.strip()}")
    return " ".join(parts)
