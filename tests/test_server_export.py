"""Stored history scrubbed of personal data (setting scrub_history), and ``assistant export``: stored
conversations of every tenant → training dialogs JSONL, scrubbed, handoffs marked, readable by
assistant.data."""

from __future__ import annotations

import json

from assistant.data import read_dialogs
from server.cli.main import main
from server.store.keys import KeyStore

ADMIN = "shared-admin-key-0123456789"
PII = "I am jane@example.com, card 4111 1111 1111 1111, call +44 20 7946 0958"
SCRUBBED = "I am <EMAIL>, card <CARD>, call <PHONE>"


def test_history_is_stored_scrubbed_when_configured(make_app, echo_generator):
    client = make_app(scrub_history=True).test_client()
    first = client.post("/v1/chat", json={"conversation_id": "p", "text": PII, "message_id": "p-1"})
    assert first.status_code == 200
    # the reply is sent as computed (the model saw the message itself) ...
    assert first.json["replies"][0]["text"] == f"echo after 1 turns: {PII}"
    # ... but the history keeps neither the customer's nor the reply's personal data
    turns = client.get("/v1/conversations/p").json["turns"]
    assert [t["text"] for t in turns] == [SCRUBBED, f"echo after 1 turns: {SCRUBBED}"]
    # the next turn's model context is the scrubbed history
    client.post("/v1/chat", json={"conversation_id": "p", "text": "tell me a joke about penguins"})
    assert [t.text for t in echo_generator.requests[-1].context][:2] == [
        SCRUBBED,
        f"echo after 1 turns: {SCRUBBED}",
    ]
    # a retry of the same message replays the stored answer, scrubbed like everything stored
    retry = client.post("/v1/chat", json={"conversation_id": "p", "text": PII, "message_id": "p-1"})
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json["replies"] == [{"text": f"echo after 1 turns: {SCRUBBED}", "source": "model"}]
    # a different text under the same id is still refused
    reused = client.post(
        "/v1/chat", json={"conversation_id": "p", "text": "something else", "message_id": "p-1"}
    )
    assert reused.status_code == 409 and reused.json["error"]["code"] == "message_id_reused"
    store = client.application.extensions["assistant"].store
    raw = b"".join(
        v
        for k in store.client.scan_iter(match=f"{store.prefix}:{{conv:p}}:*")
        for v in _values(store.client, k)
    )
    assert b"jane@" not in raw and b"4111" not in raw


def test_history_is_stored_as_sent_by_default(client):
    client.post("/v1/chat", json={"conversation_id": "q", "text": PII})
    assert client.get("/v1/conversations/q").json["turns"][0]["text"] == PII


def _values(client, key):
    kind = client.type(key)
    if kind == b"list":
        return client.lrange(key, 0, -1)
    if kind == b"hash":
        return list(client.hgetall(key).values())
    if kind == b"string":
        return [client.get(key)]
    return []


def test_export_writes_every_tenants_dialogs_scrubbed_with_handoffs_marked(
    make_app, echo_generator, redis_server, tmp_path, capsys
):
    app = make_app(api_key=ADMIN)
    client = app.test_client()
    rt = app.extensions["assistant"]
    acme, _ = KeyStore(rt.store.client, rt.settings.redis_prefix).create("acme", ["chat"])
    client.post(
        "/v1/chat",
        json={"conversation_id": "d-1", "text": "How do I cancel my order?"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    client.post(
        "/v1/chat", json={"conversation_id": "d-1", "text": PII}, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    echo_generator.confidence = 0.0  # acme's conversation is handed off
    client.post(
        "/v1/chat",
        json={"conversation_id": "d-1", "text": "tell me a joke about penguins"},
        headers={"Authorization": f"Bearer {acme}"},
    )

    out = tmp_path / "export" / "dialogs.jsonl"
    flags = ["--redis-url", redis_server.url, "--redis-prefix", redis_server.prefix]
    assert main(["export", "--out", str(out), *flags]) == 0
    assert "wrote 2 dialogs (1 handed off)" in capsys.readouterr().out
    dialogs = {d.id: d for d in read_dialogs(out)}  # the canonical reader accepts the file
    assert set(dialogs) == {"default/d-1", "acme/d-1"}
    mine = dialogs["default/d-1"]
    assert [t.role for t in mine.turns] == ["customer", "agent", "customer", "agent"]
    assert mine.turns[2].text == SCRUBBED and mine.turns[3].text == f"echo after 3 turns: {SCRUBBED}"
    assert mine.meta["handoff"] is False and mine.meta["reply_sources"] == ["faq", "model"]
    assert (
        mine.meta["tenant"] == "default"
        and mine.meta["conversation_id"] == "d-1"
        and mine.meta["truncated"] is False
    )
    theirs = dialogs["acme/d-1"]
    assert (
        theirs.meta["handoff"] is True
        and theirs.meta["handoff_turns"] == [1]
        and theirs.meta["status"] == "handoff"
    )
    assert theirs.meta["reply_sources"] == ["fallback"]

    # one tenant only, texts as stored
    assert main(["export", "--out", str(out), "--tenant", "acme", "--no-scrub", *flags]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["id"] for d in lines] == ["acme/d-1"]
    assert main(["export", "--out", str(out), "--tenant", "ACME!", *flags]) == 2
    assert "tenant 'ACME!' is invalid" in capsys.readouterr().err


def test_export_of_unscrubbed_text_keeps_it(make_app, redis_server, tmp_path):
    client = make_app().test_client()
    client.post("/v1/chat", json={"conversation_id": "raw", "text": PII})
    out = tmp_path / "d.jsonl"
    flags = ["--redis-url", redis_server.url, "--redis-prefix", redis_server.prefix]
    assert main(["export", "--out", str(out), "--no-scrub", *flags]) == 0
    assert read_dialogs(out)[0].turns[0].text == PII
    assert main(["export", "--out", str(out), *flags]) == 0
    assert read_dialogs(out)[0].turns[0].text == SCRUBBED
