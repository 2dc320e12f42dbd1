"""Chatwoot Agent Bot channel: ``POST /webhooks/chatwoot`` in, Chatwoot's application API out.

Shapes follow Chatwoot's source (chatwoot/chatwoot, develop, 2025-2026):

* Deliveries: ``AgentBotListener`` posts ``message.webhook_data.merge(event:)`` for
  ``message_created`` / ``message_updated`` and ``conversation.webhook_data.merge(event:)`` for
  ``conversation_opened`` / ``conversation_resolved`` (``app/listeners/agent_bot_listener.rb``);
  ``Message#webhook_data`` has ``id, content, message_type ("incoming" | "outgoing" | "activity" |
  "template"), private, sender, conversation, inbox, account`` (``app/models/message.rb``), and a
  conversation's ``id`` is its per-account display id, with ``status`` and ``inbox_id``
  (``app/presenters/conversations/event_data_presenter.rb``). Account webhooks add
  ``conversation_status_changed`` / ``conversation_updated`` in the conversation shape.
* Signature: ``Webhooks::Trigger`` (``lib/webhooks/trigger.rb``) sends ``X-Chatwoot-Delivery`` (a
  uuid per job, kept by its retries), ``X-Chatwoot-Timestamp`` and ``X-Chatwoot-Signature:
  sha256=<hex HMAC-SHA256(secret, "{timestamp}.{raw body}")>``. It times out after 5 s and
  ``AgentBots::WebhookJob`` retries only on 429 and 500 (3 tries, 3 s apart); any other failure of
  a ``message_created`` delivery opens the conversation for humans.
* API (swagger ``paths/application/conversation``; agent-bot tokens may call these, see
  ``AccessTokenAuthHelper::BOT_ACCESSIBLE_ENDPOINTS``): ``POST /api/v1/accounts/{account_id}/
  conversations/{id}/messages`` ``{content, message_type: "outgoing", private: false}``,
  ``.../toggle_status {"status": "open"}``, ``.../toggle_typing_status {"typing_status": "on"|"off"}``,
  header ``api_access_token``.

What the bot does: it acts on ``message_created`` with ``message_type == "incoming"``, not private,
with text, in a conversation whose ``status`` is ``pending`` (the bot's queue); everything else is
acknowledged and ignored. A conversation that is not pending, or where a human agent wrote, is
owned by humans: the bot stays silent until a customer message arrives in a ``pending``
conversation *after* the evidence of the human takeover (Chatwoot message ids are increasing), or
a status event says ``pending``. On handoff it toggles the status to ``open`` first, then posts the
handoff reply: the reply's id then marks the takeover, so only messages written after the agents
got the conversation can count as a hand-back.

Answers: 200 ``{status: queued | duplicate | ignored | updated}``; 401 bad/missing signature or
stale timestamp; 400 body not JSON; 403 inbox or account not configured for the signing bot; 413
text too long; 422 unknown event or a missing/invalid field; 500 when Redis or the queue fails
(Chatwoot retries 500, not 503). Nothing is stored for a refused delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from typing import Any

import redis
from flask import Blueprint, request

from server.channels.common import Channels, acknowledge, channels, header_id, queue_message
from server.channels.config import ChatwootBot
from server.channels.http import call
from server.errors import ApiError, error_response, request_id

log = logging.getLogger(__name__)
bp = Blueprint("chatwoot", __name__, url_prefix="/webhooks/chatwoot")

#: Events Chatwoot sends to webhooks and agent bots (``app/listeners/*``, ``Events::Types``).
KNOWN_EVENTS = frozenset(
    {
        "message_created",
        "message_updated",
        "conversation_created",
        "conversation_status_changed",
        "conversation_updated",
        "conversation_opened",
        "conversation_resolved",
        "conversation_typing_on",
        "conversation_typing_off",
        "contact_created",
        "contact_updated",
        "webwidget_triggered",
        "inbox_created",
        "inbox_updated",
    }
)
STATUS_EVENTS = frozenset(
    {"conversation_status_changed", "conversation_updated", "conversation_opened", "conversation_resolved"}
)
_SIGNATURE_RE = re.compile(r"sha256=([0-9a-f]{64})")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``"{timestamp}.{body}"``), as Chatwoot sends it."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(raw: bytes, headers: Any, bots: tuple[ChatwootBot, ...], tolerance: int) -> ChatwootBot:
    """The bot whose secret signed this delivery.

    Raises:
        ApiError: 401 ``signature_missing`` / ``timestamp_invalid`` / ``timestamp_stale`` /
            ``signature_invalid`` (every configured secret is tried, each in constant time).
    """
    signature = headers.get("X-Chatwoot-Signature", "")
    timestamp = headers.get("X-Chatwoot-Timestamp", "")
    if not signature or not timestamp:
        raise ApiError(
            401,
            "signature_missing",
            "X-Chatwoot-Signature and X-Chatwoot-Timestamp are required: give the agent bot a secret in "
            "Chatwoot and the same webhook_secret in the channels setting",
        )
    if not re.fullmatch(r"\d{1,12}", timestamp):
        raise ApiError(401, "timestamp_invalid", "X-Chatwoot-Timestamp must be Unix seconds")
    skew = abs(time.time() - int(timestamp))
    if skew > tolerance:
        raise ApiError(
            401,
            "timestamp_stale",
            f"X-Chatwoot-Timestamp is {skew:.0f} s away from the server clock (tolerance {tolerance} s): "
            "a replayed delivery, or a clock out of sync",
        )
    given = signature.strip().lower()
    found = None
    for bot in bots:  # no early exit: the time taken does not tell which secret was close
        if hmac.compare_digest(given.encode(), sign(bot.webhook_secret, timestamp, raw).encode()):
            found = found or bot
    if found is None or not _SIGNATURE_RE.fullmatch(given):
        raise ApiError(
            401,
            "signature_invalid",
            "X-Chatwoot-Signature does not match the body for any configured bot secret: check "
            "webhook_secret, and that nothing between Chatwoot and this server rewrites the body",
        )
    return found


# ------------------------------------------------------------------------------- payload fields
def _field(obj: Any, path: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        if required:
            raise ApiError(422, "invalid_field", f"field '{path}' is required for this event")
        return None
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ApiError(422, "invalid_field", f"field '{path}' must be {names}, got {type(value).__name__}")
    return value


def _owner_checks(bot: ChatwootBot, account_id: int, inbox_id: int) -> None:
    if account_id != bot.account_id:
        raise ApiError(
            403, "account_not_configured", f"account {account_id} is not the account of bot {bot.name!r}"
        )
    if inbox_id not in bot.inbox_ids:
        raise ApiError(
            403,
            "inbox_not_configured",
            f"inbox {inbox_id} is not connected to bot {bot.name!r} in the channels setting "
            f"(inbox_ids {list(bot.inbox_ids)})",
        )


def conversation_key(account_id: int, conversation_id: int) -> str:
    """The dialog store's id of a Chatwoot conversation: ``cw-<account>-<conversation>``."""
    return f"cw-{account_id}-{conversation_id}"


# ------------------------------------------------------------------------------------ blueprint
@bp.errorhandler(redis.RedisError)
def _redis_failed(exc: redis.RedisError):
    """Chatwoot retries a delivery only on 429 and 500: answer 500 so a Redis outage is retried."""
    log.warning("request %s: Redis failed: %s", request_id(), exc)
    return error_response(500, "redis_unavailable", "the queue (Redis) is unavailable; nothing was stored")


@bp.post("")
def webhook():
    """Accept one Chatwoot delivery (see the module docstring)."""
    ext = channels()
    if not ext.cfg.chatwoot:
        raise ApiError(404, "channel_not_configured", "no Chatwoot bot is configured (setting channels)")
    raw = request.get_data(cache=True)
    bot = verify(raw, request.headers, ext.cfg.chatwoot, ext.cfg.timestamp_tolerance_seconds)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, "invalid_json", "the request body is not valid JSON") from e
    if not isinstance(body, dict):
        raise ApiError(
            400, "invalid_json", f"the request body must be a JSON object, got {type(body).__name__}"
        )
    event = _field(body, "event", str)
    if event not in KNOWN_EVENTS:
        raise ApiError(422, "unknown_event", f"event {event[:60]!r} is not a Chatwoot webhook event")
    delivery = header_id(request.headers.get("X-Chatwoot-Delivery"), "X-Chatwoot-Delivery")
    if event == "message_created":
        return _message_created(ext, bot, body, delivery)
    if event in STATUS_EVENTS:
        return _status_event(ext, bot, body, event, delivery)
    return acknowledge("ignored", reason=f"event {event} needs no answer")


def _message_created(ext: Channels, bot: ChatwootBot, body: dict[str, Any], delivery: str):
    message_id = _field(body, "id", int)
    message_type = _field(body, "message_type", str)
    conv_id = _field(body, "conversation.id", int)
    status = _field(body, "conversation.status", str)
    account_id = _field(body, "account.id", int)
    inbox_id = _field(body, "inbox.id", int, required=False) or _field(body, "conversation.inbox_id", int)
    private = _field(body, "private", bool, required=False) or False
    content = _field(body, "content", str, required=False)
    _owner_checks(bot, account_id, inbox_id)
    limit = ext.runner.rt.settings.max_text_chars
    if message_type == "incoming" and content and len(content) > limit:
        raise ApiError(
            413, "text_too_long", f"field 'content' is {len(content)} characters; the limit is {limit}"
        )
    cid = conversation_key(account_id, conv_id)
    state = ext.state
    if message_type == "outgoing":
        sender = _field(body, "sender.type", str, required=False)
        if sender == "user" and not private:  # a human agent wrote to the customer: humans own it
            state.observe(cid, message_id, "human")
            return acknowledge("updated", cid, "a human agent replied: the bot stays silent")
        state.observe(cid, message_id)
        return acknowledge("ignored", cid, "outgoing message")
    if message_type != "incoming" or private:
        state.observe(cid, message_id)
        return acknowledge("ignored", cid, f"{'private note' if private else message_type} message")
    if status != "pending":
        state.observe(cid, message_id, "human")
        return acknowledge("ignored", cid, f"conversation is {status}: humans own it")
    if state.observe(cid, message_id, "bot") == "human":
        return acknowledge(
            "ignored", cid, "conversation handed to humans; waiting for it to return to pending"
        )
    if not content or not content.strip():
        return acknowledge("ignored", cid, "no text (attachments are left to agents)")
    outcome = queue_message(
        ext,
        channel="chatwoot",
        bot=bot.name,
        conversation_id=cid,
        seen={"delivery": delivery, "msg": str(message_id)},
        item={
            "id": str(message_id),
            "text": content.strip(),
            "order": message_id,
            "target": {"account_id": account_id, "conversation_id": conv_id},
        },
    )
    return acknowledge(outcome, cid)


def _status_event(ext: Channels, bot: ChatwootBot, body: dict[str, Any], event: str, delivery: str):
    conv_id = _field(body, "id", int)
    status = _field(body, "status", str)
    inbox_id = _field(body, "inbox_id", int)
    account_id = _field(body, "account.id", int, required=False) or bot.account_id
    _owner_checks(bot, account_id, inbox_id)
    cid = conversation_key(account_id, conv_id)
    if delivery and not ext.state.seen_once(cid, "delivery", delivery):
        ext.state.count("duplicates")
        return acknowledge("duplicate", cid)
    owner = "bot" if status == "pending" else "human"
    ext.state.observe(cid, None, owner, force=True)
    ext.state.mark_store_status(cid, "bot" if owner == "bot" else "handoff")
    return acknowledge(
        "updated", cid, f"{event}: status {status}, the {'bot' if owner == 'bot' else 'humans'} own it"
    )


# -------------------------------------------------------------------------------------- adapter
class ChatwootAdapter:
    """Chatwoot's application API for one bot (see :class:`server.channels.jobs.Adapter`)."""

    channel = "chatwoot"
    handoff_before_reply = True
    handoff_repeatable = True

    def __init__(self, bot: ChatwootBot, timeout: float) -> None:
        self.bot = bot
        self.name = bot.name
        self.typing_enabled = bot.typing
        self.timeout = timeout

    def _call(self, target: dict[str, Any], suffix: str, body: dict[str, Any]) -> Any:
        url = (
            f"{self.bot.base_url}/api/v1/accounts/{target['account_id']}"
            f"/conversations/{target['conversation_id']}{suffix}"
        )
        headers = {"api_access_token": self.bot.api_access_token}
        return call("POST", url, body=body, timeout=self.timeout, headers=headers)

    def typing(self, target: dict[str, Any], on: bool) -> None:
        """``toggle_typing_status`` on/off."""
        self._call(target, "/toggle_typing_status", {"typing_status": "on" if on else "off"})

    def post(self, target: dict[str, Any], text: str) -> str:
        """Post an outgoing public message; returns Chatwoot's message id."""
        answer = self._call(
            target, "/messages", {"content": text, "message_type": "outgoing", "private": False}
        )
        return str(answer.get("id", "")) if isinstance(answer, dict) else ""

    def hand_off(self, target: dict[str, Any], reason: str) -> None:
        """``toggle_status`` to ``open``: the conversation joins the agents' queue."""
        self._call(target, "/toggle_status", {"status": "open"})

    def handoff_order(self, last_order: float, posted_ids: list[str]) -> float:
        """The newest of our posted message ids (created after the status changed), else the turn's."""
        ids = [float(i) for i in posted_ids if i.isdigit()]
        return max([last_order, *ids])
