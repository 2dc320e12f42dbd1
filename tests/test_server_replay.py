"""Tests for ``assistant replay``: real HTTP to a live server (Werkzeug in a thread) with real Redis."""

from __future__ import annotations

import json
import threading

import pytest
from werkzeug.serving import make_server

from server.cli.client import HttpClient
from server.cli.main import main


@pytest.fixture
def live_url(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def test_replay_dialogs_and_queries_over_http(live_url, demo_data, tmp_path):
    out = tmp_path / "replay"
    code = main(
        [
            "replay",
            "--url",
            live_url,
            "--dialogs",
            str(demo_data / "dialogs" / "test.jsonl"),
            "--turns-per-dialog",
            "2",
            "--queries",
            str(demo_data / "faq" / "queries-dev.jsonl"),
            "--limit",
            "5",
            "--out-dir",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads((out / "replay.json").read_text())
    dialogs, queries = report["sections"]
    assert dialogs["summary"]["messages"] == 10 and queries["summary"]["messages"] == 5
    assert dialogs["summary"]["errors"] == 0
    latency = queries["summary"]["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["max"]
    assert sum(queries["summary"]["sources"].values()) == 5
    conversations = {e["message"]["conversation_id"] for e in report["exchanges"][:10]}
    assert len(conversations) == 5
    client = HttpClient(live_url, "")
    for conversation_id in conversations:  # two customer turns of one dialog share one conversation
        status, body = client.send("GET", f"/v1/conversations/{conversation_id}")
        assert status == 200 and [t["role"] for t in body["turns"]] == ["customer", "agent"] * 2
    assert "| message | reply | source |" in (out / "replay.md").read_text()


def test_replay_reports_unreachable_server_and_missing_input(tmp_path, demo_data, capsys):
    assert (
        main(
            [
                "replay",
                "--url",
                "http://127.0.0.1:9",
                "--queries",
                str(demo_data / "faq" / "queries-dev.jsonl"),
                "--limit",
                "1",
            ]
        )
        == 2
    )
    assert "cannot reach http://127.0.0.1:9" in capsys.readouterr().err
    assert main(["replay", "--url", "http://127.0.0.1:9"]) == 2
    assert "nothing to send" in capsys.readouterr().err


def test_a_non_json_error_page_is_a_clear_error_not_a_traceback():
    from werkzeug.wrappers import Response

    from assistant.errors import AssistantError

    def proxy(environ, start_response):
        return Response("<html>502 Bad Gateway</html>", status=502, content_type="text/html")(
            environ, start_response
        )

    server = make_server("127.0.0.1", 0, proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(AssistantError, match="answered HTTP 502 with a body that is not JSON"):
            HttpClient(f"http://127.0.0.1:{server.server_port}", "").send("POST", "/v1/chat", {"text": "hi"})
    finally:
        server.shutdown()
        thread.join()


def test_transcript_shows_each_distinct_exchange_once(live_url, tmp_path):
    from assistant.data import write_jsonl

    dialogs = tmp_path / "dialogs.jsonl"
    write_jsonl(
        dialogs,
        [
            {"id": f"d{i}", "turns": [{"role": "customer", "text": text}, {"role": "agent", "text": "ok"}]}
            for i, text in enumerate(["thanks, bye", "where is my parcel", "thanks, bye", "thanks, bye"])
        ],
    )
    out = tmp_path / "replay"
    assert main(["replay", "--url", live_url, "--dialogs", str(dialogs), "--out-dir", str(out)]) == 0
    rows = [line for line in (out / "replay.md").read_text().splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| thanks, bye", "| where is my parcel"]
    assert [row.split(" | ")[6] for row in rows] == ["3", "1"]  # the 'times' column
    report = json.loads((out / "replay.json").read_text())
    assert len(report["exchanges"]) == 4 and report["sections"][0]["summary"]["sources"]["smalltalk"] == 3
