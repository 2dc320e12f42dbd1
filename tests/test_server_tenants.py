"""Tenant API keys: stored hashed, scopes (401 vs 403), tenant isolation, revocation on every worker,
and the ``assistant keys`` command. Real Redis, real apps (two apps on one Redis stand for two workers)."""

from __future__ import annotations

import hashlib

import pytest

from server.cli.main import main
from server.store.keys import ApiKeyError, KeyStore
from server.store.tenants import TenantError

ADMIN = "shared-admin-key-0123456789"
TEXT = "tell me a joke about penguins"


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def chat(client, key, conversation_id, text=TEXT, **extra):
    body = {"conversation_id": conversation_id, "text": text, **extra}
    return client.post("/v1/chat", json=body, headers=bearer(key))


@pytest.fixture
def tenant_app(make_app):
    return make_app(api_key=ADMIN)


@pytest.fixture
def keys(tenant_app):
    return KeyStore(
        tenant_app.extensions["assistant"].store.client,
        tenant_app.extensions["assistant"].settings.redis_prefix,
    )


def test_a_key_of_tenant_a_never_reaches_tenant_b(tenant_app, keys, echo_generator):
    client = tenant_app.test_client()
    a, _ = keys.create("acme", ["chat", "conversations:read", "conversations:erase"])
    b, _ = keys.create("globex", ["chat", "conversations:read", "conversations:erase"])
    assert chat(client, a, "c-1", "tell me a joke about penguins").status_code == 200
    assert chat(client, a, "c-1", "one more joke about penguins please").status_code == 200

    # B reads, erases and writes "c-1": its own (empty) namespace, never A's conversation
    got = client.get("/v1/conversations/c-1", headers=bearer(b))
    assert got.status_code == 404 and got.json["error"]["code"] == "not_found"
    assert client.delete("/v1/conversations/c-1", headers=bearer(b)).status_code == 404
    assert chat(client, b, "c-1", "and another one about giraffes please").status_code == 200
    assert [t.text for t in echo_generator.requests[-1].context] == [
        "and another one about giraffes please"
    ]  # no acme history

    a_view = client.get("/v1/conversations/c-1", headers=bearer(a)).json
    b_view = client.get("/v1/conversations/c-1", headers=bearer(b)).json
    assert [t["text"] for t in a_view["turns"] if t["role"] == "customer"] == [
        "tell me a joke about penguins",
        "one more joke about penguins please",
    ]
    assert [t["text"] for t in b_view["turns"] if t["role"] == "customer"] == [
        "and another one about giraffes please"
    ]
    # the shared admin key is the default tenant: it sees neither
    assert client.get("/v1/conversations/c-1", headers=bearer(ADMIN)).status_code == 404
    # and A's keys live under A's prefix in Redis
    store = tenant_app.extensions["assistant"].store
    assert store.client.exists(f"{store.prefix}:t:acme:{{conv:c-1}}:history")
    assert store.client.exists(f"{store.prefix}:t:globex:{{conv:c-1}}:history")
    assert not store.client.exists(store.history_key("c-1"))


def test_401_without_or_with_a_bad_key_403_without_the_scope(tenant_app, keys):
    client = tenant_app.test_client()
    chat_only, record = keys.create("acme", ["chat"])
    reader, _ = keys.create("acme", ["conversations:read"])
    assert chat(client, chat_only, "c-2").status_code == 200

    for headers in (
        {},
        bearer("ak_00000000_" + "x" * 43),
        bearer("not-a-key"),
        {"X-API-Key": chat_only + "x"},
    ):
        response = client.post("/v1/chat", json={"conversation_id": "c-2", "text": TEXT}, headers=headers)
        assert response.status_code == 401 and response.json["error"]["code"] == "unauthorized"

    denied = client.get("/v1/conversations/c-2", headers=bearer(chat_only))
    assert denied.status_code == 403 and denied.json["error"]["code"] == "forbidden"
    assert (
        "conversations:read" in denied.json["error"]["message"]
        and record.key_id in denied.json["error"]["message"]
    )
    assert client.delete("/v1/conversations/c-2", headers=bearer(reader)).status_code == 403
    assert chat(client, reader, "c-2").status_code == 403
    assert client.get("/v1/conversations/c-2", headers=bearer(reader)).status_code == 200
    assert client.get("/metrics", headers=bearer(chat_only)).status_code == 403
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer(ADMIN)).status_code == 200
    # X-API-Key works as well as the bearer header; the Rasa webhook needs the chat scope
    assert (
        client.post(
            "/v1/chat", json={"conversation_id": "c-2", "text": TEXT}, headers={"X-API-Key": chat_only}
        ).status_code
        == 200
    )
    rasa = client.post(
        "/webhooks/rest/webhook", json={"sender": "c-2", "message": TEXT}, headers=bearer(reader)
    )
    assert rasa.status_code == 403


def test_keys_are_stored_as_sha256_digests_only(tenant_app, keys):
    key, record = keys.create("acme", ["chat"], name="helpdesk")
    client = keys.client
    values = b"".join(
        (client.get(k) or b"") if client.type(k) == b"string" else b"".join(client.hgetall(k).values())
        for k in client.scan_iter(match=f"{keys.prefix}:{{apikeys}}:*")
    )
    secret = key.rsplit("_", 1)[1]
    assert secret.encode() not in values and key.encode() not in values
    assert hashlib.sha256(key.encode()).hexdigest().encode() in b"".join(
        client.scan_iter(match=f"{keys.prefix}:*")
    )
    assert [r.key_id for r in keys.list()] == [record.key_id] and keys.list()[0].name == "helpdesk"


def test_revocation_takes_effect_on_every_worker(make_app):
    worker_1, worker_2 = make_app(api_key=ADMIN), make_app(api_key=ADMIN)  # two apps, one Redis
    rt = worker_1.extensions["assistant"]
    key, record = KeyStore(rt.store.client, rt.settings.redis_prefix).create("acme", ["chat"])
    clients = [worker_1.test_client(), worker_2.test_client()]
    assert [chat(c, key, "r-1").status_code for c in clients] == [200, 200]
    # revoked through the second worker's own Redis connection
    KeyStore(worker_2.extensions["assistant"].store.client, rt.settings.redis_prefix).revoke(record.key_id)
    assert [chat(c, key, "r-1").status_code for c in clients] == [401, 401]


def test_keys_command_creates_lists_and_revokes(tenant_app, redis_server, capsys):
    flags = ["--redis-url", redis_server.url, "--redis-prefix", redis_server.prefix]
    client = tenant_app.test_client()
    assert (
        main(
            [
                "keys",
                "create",
                "--tenant",
                "acme",
                "--scope",
                "chat",
                "--scope",
                "conversations:read",
                "--name",
                "bot",
                *flags,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    key = out.strip().splitlines()[-1]
    key_id = out.split()[2]
    assert key.startswith(f"ak_{key_id}_") and chat(client, key, "k-1").status_code == 200

    assert main(["keys", "list", *flags]) == 0
    listing = capsys.readouterr().out
    assert (
        key_id in listing
        and "acme" in listing
        and "chat,conversations:read" in listing
        and key not in listing
    )

    assert main(["keys", "revoke", key_id, *flags]) == 0
    assert f"revoked key {key_id}" in capsys.readouterr().out
    assert chat(client, key, "k-1").status_code == 401
    assert main(["keys", "revoke", key_id, *flags]) == 2
    assert "no API key has id" in capsys.readouterr().err
    assert main(["keys", "create", "--tenant", "Not Valid", "--scope", "chat", *flags]) == 2
    assert "tenant 'Not Valid' is invalid" in capsys.readouterr().err


def test_bad_tenants_and_scopes_are_refused(keys):
    with pytest.raises(TenantError, match="lower-case letters"):
        keys.create("ACME", ["chat"])
    with pytest.raises(ApiKeyError, match="expected one or more of"):
        keys.create("acme", ["write"])
