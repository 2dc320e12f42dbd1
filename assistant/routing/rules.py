"""Conversation-level routing rules: small talk, a request for a person, and repeated failure.

:class:`ConversationRules` turns a message and the conversation so far into a :class:`Decision` the
pipeline sends as is:

* **before retrieval** (:meth:`ConversationRules.before_retrieval`): a customer who asks for a person
  is handed off (``reason="human_requested"``); a message that is only a greeting, thanks or goodbye
  (``assistant/routing/smalltalk.py``) gets the configured short reply (``kind="smalltalk"``), so it
  is neither matched against the FAQ nor handed off.
* **on failure** (:meth:`ConversationRules.on_failure`), when neither the FAQ nor the reply model may
  answer: a message the in-domain check judged out of scope is handed off at once
  (``reason="out_of_scope"``). Any other failure (the reply model unsure, or no reply model) is
  counted with the earlier failures of the conversation (agent turns in the history that are the
  handoff or clarification text); the ``handoff_after_failures``-th failure hands off
  (``reason="unsure"`` when that is the first, ``"repeated_failure"`` otherwise) and earlier ones
  get ``clarify_text`` without a handoff (``reason="clarify"``). With ``handoff_after_failures = 1``
  (the pipeline's default) every failure hands off.

It knows nothing about retrieval or models; ``assistant/pipeline.py`` calls it and builds the reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from assistant.data import Turn
from assistant.routing.smalltalk import SmallTalk, asks_for_human, classify_smalltalk, normalize

SMALLTALK_MODES = ("replies", "model", "off")


@dataclass(frozen=True)
class Decision:
    """What to answer without (further) retrieval or generation.

    Attributes:
        kind: ``"smalltalk"`` (a short reply), ``"smalltalk-model"`` (small talk the reply model
            should answer), ``"handoff"`` (hand over to a person) or ``"clarify"`` (ask to rephrase,
            no handoff).
        text: the reply text (empty for ``"smalltalk-model"``).
        reason: ``"greeting"`` / ``"thanks"`` / ``"goodbye"`` for small talk; ``"human_requested"``,
            ``"out_of_scope"``, ``"unsure"``, ``"repeated_failure"`` or ``"clarify"`` otherwise.
    """

    kind: Literal["smalltalk", "smalltalk-model", "handoff", "clarify"]
    text: str
    reason: str

    @property
    def handoff(self) -> bool:
        return self.kind == "handoff"


class ConversationRules:
    """The rules of the module docstring, with the pipeline's texts and settings.

    Args:
        smalltalk: ``"replies"`` (answer with ``smalltalk_replies``), ``"model"`` (let the reply model
            answer small talk, skipping the FAQ and the in-domain check) or ``"off"`` (small talk is
            routed like any message).
        smalltalk_replies: kind (``greeting``, ``thanks``, ``goodbye``) → reply text.
        human_handoff: hand off when the customer asks for a person.
        fallback_text: the handoff text; clarify_text: the text asking to rephrase.
        handoff_after_failures: failures in one conversation before the handoff (>= 1).
    """

    def __init__(
        self,
        *,
        smalltalk: str,
        smalltalk_replies: dict[str, str],
        human_handoff: bool,
        fallback_text: str,
        clarify_text: str,
        handoff_after_failures: int,
    ) -> None:
        self.smalltalk = smalltalk
        self.smalltalk_replies = dict(smalltalk_replies)
        self.human_handoff = human_handoff
        self.fallback_text = fallback_text
        self.clarify_text = clarify_text
        self.handoff_after_failures = handoff_after_failures
        self._failure_texts = {normalize(fallback_text), normalize(clarify_text)}

    def smalltalk_kind(self, text: str) -> SmallTalk | None:
        """The message's small-talk kind, or ``None`` (also when small talk is ``"off"``)."""
        return None if self.smalltalk == "off" else classify_smalltalk(text)

    def before_retrieval(self, text: str) -> Decision | None:
        """A request for a person → handoff; small talk → its reply (or the model); else ``None``."""
        if self.human_handoff and asks_for_human(text):
            return Decision("handoff", self.fallback_text, "human_requested")
        kind = self.smalltalk_kind(text)
        if kind is None:
            return None
        if self.smalltalk == "model":
            return Decision("smalltalk-model", "", kind)
        return Decision("smalltalk", self.smalltalk_replies[kind], kind)

    def earlier_failures(self, history: Sequence[Turn]) -> int:
        """Agent turns in ``history`` that were a handoff or a clarification (by their text)."""
        return sum(t.role == "agent" and normalize(t.text) in self._failure_texts for t in history)

    def on_failure(self, history: Sequence[Turn], out_of_scope: bool) -> Decision:
        """Handoff or clarification for a message nothing may answer (see the module docstring)."""
        if out_of_scope:
            return Decision("handoff", self.fallback_text, "out_of_scope")
        failures = self.earlier_failures(history) + 1
        if failures >= self.handoff_after_failures:
            return Decision("handoff", self.fallback_text, "unsure" if failures == 1 else "repeated_failure")
        return Decision("clarify", self.clarify_text, "clarify")
