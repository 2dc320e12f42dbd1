"""Pydantic models of the HTTP request bodies, and the identifier rules shared with URL paths.

Each model rejects unknown fields where a typo would silently lose data (``/v1/chat``), and accepts
extra fields where the peer protocol sends them (Rasa widgets send ``metadata`` and more). The text
length limit is a setting, so it is checked with the ``max_text_chars`` passed in the validation
context, not hard-coded. Validation errors become HTTP 422 naming the field (``server/errors.py``).

It holds no response models: responses are built by the blueprints as plain dicts.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

#: Conversation and message ids: what helpdesks use (uuids, numbers, "chatwoot:123"), nothing that
#: needs escaping in a Redis key or a URL path.
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
ID_RULE = "1-128 characters of letters, digits, '.', '_', ':', '-'"
_ID_RE = re.compile(ID_PATTERN)


def is_valid_id(value: str) -> bool:
    """Whether ``value`` is a valid conversation or message id (see :data:`ID_RULE`)."""
    return bool(_ID_RE.fullmatch(value))


def _check_text(value: str, info: ValidationInfo) -> str:
    if not value.strip():
        raise ValueError("must contain a non-space character")
    limit = (info.context or {}).get("max_text_chars")
    if limit is not None and len(value) > limit:
        raise TextTooLong(len(value), limit)
    return value.strip()


class TextTooLong(ValueError):
    """A message text is longer than the ``max_text_chars`` setting (HTTP 413)."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"is {length} characters long; the limit is {limit} (setting max_text_chars)")
        self.length = length
        self.limit = limit


class ChatRequest(BaseModel):
    """Body of ``POST /v1/chat``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    conversation_id: str = Field(pattern=ID_PATTERN, description=f"the conversation: {ID_RULE}")
    message_id: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="the client's id of this message, for idempotent retries",
    )
    text: str = Field(description="the customer's message")
    metadata: dict[str, Any] | None = Field(
        default=None, description="free-form, stored nowhere, echoed nowhere"
    )

    _text = field_validator("text")(_check_text)


class RasaRequest(BaseModel):
    """Body of Rasa's REST channel ``POST /webhooks/rest/webhook``: ``{sender, message, metadata?}``."""

    model_config = ConfigDict(extra="ignore")

    sender: str = Field(pattern=ID_PATTERN, description="the conversation id (Rasa's sender id)")
    message: str = Field(description="the customer's message")
    metadata: dict[str, Any] | None = None

    _message = field_validator("message")(_check_text)
