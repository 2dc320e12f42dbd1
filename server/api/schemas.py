"""Pydantic models of the HTTP request bodies, and the input rules shared with URL paths.

The rules (documented in ``docs/server.md#input-rules``):

* **conversation ids** (``/v1/chat``'s ``conversation_id``, the Rasa ``sender``, the id in
  ``/v1/conversations/<id>``): 1-128 characters, none of them ``/``, a control character or a lone
  UTF-16 surrogate; not blank and not ``.`` or ``..`` (which a URL path cannot carry). Rasa accepts
  any sender, and widgets send e-mail addresses, ``{GUID}``\\ s and the like: all of those pass.
* **message ids**: 1-128 characters of letters, digits, ``.``, ``_``, ``:``, ``-``.
* **message texts**: at most ``max_text_chars`` characters (else 413), at least one visible
  character (a letter, digit, punctuation or symbol: zero-width and other invisible characters alone
  are refused), no control character other than tab, newline and carriage return, and no lone UTF-16
  surrogate (what ``String.slice`` in a browser leaves of a cut emoji). Such text is refused with
  422 naming the field and the position, not repaired: a silent replacement would store a message
  the customer did not write. Leading and trailing whitespace is stripped.

Each model rejects unknown fields where a typo would silently lose data (``/v1/chat``), and accepts
extra fields where the peer protocol sends them (Rasa widgets send ``metadata`` and more). The text
length limit is a setting, so it is checked with the ``max_text_chars`` passed in the validation
context, not hard-coded. Validation errors become HTTP 422 naming the field (``server/errors.py``).

The response models describe what the blueprints send (``TurnResult.to_json`` for ``/v1/chat``, the
stored turns for ``/v1/conversations``, the JSON error body of ``server/errors.py``): together with
the request models they are the single source of ``/openapi.json`` (``server/api/openapi.py``, which
also writes the rules above as JSON-schema patterns), and the test suite checks real responses
against them (schemathesis). They validate nothing at run time.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

#: Message ids: what helpdesks use (uuids, numbers, "wamid.123"), nothing that needs escaping.
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
ID_RULE = "1-128 characters of letters, digits, '.', '_', ':', '-'"
_ID_RE = re.compile(ID_PATTERN)
CONVERSATION_ID_RULE = (
    "1-128 characters, none of them '/', a control character or a lone surrogate; not blank, '.' or '..'"
)
_ALLOWED_CONTROLS = frozenset("\t\n\r")


def is_valid_id(value: str) -> bool:
    """Whether ``value`` is a valid message id (see :data:`ID_RULE`)."""
    return bool(_ID_RE.fullmatch(value))


def conversation_id_problem(value: str) -> str | None:
    """Why ``value`` is not a valid conversation id (see :data:`CONVERSATION_ID_RULE`), or ``None``."""
    if not 1 <= len(value) <= 128:
        return f"is {len(value)} characters long; expected {CONVERSATION_ID_RULE}"
    if value.strip() == "" or value in (".", ".."):
        return f"is {value!r}; expected {CONVERSATION_ID_RULE}"
    for position, char in enumerate(value, start=1):
        if char == "/" or unicodedata.category(char) in ("Cc", "Cs"):
            return f"has {_describe(char)} at character {position}; expected {CONVERSATION_ID_RULE}"
    return None


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be accepted as a message text (lengths aside), or ``None``."""
    visible = False
    for position, char in enumerate(value, start=1):
        category = unicodedata.category(char)
        if category == "Cs":
            return (
                f"contains a lone UTF-16 surrogate ({_describe(char)}) at character {position}; send "
                "valid Unicode (a surrogate pair cut in two, e.g. by String.slice, is not)"
            )
        if category == "Cc" and char not in _ALLOWED_CONTROLS:
            return f"contains the control character {_describe(char)} at character {position}"
        visible = visible or category[0] in "LMNPS"
    if not visible:
        return (
            "must contain a visible character (a letter, digit, punctuation or symbol), not only spaces "
            "or invisible characters such as U+200B"
        )
    return None


def _describe(char: str) -> str:
    return repr(char) if char == "/" else f"U+{ord(char):04X}"


def _check_text(value: str, info: ValidationInfo) -> str:
    limit = (info.context or {}).get("max_text_chars")
    if limit is not None and len(value) > limit:
        raise TextTooLong(len(value), limit)
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value.strip()


def _check_conversation_id(value: str) -> str:
    problem = conversation_id_problem(value)
    if problem:
        raise ValueError(problem)
    return value


class TextTooLong(ValueError):
    """A message text is longer than the ``max_text_chars`` setting (HTTP 413)."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"is {length} characters long; the limit is {limit} (setting max_text_chars)")
        self.length = length
        self.limit = limit


class ChatRequest(BaseModel):
    """Body of ``POST /v1/chat``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    conversation_id: str = Field(description=f"the conversation: {CONVERSATION_ID_RULE}")
    message_id: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description=f"the client's id of this message, for idempotent retries: {ID_RULE}",
    )
    text: str = Field(description="the customer's message")
    metadata: dict[str, Any] | None = Field(
        default=None, description="free-form, stored nowhere, echoed nowhere"
    )

    _conversation_id = field_validator("conversation_id")(_check_conversation_id)
    _text = field_validator("text")(_check_text)


class RasaRequest(BaseModel):
    """Body of Rasa's REST channel ``POST /webhooks/rest/webhook``: ``{sender, message, metadata?}``."""

    model_config = ConfigDict(extra="ignore")

    sender: str = Field(description=f"the conversation id (Rasa's sender id): {CONVERSATION_ID_RULE}")
    message: str = Field(description="the customer's message")
    metadata: dict[str, Any] | None = None

    _sender = field_validator("sender")(_check_conversation_id)
    _message = field_validator("message")(_check_text)


# ------------------------------------------------------------------------------------ responses
Source = Literal["faq", "model", "fallback"]


class ReplyOut(BaseModel):
    """One message to the customer (``server.turn.ReplyItem``)."""

    text: str = Field(description="what to send to the customer")
    source: Source = Field(
        description="faq: an FAQ answer verbatim; model: generated; fallback: handoff text"
    )
    faq_id: str | None = Field(default=None, description="the FAQ entry it came from; absent when none")


class ChatResponse(BaseModel):
    """Body of a ``POST /v1/chat`` answer (``server.turn.TurnResult.to_json``)."""

    conversation_id: str
    message_id: str = Field(pattern=ID_PATTERN, description="the client's, or generated (uuid4 hex)")
    replies: list[ReplyOut] = Field(min_length=1)
    confidence: float = Field(ge=0, le=1, description="of the route taken")
    handoff: bool = Field(description="a person should take over the conversation")


class RasaMessage(BaseModel):
    """One bot message of Rasa's REST channel answer."""

    recipient_id: str = Field(description="the sender id of the request")
    text: str


class StoredTurnOut(BaseModel):
    """One stored message (``server.store.history.StoredTurn``)."""

    role: Literal["customer", "agent"]
    text: str
    message_id: str
    at: float = Field(description="Unix seconds when stored")
    source: Source | None = Field(description="agent turns: the reply's source; customer turns: null")
    faq_id: str | None
    confidence: float | None = Field(ge=0, le=1)
    handoff: bool


class ConversationResponse(BaseModel):
    """Body of ``GET /v1/conversations/{conversation_id}``."""

    conversation_id: str
    status: Literal["bot", "handoff"]
    updated_at: float | None = Field(description="Unix seconds of the last stored turn")
    ttl_seconds: int | None = Field(description="seconds until the conversation expires")
    turns: list[StoredTurnOut] = Field(description="oldest first, at most history_max_turns")


class ErrorDetail(BaseModel):
    """What went wrong: a machine-readable code, a message naming the cause, the request id."""

    code: str = Field(description="e.g. invalid_field, unauthorized, too_many_requests (docs/server.md)")
    message: str
    request_id: str = Field(description="also the X-Request-ID response header")


class ErrorResponse(BaseModel):
    """Every error body: ``{"error": {code, message, request_id}}``."""

    error: ErrorDetail


class StatusResponse(BaseModel):
    """``{"status": "ok"}`` of ``/healthz`` and Rasa's channel health check."""

    status: Literal["ok"]


class ReadyError(BaseModel):
    code: Literal["not_ready"]
    message: str


class ReadyResponse(BaseModel):
    """``/readyz``: 200 ready, or 503 naming the dependency that failed."""

    status: Literal["ready", "unavailable"]
    checks: dict[str, dict[str, Any]] = Field(description="model and redis, each with ok: true|false")
    error: ReadyError | None = None
