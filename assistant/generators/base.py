"""The reply-generator interface shared by every reply model, and reading a model directory's manifest.

A generator turns a conversation (and optionally an FAQ entry to ground on) into a reply with a
confidence. The LSTM seq2seq model (``assistant/generators/lstm/generator.py``), T5 with LoRA adapters
(``assistant/generators/t5/model.py``) and the retrieval baseline (``assistant/generators/baseline.py``) implement it, so the
pipeline, the server and the evaluation treat them alike.

Every model directory holds a ``assistant.json`` manifest whose ``kind`` names the implementation
(written and read by :mod:`assistant.artifacts`); :func:`assistant.generators.loader.load_generator`
reads it and hands the directory to that implementation's loader. This module does not know how any
model works.

Streaming: :meth:`Generator.stream` generates one reply and hands its text to a callback piece by
piece as it is decoded (the LSTM token by token, T5 through transformers' streamer); the default
hands over the whole reply at once. :class:`TextPieces` turns successive decodings of a growing token
sequence into those pieces.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant import artifacts
from assistant.data import FaqEntry, Turn
from assistant.errors import ModelError

#: File name of the manifest every model directory carries.
MANIFEST = "assistant.json"

#: ``on_text(piece)``: receives each new piece of a reply's text, in order, as it is decoded.
TextCallback = Callable[[str], None]

#: The model kinds a manifest may name; :func:`assistant.generators.loader.load_generator` loads each.
KINDS: tuple[str, ...] = ("lstm", "t5", "retrieval-baseline")


@dataclass(frozen=True)
class GenerationRequest:
    """What a generator replies to.

    Attributes:
        context: the conversation so far, oldest first, normally ending with the customer's latest
            message. Generators truncate it to what they were trained on.
        grounding: an FAQ entry whose answer the reply should be grounded on, or ``None``.
    """

    context: tuple[Turn, ...]
    grounding: FaqEntry | None = None


@dataclass(frozen=True)
class Generation:
    """A generated reply.

    Attributes:
        text: the reply text (detokenized, stripped).
        confidence: in [0, 1]; for neural models the geometric mean of the chosen tokens'
            probabilities (``exp(mean log p)``), for the retrieval baseline the share of the
            neighbours' BM25 vote that the chosen reply got.
    """

    text: str
    confidence: float


class Generator(abc.ABC):
    """A reply model. Subclasses implement :meth:`generate`, and :meth:`score` if they define a likelihood."""

    #: a short human-readable name for reports ("lstm", "t5+lora:bank", "retrieval-baseline").
    name: str = "generator"

    @abc.abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Generate one reply per request, batched internally.

        Returns:
            one :class:`Generation` per request, in order.

        Raises:
            ModelError: the model cannot run on this input.
        """

    def stream(self, request: GenerationRequest, on_text: TextCallback) -> Generation:
        """Generate one reply, passing its text to ``on_text`` piece by piece while it is decoded.

        The pieces, concatenated, are meant to equal the returned ``Generation.text``; the returned
        :class:`Generation` is authoritative (a detokenizer may still rewrite the end), and callers that
        show pieces reconcile with it (``assistant/streaming.py`` does). This default generates the whole
        reply, then passes it as one piece (the retrieval baseline, and beam search where a model cannot
        stream it); the LSTM and T5 generators override it.

        Raises:
            ModelError: as :meth:`generate`; ``on_text``'s own exceptions propagate unchanged.
        """
        generation = self.generate([request])[0]
        if generation.text:
            on_text(generation.text)
        return generation

    @property
    def supports_perplexity(self) -> bool:
        """Whether :meth:`score` is defined (neural models: yes; retrieval baseline: no)."""
        return False

    def score(self, requests: Sequence[GenerationRequest], targets: Sequence[str]) -> tuple[float, int]:
        """Teacher-forced negative log-likelihood of ``targets`` given ``requests``.

        Returns:
            ``(total_nll, n_tokens)``: summed NLL in nats over all target tokens (end-of-sequence
            included) and how many tokens that is; perplexity is ``exp(total_nll / n_tokens)``.

        Raises:
            ModelError: the generator defines no likelihood (see :attr:`supports_perplexity`).
        """
        raise ModelError(f"{self.name} defines no likelihood, so it has no perplexity")


class GeneratorWrapper(Generator):
    """A generator in front of another one (timing, batching): ``generate`` and ``stream`` pass through
    unless a subclass changes them, and so do :meth:`score`, :attr:`supports_perplexity` and every other
    attribute of the inner model (its config, tokenizer, ...).

    Args:
        inner: the wrapped generator.
    """

    def __init__(self, inner: Generator) -> None:
        self.inner = inner
        self.name = inner.name

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        return self.inner.generate(requests)

    def stream(self, request: GenerationRequest, on_text: TextCallback) -> Generation:
        return self.inner.stream(request, on_text)

    @property
    def supports_perplexity(self) -> bool:
        return self.inner.supports_perplexity

    def score(self, requests: Sequence[GenerationRequest], targets: Sequence[str]) -> tuple[float, int]:
        return self.inner.score(requests, targets)

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("inner")  # not set yet (copy, unpickling): no recursion into __getattr__
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)


class TextPieces:
    """Turns successive decodings of a growing token sequence into the new text of each step.

    :meth:`update` gets ``decode(tokens so far)`` after every step and passes on what was added since the
    last call. Text ending in U+FFFD (an incomplete UTF-8 byte sequence that the next byte tokens may
    complete) is held back, and so is any decoding that no longer starts with the text already passed on
    (a detokenizer that rewrites earlier text): nothing already shown is ever contradicted by a later
    piece. :meth:`finish` passes on the rest of the final text.

    Args:
        on_text: receives each new piece.
    """

    def __init__(self, on_text: TextCallback) -> None:
        self.on_text = on_text
        self.sent = ""

    def update(self, text: str) -> None:
        """Pass on what ``text`` (the decoding so far) adds to what was already passed on."""
        stable = text.rstrip("\ufffd")
        if len(stable) > len(self.sent) and stable.startswith(self.sent):
            piece, self.sent = stable[len(self.sent) :], stable
            self.on_text(piece)

    def finish(self, text: str) -> None:
        """Pass on the rest of the final ``text`` (if what was passed on is a prefix of it)."""
        if len(text) > len(self.sent) and text.startswith(self.sent):
            piece, self.sent = text[len(self.sent) :], text
            self.on_text(piece)


def read_manifest(model_dir: str | Path) -> dict[str, Any]:
    """Read a model directory's ``assistant.json`` and check that its ``kind`` is one of :data:`KINDS`
    (:func:`assistant.artifacts.read_manifest`).

    Raises:
        CheckpointError: the directory or manifest is missing, not JSON, or has no known ``kind``.
    """
    return artifacts.read_manifest(model_dir, MANIFEST, kinds=KINDS)


def read_manifest_of_kind(model_dir: str | Path, kind: str, format_version: int) -> dict[str, Any]:
    """:func:`read_manifest`, then require the given ``kind`` and ``format_version``.

    Raises:
        CheckpointError: as :func:`read_manifest`, or another kind, or a format version this code
            does not read.
    """
    return artifacts.read_manifest(model_dir, MANIFEST, kinds=KINDS, kind=kind, format_version=format_version)
