"""Every bad input gets its status and a message naming what is wrong; bad settings fail at start."""

from __future__ import annotations

import pytest

from assistant.errors import ConfigError
from server import create_app
from server.settings import load_settings

GOOD = {"conversation_id": "c-1", "text": "How do I cancel my order?"}


def error_of(response, status, code):
    """The error message of ``response``, after checking its status, body shape, code and request id."""
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["code"] == code, body
    assert body["error"]["request_id"] == response.headers["X-Request-ID"]
    return body["error"]["message"]


@pytest.mark.parametrize(
    "body, field, fragment",
    [
        ({"text": "hi"}, "conversation_id", "is required"),
        ({"conversation_id": "c-1"}, "text", "is required"),
        ({**GOOD, "conversation_id": "a/b"}, "conversation_id", "has '/' at character 2"),
        ({**GOOD, "conversation_id": ".."}, "conversation_id", "not blank, '.' or '..'"),
        ({**GOOD, "conversation_id": "x" * 129}, "conversation_id", "1-128 characters"),
        ({**GOOD, "conversation_id": 42}, "conversation_id", "valid string"),
        ({**GOOD, "message_id": "a/b"}, "message_id", "letters, digits"),
        ({**GOOD, "text": "   "}, "text", "must contain a visible character"),
        ({**GOOD, "text": ["hi"]}, "text", "valid string"),
        ({**GOOD, "metadata": "not an object"}, "metadata", "valid dictionary"),
        ({**GOOD, "txt": "typo"}, "txt", "is not a known field"),
    ],
)
def test_invalid_chat_fields_give_422_naming_the_field(client, body, field, fragment):
    message = error_of(client.post("/v1/chat", json=body), 422, "invalid_field")
    assert f"field '{field}'" in message and fragment in message


def test_rasa_fields_are_validated(client):
    message = error_of(client.post("/webhooks/rest/webhook", json={"message": "hi"}), 422, "invalid_field")
    assert "field 'sender' is required" in message
    message = error_of(
        client.post("/webhooks/rest/webhook", json={"sender": "s", "message": ""}), 422, "invalid_field"
    )
    assert "field 'message'" in message
    # Rasa clients send extra fields: accepted
    assert (
        client.post(
            "/webhooks/rest/webhook", json={"sender": "s", "message": "hi", "input_channel": "rest"}
        ).status_code
        == 200
    )


def test_text_over_the_limit_gives_413(client, app):
    limit = app.extensions["assistant"].settings.max_text_chars
    message = error_of(
        client.post("/v1/chat", json={**GOOD, "text": "a" * (limit + 1)}), 413, "text_too_long"
    )
    assert f"limit is {limit}" in message and "field 'text'" in message
    assert client.post("/v1/chat", json={**GOOD, "text": "a" * limit}).status_code == 200


def test_body_over_the_limit_gives_413(client, app):
    limit = app.config["MAX_CONTENT_LENGTH"]
    message = error_of(
        client.post("/v1/chat", data=b"{" + b" " * limit + b"}", content_type="application/json"),
        413,
        "body_too_large",
    )
    assert str(limit) in message


def test_wrong_content_type_gives_415(client):
    message = error_of(
        client.post("/v1/chat", data="hi", content_type="text/plain"), 415, "unsupported_media_type"
    )
    assert "application/json" in message and "text/plain" in message
    error_of(
        client.post("/v1/chat", data='{"conversation_id": "c", "text": "x"}'), 415, "unsupported_media_type"
    )


def test_malformed_json_gives_400(client):
    message = error_of(
        client.post("/v1/chat", data='{"conversation_id": ', content_type="application/json"),
        400,
        "invalid_json",
    )
    assert "not valid JSON" in message
    message = error_of(client.post("/v1/chat", json=["a", "list"]), 400, "invalid_json")
    assert "JSON object" in message and "list" in message


def test_unknown_conversation_route_and_method(client):
    message = error_of(client.get("/v1/conversations/never-seen"), 404, "not_found")
    assert "never-seen" in message
    error_of(client.delete("/v1/conversations/never-seen"), 404, "not_found")
    message = error_of(client.get("/v1/conversations/bad%09id"), 422, "invalid_field")
    assert "U+0009 at character 4" in message
    error_of(client.delete("/v1/conversations/abc%0A"), 422, "invalid_field")  # same rule as the bodies
    error_of(client.get("/v2/anything"), 404, "not_found")
    message = error_of(client.get("/v1/chat"), 405, "method_not_allowed")
    assert "POST" in message


def test_no_endpoint_answers_200_after_a_failure_of_the_model(app, client, echo_generator, caplog):
    from assistant.errors import ModelError

    def fail():
        raise ModelError("decoder produced NaN logits in /srv/models/secret-dir")

    echo_generator.on_generate = fail
    response = client.post("/v1/chat", json={"conversation_id": "c-m", "text": "tell me a joke"})
    message = error_of(response, 503, "model_unavailable")
    request_id = response.headers["X-Request-ID"]
    # the client gets the request id, not the exception text; the log has both
    assert "NaN" not in message and "/srv" not in message and request_id in message
    assert any(request_id in r.getMessage() and "NaN logits" in str(r.exc_info[1]) for r in caplog.records)
    assert client.get("/v1/conversations/c-m").status_code == 404  # nothing stored


def test_unexpected_errors_answer_a_generic_500_with_the_request_id(app, client, echo_generator, caplog):
    def fail():
        raise RuntimeError("/home/deploy/app/weights.bin: checksum mismatch")

    echo_generator.on_generate = fail
    response = client.post(
        "/v1/chat",
        json={"conversation_id": "c-x", "text": "tell me a story about penguins"},
        headers={"X-Request-ID": "req-42"},
    )
    message = error_of(response, 500, "internal_error")
    assert response.headers["X-Request-ID"] == "req-42" and "req-42" in message
    assert "/home" not in message and "checksum" not in message and "RuntimeError" not in message
    assert any("req-42" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "environ, fragment",
    [
        ({"ASSISTANT_ENV": "staging"}, "ASSISTANT_ENV"),
        ({"ASSISTANT_HISTORY_MAX_TURNS": "many"}, "ASSISTANT_HISTORY_MAX_TURNS = 'many' is not an integer"),
        ({"ASSISTANT_HISTORY_MAX_TURNS": "1"}, "history_max_turns (ASSISTANT_HISTORY_MAX_TURNS) = 1"),
        ({"ASSISTANT_TORCH_THREADS": "-1"}, "torch_threads (ASSISTANT_TORCH_THREADS) = -1"),
        ({"ASSISTANT_GENERATOR_OPTIONS": "{beam"}, "ASSISTANT_GENERATOR_OPTIONS) is not valid JSON"),
        ({"ASSISTANT_GENERATOR_OPTIONS": "[4]"}, "a JSON object of reply-model loader options"),
        ({"ASSISTANT_PIPELINE": '{"top_kk": 3}'}, "unknown PipelineConfig fields ['top_kk']"),
        ({"ASSISTANT_DEMO": "perhaps"}, "ASSISTANT_DEMO = 'perhaps' is not a boolean"),
        ({"ASSISTANT_REDIS_SOCKET_TIMEOUT": "0"}, "expected a number of seconds > 0"),
        ({"REDIS_URL": "http://localhost:6379"}, "redis_url (REDIS_URL)"),
        ({"ASSISTANT_API_KEY": "short"}, "at least 16 characters"),
        ({"ASSISTANT_ENV": "production", "ASSISTANT_INDEX_DIR": "/x"}, "ASSISTANT_API_KEY"),
        ({"ASSISTANT_ENV": "production", "ASSISTANT_API_KEY": "k" * 20}, "ASSISTANT_MODEL_DIR"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(environ, fragment):
    with pytest.raises(ConfigError) as info:
        load_settings(environ=environ)
    assert fragment in str(info.value)


def test_settings_layers_and_unknown_names():
    environ = {
        "ASSISTANT_HISTORY_MAX_TURNS": "8",
        "REDIS_URL": "redis://example:6379/0",
        "ASSISTANT_DEMO": "off",
    }
    settings = load_settings({"history_max_turns": 6}, environ=environ, defaults={"max_text_chars": 500})
    assert settings.history_max_turns == 6 and settings.redis_url == "redis://example:6379/0"
    assert settings.demo is False and settings.max_text_chars == 500
    assert load_settings(environ={}).env == "development"
    assert (
        load_settings(environ={"ASSISTANT_ENV": "testing"}, defaults={"env": "production"}).env == "testing"
    )
    with pytest.raises(ConfigError, match="unknown settings \\['history_turns'\\]"):
        load_settings({"history_turns": 3}, environ={})


def test_create_app_refuses_a_bad_setting(tmp_path):
    with pytest.raises(ConfigError, match="max_body_bytes"):
        create_app({"env": "testing", "instance_dir": str(tmp_path), "max_body_bytes": 10})


@pytest.mark.parametrize("value", ["shop.example.com", "https://shop.example.com/widget"])
def test_bad_cors_origins_are_refused(value):
    with pytest.raises(ConfigError, match="cors_origins \\(ASSISTANT_CORS_ORIGINS\\)"):
        load_settings(environ={"ASSISTANT_CORS_ORIGINS": value})


def test_an_unknown_assistant_variable_is_named_in_a_warning(caplog):
    settings = load_settings(
        environ={"ASSISTANT_INSTANCE_PATH": "/srv/x", "ASSISTANT_HISTORY_MAX_TURNS": "8"}
    )
    assert settings.instance_dir == "" and settings.history_max_turns == 8
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "unknown environment variable ASSISTANT_INSTANCE_PATH is ignored; did you mean ASSISTANT_INSTANCE_DIR"
    )
    caplog.clear()
    load_settings(environ={"ASSISTANT_QQQ": "1", "OTHER_THING": "2"})
    assert [r.getMessage() for r in caplog.records] == [
        "unknown environment variable ASSISTANT_QQQ is ignored; see docs/server.md#settings"
    ]
