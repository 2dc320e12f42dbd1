"""One reply to one customer message: FAQ answer, generated reply, or handoff to a human.

Routing, in order:

0. **Conversation rules** (``assistant/routing/rules.py``): a customer who asks for a person is handed
   off; a message that is only a greeting, thanks or goodbye gets a short configured reply
   (``source="smalltalk"``), without FAQ search or handoff.
   **Knowledge-seeking detection** (only with an index calibrated on labelled dialogs,
   ``assistant-build-index --dialogs``): the FAQ is searched with the conversation (its active
   entity, ``assistant/retrieval/conversational.py``), and a turn the detector judges not to need
   knowledge ("book it for two nights") skips the FAQ route. ``Reply.entity`` names the active entity.
1. **FAQ**: the FAQ index's calibrated confidence of its top hit is at or above the index's
   threshold → the entry's answer, verbatim (``source="faq"``). With ``ground_with_generator`` and a
   generator, the generator writes the reply conditioned on that entry (``source="model"``,
   ``faq_id`` set); if that generation's confidence is below ``generator_min_confidence``, the
   verbatim answer is sent instead.
   An entry whose answer is a placeholder (``meta.placeholder_answer``, the intent-style sets) has
   no text a customer may read: its match is a *route label*, so the reply is the fallback text with
   ``handoff=True`` and ``faq_id`` set, for the helpdesk to route the conversation by intent.
2. **In-domain check** (``assistant/routing/scope.py``): with a reply model and its calibrated check,
   a message whose in-domain probability is below the check's threshold (or ``scope_threshold``) is
   handed off (``reason="out_of_scope"``) instead of reaching the generator.
3. **Generator**: otherwise the configured generator (LSTM, T5, retrieval baseline) replies to the
   last ``max_history_turns`` turns plus the message; used when its confidence is at or above
   ``generator_min_confidence`` (``source="model"``). A model trained on support logs learns the
   agents' handover macro too; a generated reply with the words of one of ``handoff_replies`` is sent with
   ``handoff=True`` so the helpdesk routes the conversation as the reply promises.
4. **Handoff**: otherwise ``fallback_text`` with ``handoff=True`` (``source="fallback"``); with
   ``handoff_after_failures`` above 1, the earlier failures of a conversation get ``clarify_text``
   without a handoff instead.

``Reply.confidence`` is the confidence of the route taken; for a fallback, the highest confidence
that was rejected (0 if nothing was tried). This module neither stores history (the server does) nor
knows how any model works (``assistant/generators/base.py``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from assistant.config import require
from assistant.data import ROLES, Turn
from assistant.errors import ConfigError, DataError
from assistant.generators.base import GenerationRequest, Generator
from assistant.microbatching import MicroBatching
from assistant.retrieval.conversational import ConversationalRetriever
from assistant.retrieval.index import FaqIndex, Hit
from assistant.routing.rules import SMALLTALK_MODES, ConversationRules, Decision
from assistant.routing.scope import ScopeCheck

DEFAULT_FALLBACK = "I'm not sure about that one — let me connect you with a member of our team."
DEFAULT_CLARIFY = "Sorry, I didn't quite get that. Could you say it in other words, or tell me a bit more?"


@dataclass(frozen=True)
class Reply:
    """The assistant's reply to one message.

    Attributes:
        text: what to send to the customer.
        source: ``"faq"`` (an FAQ answer verbatim), ``"model"`` (generated), ``"smalltalk"`` (a
            configured reply to a greeting, thanks or goodbye) or ``"fallback"``.
        faq_id: the matched FAQ entry, when the reply is grounded on or routed by one.
        confidence: in [0, 1], of the route taken (see the module docstring).
        handoff: True when a human should take over the conversation.
        hits: the FAQ search's hits, best first (empty without an index).
        entity: the conversation's active FAQ entity (conversational indexes only), else ``None``.
        reason: why a small-talk or fallback reply was chosen (``assistant/routing/rules.py``:
            ``greeting``, ``thanks``, ``goodbye``, ``human_requested``, ``out_of_scope``, ``unsure``,
            ``repeated_failure``, ``clarify``; ``faq_route`` for a placeholder entry's match), else ``None``.
    """

    text: str
    source: Literal["faq", "model", "smalltalk", "fallback"]
    faq_id: str | None
    confidence: float
    handoff: bool
    hits: tuple[Hit, ...] = ()
    entity: str | None = None
    reason: str | None = None


@dataclass
class PipelineConfig:
    """How a reply is chosen among FAQ answer, generated reply and handoff."""

    top_k: int = field(
        default=5,
        metadata={
            "help": "FAQ hits retrieved per message (returned with the reply; confidence uses the top 2)"
        },
    )
    generator_min_confidence: float = field(
        default=0.5,
        metadata={
            "help": "a generated reply is sent only at or above this confidence in [0, 1] "
            "(neural models: geometric-mean token probability; retrieval baseline: vote share)"
        },
    )
    fallback_text: str = field(
        default=DEFAULT_FALLBACK,
        metadata={"help": "what the customer reads when the assistant hands the conversation to a human"},
    )
    max_history_turns: int = field(
        default=6,
        metadata={
            "help": "earlier turns given to the generator with the new message (0 = only the new message)"
        },
    )
    handoff_replies: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "agent replies that announce a handover to a person, as in your support logs' macros; a "
            "generated reply with the same words (case, spacing and punctuation ignored) is sent with handoff=true"
        },
    )
    ground_with_generator: bool = field(
        default=False,
        metadata={
            "help": "on an FAQ match, let the generator write the reply conditioned on the entry "
            "instead of sending its answer verbatim (needs a generator)"
        },
    )

    smalltalk: Literal["replies", "model", "off"] = field(
        default="replies",
        metadata={
            "help": "messages that are only a greeting, thanks or goodbye: 'replies' = answer with "
            "greeting_reply / thanks_reply / goodbye_reply, 'model' = let the reply model answer, "
            "'off' = route them like any message"
        },
    )
    greeting_reply: str = field(
        default="Hello! How can I help you today?", metadata={"help": "the reply to a greeting"}
    )
    thanks_reply: str = field(
        default="You're welcome! Is there anything else I can help you with?",
        metadata={"help": "the reply to thanks"},
    )
    goodbye_reply: str = field(
        default="Thank you for contacting us. Have a great day!", metadata={"help": "the reply to a goodbye"}
    )
    human_handoff: bool = field(
        default=True,
        metadata={"help": "hand off at once when the customer asks for a person ('can I talk to a human')"},
    )
    handoff_after_failures: int = field(
        default=1,
        metadata={
            "help": "failures (nothing may answer, in domain or without an in-domain check) in one "
            "conversation before the handoff; earlier ones get clarify_text; 1 = hand off at the first. "
            "Out-of-scope messages hand off at once"
        },
    )
    clarify_text: str = field(
        default=DEFAULT_CLARIFY,
        metadata={"help": "what the customer reads after a failure that does not hand off yet"},
    )
    scope_threshold: float | None = field(
        default=None,
        metadata={
            "help": "in-domain probability below which a message is handed off before the reply model; "
            "None = the threshold calibrated with the model (assistant-calibrate-scope)"
        },
    )

    def __post_init__(self) -> None:
        require(
            self.smalltalk in SMALLTALK_MODES,
            f"smalltalk must be one of {list(SMALLTALK_MODES)}, got {self.smalltalk!r}",
        )
        for name in ("greeting_reply", "thanks_reply", "goodbye_reply", "clarify_text"):
            value = getattr(self, name)
            require(isinstance(value, str) and bool(value.strip()), f"{name} must be a non-empty string")
        require(
            isinstance(self.handoff_after_failures, int) and self.handoff_after_failures >= 1,
            f"handoff_after_failures must be an integer >= 1, got {self.handoff_after_failures!r}",
        )
        require(
            self.scope_threshold is None or 0.0 <= self.scope_threshold <= 1.0,
            f"scope_threshold must be None or in [0, 1], got {self.scope_threshold!r}",
        )
        require(
            isinstance(self.top_k, int) and self.top_k >= 2,
            f"top_k must be an integer >= 2, got {self.top_k!r}",
        )
        require(
            0.0 <= self.generator_min_confidence <= 1.0,
            f"generator_min_confidence must be in [0, 1], got {self.generator_min_confidence}",
        )
        require(
            isinstance(self.fallback_text, str) and bool(self.fallback_text.strip()),
            "fallback_text must be a non-empty string",
        )
        require(
            isinstance(self.max_history_turns, int) and self.max_history_turns >= 0,
            f"max_history_turns must be an integer >= 0, got {self.max_history_turns!r}",
        )
        require(
            all(isinstance(r, str) and r.strip() for r in self.handoff_replies),
            f"handoff_replies must be non-empty strings, got {self.handoff_replies!r}",
        )


class Pipeline:
    """History + FAQ retrieval + generator → :class:`Reply`. Thread-safe if the index and generator are."""

    def __init__(
        self,
        index: FaqIndex | None,
        generator: Generator | None,
        config: PipelineConfig | None = None,
        scope: ScopeCheck | None = None,
        batching: MicroBatching | None = None,
    ) -> None:
        """
        Args:
            index: a calibrated FAQ index, or ``None`` (no FAQ route).
            generator: a reply model, or ``None`` (no generated replies).
            config: routing settings (defaults if ``None``).
            scope: the reply model's calibrated in-domain check, or ``None`` (every message the FAQ
                does not answer reaches the generator).
            batching: micro-batching of concurrent ``respond`` calls' generator and in-domain check
                calls (``assistant/microbatching.py``), or ``None`` (each call runs alone).

        Raises:
            ConfigError: neither index nor generator; an uncalibrated index or in-domain check;
                ``ground_with_generator`` or ``scope`` without a generator.
        """
        self.config = config or PipelineConfig()
        if index is None and generator is None:
            raise ConfigError("a pipeline needs an FAQ index, a generator, or both")
        if index is not None and index.threshold is None and index.conversation is None:
            raise ConfigError(
                "the FAQ index is not calibrated (no confidence threshold); build it with "
                "assistant-build-index --queries FILE"
            )
        if self.config.ground_with_generator and generator is None:
            raise ConfigError("ground_with_generator needs a generator")
        if scope is not None and (generator is None or scope.threshold is None):
            raise ConfigError(
                "an in-domain check needs a generator and a calibration (assistant-calibrate-scope)"
            )
        self.index = index
        #: conversation-aware retrieval, when the index was calibrated on labelled dialogs
        self.conversational = (
            ConversationalRetriever.from_index(index) if index is not None and index.conversation else None
        )
        self.batching = batching
        self.generator = batching.generator(generator) if batching is not None else generator
        self.scope = batching.scope(scope) if batching is not None else scope
        self._handoff_replies = {_normalize(r) for r in self.config.handoff_replies}
        c = self.config
        self.rules = ConversationRules(
            smalltalk=c.smalltalk,
            smalltalk_replies={
                "greeting": c.greeting_reply,
                "thanks": c.thanks_reply,
                "goodbye": c.goodbye_reply,
            },
            human_handoff=c.human_handoff,
            fallback_text=c.fallback_text,
            clarify_text=c.clarify_text,
            handoff_after_failures=c.handoff_after_failures,
        )

    @property
    def scope_threshold(self) -> float | None:
        """The in-domain threshold in use (``config.scope_threshold`` or the calibrated one), or ``None``."""
        if self.scope is None:
            return None
        return (
            self.config.scope_threshold if self.config.scope_threshold is not None else self.scope.threshold
        )

    def respond(self, history: Sequence[Turn], text: str) -> Reply:
        """Reply to the customer's message ``text`` after the earlier turns ``history`` (oldest first).

        With ``batching``, the call is announced to the batchers for its duration, so that concurrent
        calls' model steps wait for it (bounded) and run as one batch.

        Raises:
            DataError: ``text`` is not a non-empty string, or a history item is not a valid Turn.
            ModelError / RetrievalError: the generator or the index fails (not hidden behind a fallback).
        """
        with self.batching.request() if self.batching is not None else contextlib.nullcontext():
            return self._respond(history, text)

    def _respond(self, history: Sequence[Turn], text: str) -> Reply:
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"message text must be a non-empty string, got {text!r}")
        for i, turn in enumerate(history):
            if not isinstance(turn, Turn) or turn.role not in ROLES or not turn.text.strip():
                raise DataError(
                    f"history[{i}] must be a Turn with role in {list(ROLES)} and non-empty text, got {turn!r}"
                )
        text = text.strip()
        n = self.config.max_history_turns
        context = (tuple(history[-n:]) if n else ()) + (Turn("customer", text),)
        hits: tuple[Hit, ...] = ()
        rejected = 0.0
        entity = None
        decision = self.rules.before_retrieval(text)
        if decision is not None and decision.kind == "smalltalk-model" and self.generator is not None:
            generation = self.generator.generate([GenerationRequest(context=context)])[0]
            return Reply(generation.text, "model", None, generation.confidence, False, reason=decision.reason)
        if decision is not None and decision.kind != "smalltalk-model":
            return self._decided(decision, hits, rejected, entity)
        if self.conversational is not None:
            hits, faq_confidence, entity = self._search_conversation(history, text)
            if faq_confidence is not None and faq_confidence >= self.conversational.threshold:
                return self._faq_reply(context, hits, faq_confidence, entity)
            rejected = faq_confidence or 0.0
        elif self.index is not None:
            hits = tuple(self.index.search(text, k=self.config.top_k))
            faq_confidence = self.index.confidence(hits)
            if faq_confidence >= self.index.threshold:
                return self._faq_reply(context, hits, faq_confidence)
            rejected = faq_confidence
        if self.scope is not None and self.scope.score(context) < self.scope_threshold:
            return self._decided(self.rules.on_failure(history, out_of_scope=True), hits, rejected, entity)
        if self.generator is not None:
            generation = self.generator.generate([GenerationRequest(context=context)])[0]
            if generation.confidence >= self.config.generator_min_confidence and generation.text.strip():
                handoff = _normalize(generation.text) in self._handoff_replies
                return Reply(generation.text, "model", None, generation.confidence, handoff, hits, entity)
            rejected = max(rejected, generation.confidence)
        return self._decided(self.rules.on_failure(history, out_of_scope=False), hits, rejected, entity)

    def _decided(
        self, decision: Decision, hits: tuple[Hit, ...], rejected: float, entity: str | None
    ) -> Reply:
        """The reply for a conversation rule's decision (small talk: confidence 1; else the rejected one)."""
        if decision.kind == "smalltalk":
            return Reply(decision.text, "smalltalk", None, 1.0, False, hits, entity, decision.reason)
        return Reply(
            decision.text, "fallback", None, rejected, decision.handoff, hits, entity, decision.reason
        )

    def _search_conversation(
        self, history: Sequence[Turn], text: str
    ) -> tuple[tuple[Hit, ...], float | None, str | None]:
        """``(hits, FAQ confidence or None when the detector says the turn needs no knowledge, entity)``."""
        search = self.conversational.search(history, text, k=self.config.top_k)
        if (
            self.conversational.detector is not None
            and not self.conversational.is_knowledge_seeking(search)[0]
        ):
            return search.hits, None, search.entity
        return search.hits, self.conversational.confidence(search), search.entity

    def _faq_reply(
        self, context: tuple[Turn, ...], hits: tuple[Hit, ...], confidence: float, entity: str | None = None
    ) -> Reply:
        entry = hits[0].entry
        if entry.meta.get("placeholder_answer"):
            return Reply(
                self.config.fallback_text, "fallback", entry.id, confidence, True, hits, entity, "faq_route"
            )
        if self.config.ground_with_generator and self.generator is not None:
            generation = self.generator.generate([GenerationRequest(context=context, grounding=entry)])[0]
            if generation.confidence >= self.config.generator_min_confidence and generation.text.strip():
                return Reply(generation.text, "model", entry.id, generation.confidence, False, hits, entity)
        return Reply(entry.answer, "faq", entry.id, confidence, False, hits, entity)


def _normalize(text: str) -> str:
    """Lowercase words without punctuation: how replies are compared with ``handoff_replies``.

    Generated text varies in punctuation ("Thanks." for "Thanks,") where the words are the macro's.
    """
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())
