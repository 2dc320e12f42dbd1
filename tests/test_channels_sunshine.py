"""Zendesk Sunshine Conversations channel end to end: webhook bodies in the spec's shapes, a fake
Sunshine API on loopback recording every call, a real Redis, the real pipeline, an in-process worker."""

from __future__ import annotations

import base64
import json

import pytest

from tests.channel_helpers import (
    SC_APP,
    SC_KEY_ID,
    SC_KEY_SECRET,
    SC_SECRET,
    channels_setting,
    sc_message,
    sc_switchboard,
)
from tests.helpdesk_fakes import FakeSunshine
from tests.polling import wait_until

CONV = "f52b01137aa6c250bc7251fa"
CID = f"sc-{SC_APP}-{CONV}"
BASE = f"/v2/apps/{SC_APP}/conversations/{CONV}"
FAQ_QUESTION = "How do I cancel my order?"


@pytest.fixture
def sunshine():
    with FakeSunshine(SC_KEY_ID, SC_KEY_SECRET) as fake:
        yield fake


@pytest.fixture
def sc_app(make_app, sunshine):
    def make(**options):
        return make_app(channels=channels_setting(sunshine_url=sunshine.url, **options))

    return make


def post(client, body, key: str | None = SC_SECRET):
    headers = {"X-API-Key": key} if key is not None else {}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/webhooks/sunshine", data=raw, headers=headers, content_type="application/json")


def at(second: int) -> str:
    return f"2026-01-05T10:00:{second:02d}.000Z"


def test_multi_turn_conversation_is_answered_through_the_api(sc_app, sunshine, echo_generator):
    app = sc_app()
    client = app.test_client()
    texts = [FAQ_QUESTION, "tell me a joke about penguins", "and another one about giraffes"]
    for n, text in enumerate(texts, start=1):
        answer = post(client, sc_message(f"ev{n}", f"msg{n}", text, created_at=at(n)))
        assert answer.status_code == 200
        assert answer.json["events"] == [{"id": f"ev{n}", "status": "queued", "conversation_id": CID}]
        wait_until(lambda n=n: len(sunshine.calls("/messages")) == n, timeout=10)
    posts = sunshine.calls("/messages")
    assert all(p.path == f"{BASE}/messages" for p in posts)
    expected_auth = "Basic " + base64.b64encode(f"{SC_KEY_ID}:{SC_KEY_SECRET}".encode()).decode()
    assert all(r.headers["authorization"] == expected_auth for r in sunshine.requests)
    assert posts[1].body == {
        "author": {"type": "business"},
        "content": {"type": "text", "text": f"echo after 3 turns: {texts[1]}"},
    }
    assert "cancel" in posts[0].body["content"]["text"].lower()
    assert posts[2].body["content"]["text"] == f"echo after 5 turns: {texts[2]}"
    wait_until(lambda: len(sunshine.calls("/activity")) == 6, timeout=5)
    assert [r.body for r in sunshine.calls("/activity")][:2] == [
        {"author": {"type": "business"}, "type": "typing:start"},
        {"author": {"type": "business"}, "type": "typing:stop"},
    ]
    # our own business messages come back as events: acknowledged, never answered
    echo = sc_message("ev9", "msg9", "echo", created_at=at(9), author="business")
    assert post(client, echo).json["events"][0]["status"] == "ignored"
    assert client.get(f"/v1/conversations/{CID}").json["turns"][0]["text"] == FAQ_QUESTION


def test_several_events_in_one_body_each_deduplicated_on_their_id(sc_app, sunshine):
    app = sc_app(burst_window_seconds=0.3)
    client = app.test_client()
    first = sc_message("ev1", "msg1", "hi there", created_at=at(1))
    second = sc_message("ev2", "msg2", "the penguin ate my homework", created_at=at(2))
    body = {**first, "events": first["events"] + second["events"]}
    for _ in range(3):  # Sunshine retries the same call (same event ids)
        answer = post(client, body)
        assert answer.status_code == 200
    assert [e["status"] for e in answer.json["events"]] == ["duplicate", "duplicate"]
    wait_until(lambda: len(sunshine.calls("/messages")) == 1, timeout=10)
    ext = app.extensions["channels"]
    wait_until(lambda: not ext.state.pending(CID), timeout=5)
    assert len(sunshine.calls("/messages")) == 1  # both messages, one burst, one reply


def test_handoff_passes_control_once_then_silent_until_control_returns(sc_app, sunshine, echo_generator):
    app = sc_app()
    client = app.test_client()
    echo_generator.confidence = 0.1
    post(client, sc_message("ev1", "msg1", "the penguin ate my homework", created_at=at(1)))
    wait_until(lambda: sunshine.calls("/passControl"), timeout=10)
    [passed] = sunshine.calls("/passControl")
    assert passed.path == f"{BASE}/passControl"
    assert passed.body == {
        "switchboardIntegration": "next",
        "metadata": {"reason": "the assistant handed over", "assistant_conversation": CID},
    }
    [reply] = sunshine.calls("/messages")
    assert reply.at <= passed.at  # the handoff reply first, then control passes
    echo_generator.confidence = 0.9
    # Sunshine confirms: the agent workspace is active; the customer writes while an agent has it
    confirm = sc_switchboard("switchboard_pass_control", "ev2", at(2))
    assert post(client, confirm).json["events"][0]["owner"] == "human"
    agent_time = sc_message("ev3", "msg3", "hello? anyone?", created_at=at(3), active="zd-agentWorkspace")
    assert post(client, agent_time).json["events"][0]["status"] == "ignored"
    # a late redelivery of an older switchboard event cannot hand it back
    stale = sc_switchboard("switchboard_release_control", "ev0", at(0))
    assert post(client, stale).json["events"][0]["owner"] == "human"
    # the agent releases control: the bot answers again
    release = sc_switchboard("switchboard_release_control", "ev4", at(4))
    assert post(client, release).json["events"][0]["owner"] == "bot"
    assert (
        post(client, sc_message("ev5", "msg5", "one more question", created_at=at(5))).json["events"][0][
            "status"
        ]
        == "queued"
    )
    wait_until(lambda: len(sunshine.calls("/messages")) == 2, timeout=10)
    assert len(sunshine.calls("/passControl")) == 1


def test_api_down_retried_then_control_passed_and_failure_recorded(sc_app, sunshine):
    app = sc_app(api_attempts=2)
    sunshine.fault("/messages", times=100, status=502)
    post(app.test_client(), sc_message("ev1", "msg1", FAQ_QUESTION, created_at=at(1)))
    ext = app.extensions["channels"]
    wait_until(lambda: ext.state.failures(), timeout=15)
    assert len(sunshine.calls("/messages")) == 2
    assert len(sunshine.calls("/passControl")) == 1
    failure = ext.state.failures()[0]
    assert failure["channel"] == "sunshine" and failure["conversation_id"] == CID
    assert failure["handed_over"] is True and failure["message_ids"] == ["msg1"]


REJECTIONS = [
    ("no key", sc_message("e", "m", "hi", created_at=at(1)), None, 401, "api_key_missing"),
    (
        "wrong key",
        sc_message("e", "m", "hi", created_at=at(1)),
        "not-the-secret-0123456789",
        401,
        "api_key_invalid",
    ),
    (
        "other app",
        {**sc_message("e", "m", "hi", created_at=at(1)), "app": {"id": "otherapp"}},
        SC_SECRET,
        403,
        "app_mismatch",
    ),
    ("not JSON", b"{oops", SC_SECRET, 400, "invalid_json"),
    (
        "no events",
        {"app": {"id": SC_APP}, "webhook": {"id": "w"}, "events": []},
        SC_SECRET,
        400,
        "invalid_field",
    ),
    (
        "event without id",
        {"app": {"id": SC_APP}, "events": [{"type": "conversation:message"}]},
        SC_SECRET,
        400,
        "invalid_field",
    ),
    (
        "unknown event",
        {"app": {"id": SC_APP}, "events": [{"id": "x", "type": "conversation:exploded", "createdAt": at(1)}]},
        SC_SECRET,
        400,
        "unknown_event",
    ),
    (
        "second event malformed",
        {
            **sc_message("e", "m", "hi", created_at=at(1)),
            "events": sc_message("e", "m", "hi", created_at=at(1))["events"]
            + [{"id": "y", "type": "conversation:message", "createdAt": at(2)}],
        },
        SC_SECRET,
        400,
        "invalid_field",
    ),
]


@pytest.mark.parametrize("name,body,key,status,code", REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejections_get_their_status_and_store_nothing(sc_app, sunshine, name, body, key, status, code):
    app = sc_app()
    answer = post(app.test_client(), body, key)
    assert answer.status_code == status and answer.json["error"]["code"] == code, answer.json
    rt = app.extensions["assistant"]
    assert list(rt.store.client.scan_iter(match=f"{rt.settings.redis_prefix}:*")) == []
    assert sunshine.requests == []


def test_sunshine_not_configured_answers_404(make_app):
    app = make_app()
    answer = post(app.test_client(), sc_message("e", "m", "hi", created_at=at(1)))
    assert answer.status_code == 404 and answer.json["error"]["code"] == "channel_not_configured"
