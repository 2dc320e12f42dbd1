"""A pipeline reply whose text is passed on while it is generated: the streaming form of ``Pipeline.respond``.

:func:`respond_streaming` runs the pipeline's own routing (``assistant/pipeline.py``: FAQ answer,
generated reply or handoff) unchanged, on a shallow copy of the pipeline whose generator streams:
each generation goes through :meth:`~assistant.generators.base.Generator.stream`, and its pieces are
passed on as :class:`TextChunk` events while the routing decision is still open. FAQ answers and the
fallback are passed on as one chunk.

A generated reply is *speculative* until the routing accepts it: when the pipeline rejects it (its
confidence is below ``generator_min_confidence``, or a grounded generation loses to the verbatim FAQ
answer), a :class:`Reset` event withdraws the text passed on so far and the reply actually sent follows.
Whatever happened, the chunks after the last :class:`Reset`, concatenated, equal the returned
``Reply.text`` (the final check below guarantees it), and the :class:`~assistant.pipeline.Reply` is the
one ``Pipeline.respond`` returns for the same input.

A pipeline without a ``generator`` attribute holding a :class:`Generator` (e.g. a test double that
only has ``respond``) replies as usual and its text is passed on as one chunk. This module does not
store anything and knows no transport (``server/streaming.py`` turns the events into SSE).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from assistant.data import Turn
from assistant.generators.base import Generation, GenerationRequest, Generator, TextCallback
from assistant.pipeline import Reply


@dataclass(frozen=True)
class TextChunk:
    """The next piece of the reply's text, to append to what was shown since the last :class:`Reset`."""

    text: str


@dataclass(frozen=True)
class Reset:
    """Withdraw the text shown so far: it was a generated reply the pipeline did not send."""


StreamEvent = TextChunk | Reset


class _StreamingGenerator(Generator):
    """Wraps a generator so that a single-request ``generate`` streams through ``stream``."""

    def __init__(self, inner: Generator, on_text: TextCallback, on_start: Callable[[], None]) -> None:
        self.inner = inner
        self.name = inner.name
        self.on_text = on_text
        self.on_start = on_start

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        if len(requests) != 1:
            return self.inner.generate(requests)
        self.on_start()
        return [self.inner.stream(requests[0], self.on_text)]

    @property
    def supports_perplexity(self) -> bool:
        return self.inner.supports_perplexity

    def score(self, requests: Sequence[GenerationRequest], targets: Sequence[str]) -> tuple[float, int]:
        return self.inner.score(requests, targets)


def respond_streaming(
    pipeline: Any, history: Sequence[Turn], text: str, on_event: Callable[[StreamEvent], None]
) -> Reply:
    """``pipeline.respond(history, text)``, passing the reply's text to ``on_event`` while it is generated.

    Args:
        pipeline: an ``assistant.pipeline.Pipeline`` (or any object with ``respond(history, text)``;
            without a ``generator`` attribute its reply is passed on as one chunk).
        history: earlier turns, oldest first.
        text: the customer's message.
        on_event: receives :class:`TextChunk` and :class:`Reset` events in order, in the calling thread.

    Returns:
        the :class:`~assistant.pipeline.Reply`, the same as ``pipeline.respond`` returns.

    Raises:
        whatever ``pipeline.respond`` raises (DataError, ModelError, RetrievalError), and ``on_event``'s
        own exceptions.
    """
    shown = [""]

    def on_text(piece: str) -> None:
        shown[0] += piece
        on_event(TextChunk(piece))

    def on_start() -> None:  # a second generation of one reply: withdraw the first one's text
        if shown[0]:
            shown[0] = ""
            on_event(Reset())

    generator = getattr(pipeline, "generator", None)
    if isinstance(generator, Generator):
        streaming = copy.copy(pipeline)
        streaming.generator = _StreamingGenerator(generator, on_text, on_start)
        reply = streaming.respond(history, text)
    else:
        reply = pipeline.respond(history, text)
    if not reply.text.startswith(shown[0]):
        shown[0] = ""
        on_event(Reset())
    if len(reply.text) > len(shown[0]):
        on_text(reply.text[len(shown[0]) :])
    return reply
