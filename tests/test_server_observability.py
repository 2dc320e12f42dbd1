"""/metrics counters and histograms move with real traffic; request logs are JSON lines with the request
id, route, timings, conversation and tenant, and carry message texts only when enabled, scrubbed."""

from __future__ import annotations

import io
import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.logs import configure_logging
from server.settings import load_settings

FAQ_QUESTION = "How do I cancel my order?"
OFF_TOPIC = "tell me a joke about penguins"


def samples(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    out = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def delta(before, after, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_move_with_traffic(make_app, echo_generator):
    client = make_app().test_client()
    before = samples(client)
    assert client.post("/v1/chat", json={"conversation_id": "m-1", "text": FAQ_QUESTION}).status_code == 200
    for i in range(2):
        assert (
            client.post("/v1/chat", json={"conversation_id": "m-1", "text": f"{OFF_TOPIC} {i}"}).status_code
            == 200
        )
    echo_generator.confidence = 0.0  # the model is unsure: fallback text, handed off
    handed = client.post("/v1/chat", json={"conversation_id": "m-2", "text": OFF_TOPIC})
    assert handed.json["handoff"] is True
    assert client.get("/v1/conversations/m-1").status_code == 200
    assert client.get("/v1/conversations/none").status_code == 404
    replay = client.post("/v1/chat", json={"conversation_id": "m-3", "text": OFF_TOPIC, "message_id": "x"})
    client.post("/v1/chat", json={"conversation_id": "m-3", "text": OFF_TOPIC, "message_id": "x"})
    assert replay.status_code == 200
    after = samples(client)

    assert delta(before, after, "assistant_replies_total", source="faq") == 1
    assert delta(before, after, "assistant_replies_total", source="model") == 2
    assert (
        delta(before, after, "assistant_replies_total", source="fallback") == 2
    )  # m-2 and m-3 (the replay is not counted)
    assert delta(before, after, "assistant_handoffs_total") == 2
    chat_route = {"route": "/v1/chat", "method": "POST", "status": "200"}
    assert delta(before, after, "assistant_http_request_duration_seconds_count", **chat_route) == 6
    get_route = {"route": "/v1/conversations/<conversation_id>", "method": "GET"}
    assert (
        delta(before, after, "assistant_http_request_duration_seconds_count", **get_route, status="200") == 1
    )
    assert (
        delta(before, after, "assistant_http_request_duration_seconds_count", **get_route, status="404") == 1
    )
    assert delta(before, after, "assistant_http_errors_total", code="not_found") == 1
    assert delta(before, after, "assistant_retrieval_confidence_count") == 5
    assert delta(before, after, "assistant_pipeline_latency_seconds_count") == 5
    assert delta(before, after, "assistant_model_latency_seconds_count") == 4  # every message but the FAQ one
    assert delta(before, after, "assistant_reply_confidence_count", source="faq") == 1
    faq_low = delta(before, after, "assistant_reply_confidence_bucket", source="faq", le="0.5")
    faq_all = delta(before, after, "assistant_reply_confidence_bucket", source="faq", le="+Inf")
    assert faq_all == 1 and faq_low in (0, 1)


def test_redis_errors_are_counted(make_app, echo_generator):
    app = make_app(embedded=True)
    client = app.test_client()
    before = samples(client)
    app.extensions["assistant"].embedded.stop()
    assert client.post("/v1/chat", json={"conversation_id": "r", "text": OFF_TOPIC}).status_code == 503
    after = samples(client)
    assert delta(before, after, "assistant_redis_errors_total", code="redis_unavailable") == 1
    assert (
        delta(
            before,
            after,
            "assistant_http_request_duration_seconds_count",
            route="/v1/chat",
            method="POST",
            status="503",
        )
        == 1
    )


def test_queue_depth_hook_reports_at_scrape_time(make_app):
    from server.metrics import register_queue_depth

    app = make_app()
    depth = {"replies": 3}
    register_queue_depth(app, "replies", lambda: depth["replies"])
    client = app.test_client()
    assert samples(client)[("assistant_queue_depth", (("queue", "replies"),))] == 3
    depth["replies"] = 7
    assert samples(client)[("assistant_queue_depth", (("queue", "replies"),))] == 7


@pytest.fixture
def json_log():
    """The root logger writing JSON lines into a buffer (as ``assistant serve --log-format json`` does)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    buffer = io.StringIO()
    configure_logging(load_settings({"log_format": "json"}, environ={}), stream=buffer)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


def test_request_log_is_json_with_id_route_timings_and_no_text(make_app, json_log):
    client = make_app(api_key="shared-admin-key-0123456789").test_client()
    headers = {"Authorization": "Bearer shared-admin-key-0123456789", "X-Request-ID": "req-7"}
    secret_text = "my card is 4111 1111 1111 1111, mail me at jane@example.com"
    assert (
        client.post(
            "/v1/chat", json={"conversation_id": "log-1", "text": secret_text}, headers=headers
        ).status_code
        == 200
    )
    client.get("/v1/conversations/log-1", headers={"X-Request-ID": "req-8"})  # no key: 401
    lines = [r for r in json_log() if r["logger"] == "server.access"]
    chat, denied = lines[-2], lines[-1]
    assert chat["request_id"] == "req-7" and chat["route"] == "/v1/chat" and chat["status"] == 200
    assert chat["conversation_id"] == "log-1" and chat["tenant"] == "default" and chat["key_id"] == "api_key"
    assert chat["duration_ms"] > 0 and chat["timings"]["pipeline_ms"] > 0 and chat["timings"]["model_ms"] > 0
    assert {"time", "level", "message"} <= set(chat)
    assert (
        denied["request_id"] == "req-8" and denied["status"] == 401 and denied["error_code"] == "unauthorized"
    )
    assert denied["conversation_id"] == "log-1" and denied["tenant"] is None
    everything = "\n".join(json.dumps(r) for r in json_log())
    assert "4111" not in everything and "jane@" not in everything and "penguin" not in everything
    assert "shared-admin-key" not in everything  # keys are never logged


def test_message_texts_are_logged_scrubbed_when_enabled(make_app, json_log):
    client = make_app(log_message_text=True).test_client()
    text = "my card is 4111 1111 1111 1111, mail me at jane@example.com"
    assert client.post("/v1/chat", json={"conversation_id": "log-2", "text": text}).status_code == 200
    line = [r for r in json_log() if r["logger"] == "server.access"][-1]
    assert line["text"] == "my card is <CARD>, mail me at <EMAIL>"
    assert line["reply"] == ["echo after 1 turns: my card is <CARD>, mail me at <EMAIL>"]


def test_errors_logged_inside_a_request_carry_its_id(make_app, echo_generator, json_log):
    from assistant.errors import ModelError

    def fail():
        raise ModelError("boom")

    echo_generator.on_generate = fail
    client = make_app().test_client()
    client.post(
        "/v1/chat", json={"conversation_id": "e", "text": OFF_TOPIC}, headers={"X-Request-ID": "req-9"}
    )
    errors = [r for r in json_log() if r["level"] == "ERROR"]
    assert errors and errors[-1]["request_id"] == "req-9" and "ModelError: boom" in errors[-1]["exc_info"]


def test_grafana_dashboard_queries_only_exported_metrics(make_app):
    import re
    from pathlib import Path

    from server.metrics import register_queue_depth

    app = make_app()
    register_queue_depth(app, "replies", lambda: 0)
    client = app.test_client()
    client.post("/v1/chat", json={"conversation_id": "g", "text": OFF_TOPIC})
    client.get("/v1/conversations/none")  # error codes are exported from their first occurrence
    exported = {name for name, _ in samples(client)}
    dashboard = json.loads((Path(__file__).parent.parent / "docs" / "grafana-dashboard.json").read_text())
    queried = {
        m
        for p in dashboard["panels"]
        for t in p["targets"]
        for m in re.findall(r"\bassistant_[a-z_]+", t["expr"])
    }
    assert len(dashboard["panels"]) >= 8 and queried and queried <= exported, queried - exported


def test_streamed_replies_are_counted_and_timed(make_app, demo_faq_index):
    from assistant.pipeline import Pipeline
    from tests.streaming_support import SlowGenerator, read_events

    client = make_app(use_pipeline=Pipeline(demo_faq_index, SlowGenerator(delay=0.0))).test_client()
    before = samples(client)
    response = client.post(
        "/v1/chat",
        json={"conversation_id": "s-1", "text": OFF_TOPIC},
        headers={"Accept": "text/event-stream"},
    )
    events = [event for event, _ in read_events(response.iter_encoded())]
    assert events[0] == "start" and events[-1] == "final" and events.count("chunk") > 1  # really streamed
    after = samples(client)
    assert delta(before, after, "assistant_replies_total", source="model") == 1
    assert delta(before, after, "assistant_model_latency_seconds_count") == 1
    assert delta(before, after, "assistant_pipeline_latency_seconds_count") == 1


def test_the_channels_queue_depth_is_exported(make_app):
    from tests.channel_helpers import CW_TOKEN, channels_setting, cw_message, post_chatwoot
    from tests.helpdesk_fakes import FakeChatwoot

    with FakeChatwoot(CW_TOKEN) as chatwoot:
        app = make_app(embedded=True, channels=channels_setting(chatwoot_url=chatwoot.url, worker="external"))
        client = app.test_client()
        assert samples(client)[("assistant_queue_depth", (("queue", "channels"),))] == 0
        assert post_chatwoot(client, cw_message(chatwoot.next_id(), OFF_TOPIC)).json["status"] == "queued"
        after = samples(client)  # no worker runs here: the job waits
        waiting = [
            after[("assistant_queue_depth", (("queue", q),))] for q in ("channels", "channels.delayed")
        ]
        assert sum(waiting) == 1, waiting
        assert after[("assistant_queue_depth", (("queue", "channels.dead"),))] == 0
        app.extensions["assistant"].embedded.stop()
        assert client.get("/metrics").status_code == 200  # Redis down: the queue series is left out
