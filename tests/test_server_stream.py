"""Streamed replies (``POST /v1/chat`` with ``Accept: text/event-stream``): framing, order, errors, storage.

Real Redis, the real FAQ index and pipeline with a slow streaming generator; the Flask test client and a
live Werkzeug server on 127.0.0.1. Streams are parsed with the ``sseclient-py`` library.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
from sseclient import SSEClient

from assistant.pipeline import Pipeline, PipelineConfig
from tests.streaming_support import HANDOFF_REPLY, SlowGenerator, live_server, read_events

FAQ_QUESTION = "How do I cancel my order?"  # order-001 of the demo FAQ
SSE = {"Accept": "text/event-stream"}


@pytest.fixture
def slow_generator() -> SlowGenerator:
    return SlowGenerator(delay=0.01, scripts={"zebra": HANDOFF_REPLY})


@pytest.fixture
def stream_app(make_app, demo_faq_index, slow_generator):
    """``stream_app(**settings)``: an app whose pipeline streams the slow generator's replies."""

    def make(config: PipelineConfig | None = None, **settings):
        config = config or PipelineConfig(handoff_replies=(HANDOFF_REPLY,))
        return make_app(use_pipeline=Pipeline(demo_faq_index, slow_generator, config), **settings)

    return make


def post_stream(client, body, headers=None):
    response = client.post("/v1/chat", json=body, headers={**SSE, **(headers or {})})
    return response, read_events(response.response)


def text_shown(events) -> str:
    """What a client shows: chunks appended, ``reset`` clears."""
    shown = ""
    for name, data in events:
        if name == "reset":
            shown = ""
        elif name == "chunk":
            shown += json.loads(data)["text"]
    return shown


def test_model_reply_streams_in_order_and_final_equals_the_json_answer(stream_app):
    client = stream_app().test_client()
    body = {"conversation_id": "s-1", "message_id": "m-1", "text": "tell me a joke about penguins"}
    response, events = post_stream(client, body)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream" and response.mimetype_params["charset"] == "utf-8"
    assert response.headers["Cache-Control"] == "no-cache" and response.headers["X-Accel-Buffering"] == "no"
    names = [name for name, _ in events]
    assert names[0] == "start" and names[-1] == "final" and set(names[1:-1]) == {"chunk"}
    assert len(names) - 2 == 10  # words of "echo after 1 turns: tell me a joke about penguins"
    assert json.loads(events[0][1]) == {"conversation_id": "s-1", "message_id": "m-1"}
    final = json.loads(events[-1][1])
    assert final["replies"] == [
        {"text": "echo after 1 turns: tell me a joke about penguins", "source": "model"}
    ]
    assert text_shown(events) == final["replies"][0]["text"]

    # the JSON endpoint answers the same message with exactly the final event (the stored answer) ...
    replay = client.post("/v1/chat", json=body)
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json == final
    # ... and a fresh JSON turn in the same state is the same body but for the ids
    fresh = client.post("/v1/chat", json={**body, "conversation_id": "s-2", "message_id": "m-2"}).json
    assert {**fresh, "conversation_id": "s-1", "message_id": "m-1"} == final

    # the turn is stored once, whole
    turns = client.get("/v1/conversations/s-1").json["turns"]
    assert [(t["role"], t["text"]) for t in turns] == [
        ("customer", body["text"]),
        ("agent", final["replies"][0]["text"]),
    ]


def test_faq_answer_is_one_chunk_and_handoff_is_in_the_final_event(stream_app):
    client = stream_app().test_client()
    _, events = post_stream(client, {"conversation_id": "s-faq", "text": FAQ_QUESTION})
    assert [name for name, _ in events] == ["start", "chunk", "final"]
    final = json.loads(events[-1][1])
    assert final["replies"][0]["source"] == "faq" and final["replies"][0]["faq_id"] == "order-001"
    assert json.loads(events[1][1])["text"] == final["replies"][0]["text"] and final["handoff"] is False
    assert len(json.loads(events[0][1])["message_id"]) == 32  # generated when the client gives none

    _, events = post_stream(client, {"conversation_id": "s-faq", "text": "my zebra wants a word"})
    final = json.loads(events[-1][1])
    assert final["handoff"] is True and text_shown(events) == HANDOFF_REPLY
    assert client.get("/v1/conversations/s-faq").json["status"] == "handoff"


def test_rejected_generation_is_withdrawn_by_reset(stream_app, slow_generator):
    slow_generator.confidence = 0.2  # below generator_min_confidence 0.5: the pipeline hands off
    client = stream_app().test_client()
    _, events = post_stream(client, {"conversation_id": "s-low", "text": "tell me a joke about penguins"})
    names = [name for name, _ in events]
    reset = names.index("reset")
    assert names[0] == "start" and set(names[1:reset]) == {"chunk"} and reset > 2
    assert names[reset + 1 :] == ["chunk", "final"]
    final = json.loads(events[-1][1])
    assert final["replies"][0]["source"] == "fallback" and final["handoff"] is True
    assert text_shown(events) == final["replies"][0]["text"] == PipelineConfig().fallback_text
    stored = client.get("/v1/conversations/s-low").json["turns"]
    assert stored[1]["text"] == PipelineConfig().fallback_text


def test_errors_before_the_stream_are_error_events_with_their_status(stream_app):
    app = stream_app(api_key="k" * 20)
    client = app.test_client()
    response, events = post_stream(client, {"conversation_id": "e-1", "text": "hi"})
    assert response.status_code == 401 and response.mimetype == "text/event-stream"
    assert [name for name, _ in events] == ["error"]
    error = json.loads(events[0][1])
    assert error["code"] == "unauthorized" and error["request_id"] == response.headers["X-Request-ID"]
    # the same body as the JSON API's error
    plain = client.post("/v1/chat", json={"conversation_id": "e-1", "text": "hi"})
    assert set(plain.json["error"]) == set(error) and plain.json["error"]["code"] == error["code"]

    auth = {"Authorization": "Bearer " + "k" * 20}
    response, events = post_stream(client, {"conversation_id": "bad id!", "text": "hi"}, auth)
    assert response.status_code == 422 and json.loads(events[0][1])["code"] == "invalid_field"
    assert "conversation_id" in json.loads(events[0][1])["message"]

    lock = app.extensions["assistant"].store.lock("e-busy")
    assert lock.acquire()
    try:
        response, events = post_stream(client, {"conversation_id": "e-busy", "text": "hi"}, auth)
    finally:
        lock.release()
    assert response.status_code == 409 and json.loads(events[0][1])["code"] == "conversation_busy"
    assert client.get("/v1/conversations/e-busy", headers=auth).status_code == 404


def test_failure_mid_stream_is_an_error_event_and_stores_nothing(stream_app, slow_generator):
    client = stream_app().test_client()
    slow_generator.fail_after = 3
    body = {"conversation_id": "e-mid", "message_id": "m-1", "text": "tell me a joke about penguins"}
    response, events = post_stream(client, body)
    assert response.status_code == 200  # already sent with the first event
    assert [name for name, _ in events] == ["start", "chunk", "chunk", "chunk", "error"]
    error = json.loads(events[-1][1])
    assert error["code"] == "model_unavailable" and error["request_id"] == response.headers["X-Request-ID"]
    assert "on purpose" not in error["message"]  # internals go to the log only
    assert client.get("/v1/conversations/e-mid").status_code == 404
    # the message id was released: the retry is answered, not refused as a duplicate
    slow_generator.fail_after = None
    _, events = post_stream(client, body)
    assert events[-1][0] == "final"
    assert len(client.get("/v1/conversations/e-mid").json["turns"]) == 2


def test_retry_of_a_streamed_message_replays_it_without_storing_again(stream_app):
    client = stream_app().test_client()
    body = {"conversation_id": "r-1", "message_id": "m-1", "text": "tell me a joke"}
    _, first = post_stream(client, body)
    response, again = post_stream(client, body)
    assert response.headers["Idempotent-Replayed"] == "true"
    assert [name for name, _ in again] == ["start", "chunk", "final"]
    assert again[-1] == first[-1] and text_shown(again) == text_shown(first)
    assert len(client.get("/v1/conversations/r-1").json["turns"]) == 2
    response, events = post_stream(client, {**body, "text": "another text"})
    assert response.status_code == 409 and json.loads(events[0][1])["code"] == "message_id_reused"


def test_keep_alive_comments_while_the_model_is_slow(stream_app, slow_generator):
    slow_generator.delay = 0.25
    client = stream_app(sse_keepalive_seconds=0.05).test_client()
    response = client.post("/v1/chat", json={"conversation_id": "k-1", "text": "tell me a joke"}, headers=SSE)
    raw = b"".join(response.response)
    comments = [line for line in raw.split(b"\n") if line.startswith(b":")]
    assert len(comments) >= 4 and set(comments) == {b": keep-alive"}
    assert [name for name, _ in read_events([raw])][-1] == "final"  # comments do not disturb parsing


def test_json_is_still_the_default(stream_app):
    client = stream_app().test_client()
    for accept in (None, "*/*", "application/json", "application/json, text/event-stream;q=0.5"):
        headers = {"Accept": accept} if accept else {}
        response = client.post("/v1/chat", json={"conversation_id": "j-1", "text": "hi"}, headers=headers)
        assert response.status_code == 200 and response.is_json, accept


# ----------------------------------------------------------------------------------- live server


def stream_live(url: str, body: dict, **kwargs) -> requests.Response:
    return requests.post(f"{url}/v1/chat", json=body, headers=SSE, stream=True, timeout=30, **kwargs)


def test_live_server_sends_chunks_as_they_are_generated(stream_app, slow_generator):
    slow_generator.delay = 0.15
    with live_server(stream_app()) as url:
        response = stream_live(url, {"conversation_id": "live-1", "text": "penguins dance on ice floes"})
        arrivals = []
        start = time.perf_counter()
        for event in SSEClient(response.iter_content(chunk_size=None)).events():
            arrivals.append((event.event, time.perf_counter() - start))
    names = [name for name, _ in arrivals]
    assert names[0] == "start" and names[-1] == "final" and names.count("chunk") == 9, arrivals
    first_chunk = next(t for name, t in arrivals if name == "chunk")
    # nine pieces 0.15 s apart: the first arrives about 1.2 s before the end (not buffered to the end)
    assert arrivals[-1][1] - first_chunk > 0.9, arrivals


def test_live_disconnect_mid_stream_leaves_the_whole_turn_stored(stream_app, slow_generator):
    slow_generator.delay = 0.1
    body = {
        "conversation_id": "live-dc",
        "message_id": "m-1",
        "text": "penguins dance on the ice floes at night",
    }
    full = f"echo after 1 turns: {body['text']}"
    with live_server(stream_app()) as url:
        response = stream_live(url, body)
        events = (e.event for e in SSEClient(response.iter_content(chunk_size=None)).events())
        assert next(events) == "start" and next(events) == "chunk"
        response.close()  # the client goes away after the first piece
        seen = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            got = requests.get(f"{url}/v1/conversations/live-dc", timeout=5)
            seen.append(404 if got.status_code == 404 else tuple(t["text"] for t in got.json()["turns"]))
            if got.status_code == 200:
                break
            time.sleep(0.05)
        # never a partial turn: nothing stored, then the whole turn with the complete reply
        assert len(seen) > 3 and all(s == 404 for s in seen[:-1]) and seen[-1] == (body["text"], full)
        replay = requests.post(f"{url}/v1/chat", json=body, timeout=10)
        assert replay.headers["Idempotent-Replayed"] == "true" and replay.json()["replies"][0]["text"] == full


def test_live_concurrent_streams_of_one_conversation_are_ordered(stream_app, slow_generator):
    slow_generator.delay = 0.05
    results: dict[str, list] = {}

    def run(text: str) -> None:
        response = stream_live(url, {"conversation_id": "live-co", "text": text})
        results[text] = read_events(response.iter_content(chunk_size=None))

    with live_server(stream_app(lock_wait_seconds=10.0)) as url:
        threads = [threading.Thread(target=run, args=(f"message {n} with some words",)) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        turns = requests.get(f"{url}/v1/conversations/live-co", timeout=5).json()["turns"]
    assert all(events[-1][0] == "final" for events in results.values()), results
    # one after another: each reply saw every earlier turn (1, 3, 5 turns of context)
    assert [t["role"] for t in turns] == ["customer", "agent"] * 3
    for i in range(3):
        assert turns[2 * i + 1]["text"] == f"echo after {2 * i + 1} turns: {turns[2 * i]['text']}"
        final = json.loads(results[turns[2 * i]["text"]][-1][1])
        assert final["replies"][0]["text"] == turns[2 * i + 1]["text"]
