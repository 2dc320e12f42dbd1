"""Bad input from a careless client or a damaged store gets a clear 4xx (never a 500), and the input
rules of ``docs/server.md#input-rules``: texts, conversation ids, nesting, chunked bodies, stored
history written by another version, and what anonymous callers may learn."""

from __future__ import annotations

import json
import logging
import socket
import threading
import urllib.parse

import pytest
from werkzeug.serving import make_server

OFF_TOPIC = "tell me a joke about penguins"


def raw_post(client, path, body: str):
    """POST a body written by hand (``json=`` would refuse a lone surrogate)."""
    return client.post(path, data=body.encode("ascii"), content_type="application/json")


def no_errors_logged(caplog):
    return not [r for r in caplog.records if r.levelno >= logging.ERROR]


# ------------------------------------------------------------------------------------- defect 5
@pytest.mark.parametrize(
    "path, body, field",
    [
        ("/v1/chat", '{"conversation_id": "s-1", "text": "hi \\ud800"}', "text"),
        ("/v1/chat", '{"conversation_id": "s-1", "text": "\\udc4d cut emoji"}', "text"),
        ("/webhooks/rest/webhook", '{"sender": "s-1", "message": "hi \\ud83d"}', "message"),
        ("/v1/chat", '{"conversation_id": "s-\\ud800", "text": "hi"}', "conversation_id"),
    ],
)
def test_a_lone_surrogate_is_refused_with_422_naming_the_field(client, caplog, path, body, field):
    response = raw_post(client, path, body)
    assert response.status_code == 422, response.get_json()
    message = response.json["error"]["message"]
    assert f"field '{field}'" in message and "surrogate" in message and "U+D" in message
    assert client.get("/v1/conversations/s-1").status_code == 404  # nothing stored
    assert no_errors_logged(caplog)


# ------------------------------------------------------------------------------------- defect 6
@pytest.mark.parametrize(
    "body",
    [
        "[" * 1000 + "]" * 1000,
        '{"conversation_id": "d-1", "text": "hi", "metadata": {"a": ' + "[" * 999 + "]" * 999 + "}}",
    ],
    ids=["top-level", "inside-metadata"],
)
def test_deep_nesting_is_refused_with_400_before_parsing(client, caplog, body):
    response = raw_post(client, "/v1/chat", body)
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid_json"
    assert "deeper than 32 levels" in response.json["error"]["message"]
    assert no_errors_logged(caplog)  # no traceback flood
    rasa = raw_post(client, "/webhooks/rest/webhook", body.replace("conversation_id", "sender"))
    assert rasa.status_code == 400


def test_nesting_up_to_the_limit_and_brackets_inside_strings_are_fine(client):
    metadata = json.loads("[" * 30 + "]" * 30)
    text = "[[[[{{{{ " * 40 + "brackets in a text do not nest"
    answer = client.post(
        "/v1/chat", json={"conversation_id": "d-2", "text": text, "metadata": {"m": metadata}}
    )
    assert answer.status_code == 200, answer.json


# ------------------------------------------------------------------------------------- defect 7
@pytest.mark.parametrize(
    "text, fragment",
    [
        ("\u200b", "visible character"),
        ("\u200b\u200c\u2060\ufeff", "visible character"),
        (" \t\n\r ", "visible character"),
        ("\u00a0\u3000", "visible character"),
        ("hi\x00", "control character U+0000 at character 3"),
        ("\x1b[31mred", "control character U+001B at character 1"),
    ],
)
def test_blank_looking_or_control_text_is_refused(client, text, fragment):
    response = client.post("/v1/chat", json={"conversation_id": "b-1", "text": text})
    assert response.status_code == 422 and fragment in response.json["error"]["message"]
    rasa = client.post("/webhooks/rest/webhook", json={"sender": "b-1", "message": text})
    assert rasa.status_code == 422 and "field 'message'" in rasa.json["error"]["message"]
    assert client.get("/v1/conversations/b-1").status_code == 404


@pytest.mark.parametrize(
    "text",
    ["hi\u200b", "👍🏽", "👨\u200d👩\u200d👧 family plan?", "line one\nline two\ttabbed", "?"],
)
def test_text_with_invisible_characters_among_visible_ones_is_accepted(client, text):
    response = client.post("/v1/chat", json={"conversation_id": "v-1", "text": text})
    assert response.status_code == 200, response.json
    assert client.get("/v1/conversations/v-1").json["turns"][-2]["text"] == text.strip()


@pytest.mark.parametrize("conversation_id", [".", "..", " ", "a/b", "tab\there", "x" * 129, ""])
def test_conversation_ids_unreachable_in_a_url_are_refused(client, conversation_id):
    response = client.post("/v1/chat", json={"conversation_id": conversation_id, "text": OFF_TOPIC})
    assert response.status_code == 422, response.json
    assert "field 'conversation_id'" in response.json["error"]["message"]
    rasa = client.post("/webhooks/rest/webhook", json={"sender": conversation_id, "message": OFF_TOPIC})
    assert rasa.status_code == 422 and "field 'sender'" in rasa.json["error"]["message"]


@pytest.mark.parametrize(
    "sender",
    [
        "user@example.com",
        "{3F2504E0-4F89-11D3-9A0C-0305E82C3301}",
        "name with spaces",
        "ünïcødé-😀",
        "a*b?[c]",
    ],
)
def test_rasa_senders_of_any_shape_are_accepted_and_reachable(client, sender):
    answer = client.post("/webhooks/rest/webhook", json={"sender": sender, "message": OFF_TOPIC})
    assert answer.status_code == 200 and answer.json[0]["recipient_id"] == sender
    url = "/v1/conversations/" + urllib.parse.quote(sender, safe="")
    stored = client.get(url)
    assert stored.status_code == 200 and stored.json["conversation_id"] == sender
    assert len(stored.json["turns"]) == 2
    assert client.delete(url).status_code == 204 and client.get(url).status_code == 404


def test_erasing_a_conversation_erases_no_other(app, client):
    """Conversation ids may contain '}', ':' and glob characters: erasing "c" must not reach the keys of
    "c}:dedupe:x" (they share a key prefix) nor those matched by glob characters in an id."""
    for conversation_id in ("c", "c}:dedupe:x", "c*", "[c]"):
        answer = client.post(
            "/v1/chat", json={"conversation_id": conversation_id, "text": OFF_TOPIC, "message_id": "m-1"}
        )
        assert answer.status_code == 200
    assert client.delete("/v1/conversations/c").status_code == 204
    assert client.delete("/v1/conversations/c%2A").status_code == 204  # "c*"
    for survivor in ("c}:dedupe:x", "[c]"):
        assert client.get("/v1/conversations/" + urllib.parse.quote(survivor, safe="")).status_code == 200
        replay = client.post(
            "/v1/chat", json={"conversation_id": survivor, "text": OFF_TOPIC, "message_id": "m-1"}
        )
        assert replay.headers.get("Idempotent-Replayed") == "true"  # its stored answer survived too


# ------------------------------------------------------------------------------------- defect 8
def test_readiness_tells_anonymous_callers_nothing_internal(make_app, tmp_path, caplog):
    app = make_app(embedded=True, api_key="k" * 20)
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json == {"status": "ready", "checks": {"model": {"ok": True}, "redis": {"ok": True}}}
    rt = app.extensions["assistant"]
    socket_path = rt.embedded.socket_path
    rt.embedded.stop()  # the only user: the server shuts down
    down = client.get("/readyz")
    assert down.status_code == 503 and down.json["checks"]["redis"] == {"ok": False}
    chat = client.post(
        "/v1/chat", json={"conversation_id": "r", "text": "hi"}, headers={"X-API-Key": "k" * 20}
    )
    assert chat.status_code == 503
    for body in (down.get_data(as_text=True), chat.get_data(as_text=True)):
        assert str(tmp_path) not in body and "redis.sock" not in body and "Error" not in body
    assert any(socket_path in r.getMessage() for r in caplog.records)  # the log has the details


# ------------------------------------------------------------------------------------- defect 9
def test_a_malformed_history_entry_is_skipped_with_a_warning(app, client, echo_generator, caplog):
    assert client.post("/v1/chat", json={"conversation_id": "h", "text": OFF_TOPIC}).status_code == 200
    store = app.extensions["assistant"].store
    newer = {"role": "customer", "text": "from a newer version", "message_id": "n", "at": 1.0, "mood": "ok"}
    store.client.rpush(
        store.history_key("h"),
        b"\xff not json",
        b"[1, 2]",
        json.dumps({"role": "customer"}),
        json.dumps({**newer, "role": "robot"}),
        json.dumps(newer),
    )
    store.client.hset(store.state_key("h"), "updated_at", "yesterday")
    caplog.set_level(logging.WARNING)
    stored = client.get("/v1/conversations/h")
    assert stored.status_code == 200
    assert [t["text"] for t in stored.json["turns"]] == [
        OFF_TOPIC,
        f"echo after 1 turns: {OFF_TOPIC}",
        "from a newer version",
    ]
    assert stored.json["updated_at"] is None
    answer = client.post(
        "/v1/chat", json={"conversation_id": "h", "text": "and another one about giraffes please"}
    )
    assert answer.status_code == 200
    assert [t.text for t in echo_generator.requests[-1].context][-2:] == [
        "from a newer version",
        "and another one about giraffes please",
    ]
    skipped = [r.getMessage() for r in caplog.records if "skipped stored message" in r.getMessage()]
    assert len(skipped) >= 4 and any("7" in m and "role 'robot'" in m for m in skipped)
    assert not any("newer version" in m for m in skipped)  # the content itself is not logged


# -------------------------------------------------------------------------------- defect 11 (413)
@pytest.fixture
def live_server(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join()


def post_chunked(port: int, body: bytes) -> tuple[int, dict]:
    """POST ``body`` with ``Transfer-Encoding: chunked`` (no Content-Length) over a real socket."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        for start in range(0, len(body), 4096):
            piece = body[start : start + 4096]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sock.sendall(b"0\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


def test_an_oversized_chunked_body_gets_413(app, live_server):
    limit = app.config["MAX_CONTENT_LENGTH"]
    status, body = post_chunked(
        live_server.server_port, json.dumps({"conversation_id": "k", "text": "x" * limit}).encode()
    )
    assert status == 413 and body["error"]["code"] == "body_too_large"
    status, body = post_chunked(
        live_server.server_port, json.dumps({"conversation_id": "k", "text": OFF_TOPIC}).encode()
    )
    assert status == 200 and body["replies"][0]["source"] == "model"
