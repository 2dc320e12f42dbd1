"""Zendesk Sunshine Conversations channel: ``POST /webhooks/sunshine`` in, the v2 API out.

Shapes follow the public OpenAPI spec (zendesk/sunshine-conversations-api-spec, ``openapi.yaml``
17.12): a webhook body is ``{app: {id}, webhook: {id, version: "v2"}, events: [...]}``; each event
``{id, type, createdAt, payload}``; ``conversation:message`` has ``payload.conversation {id, type,
activeSwitchboardIntegration?: {id, name, integrationId, integrationType}}`` and ``payload.message
{id, received, author: {type: "user" | "business", userId, ...}, content: {type: "text", text},
source}``; switchboard events carry ``payload.conversation`` (with the integration now active, or
none after ``releaseControl``). The webhook's shared secret arrives as ``X-API-Key``. Sunshine
retries anything but 2xx and 400/401/403/404/406, up to 5 times in 15 minutes, and uses the event
``id`` for deduplication. Replies: ``POST /v2/apps/{appId}/conversations/{conversationId}/messages``
``{author: {type: "business"}, content: {type: "text", text}}``; handoff: ``.../passControl
{switchboardIntegration: "next", metadata}``; typing: ``.../activity {author, type:
"typing:start" | "typing:stop"}``; HTTP basic auth with an app key id and secret.

What the bot does: it answers ``conversation:message`` events from ``author.type == "user"`` with
text, unless it passed control (or saw another integration take it: ``switchboard:passControl``
naming another integration, or a message whose ``activeSwitchboardIntegration`` is not the
configured ``switchboard_integration``); then it stays silent until ``switchboard:acceptControl`` /
``passControl`` names it again or ``switchboard:releaseControl`` empties the switchboard. Switchboard
events apply in event-time order (``createdAt``), so a late redelivery cannot undo a newer change.
On handoff it posts the handoff reply, then passes control to ``next``.

Answers: 200 ``{events: [{id, status, reason?}]}``; 401 missing/wrong ``X-API-Key``; 403 ``app.id``
of another app than the key's; 400 body not JSON, a missing/invalid field or an unknown event type
(Sunshine does not retry 400; nothing of the body is stored); 503 when Redis fails (retried).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import Blueprint, request

from server.channels.common import Channels, acknowledge, channels, queue_message, same_secret
from server.channels.config import SunshineApp
from server.channels.http import call
from server.errors import ApiError

bp = Blueprint("sunshine", __name__, url_prefix="/webhooks/sunshine")

#: Webhook triggers documented by the spec ("Webhook Triggers").
KNOWN_EVENTS = frozenset(
    {
        "client:add",
        "client:remove",
        "client:update",
        "conversation:create",
        "conversation:join",
        "conversation:leave",
        "conversation:remove",
        "conversation:message",
        "conversation:message:delivery:channel",
        "conversation:message:delivery:failure",
        "conversation:message:delivery:user",
        "conversation:postback",
        "conversation:read",
        "conversation:referral",
        "passthrough:messaging",
        "conversation:typing",
        "switchboard:acceptControl",
        "switchboard:acceptControl:failure",
        "switchboard:offerControl",
        "switchboard:offerControl:failure",
        "switchboard:passControl",
        "switchboard:passControl:failure",
        "switchboard:releaseControl",
        "user:merge",
        "user:update",
        "user:remove",
    }
)
_OWNERSHIP_EVENTS = ("switchboard:passControl", "switchboard:acceptControl", "switchboard:releaseControl")


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_field", message)


def _get(obj: Any, path: str, kind: type, where: str, *, required: bool = True) -> Any:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        if required:
            raise _bad(f"{where}: field '{path}' is required")
        return None
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise _bad(f"{where}: field '{path}' must be {kind.__name__}, got {type(value).__name__}")
    return value


def _event_ms(event: dict[str, Any], where: str) -> float:
    created = _get(event, "createdAt", str, where)
    try:
        return datetime.fromisoformat(created).timestamp() * 1000
    except ValueError as e:
        raise _bad(f"{where}: field 'createdAt' must be an ISO time like 2020-09-30T15:14:29.834Z") from e


def conversation_key(app_id: str, conversation_id: str) -> str:
    """The dialog store's id of a Sunshine conversation: ``sc-<appId>-<conversationId>``."""
    return f"sc-{app_id}-{conversation_id}"


def _is_ours(app: SunshineApp, integration: dict[str, Any] | None) -> bool | None:
    """Whether ``integration`` (a switchboard integration object) is this bot's; ``None``: unknown."""
    if not isinstance(integration, dict):
        return None
    if not app.switchboard_integration:
        return None
    mine = app.switchboard_integration
    return mine in (integration.get("id"), integration.get("name"), integration.get("integrationId"))


@bp.post("")
def webhook():
    """Accept one Sunshine Conversations webhook call (see the module docstring)."""
    ext = channels()
    if not ext.cfg.sunshine:
        raise ApiError(
            404, "channel_not_configured", "no Sunshine Conversations app is configured (setting channels)"
        )
    key = request.headers.get("X-API-Key", "")
    if not key:
        raise ApiError(401, "api_key_missing", "X-API-Key is required: the webhook's shared secret")
    app = None
    for candidate in ext.cfg.sunshine:  # every secret is compared, each in constant time
        if same_secret(key, candidate.webhook_secret):
            app = app or candidate
    if app is None:
        raise ApiError(401, "api_key_invalid", "X-API-Key does not match any configured webhook secret")
    try:
        body = json.loads(request.get_data(cache=True))
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, "invalid_json", "the request body is not valid JSON") from e
    if not isinstance(body, dict):
        raise ApiError(
            400, "invalid_json", f"the request body must be a JSON object, got {type(body).__name__}"
        )
    app_id = _get(body, "app.id", str, "body")
    if app_id != app.app_id:
        raise ApiError(403, "app_mismatch", f"app.id {app_id[:40]!r} is not the app of this webhook secret")
    events = _get(body, "events", list, "body")
    if not events:
        raise _bad("body: field 'events' must be a non-empty list")
    checked = [_check_event(app, e, i) for i, e in enumerate(events)]  # all checked before any is stored
    results = [_handle(ext, app, *c) for c in checked]
    return acknowledge("ok", events=results)


def _check_event(app: SunshineApp, event: Any, i: int) -> tuple[dict[str, Any], str, float, str]:
    where = f"events[{i}]"
    if not isinstance(event, dict):
        raise _bad(f"{where} must be an object")
    _get(event, "id", str, where)
    etype = _get(event, "type", str, where)
    if etype not in KNOWN_EVENTS:
        raise ApiError(
            400, "unknown_event", f"{where}: type {etype[:60]!r} is not a Sunshine Conversations event"
        )
    order = _event_ms(event, where)
    cid = ""
    if etype == "conversation:message" or etype in _OWNERSHIP_EVENTS:
        conv = _get(event, "payload.conversation.id", str, where)
        cid = conversation_key(app.app_id, conv)
        if len(cid) > 128 or not all(c.isalnum() or c in "._:-" for c in cid):
            raise _bad(
                f"{where}: field 'payload.conversation.id' has characters other than letters, digits, '._:-'"
            )
    if etype == "conversation:message":
        _get(event, "payload.message.id", str, where)
        _get(event, "payload.message.author.type", str, where)
        _get(event, "payload.message.content", dict, where)
    return event, cid, order, where


def _handle(ext: Channels, app: SunshineApp, event: dict[str, Any], cid: str, order: float, where: str):
    event_id, etype, payload = event["id"], event["type"], event.get("payload") or {}
    state = ext.state
    if etype in _OWNERSHIP_EVENTS:
        if not state.seen_once(cid, "event", event_id):
            state.count("duplicates")
            return {"id": event_id, "status": "duplicate"}
        active = (payload.get("conversation") or {}).get("activeSwitchboardIntegration")
        ours = _is_ours(app, active)
        if etype == "switchboard:releaseControl":
            owner = "bot"
        elif etype == "switchboard:acceptControl":
            owner = "human" if ours is False else "bot"
        else:  # passControl: to us only if it names our integration
            owner = "bot" if ours else "human"
        now_owner = state.observe(cid, order, owner)
        state.mark_store_status(cid, "bot" if now_owner == "bot" else "handoff")
        return {"id": event_id, "status": "updated", "owner": now_owner}
    if etype != "conversation:message":
        return {"id": event_id, "status": "ignored", "reason": f"{etype} needs no answer"}
    message = payload["message"]
    if message["author"]["type"] != "user":
        state.observe(cid, order)
        return {"id": event_id, "status": "ignored", "reason": f"{message['author']['type']} message"}
    active = payload["conversation"].get("activeSwitchboardIntegration")
    if _is_ours(app, active) is False:
        state.observe(cid, order, "human")
        return {"id": event_id, "status": "ignored", "reason": "another switchboard integration is active"}
    if state.owner(cid) == "human":
        return {
            "id": event_id,
            "status": "ignored",
            "reason": "control was passed; waiting for it to come back",
        }
    content = message["content"]
    text = content.get("text") if content.get("type") == "text" else None
    if not isinstance(text, str) or not text.strip():
        return {"id": event_id, "status": "ignored", "reason": f"{content.get('type')} message without text"}
    limit = ext.runner.rt.settings.max_text_chars
    if len(text) > limit:
        return {"id": event_id, "status": "ignored", "reason": f"text longer than {limit} characters"}
    outcome = queue_message(
        ext,
        channel="sunshine",
        bot=app.name,
        conversation_id=cid,
        seen={"event": event_id, "msg": message["id"]},
        item={
            "id": message["id"],
            "text": text.strip(),
            "order": order,
            "target": {"app_id": app.app_id, "conversation_id": payload["conversation"]["id"], "key": cid},
        },
    )
    return {"id": event_id, "status": outcome, "conversation_id": cid}


class SunshineAdapter:
    """The Sunshine Conversations v2 API for one app (see :class:`server.channels.jobs.Adapter`)."""

    channel = "sunshine"
    handoff_before_reply = False
    handoff_repeatable = False

    def __init__(self, app: SunshineApp, timeout: float) -> None:
        self.app = app
        self.name = app.name
        self.typing_enabled = app.typing
        self.timeout = timeout

    def _call(self, target: dict[str, Any], suffix: str, body: dict[str, Any]) -> Any:
        url = f"{self.app.base_url}/v2/apps/{target['app_id']}/conversations/{target['conversation_id']}{suffix}"
        return call("POST", url, body=body, timeout=self.timeout, auth=(self.app.key_id, self.app.key_secret))

    def typing(self, target: dict[str, Any], on: bool) -> None:
        """A ``typing:start`` / ``typing:stop`` activity from the business."""
        self._call(
            target,
            "/activity",
            {"author": {"type": "business"}, "type": "typing:start" if on else "typing:stop"},
        )

    def post(self, target: dict[str, Any], text: str) -> str:
        """Post a text message as the business; returns Sunshine's message id."""
        answer = self._call(
            target, "/messages", {"author": {"type": "business"}, "content": {"type": "text", "text": text}}
        )
        messages = answer.get("messages") if isinstance(answer, dict) else None
        return str(messages[0].get("id", "")) if messages else ""

    def hand_off(self, target: dict[str, Any], reason: str) -> None:
        """``passControl`` to the ``next`` switchboard integration (the agents)."""
        metadata = {"reason": reason, "assistant_conversation": target.get("key", "")}
        self._call(target, "/passControl", {"switchboardIntegration": "next", "metadata": metadata})

    def handoff_order(self, last_order: float, posted_ids: list[str]) -> float:
        """The turn's newest event time: switchboard events after it decide who owns the conversation."""
        return last_order
