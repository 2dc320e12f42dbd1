"""No error body ever carries a file path, a Redis address or a traceback: every error status the API
answers is produced for real and its body searched for the server's own paths and Python internals."""

from __future__ import annotations

import re
from pathlib import Path

import server
from server.store.keys import KeyStore

ADMIN = "shared-admin-key-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
TEXT = "tell me a joke about penguins"
LEAKS = re.compile(
    r"Traceback|File \"|\.py\b|line \d+, in|(?<![\w.])/(?:home|work|tmp|srv|usr|var|root|opt|proc|etc)/"
    r"|unix://|redis://|\.sock\b|Error \d+ connecting|RuntimeError|ModelError"
)


def test_error_bodies_never_contain_paths_or_tracebacks(make_app, echo_generator, tmp_path):
    app = make_app(embedded=True, api_key=ADMIN, rate_limit_per_conversation="2/minute", max_text_chars=50)
    rt = app.extensions["assistant"]
    reader, _ = KeyStore(rt.store.client, rt.settings.redis_prefix).create("acme", ["conversations:read"])
    client = app.test_client()
    socket_path = rt.embedded.socket_path
    secrets = [str(Path(server.__file__).resolve().parent.parent), str(tmp_path), socket_path, ADMIN]

    def chat(body, headers=AUTH, **kw):
        return client.post("/v1/chat", json=body, headers=headers, **kw)

    responses = {
        400: client.post("/v1/chat", data=b"{not json", content_type="application/json", headers=AUTH),
        401: chat({"conversation_id": "e", "text": TEXT}, headers={}),
        403: chat({"conversation_id": "e", "text": TEXT}, headers={"Authorization": f"Bearer {reader}"}),
        404: client.get("/v1/conversations/nothing-here", headers=AUTH),
        405: client.put("/v1/chat", headers=AUTH),
        413: chat({"conversation_id": "e", "text": "x" * 51}),
        415: client.post("/v1/chat", data="hi", content_type="text/plain", headers=AUTH),
        422: chat({"conversation_id": "no/slashes", "text": TEXT}),
    }
    responses["413 body"] = client.post(
        "/v1/chat", data=b"{" + b" " * 70000 + b"}", content_type="application/json", headers=AUTH
    )
    responses["404 route"] = client.get("/etc/passwd")
    chat({"conversation_id": "busy", "text": TEXT, "message_id": "b-1"})
    responses[409] = chat({"conversation_id": "busy", "text": "another text", "message_id": "b-1"})
    chat({"conversation_id": "busy", "text": TEXT})
    responses[429] = chat({"conversation_id": "busy", "text": TEXT})

    def crash():
        raise RuntimeError(f"cannot read {tmp_path}/weights.bin")

    echo_generator.on_generate = crash
    responses[500] = chat({"conversation_id": "crash", "text": TEXT})

    def model_fails():
        from assistant.errors import ModelError

        raise ModelError(f"checkpoint {tmp_path}/model.safetensors is corrupt")

    echo_generator.on_generate = model_fails
    responses["503 model"] = chat({"conversation_id": "m", "text": TEXT})
    echo_generator.on_generate = None
    rt.embedded.stop()
    responses["503 redis"] = chat({"conversation_id": "r", "text": TEXT})
    responses["503 redis read"] = client.get("/v1/conversations/r", headers=AUTH)
    responses["503 readyz"] = client.get("/readyz")
    responses["503 key lookup"] = chat(
        {"conversation_id": "r", "text": TEXT}, headers={"Authorization": f"Bearer {reader}"}
    )

    for name, response in responses.items():
        expected = int(str(name).split()[0])
        assert response.status_code == expected, (name, response.get_json())
        body = response.get_data(as_text=True)
        assert response.is_json and "error" in response.json, (name, body)
        assert not LEAKS.search(body), (name, body)
        for secret in secrets:
            assert secret not in body, (name, secret, body)
