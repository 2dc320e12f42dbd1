"""Rate limits (flask-limiter on the server's Redis): per key and per conversation, shared by every
worker (two apps on one Redis), 429 with Retry-After in the project's error body."""

from __future__ import annotations

from server.store.keys import KeyStore

ADMIN = "shared-admin-key-0123456789"
TEXT = "tell me a joke about penguins"


def post_chat(client, conversation_id, key=ADMIN):
    return client.post(
        "/v1/chat",
        json={"conversation_id": conversation_id, "text": TEXT},
        headers={"Authorization": f"Bearer {key}"},
    )


def assert_429(response, fragment):
    assert response.status_code == 429, response.json
    error = response.json["error"]
    assert error["code"] == "too_many_requests" and fragment in error["message"]
    assert error["request_id"] == response.headers["X-Request-ID"]
    # sliding-window counter: the refused window may need up to two windows (2 x 60 s) to drain
    assert 1 <= int(response.headers["Retry-After"]) <= 120


def test_conversation_limit_is_shared_by_two_workers(make_app):
    workers = [make_app(api_key=ADMIN, rate_limit_per_conversation="3/minute", rate_limit_per_key="")]
    workers.append(make_app(api_key=ADMIN, rate_limit_per_conversation="3/minute", rate_limit_per_key=""))
    clients = [w.test_client() for w in workers]
    statuses = [post_chat(clients[i % 2], "busy").status_code for i in range(3)]
    assert statuses == [200, 200, 200]
    assert_429(post_chat(clients[1], "busy"), "too many messages to this conversation")
    assert_429(post_chat(clients[0], "busy"), "too many messages to this conversation")
    # the Rasa webhook counts against the same conversation
    rasa = clients[0].post(
        "/webhooks/rest/webhook",
        json={"sender": "busy", "message": TEXT},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert_429(rasa, "too many messages")
    # nothing of the refused messages was stored; other conversations and reads are not limited
    stored = clients[1].get("/v1/conversations/busy", headers={"Authorization": f"Bearer {ADMIN}"})
    assert len(stored.json["turns"]) == 6
    assert post_chat(clients[1], "quiet").status_code == 200
    assert clients[0].get("/healthz").status_code == 200


def test_key_limit_counts_every_endpoint_and_each_key_apart(make_app):
    workers = [
        make_app(api_key=ADMIN, rate_limit_per_key="4/minute", rate_limit_per_conversation="") for _ in (1, 2)
    ]
    rt = workers[0].extensions["assistant"]
    other, _ = KeyStore(rt.store.client, rt.settings.redis_prefix).create("acme", ["chat"])
    a, b = (w.test_client() for w in workers)
    assert post_chat(a, "k-1").status_code == 200
    assert post_chat(b, "k-2").status_code == 200
    assert a.get("/v1/conversations/k-1", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200
    assert post_chat(b, "k-3").status_code == 200
    assert_429(post_chat(a, "k-4"), "too many requests with this API key")
    assert_429(b.get("/v1/conversations/k-1", headers={"Authorization": f"Bearer {ADMIN}"}), "API key")
    assert post_chat(a, "k-4", key=other).status_code == 200  # another key has its own budget
    for path in ("/healthz", "/readyz", "/openapi.json", "/webhooks/rest/"):
        assert a.get(path).status_code == 200, path


def test_limits_are_off_when_empty_and_bad_values_are_refused(make_app):
    import pytest

    from assistant.errors import ConfigError

    app = make_app(rate_limit_per_conversation="", rate_limit_per_key="")
    client = app.test_client()
    assert all(
        client.post("/v1/chat", json={"conversation_id": "x", "text": TEXT}).status_code == 200
        for _ in range(5)
    )
    assert "assistant_limiter" not in app.extensions
    with pytest.raises(ConfigError, match="rate_limit_per_key.*e.g. '60/minute'"):
        make_app(rate_limit_per_key="lots")


def test_retry_after_is_long_enough(make_app):
    import time

    client = make_app(rate_limit_per_conversation="2/second", rate_limit_per_key="").test_client()
    body = {"conversation_id": "r", "text": TEXT}
    responses = [client.post("/v1/chat", json=body) for _ in range(3)]
    refused = next(r for r in responses if r.status_code == 429)
    wait = int(refused.headers["Retry-After"])
    assert 1 <= wait <= 2
    time.sleep(wait)
    assert client.post("/v1/chat", json=body).status_code == 200
