"""Conversations through /v1/chat and the Rasa REST webhook: real Redis, real FAQ index and pipeline."""

from __future__ import annotations

FAQ_QUESTION = "How do I cancel my order?"  # order-001 of the demo FAQ
OFF_TOPIC = ["tell me a joke about penguins", "and another one about giraffes please"]


def chat(client, conversation_id, text, **extra):
    return client.post("/v1/chat", json={"conversation_id": conversation_id, "text": text, **extra})


def test_multi_turn_chat_answers_faq_and_model_sees_history(client, echo_generator):
    first = chat(client, "conv-1", FAQ_QUESTION, message_id="m-1")
    assert first.status_code == 200, first.json
    body = first.json
    assert body["conversation_id"] == "conv-1" and body["message_id"] == "m-1"
    assert body["replies"] == [{"text": body["replies"][0]["text"], "source": "faq", "faq_id": "order-001"}]
    assert "cancel" in body["replies"][0]["text"].lower()
    assert 0.0 <= body["confidence"] <= 1.0 and body["handoff"] is False

    for text in OFF_TOPIC:
        answer = chat(client, "conv-1", text)
        assert answer.status_code == 200, answer.json
        assert answer.json["replies"][0]["source"] == "model"
        assert "faq_id" not in answer.json["replies"][0]
        assert len(answer.json["message_id"]) == 32  # generated when the client gives none

    # the reply model got the stored conversation, not only the last message
    context = echo_generator.requests[-1].context
    assert [t.role for t in context] == ["customer", "agent", "customer", "agent", "customer"]
    assert (
        context[0].text == FAQ_QUESTION
        and context[2].text == OFF_TOPIC[0]
        and context[4].text == OFF_TOPIC[1]
    )
    assert context[3].text == f"echo after 3 turns: {OFF_TOPIC[0]}"

    stored = client.get("/v1/conversations/conv-1")
    assert stored.status_code == 200
    turns = stored.json["turns"]
    assert [(t["role"], t["text"]) for t in turns] == [
        ("customer", FAQ_QUESTION),
        ("agent", body["replies"][0]["text"]),
        ("customer", OFF_TOPIC[0]),
        ("agent", f"echo after 3 turns: {OFF_TOPIC[0]}"),
        ("customer", OFF_TOPIC[1]),
        ("agent", f"echo after 5 turns: {OFF_TOPIC[1]}"),
    ]
    assert (
        turns[1]["source"] == "faq" and turns[1]["faq_id"] == "order-001" and turns[0]["message_id"] == "m-1"
    )
    assert stored.json["status"] == "bot"
    assert 0 < stored.json["ttl_seconds"] <= 86400


def test_conversations_are_kept_apart(client, echo_generator):
    chat(client, "alice", OFF_TOPIC[0])
    chat(client, "bob", OFF_TOPIC[1])
    assert [t.text for t in echo_generator.requests[-1].context] == [OFF_TOPIC[1]]
    assert len(client.get("/v1/conversations/alice").json["turns"]) == 2


def test_rasa_webhook_multi_turn(client, echo_generator):
    assert client.get("/webhooks/rest/").json == {"status": "ok"}
    first = client.post(
        "/webhooks/rest/webhook",
        json={"sender": "rasa-user-7", "message": FAQ_QUESTION, "metadata": {"page": "/help"}},
    )
    assert first.status_code == 200
    assert len(first.json) == 1 and first.json[0]["recipient_id"] == "rasa-user-7"
    assert "cancel" in first.json[0]["text"].lower()
    second = client.post("/webhooks/rest/webhook", json={"sender": "rasa-user-7", "message": OFF_TOPIC[0]})
    assert second.json == [{"recipient_id": "rasa-user-7", "text": f"echo after 3 turns: {OFF_TOPIC[0]}"}]
    assert echo_generator.requests[-1].context[0].text == FAQ_QUESTION
    # the Rasa conversation is the same store as /v1: readable and continued there
    assert len(client.get("/v1/conversations/rasa-user-7").json["turns"]) == 4
    third = chat(client, "rasa-user-7", OFF_TOPIC[1])
    assert third.json["replies"][0]["text"] == f"echo after 5 turns: {OFF_TOPIC[1]}"


def test_repeated_message_id_replays_the_stored_answer(client, echo_generator):
    first = chat(client, "conv-r", OFF_TOPIC[0], message_id="wamid.001")
    calls = len(echo_generator.requests)
    again = chat(client, "conv-r", OFF_TOPIC[0], message_id="wamid.001")
    assert again.status_code == 200 and again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert len(echo_generator.requests) == calls  # not answered twice
    assert len(client.get("/v1/conversations/conv-r").json["turns"]) == 2  # not stored twice

    reused = chat(client, "conv-r", "a different message", message_id="wamid.001")
    assert reused.status_code == 409
    assert reused.json["error"]["code"] == "message_id_reused"
    assert "wamid.001" in reused.json["error"]["message"]


def test_duplicate_in_flight_and_busy_conversation_give_409(app, client):
    store = app.extensions["assistant"].store
    other = store.attempt("conv-d", "m-9", client_id=True)  # another worker is answering m-9 right now
    assert store.claim(other) is None and store.acquire(other)
    busy = chat(client, "conv-d", OFF_TOPIC[0], message_id="m-9")
    assert busy.status_code == 409 and busy.json["error"]["code"] == "duplicate_in_flight"
    blocked = chat(client, "conv-d", OFF_TOPIC[0], message_id="m-10")  # it holds the conversation's lock
    assert blocked.status_code == 409 and blocked.json["error"]["code"] == "conversation_busy"
    store.abandon(other)  # the other worker failed: its claim and lock are released
    # the failed attempt released its claim too: the client's retry is answered
    retry = chat(client, "conv-d", OFF_TOPIC[0], message_id="m-10")
    assert retry.status_code == 200
    assert chat(client, "conv-d", OFF_TOPIC[0], message_id="m-9").status_code == 200
    turns = client.get("/v1/conversations/conv-d").json["turns"]
    assert [t["message_id"] for t in turns] == ["m-10", "m-10", "m-9", "m-9"]


def test_a_claim_whose_owner_died_is_taken_over(app, client):
    store = app.extensions["assistant"].store
    dead = store.attempt("conv-z", "z-1", client_id=True)
    assert store.claim(dead) is None  # claimed, then its process was killed before taking the lock
    store.client.delete(store.queue_key("conv-z"))  # its queue place expired (lock_wait + 1 s)
    answer = chat(client, "conv-z", OFF_TOPIC[0], message_id="z-1")
    assert answer.status_code == 200 and "Idempotent-Replayed" not in answer.headers
    assert len(client.get("/v1/conversations/conv-z").json["turns"]) == 2


def test_low_confidence_reply_hands_off(client, echo_generator):
    echo_generator.confidence = 0.0  # below the pipeline's generator_min_confidence
    answer = chat(client, "conv-h", OFF_TOPIC[0])
    assert answer.status_code == 200
    assert answer.json["handoff"] is True and answer.json["replies"][0]["source"] == "fallback"
    assert client.get("/v1/conversations/conv-h").json["status"] == "handoff"
    echo_generator.confidence = 0.9
    assert chat(client, "conv-h", OFF_TOPIC[1]).json["handoff"] is False
    assert client.get("/v1/conversations/conv-h").json["status"] == "bot"


def test_api_key_required_when_configured(make_app):
    key = "k" * 24
    client = make_app(api_key=key).test_client()
    body = {"conversation_id": "conv-k", "text": FAQ_QUESTION}
    missing = client.post("/v1/chat", json=body)
    assert missing.status_code == 401 and missing.json["error"]["code"] == "unauthorized"
    wrong = client.post("/v1/chat", json=body, headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401
    assert client.post("/v1/chat", json=body, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert client.get("/v1/conversations/conv-k", headers={"X-API-Key": key}).status_code == 200
    assert client.get("/v1/conversations/conv-k").status_code == 401
    assert client.post("/webhooks/rest/webhook", json={"sender": "s", "message": "hi"}).status_code == 401
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200


def test_health_and_readiness(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["status"] == "ready"
    assert ready.json["checks"]["redis"] == {"ok": True} and ready.json["checks"]["model"]["ok"] is True


def test_cors_lets_the_configured_widget_origin_call_the_api(make_app):
    key = "k" * 24
    client = make_app(cors_origins="https://shop.example.com", api_key=key).test_client()
    preflight = client.options(
        "/webhooks/rest/webhook",
        headers={
            "Origin": "https://shop.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200  # no API key needed for a preflight
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]
    other = client.post(
        "/v1/chat",
        json={"conversation_id": "c", "text": "hi"},
        headers={"Origin": "https://evil.example.net", "X-API-Key": key},
    )
    assert other.status_code == 200 and "Access-Control-Allow-Origin" not in other.headers
