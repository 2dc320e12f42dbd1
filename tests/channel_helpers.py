"""Helpers for the channel tests: configuration, payloads built from the fixture JSON, signed deliveries."""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

from server.channels.chatwoot import sign

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CW_SECRET = "cw-secret-0123456789abcdef"
CW_TOKEN = "cw-token-0123456789"
SC_SECRET = "sc-webhook-secret-0123456789"
SC_KEY_ID = "app_5ebee0975ac5304b664a12fa"
SC_KEY_SECRET = "sc-key-secret-0123456789abcdef"
SC_APP = "5ebee0975ac5304b664a12fa"


def fixture(name: str) -> dict[str, Any]:
    """A fixture payload (``chatwoot/message_created`` etc.), a fresh copy."""
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def channels_setting(
    *, chatwoot_url: str | None = None, sunshine_url: str | None = None, **options: Any
) -> str:
    """The ``channels`` setting for tests: fast bursts and retries unless overridden."""
    cfg: dict[str, Any] = {
        "burst_window_seconds": 0.05,
        "burst_max_wait_seconds": 2.0,
        "api_attempts": 3,
        "api_backoff_seconds": 0.05,
        "api_timeout_seconds": 2.0,
        "turn_lock_seconds": 10,
        "queue_heartbeat_seconds": 2,
        "queue_poll_ms": 20,
        "worker": "in-process",
        **options,
    }
    if chatwoot_url:
        cfg["chatwoot"] = [
            {
                "name": "support",
                "base_url": chatwoot_url,
                "account_id": 1,
                "inbox_ids": [3],
                "webhook_secret": CW_SECRET,
                "api_access_token": CW_TOKEN,
            }
        ]
    if sunshine_url:
        cfg["sunshine"] = [
            {
                "name": "zendesk",
                "app_id": SC_APP,
                "base_url": sunshine_url,
                "webhook_secret": SC_SECRET,
                "key_id": SC_KEY_ID,
                "key_secret": SC_KEY_SECRET,
                "switchboard_integration": "bot",
            }
        ]
    return json.dumps(cfg)


def cw_message(
    message_id: int,
    text: str | None = "hello",
    *,
    conversation: int = 42,
    status: str = "pending",
    message_type: str = "incoming",
    sender_type: str = "contact",
    private: bool = False,
    inbox: int = 3,
    account: int = 1,
) -> dict[str, Any]:
    """A ``message_created`` delivery in Chatwoot's shape (``fixtures/chatwoot/message_created.json``)."""
    body = fixture("chatwoot/message_created")
    body.update(id=message_id, content=text, message_type=message_type, private=private)
    body["account"]["id"] = account
    body["inbox"]["id"] = inbox
    body["sender"]["type"] = sender_type
    conv = body["conversation"]
    conv.update(id=conversation, status=status, inbox_id=inbox)
    conv["messages"][0].update(id=message_id, content=text, conversation_id=conversation)
    return body


def cw_status(
    status: str, *, conversation: int = 42, event: str = "conversation_status_changed"
) -> dict[str, Any]:
    """A conversation status delivery (``fixtures/chatwoot/conversation_status_changed.json``)."""
    body = fixture("chatwoot/conversation_status_changed")
    previous = body["changed_attributes"][0]["status"]["current_value"]
    body.update(id=conversation, status=status, event=event)
    body["changed_attributes"] = [{"status": {"previous_value": previous, "current_value": status}}]
    return body


def post_chatwoot(
    client,
    body: dict[str, Any] | bytes,
    *,
    secret: str = CW_SECRET,
    timestamp: int | None = None,
    delivery: str | None = None,
    headers: dict[str, str] | None = None,
):
    """POST a delivery signed as Chatwoot signs it (``X-Chatwoot-*`` headers); returns the response."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    ts = str(int(time.time()) if timestamp is None else timestamp)
    sent = {
        "Content-Type": "application/json",
        "X-Chatwoot-Delivery": delivery or str(uuid.uuid4()),
        "X-Chatwoot-Timestamp": ts,
        "X-Chatwoot-Signature": sign(secret, ts, raw),
    }
    sent.update(headers or {})
    return client.post(
        "/webhooks/chatwoot", data=raw, headers={k: v for k, v in sent.items() if v is not None}
    )


def sc_message(
    event_id: str,
    message_id: str,
    text: str,
    *,
    created_at: str,
    conversation: str = "f52b01137aa6c250bc7251fa",
    author: str = "user",
    active: str | None = "bot",
) -> dict[str, Any]:
    """A ``conversation:message`` webhook body (``fixtures/sunshine/conversation_message.json``)."""
    body = fixture("sunshine/conversation_message")
    event = body["events"][0]
    event.update(id=event_id, createdAt=created_at)
    event["payload"]["conversation"]["id"] = conversation
    if active is None:
        del event["payload"]["conversation"]["activeSwitchboardIntegration"]
    else:
        event["payload"]["conversation"]["activeSwitchboardIntegration"]["name"] = active
    message = event["payload"]["message"]
    message.update(id=message_id)
    message["author"]["type"] = author
    message["content"] = {"type": "text", "text": text}
    return body


def sc_switchboard(name: str, event_id: str, created_at: str, **payload: Any) -> dict[str, Any]:
    """A switchboard event body from ``fixtures/sunshine/<name>.json`` with a new id and time."""
    body = copy.deepcopy(fixture(f"sunshine/{name}"))
    event = body["events"][0]
    event.update(id=event_id, createdAt=created_at)
    event["payload"].update(payload)
    return body
