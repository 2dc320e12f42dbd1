"""Browser-safe API: public site keys (routes, origins, conversation ids), CORS, and the widget's files."""

from __future__ import annotations

import json

import pytest

from assistant.errors import ConfigError
from server.settings import load_settings

KEY = "pk_test_0123456789abcdef"
SHOP = "https://shop.example.com"
CONV = "web-" + "0123456789abcdef" * 2
SECRET = "s" * 32


@pytest.fixture
def keyed(make_app):
    app = make_app(api_key=SECRET, site_keys=json.dumps({KEY: [SHOP, "http://localhost"]}))
    return app.test_client()


def site(origin: str = SHOP, key: str = KEY) -> dict:
    return {"X-Site-Key": key, "Origin": origin}


def test_site_key_chats_and_reads_its_conversation_without_the_api_key(keyed):
    answer = keyed.post("/v1/chat", json={"conversation_id": CONV, "text": "hello"}, headers=site())
    assert answer.status_code == 200, answer.json
    assert answer.headers["Access-Control-Allow-Origin"] == SHOP
    history = keyed.get(f"/v1/conversations/{CONV}", headers=site())
    assert history.status_code == 200 and len(history.json["turns"]) == 2
    # a same-origin GET carries no Origin header: the server's own origin (here http://localhost,
    # which the key lists) is checked instead
    assert keyed.get(f"/v1/conversations/{CONV}", headers={"X-Site-Key": KEY}).status_code == 200
    # the API key still works as before, and nothing works with neither
    assert keyed.get(f"/v1/conversations/{CONV}", headers={"X-API-Key": SECRET}).status_code == 200
    assert keyed.get(f"/v1/conversations/{CONV}").status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"),
    [
        (
            "POST",
            "/v1/chat",
            {"conversation_id": CONV, "text": "hi"},
            site(key="pk_wrong_0123456789abc"),
            401,
        ),
        ("POST", "/v1/chat", {"conversation_id": CONV, "text": "hi"}, site(key=KEY[:-1]), 401),
        ("POST", "/v1/chat", {"conversation_id": CONV, "text": "hi"}, site("https://evil.example"), 403),
        ("POST", "/v1/chat", {"conversation_id": "chatwoot:123", "text": "hi"}, site(), 403),
        ("POST", "/v1/chat", {"conversation_id": "web-1234", "text": "hi"}, site(), 403),
        ("GET", "/v1/conversations/chatwoot:123", None, site(), 403),
        ("DELETE", f"/v1/conversations/{CONV}", None, site(), 403),
        ("POST", "/webhooks/rest/webhook", {"sender": CONV, "message": "hi"}, site(), 403),
    ],
)
def test_site_key_is_limited_to_chat_routes_origins_and_web_conversations(
    keyed, method, path, body, headers, status
):
    response = keyed.open(path, method=method, json=body, headers=headers)
    assert response.status_code == status, response.json
    assert response.json["error"]["code"] == ("unauthorized" if status == 401 else "forbidden")
    assert KEY not in response.get_data(as_text=True)  # the key is never echoed


def test_streamed_chat_with_a_site_key_and_its_errors_as_events(keyed):
    from tests.streaming_support import read_events

    headers = {**site(), "Accept": "text/event-stream"}
    ok = keyed.post("/v1/chat", json={"conversation_id": CONV, "text": "hello"}, headers=headers)
    assert [name for name, _ in read_events(ok.response)][-1] == "final"
    bad = keyed.post("/v1/chat", json={"conversation_id": "chatwoot:1", "text": "hi"}, headers=headers)
    assert bad.status_code == 403 and bad.mimetype == "text/event-stream"
    assert json.loads(read_events(bad.response)[0][1])["code"] == "forbidden"


def test_cors_preflight_for_site_origins_only(keyed):
    request_headers = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-site-key",
    }
    allowed = keyed.options("/v1/chat", headers={"Origin": SHOP, **request_headers})
    assert allowed.headers["Access-Control-Allow-Origin"] == SHOP
    assert "X-Site-Key" in allowed.headers["Access-Control-Allow-Headers"]
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    other = keyed.options("/v1/chat", headers={"Origin": "https://evil.example", **request_headers})
    assert "Access-Control-Allow-Origin" not in other.headers


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('["a"]', "JSON object"),
        ('{"short": ["https://a.example"]}', "16-128 characters"),
        (json.dumps({KEY: []}), "non-empty list"),
        (json.dumps({KEY: ["*"]}), "no '\\*'"),
        (json.dumps({KEY: ["https://a.example/path"]}), "no path"),
    ],
)
def test_bad_site_keys_setting_is_refused_at_start(value, problem):
    with pytest.raises(ConfigError, match=rf"site_keys \(ASSISTANT_SITE_KEYS\).*{problem}"):
        load_settings({"site_keys": value}, environ={})


def test_site_key_origins_are_cors_origins_too():
    settings = load_settings(
        {"site_keys": json.dumps({KEY: [SHOP + "/"]}), "cors_origins": "https://app.example.com"}, environ={}
    )
    assert settings.allowed_origins == ("https://app.example.com", SHOP)
    with pytest.raises(ConfigError, match="sse_keepalive_seconds"):
        load_settings({"sse_keepalive_seconds": 0}, environ={})


def test_widget_script_and_demo_page_are_served_without_a_key(keyed):
    script = keyed.get("/widget.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert b"text/event-stream" in script.data and b"innerHTML" not in script.data
    page = keyed.get('/widget/?site_key="><script>alert(1)</script>')
    assert page.status_code == 200 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert "<script>alert(1)" not in text and "&quot;&gt;&lt;script&gt;" in text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert 'src="http://localhost/widget.js"' in text
