"""Chatwoot Agent Bot channel end to end: signed deliveries in, a fake Chatwoot on loopback recording
every API call out, a real Redis, the real pipeline, the Dramatiq queue with an in-process worker."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from server.cli.main import main
from tests.channel_helpers import (
    CW_SECRET,
    CW_TOKEN,
    channels_setting,
    cw_message,
    cw_status,
    post_chatwoot,
)
from tests.helpdesk_fakes import FakeChatwoot
from tests.polling import wait_until

FAQ_QUESTION = "How do I cancel my order?"  # order-001 of the demo FAQ
CONV_PATH = "/api/v1/accounts/1/conversations/42"


@pytest.fixture
def chatwoot():
    with FakeChatwoot(CW_TOKEN) as fake:
        yield fake


@pytest.fixture
def cw_app(make_app, chatwoot):
    """``cw_app(**channel_options)`` → an app with one Chatwoot bot pointing at the fake."""

    def make(settings=None, **options):
        return make_app(channels=channels_setting(chatwoot_url=chatwoot.url, **options), **(settings or {}))

    return make


def _ch_keys(app) -> list[bytes]:
    rt = app.extensions["assistant"]
    return list(rt.store.client.scan_iter(match=f"{rt.settings.redis_prefix}:*"))


def _queue_keys(app) -> list[bytes]:
    """Queued job messages (Dramatiq's worker heartbeats are not jobs)."""
    rt = app.extensions["assistant"]
    keys = rt.store.client.scan_iter(match=f"{rt.settings.redis_prefix}-queue:*")
    return [k for k in keys if b"__heartbeats__" not in k]


def test_multi_turn_conversation_is_answered_in_chatwoot(cw_app, chatwoot, echo_generator):
    app = cw_app()
    client = app.test_client()
    texts = [FAQ_QUESTION, "tell me a joke about penguins", "and another one about giraffes"]
    for n, text in enumerate(texts, start=1):
        answer = post_chatwoot(client, cw_message(chatwoot.next_id(), text))
        assert answer.status_code == 200, answer.json
        assert answer.json == {"status": "queued", "conversation_id": "cw-1-42"}
        wait_until(lambda n=n: len(chatwoot.posted(42)) == n, timeout=10)

    posts = chatwoot.posted(42)
    assert [p.path for p in posts] == [f"{CONV_PATH}/messages"] * 3
    assert all(p.headers["api_access_token"] == CW_TOKEN for p in chatwoot.requests)
    assert all(p.headers["content-type"] == "application/json" for p in chatwoot.requests)
    assert all(p.body["message_type"] == "outgoing" and p.body["private"] is False for p in posts)
    assert set(posts[0].body) == {"content", "message_type", "private"}
    assert "cancel" in posts[0].body["content"].lower()  # the FAQ answer
    assert posts[1].body["content"] == f"echo after 3 turns: {texts[1]}"
    assert posts[2].body["content"] == f"echo after 5 turns: {texts[2]}"  # saw the whole history
    # typing on before each reply, off after; never a status change
    wait_until(lambda: len(chatwoot.calls("/toggle_typing_status")) == 6, timeout=5)
    typing = [r.body["typing_status"] for r in chatwoot.calls("/toggle_typing_status")]
    assert typing == ["on", "off"] * 3
    assert chatwoot.calls("/toggle_status") == []
    # the same store as /v1/chat: the conversation is readable there
    stored = client.get("/v1/conversations/cw-1-42").json
    assert [t["text"] for t in stored["turns"] if t["role"] == "customer"] == texts
    assert stored["status"] == "bot"


def test_handoff_toggles_status_once_then_silent_until_handed_back(cw_app, chatwoot, echo_generator):
    app = cw_app()
    client = app.test_client()
    echo_generator.confidence = 0.1  # the model is unsure: fallback + handoff
    post_chatwoot(client, cw_message(chatwoot.next_id(), "the penguin ate my homework, what now"))
    wait_until(lambda: len(chatwoot.posted(42)) == 1, timeout=10)
    toggles = chatwoot.calls("/toggle_status")
    assert [(t.path, t.body) for t in toggles] == [(f"{CONV_PATH}/toggle_status", {"status": "open"})]
    handoff_reply = chatwoot.posted(42)[0]
    assert toggles[0].at <= handoff_reply.at  # the status changes first, then the handoff reply
    assert client.get("/v1/conversations/cw-1-42").json["status"] == "handoff"

    # Chatwoot now shows the conversation as open: the customer and a human agent talk, the bot is silent
    echo_generator.confidence = 0.9
    stale = chatwoot.next_id() - 1  # a message written before the handoff reply, delivered late
    answers = [
        post_chatwoot(client, cw_message(chatwoot.next_id(), "hello? anyone there?", status="open")),
        post_chatwoot(
            client,
            cw_message(
                chatwoot.next_id(),
                "Sorry to hear that!",
                message_type="outgoing",
                sender_type="user",
                status="open",
            ),
        ),
        post_chatwoot(client, cw_message(stale, "late retry of an old message", status="pending")),
    ]
    assert [a.json["status"] for a in answers] == ["ignored", "updated", "ignored"]
    # an agent hands it back to the bot (status pending); the next customer message is answered
    assert post_chatwoot(client, cw_status("pending")).json["status"] == "updated"
    assert (
        post_chatwoot(client, cw_message(chatwoot.next_id(), "thanks, one more question")).json["status"]
        == "queued"
    )
    wait_until(lambda: len(chatwoot.posted(42)) == 2, timeout=10)
    assert chatwoot.posted(42)[1].body["content"].startswith("echo after")
    assert len(chatwoot.calls("/toggle_status")) == 1


def test_hand_back_by_a_pending_message_after_the_handoff(cw_app, chatwoot, echo_generator):
    app = cw_app()
    client = app.test_client()
    echo_generator.confidence = 0.1
    post_chatwoot(client, cw_message(chatwoot.next_id(), "I need a human"))
    wait_until(lambda: len(chatwoot.posted(42)) == 1, timeout=10)
    echo_generator.confidence = 0.9
    # no status event reaches the bot (Chatwoot sends agent bots no "pending" event): a customer message
    # written after the handoff reply in a pending conversation is the hand-back
    assert post_chatwoot(client, cw_message(chatwoot.next_id(), "back to the bot")).json["status"] == "queued"
    wait_until(lambda: len(chatwoot.posted(42)) == 2, timeout=10)
    assert len(chatwoot.calls("/toggle_status")) == 1


def test_delivery_sent_three_times_posts_one_reply(cw_app, chatwoot):
    app = cw_app(burst_window_seconds=0.3)
    client = app.test_client()
    body = cw_message(chatwoot.next_id(), FAQ_QUESTION)
    first = post_chatwoot(client, body, delivery="d-1")
    again = post_chatwoot(client, body, delivery="d-1")  # Chatwoot's retry keeps the delivery id
    assert (first.json["status"], again.json["status"]) == ("queued", "duplicate")
    wait_until(lambda: len(chatwoot.posted(42)) == 1, timeout=10)
    third = post_chatwoot(client, body, delivery="d-1")  # after the reply was posted
    other_delivery = post_chatwoot(client, body, delivery="d-2")  # same message id, new delivery id
    assert (third.json["status"], other_delivery.json["status"]) == ("duplicate", "duplicate")
    ext = app.extensions["channels"]
    wait_until(lambda: not ext.state.pending("cw-1-42"), timeout=5)
    assert len(chatwoot.posted(42)) == 1
    assert ext.state.counters()["duplicates"] == 3


def test_burst_of_three_messages_gets_one_reply(cw_app, chatwoot, echo_generator):
    app = cw_app(burst_window_seconds=1.0)
    client = app.test_client()
    parts = ["hi", "the penguin ate my homework", "can you check?"]
    for text in parts:
        assert post_chatwoot(client, cw_message(chatwoot.next_id(), text)).json["status"] == "queued"
    wait_until(lambda: len(chatwoot.posted(42)) == 1, timeout=10)
    ext = app.extensions["channels"]
    wait_until(lambda: not ext.state.pending("cw-1-42"), timeout=5)
    assert len(chatwoot.posted(42)) == 1
    assert echo_generator.requests[-1].context[-1].text == "\n".join(parts)  # one turn, all three
    turns = app.test_client().get("/v1/conversations/cw-1-42").json["turns"]
    assert [t["role"] for t in turns] == ["customer", "agent"]


def test_api_down_is_retried_then_handed_to_humans_and_visible(cw_app, chatwoot, caplog, capsys):
    app = cw_app(api_attempts=3)
    client = app.test_client()
    chatwoot.fault("/messages", times=100, status=503)
    message_id = chatwoot.next_id()
    with caplog.at_level(logging.WARNING, logger="server.channels.jobs"):
        post_chatwoot(client, cw_message(message_id, FAQ_QUESTION))
        wait_until(lambda: chatwoot.calls("/toggle_status"), timeout=15)
        ext = app.extensions["channels"]
        wait_until(lambda: ext.state.failures(), timeout=5)
    assert len(chatwoot.calls("/messages")) == 3  # api_attempts tries, each answered 503
    assert [t.body for t in chatwoot.calls("/toggle_status")] == [{"status": "open"}]
    failure = ext.state.failures()[0]
    assert failure["conversation_id"] == "cw-1-42" and failure["turn_id"] == f"cw-m{message_id}"
    assert failure["message_ids"] == [str(message_id)] and failure["helpdesk"] == {
        "account_id": 1,
        "conversation_id": 42,
    }
    assert failure["stage"] == "attempts" and failure["attempts"] == 3 and failure["handed_over"] is True
    assert "503" in failure["error"]
    assert ext.state.counters()["failed_turns"] == 1 and ext.state.counters()["retries"] == 2
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("cw-1-42" in r.getMessage() and f"cw-m{message_id}" in r.getMessage() for r in errors)
    # the humans own it now: the next customer message is not answered
    post_chatwoot(client, cw_message(chatwoot.next_id(), "hello?", status="open"))
    assert len(chatwoot.calls("/messages")) == 3
    # and the failure is inspectable from the command line
    rt = app.extensions["assistant"]
    flags = [
        "--env",
        "testing",
        "--redis-url",
        rt.settings.redis_url,
        "--redis-prefix",
        rt.settings.redis_prefix,
    ]
    assert main(["channels", "--limit", "5", *flags]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counters"]["failed_turns"] == 1 and report["failures"][0]["turn_id"] == f"cw-m{message_id}"
    assert report["dead_letters"] == 0


def test_a_reply_whose_post_may_have_arrived_is_never_posted_again(cw_app, chatwoot):
    app = cw_app(api_timeout_seconds=0.5)
    client = app.test_client()
    chatwoot.fault("/messages", times=1, drop=True)  # Chatwoot got it, the answer never came back
    post_chatwoot(client, cw_message(chatwoot.next_id(), FAQ_QUESTION))
    ext = app.extensions["channels"]
    wait_until(lambda: ext.state.failures(), timeout=10)
    assert len(chatwoot.calls("/messages")) == 1
    assert [t.body for t in chatwoot.calls("/toggle_status")] == [{"status": "open"}]
    assert ext.state.failures()[0]["stage"] == "Uncertain"


REJECTIONS = [
    ("no signature", {"X-Chatwoot-Signature": None}, None, 401, "signature_missing"),
    ("no timestamp", {"X-Chatwoot-Timestamp": None}, None, 401, "signature_missing"),
    ("bad signature", {"X-Chatwoot-Signature": "sha256=" + "0" * 64}, None, 401, "signature_invalid"),
    ("not sha256=", {"X-Chatwoot-Signature": "deadbeef"}, None, 401, "signature_invalid"),
    ("wrong secret", {}, "another-secret-0123456789", 401, "signature_invalid"),
    ("stale timestamp", {}, "stale", 401, "timestamp_stale"),
    ("timestamp not a number", {"X-Chatwoot-Timestamp": "yesterday"}, None, 401, "timestamp_invalid"),
]


@pytest.mark.parametrize("name,headers,variant,status,code", REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_bad_or_missing_signature_is_refused_and_nothing_stored(
    cw_app, chatwoot, name, headers, variant, status, code
):
    app = cw_app()
    client = app.test_client()
    kwargs = {}
    if variant == "stale":
        kwargs["timestamp"] = int(__import__("time").time()) - 301
    elif variant:
        kwargs["secret"] = variant
    answer = post_chatwoot(client, cw_message(chatwoot.next_id(), "hi"), headers=headers, **kwargs)
    assert answer.status_code == status and answer.json["error"]["code"] == code, answer.json
    assert _ch_keys(app) == [] and _queue_keys(app) == []
    assert chatwoot.requests == []


BODY_REJECTIONS = [
    ("not JSON", b"{not json", 400, "invalid_json"),
    ("not an object", b"[1, 2]", 400, "invalid_json"),
    ("unknown event", {"event": "message_exploded", "id": 1}, 422, "unknown_event"),
    ("no event", {"id": 1}, 422, "invalid_field"),
    ("no conversation", {**cw_message(7), "conversation": None}, 422, "invalid_field"),
    ("id not a number", {**cw_message(7), "id": "seven"}, 422, "invalid_field"),
    ("other inbox", cw_message(7, inbox=99), 403, "inbox_not_configured"),
    ("other account", cw_message(7, account=2), 403, "account_not_configured"),
    ("text too long", cw_message(7, "x" * 2001), 413, "text_too_long"),
]


@pytest.mark.parametrize("name,body,status,code", BODY_REJECTIONS, ids=[r[0] for r in BODY_REJECTIONS])
def test_malformed_or_foreign_delivery_is_refused_and_nothing_stored(
    cw_app, chatwoot, name, body, status, code
):
    app = cw_app()
    answer = post_chatwoot(app.test_client(), body)
    assert answer.status_code == status and answer.json["error"]["code"] == code, answer.json
    assert _ch_keys(app) == [] and _queue_keys(app) == []
    assert chatwoot.requests == []


def test_only_customer_text_in_a_pending_conversation_is_answered(cw_app, chatwoot):
    app = cw_app()
    client = app.test_client()
    ignored = [
        cw_message(chatwoot.next_id(), "our own reply", message_type="outgoing", sender_type="agent_bot"),
        cw_message(chatwoot.next_id(), "Conversation was marked resolved", message_type="activity"),
        cw_message(chatwoot.next_id(), "please rate us", message_type="template"),
        cw_message(
            chatwoot.next_id(), "internal note", message_type="outgoing", sender_type="user", private=True
        ),
        cw_message(chatwoot.next_id(), None),  # an attachment without text
        {**cw_message(chatwoot.next_id()), "event": "message_updated"},
        {"event": "webwidget_triggered", "id": 5},
    ]
    for body in ignored:
        answer = post_chatwoot(client, body)
        assert answer.status_code == 200 and answer.json["status"] == "ignored", (
            body.get("message_type"),
            answer.json,
        )
    assert post_chatwoot(client, cw_message(chatwoot.next_id(), "a real question")).json["status"] == "queued"
    wait_until(lambda: len(chatwoot.posted(42)) == 1, timeout=10)
    assert chatwoot.calls("/toggle_status") == []


def test_redis_down_answers_500_so_chatwoot_retries(make_app, chatwoot):
    """Chatwoot retries a delivery on 429 and 500 only: a Redis outage must not look final (503)."""
    app = make_app(embedded=True, channels=channels_setting(chatwoot_url=chatwoot.url, worker="external"))
    app.extensions["assistant"].embedded.stop()
    answer = post_chatwoot(app.test_client(), cw_message(chatwoot.next_id(), "hi"))
    assert answer.status_code == 500 and answer.json["error"]["code"] == "redis_unavailable"
    assert "nothing was stored" in answer.json["error"]["message"]


def test_embedded_default_runs_the_worker_in_the_server_process(make_app, chatwoot):
    """With no REDIS_URL (``make serve``), ``worker: auto`` answers without any other process."""
    setting = json.loads(channels_setting(chatwoot_url=chatwoot.url))
    setting["worker"] = "auto"
    app = make_app(embedded=True, channels=json.dumps(setting))
    assert app.extensions["channels"].queue.worker is not None
    post_chatwoot(app.test_client(), cw_message(chatwoot.next_id(), FAQ_QUESTION))
    wait_until(lambda: len(chatwoot.posted(42)) == 1, timeout=10)
    assert threading.active_count() > 1
    assert CW_SECRET not in repr(app.extensions["channels"].cfg)  # secrets stay out of reprs and logs


def test_several_bots_each_verified_by_its_own_secret_and_inboxes(make_app, chatwoot):
    setting = json.loads(channels_setting(chatwoot_url=chatwoot.url))
    other_secret = "second-bot-secret-0123456789"
    setting["chatwoot"].append(
        {**setting["chatwoot"][0], "name": "sales", "inbox_ids": [8], "webhook_secret": other_secret}
    )
    app = make_app(channels=json.dumps(setting))
    client = app.test_client()
    foreign = post_chatwoot(client, cw_message(chatwoot.next_id(), "hi", inbox=3), secret=other_secret)
    assert foreign.status_code == 403 and foreign.json["error"]["code"] == "inbox_not_configured"
    own = post_chatwoot(
        client, cw_message(chatwoot.next_id(), FAQ_QUESTION, conversation=7, inbox=8), secret=other_secret
    )
    assert own.json == {"status": "queued", "conversation_id": "cw-1-7"}
    wait_until(lambda: len(chatwoot.posted(7)) == 1, timeout=10)
    assert app.extensions["channels"].state.failures() == []
