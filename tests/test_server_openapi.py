"""The OpenAPI contract: /openapi.json is generated from the pydantic models, /docs works offline, and
schemathesis (all checks, all phases) finds no failure against a live loopback server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from server.api.openapi import OPERATIONS, UNDOCUMENTED_PREFIXES, build_spec
from server.api.schemas import ChatResponse, ConversationResponse, ErrorResponse, RasaMessage

ADMIN = "shared-admin-key-0123456789"
TEXT = "tell me a joke about penguins"


def test_spec_is_built_from_the_models_and_the_settings(make_app):
    client = make_app(max_text_chars=500).test_client()
    spec = client.get("/openapi.json").json
    assert spec["openapi"] == "3.1.0"
    schemas = spec["components"]["schemas"]
    assert schemas["ChatRequest"]["properties"]["text"]["maxLength"] == 500
    assert schemas["ChatRequest"]["additionalProperties"] is False
    assert set(schemas["ChatRequest"]["required"]) == {"conversation_id", "text"}
    chat = spec["paths"]["/v1/chat"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatRequest"
    }
    assert chat["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatResponse"
    }
    assert set(chat["responses"]) == {"200", "400", "401", "403", "409", "413", "415", "422", "429", "503"}
    assert "Retry-After" in chat["responses"]["429"]["headers"]
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    assert (
        "`conversations:erase`"
        in spec["paths"]["/v1/conversations/{conversation_id}"]["delete"]["description"]
    )


def test_every_route_of_the_app_is_in_the_spec(make_app):
    app = make_app()
    documented = {(path, method.upper()) for path, ops in build_spec(100)["paths"].items() for method in ops}
    routes = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        if not path.startswith(UNDOCUMENTED_PREFIXES):
            routes |= {(path, method) for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert ("/widget/", "GET") in routes  # the check sees the routes it is meant to
    assert routes - documented == set()
    assert documented - routes == set()


def test_the_widget_routes_answer_as_documented(client):
    spec = build_spec(100)["paths"]
    script = client.get("/widget.js")
    assert (
        script.status_code == 200
        and script.mimetype in spec["/widget.js"]["get"]["responses"]["200"]["content"]
    )
    assert client.get("/widget/?site_key=" + "k" * 129).status_code == 422
    assert "422" in spec["/widget/"]["get"]["responses"]


def test_real_bodies_match_the_response_models(client):
    answer = client.post("/v1/chat", json={"conversation_id": "m", "text": TEXT, "message_id": "m-1"})
    ChatResponse.model_validate(answer.json)
    ConversationResponse.model_validate(client.get("/v1/conversations/m").json)
    for message in client.post("/webhooks/rest/webhook", json={"sender": "m", "message": TEXT}).json:
        RasaMessage.model_validate(message)
    ErrorResponse.model_validate(client.get("/v1/conversations/none").json)


def test_docs_page_is_served_from_local_files(client):
    page = client.get("/docs/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/openapi.json" in html and "swagger-ui-bundle.js" in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/docs/") for a in assets), assets  # nothing from a CDN
    with client.get("/docs/swagger-ui-bundle.js") as bundle:
        assert bundle.status_code == 200 and len(bundle.data) > 100_000


@pytest.fixture
def live_server(make_app):
    """The test app (API key on, rate limits high) served by Werkzeug on 127.0.0.1 in a thread."""
    app = make_app(
        api_key=ADMIN, rate_limit_per_key="100000/minute", rate_limit_per_conversation="100000/minute"
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.mark.slow
def test_schemathesis_finds_no_failure(live_server, tmp_path):
    """schemathesis run over the whole spec with the admin key: every check, every phase (coverage,
    fuzzing, stateful; the spec has no examples). Tenant isolation is tested in test_server_tenants.py."""
    url = live_server
    cli = Path(sys.executable).with_name("schemathesis")
    report = tmp_path / "report"
    command = [
        str(cli),
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "40",
        "--seed",
        "1",
        "--workers",
        "1",
        "-H",
        f"Authorization: Bearer {ADMIN}",
        "--report",
        "junit",
        "--report-dir",
        str(report),
        "--no-color",
    ]
    done = subprocess.run(
        command,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=tmp_path,  # its example cache (.schemathesis/) stays out of the checkout
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    summary = done.stdout[done.stdout.rindex("SUMMARY") :]
    # every operation but /openapi.json itself (schemathesis does not test the document it reads)
    tested = len(OPERATIONS) - 1
    assert f"Selected: {tested}/{tested}" in summary and f"Tested: {tested}" in summary, summary
    assert "Failures:" not in summary, summary
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in summary, summary
