"""Stored conversations → training dialogs: the loop from production back to fine-tuning.

:func:`iter_stored` finds every stored conversation with ``SCAN`` (never ``KEYS``) over
``<prefix>:*:history``, of every tenant (``<prefix>:t:<tenant>:{conv:<id>}:history``; the default
tenant's are ``<prefix>:{conv:<id>}:history``). :func:`export_dialogs` turns each into an
``assistant.data.Dialog`` in the canonical format (``docs/data.md``), customer and agent turns in
order, scrubbed of personal data by default, with ``meta``:

* ``tenant``, ``conversation_id``, ``status`` (``bot`` | ``handoff``);
* ``handoff``: whether any reply handed the conversation to a person — those conversations are where
  the model failed and are the ones worth a person's reply before training on them;
* ``handoff_turns``: indexes (into ``turns``) of the replies that handed off;
* ``reply_sources``: per agent turn, ``faq`` | ``model`` | ``fallback``: the agent turns are the
  assistant's own replies, not a person's, so a training set should weigh or filter them by this;
* ``truncated``: the history holds only the last ``history_max_turns`` messages of a longer
  conversation.

A conversation erased or expiring while the export runs is skipped. It writes nothing (the CLI,
``server/cli/export.py``, writes the JSONL file) and changes nothing in Redis.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import redis

from assistant.data import Dialog, Turn
from assistant.ingest.scrub import Scrubber
from server.store.history import DialogStore
from server.store.tenants import DEFAULT_TENANT, TENANT_PATTERN, scoped_store


@dataclass(frozen=True)
class StoredRef:
    """Where one stored conversation lives: its tenant and id."""

    tenant: str
    conversation_id: str


def iter_stored(client: redis.Redis, prefix: str, tenants: set[str] | None = None) -> Iterator[StoredRef]:
    """Every stored conversation (of ``tenants`` only, when given), in ``SCAN`` order, each once."""
    pattern = re.compile(
        rf"{re.escape(prefix)}(?::t:(?P<tenant>{TENANT_PATTERN}))?:\{{conv:(?P<id>.+)\}}:history"
    )
    seen: set[tuple[str, str]] = set()
    for raw in client.scan_iter(match=f"{prefix}:*:history", count=1000):
        m = pattern.fullmatch(raw.decode())
        if not m:
            continue
        ref = StoredRef(m["tenant"] or DEFAULT_TENANT, m["id"])
        if (tenants is None or ref.tenant in tenants) and (ref.tenant, ref.conversation_id) not in seen:
            seen.add((ref.tenant, ref.conversation_id))
            yield ref


def export_dialogs(
    store: DialogStore, tenants: set[str] | None = None, scrubber: Scrubber | None = None
) -> Iterator[Dialog]:
    """The stored conversations as training dialogs (see the module docstring for ``meta``).

    Args:
        store: a dialog store of the default tenant (its prefix is the ``redis_prefix`` setting).
        tenants: only these tenants (default: all).
        scrubber: scrub every turn's text with it; ``None`` = export the texts as stored.
    """
    for ref in iter_stored(store.client, store.prefix, tenants):
        scoped = scoped_store(store, ref.tenant)
        conv = scoped.load(ref.conversation_id)
        if conv is None or not conv.turns:
            continue
        total = scoped.client.hget(scoped.state_key(ref.conversation_id), "turns")
        turns = tuple(Turn(t.role, scrubber.scrub(t.text) if scrubber else t.text) for t in conv.turns)
        agent = [(i, t) for i, t in enumerate(conv.turns) if t.role == "agent"]
        handoff_turns = [i for i, t in agent if t.handoff]
        yield Dialog(
            id=f"{ref.tenant}/{ref.conversation_id}",
            turns=turns,
            meta={
                "tenant": ref.tenant,
                "conversation_id": ref.conversation_id,
                "status": conv.status,
                "handoff": bool(handoff_turns) or conv.status == "handoff",
                "handoff_turns": handoff_turns,
                "reply_sources": [t.source for _, t in agent],
                "truncated": total is not None and int(total) > len(conv.turns),
            },
        )
