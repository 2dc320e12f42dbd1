"""Small talk and explicit requests for a person: recognised from the message's words alone.

Two detectors, both rule-based on a normalised message (lower case, apostrophes kept, other
punctuation and emoji dropped):

* :func:`classify_smalltalk`: is the *whole* message a greeting, thanks or goodbye ("hi there",
  "thanks a lot!", "great, that's all I needed. bye")? The message is read left to right as a
  sequence of phrases of :data:`PHRASES` (longest match first); it is small talk only when every word
  belongs to a phrase and at least one phrase is a greeting, thanks or goodbye (a message of filler
  words alone, "ok", "great", is not: it usually answers the agent's question). The kind is the
  last one the customer says among goodbye > thanks > greeting by precedence ("thanks, bye" is a
  goodbye). A message with any other word ("hi, where is my order?") is not small talk and is routed
  as usual.
* :func:`asks_for_human`: does the message ask to be put through to a person ("can I talk to a
  human", "agent please", "transfer me to a representative")? Patterns in :data:`HUMAN_PATTERNS`.

Measured on public data (``docs/results/routing.md``): on CLINC150 dev the small-talk detector finds
most of the ``greeting`` / ``thank_you`` / ``goodbye`` queries and almost none of the other intents.
These are lists, not a model: they are English only and miss phrasings they do not contain, which then
take the normal route (FAQ, reply model or handoff), never a wrong small-talk answer to a question.

This module decides nothing about routing; ``assistant/pipeline.py`` does.
"""

from __future__ import annotations

import re
from typing import Literal

SmallTalk = Literal["greeting", "thanks", "goodbye"]

#: phrase → kind ("filler" phrases may accompany small talk but are not small talk alone).
PHRASES: dict[str, str] = {}
_LEXICON: dict[str, tuple[str, ...]] = {
    "greeting": (
        "hi",
        "hii",
        "hello",
        "helo",
        "hey",
        "heya",
        "hiya",
        "howdy",
        "yo",
        "greetings",
        "good morning",
        "good afternoon",
        "good evening",
        "good day",
        "hi there",
        "hello there",
        "hey there",
        "how are you",
        "how are you doing",
        "how are you today",
        "how's it going",
        "hows it going",
        "how is it going",
        "what's up",
        "whats up",
        "nice to meet you",
    ),
    "thanks": (
        "thanks",
        "thank you",
        "thankyou",
        "thx",
        "ty",
        "tysm",
        "many thanks",
        "much appreciated",
        "appreciate it",
        "i appreciate it",
        "i appreciate that",
        "appreciate the help",
        "i appreciate the help",
        "i appreciate your help",
        "cheers",
        "thanks for the help",
        "thanks for your help",
        "thank you for the help",
        "thank you for your help",
        "thanks for helping",
        "thank you for helping",
        "thanks for helping me",
        "thank you for helping me",
        "thanks for that",
        "thank you for that",
        "thanks for the info",
        "thanks for the information",
        "thank you for the information",
        "thanks for your time",
        "thank you for your time",
        "you've been very helpful",
        "you've been a great help",
        "that was helpful",
        "that's helpful",
        "that helps",
        "that helped",
    ),
    "goodbye": (
        "bye",
        "bye bye",
        "byebye",
        "goodbye",
        "good bye",
        "bye for now",
        "see you",
        "see ya",
        "see you later",
        "see you soon",
        "later",
        "talk to you later",
        "take care",
        "have a nice day",
        "have a good day",
        "have a great day",
        "have a nice one",
        "have a good one",
        "have a nice evening",
        "have a good evening",
        "have a great evening",
        "have a nice weekend",
        "have a good weekend",
        "have a great weekend",
        "good night",
        "that's all",
        "that is all",
        "that's it",
        "that is it",
        "that's everything",
        "that is everything",
        "that's all i need",
        "that's all i needed",
        "that is all i need",
        "that is all i needed",
        "that's all i wanted",
        "that's all for now",
        "that is all for now",
        "that's all for today",
        "that will be all",
        "that'll be all",
        "that'll be everything",
        "nothing else",
        "nothing else for now",
        "nothing more",
        "all good",
        "i'm all set",
        "im all set",
        "all set",
        "i'm done",
        "im done",
        "i'm good",
        "im good",
    ),
    "filler": (
        "ok",
        "okay",
        "okey",
        "k",
        "kk",
        "great",
        "cool",
        "awesome",
        "perfect",
        "nice",
        "alright",
        "all right",
        "good",
        "very good",
        "sounds good",
        "wonderful",
        "excellent",
        "fine",
        "no",
        "nope",
        "oh",
        "ah",
        "well",
        "so",
        "and",
        "again",
        "a lot",
        "so much",
        "very much",
        "for now",
        "then",
        "too",
        "you too",
        "to you too",
        "and you",
        "for everything",
        "guys",
        "there",
        "again",
        "got it",
        "i see",
        "no thanks",
        "no thank you",
    ),
}
for _kind, _phrases in _LEXICON.items():
    for _phrase in _phrases:
        PHRASES[_phrase] = _kind
_MAX_PHRASE_WORDS = max(len(p.split()) for p in PHRASES)
_PRECEDENCE: tuple[SmallTalk, ...] = ("goodbye", "thanks", "greeting")

_PERSON = (
    r"(human|person|people|agent|representative|rep|operator|someone|somebody|manager|supervisor|"
    r"customer service)"
)
_QUALIFIER = r"((real|live|actual)\s+)*"
_ARTICLE = r"((a|an|some|the|your)\s+)?"
#: patterns of an explicit request for a person (matched on the normalised message).
HUMAN_PATTERNS: tuple[str, ...] = (
    rf"\b(talk|speak|chat)\s+(to|with)\s+{_ARTICLE}{_QUALIFIER}{_PERSON}\b",
    rf"\b(connect|transfer|put)\s+me\s+(through\s+)?(to|with)\s+{_ARTICLE}{_QUALIFIER}{_PERSON}\b",
    r"\b(want|need|get|have)\s+((a|an)\s+)?(real|live|actual)\s+(human|person|agent)\b",
    r"\b(want|need|get)\s+(a|an)\s+(human|person|agent|representative|operator)\b",
    r"\b(a|any)\s+(real\s+)?(human|person)\s+(there|i\s+can\s+talk\s+to|available)\b",
    r"^(human|agent|representative|operator|real person|live agent|live person)(\s+(please|pls|plz|now))*$",
    r"^(please|pls|plz)\s+(human|agent|representative|operator|real person|live agent)$",
)
_HUMAN_RES = tuple(re.compile(p) for p in HUMAN_PATTERNS)


def normalize(text: str) -> str:
    """Lower case; curly apostrophes made straight; every character but letters, digits, spaces and
    apostrophes becomes a space; whitespace collapsed."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(re.sub(r"[^\w\s']|_", " ", text).split())


def classify_smalltalk(text: str) -> SmallTalk | None:
    """The small-talk kind of a whole message, or ``None`` (see the module docstring).

    Args:
        text: the customer's message as sent.
    """
    words = [w.strip("'") for w in normalize(text).split()]
    words = [w for w in words if w]
    if not words:
        return None
    kinds: set[str] = set()
    i = 0
    while i < len(words):
        for n in range(min(_MAX_PHRASE_WORDS, len(words) - i), 0, -1):
            kind = PHRASES.get(" ".join(words[i : i + n]))
            if kind is not None:
                kinds.add(kind)
                i += n
                break
        else:
            return None  # a word outside every phrase: not (only) small talk
    return next((k for k in _PRECEDENCE if k in kinds), None)


def asks_for_human(text: str) -> bool:
    """Whether the message asks to be put through to a person (see :data:`HUMAN_PATTERNS`)."""
    normalised = normalize(text)
    return any(p.search(normalised) for p in _HUMAN_RES)
