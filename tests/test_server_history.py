"""The Redis dialog store through the HTTP API: bounded history, expiry, TTL refresh, erasure, key layout."""

from __future__ import annotations

import pytest
from polling import wait_until

OFF_TOPIC = "tell me a joke about penguins"


@pytest.fixture
def small_app(make_app):
    return make_app(history_max_turns=4, history_ttl_seconds=1)


def test_history_is_bounded_to_the_last_n_messages(small_app, echo_generator):
    client = small_app.test_client()
    for i in range(4):
        assert (
            client.post("/v1/chat", json={"conversation_id": "b", "text": f"{OFF_TOPIC} {i}"}).status_code
            == 200
        )
    turns = client.get("/v1/conversations/b").json["turns"]
    assert [t["text"] for t in turns] == [
        f"{OFF_TOPIC} 2",
        f"echo after 5 turns: {OFF_TOPIC} 2",
        f"{OFF_TOPIC} 3",
        f"echo after 5 turns: {OFF_TOPIC} 3",
    ]
    # the model saw at most the 4 stored messages plus the new one
    assert [len(r.context) for r in echo_generator.requests] == [1, 3, 5, 5]
    store = small_app.extensions["assistant"].store
    assert store.client.llen(store.history_key("b")) == 4
    assert int(store.client.hget(store.state_key("b"), "turns")) == 8  # messages ever stored


def test_conversation_expires_after_its_ttl(small_app):
    client = small_app.test_client()
    client.post("/v1/chat", json={"conversation_id": "e", "text": OFF_TOPIC})
    assert client.get("/v1/conversations/e").json["ttl_seconds"] in (0, 1)
    store = small_app.extensions["assistant"].store
    # Redis's own clock expires the keys: the remaining PTTL is at most the 1 s setting
    assert 0 < store.client.pttl(store.history_key("e")) <= 1000
    gone = wait_until(lambda: (r := client.get("/v1/conversations/e")).status_code == 404 and r)
    assert gone.json["error"]["code"] == "not_found"
    assert not store.client.exists(store.history_key("e"), store.state_key("e"))


def test_each_write_refreshes_the_ttl_of_every_key(app, client):
    store = app.extensions["assistant"].store
    client.post("/v1/chat", json={"conversation_id": "t", "text": OFF_TOPIC, "message_id": "t-1"})
    keys = [store.history_key("t"), store.state_key("t"), store.dedupe_key("t", "t-1")]
    for key in keys[:2]:
        store.client.expire(key, 5)
    client.post("/v1/chat", json={"conversation_id": "t", "text": OFF_TOPIC})
    assert store.client.ttl(keys[0]) > 86000 and store.client.ttl(keys[1]) > 86000
    assert 86000 < store.client.ttl(keys[2]) <= 86400  # the stored answer, kept for dedupe_ttl_seconds


def test_keys_follow_the_documented_layout(app, client, redis_server):
    client.post("/v1/chat", json={"conversation_id": "lay.out:1", "text": OFF_TOPIC, "message_id": "m-1"})
    store = app.extensions["assistant"].store
    keys = sorted(k.decode() for k in store.client.scan_iter(match=f"{redis_server.prefix}:*"))
    p = redis_server.prefix
    assert keys == [
        f"{p}:{{conv:lay.out:1}}:dedupe:m-1",
        f"{p}:{{conv:lay.out:1}}:history",
        f"{p}:{{conv:lay.out:1}}:state",
    ]
    assert store.client.type(keys[1]) == b"list" and store.client.type(keys[2]) == b"hash"
    assert store.client.hget(keys[2], "status") == b"bot"


def test_delete_erases_history_state_and_stored_answers(app, client, echo_generator, redis_server):
    for i in range(2):
        client.post(
            "/v1/chat", json={"conversation_id": "d", "text": f"{OFF_TOPIC} {i}", "message_id": f"d-{i}"}
        )
    client.post("/v1/chat", json={"conversation_id": "keep", "text": OFF_TOPIC})
    deleted = client.delete("/v1/conversations/d")
    assert deleted.status_code == 204 and deleted.data == b""
    assert client.get("/v1/conversations/d").status_code == 404
    assert client.delete("/v1/conversations/d").status_code == 404
    store = app.extensions["assistant"].store
    left = {k.decode() for k in store.client.scan_iter(match=f"{redis_server.prefix}:*")}
    assert left and all("{conv:keep}" in k for k in left)
    # a retried message_id after erasure is answered anew, in a fresh conversation
    calls = len(echo_generator.requests)
    again = client.post(
        "/v1/chat", json={"conversation_id": "d", "text": f"{OFF_TOPIC} 0", "message_id": "d-0"}
    )
    assert again.status_code == 200 and "Idempotent-Replayed" not in again.headers
    assert len(echo_generator.requests) == calls + 1
    assert len(echo_generator.requests[-1].context) == 1
