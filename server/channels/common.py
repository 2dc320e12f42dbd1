"""What every channel shares: the ``Channels`` extension (config, state, queue, job runner) and the
verify → dedupe → queue → acknowledge steps of a webhook.

The extension is built by :func:`server.channels.setup.init_channels` (kept apart from this module,
which the channel modules import, so that no import cycle runs through the channels).

A webhook acknowledges after :func:`queue_message`: the message and its dedupe ids are stored by one
Redis script and one job is queued with a delay of ``burst_window_seconds``; if the job cannot be
queued, the message is taken back out so the helpdesk's retry is not mistaken for a duplicate.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, jsonify

from server.channels.config import ChannelsConfig
from server.channels.jobs import Adapter, TurnRunner
from server.channels.queue import ChannelQueue
from server.channels.state import ChannelState
from server.errors import ApiError

log = logging.getLogger(__name__)

#: Header values used as ids (delivery ids): what helpdesks send, nothing that needs escaping.
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


@dataclass
class Channels:
    """The ``channels`` extension of an app (``app.extensions["channels"]``).

    Attributes:
        cfg: the parsed configuration (no bots: every webhook answers 404).
        state: channel keys on the store's Redis.
        queue: the Dramatiq queue, ``None`` when no channel is configured.
        runner: runs jobs against this process's runtime.
        adapters: ``(channel, name)`` → helpdesk API adapter.
    """

    cfg: ChannelsConfig
    state: ChannelState | None = None
    queue: ChannelQueue | None = None
    runner: TurnRunner | None = None
    adapters: dict[tuple[str, str], Adapter] = field(default_factory=dict)

    def close(self) -> None:
        """Stop the in-process worker if any and close the queue's connections."""
        if self.queue is not None:
            self.queue.stop()
            self.queue = None


def channels() -> Channels:
    """The :class:`Channels` of the current app."""
    return current_app.extensions["channels"]


def header_id(value: str | None, header: str) -> str:
    """A delivery/event id from a header ('' when absent).

    Raises:
        ApiError: 400 when it is longer than 128 characters or has characters other than letters,
            digits, ``-_.:``.
    """
    if not value:
        return ""
    if len(value) > 128 or not set(value) <= _ID_CHARS:
        raise ApiError(400, "invalid_header", f"header {header} must be 1-128 letters, digits or '-_.:'")
    return value


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(given.encode(), expected.encode())


def queue_message(
    ext: Channels,
    *,
    channel: str,
    bot: str,
    conversation_id: str,
    seen: dict[str, str],
    item: dict[str, Any],
) -> str:
    """Store a customer message for its conversation and queue its job; ``"queued"`` or ``"duplicate"``.

    Args:
        seen: dedupe ids by kind (delivery, event, message); any already seen makes it a duplicate.
        item: ``{id, text, order, target}`` (see :class:`~server.channels.state.Pending`).

    Raises:
        redis.RedisError: Redis failed; nothing is stored (the helpdesk should retry).
    """
    if ext.state is None or ext.queue is None:
        raise RuntimeError("queue_message called with no channel configured")
    seq = ext.state.accept(conversation_id, seen, item)
    if seq == 0:
        ext.state.count("duplicates")
        return "duplicate"
    try:
        ext.queue.enqueue(
            {"channel": channel, "bot": bot, "conversation_id": conversation_id, "seq": seq},
            ext.cfg.burst_window_seconds,
        )
    except Exception:
        try:
            ext.state.reject(conversation_id, seen, seq)
        except Exception:  # noqa: BLE001 - Redis down twice: the next message's job takes it
            log.error("conversation %s: message %s stored but not queued", conversation_id, item.get("id"))
        raise
    ext.state.count("queued")
    return "queued"


def acknowledge(status: str, conversation_id: str | None = None, reason: str | None = None, **extra: Any):
    """The 200 answer of a webhook: ``{status, conversation_id?, reason?}``."""
    body: dict[str, Any] = {"status": status}
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    if reason is not None:
        body["reason"] = reason
    body.update(extra)
    return jsonify(body)
