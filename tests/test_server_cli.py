"""The ``assistant`` command: in-process and HTTP terminal chat, serve's start-up errors, index rebuild,
and loading a saved FAQ index the production way (``ASSISTANT_INDEX_DIR``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from server.cli.main import main
from server.store.redis_process import free_loopback_port


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, demo_faq_index):
    directory = tmp_path_factory.mktemp("index") / "demo-index"
    demo_faq_index.save(directory)
    return directory


def feed(monkeypatch, lines):
    it = iter(lines)

    def fake_input(prompt=""):
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)


def test_chat_in_process_loads_the_index_dir(monkeypatch, capsys, tmp_path, redis_server, index_dir):
    feed(monkeypatch, ["How do I cancel my order?", "/history", "/reset", "/history", "/quit"])
    code = main(
        [
            "chat",
            "--env",
            "testing",
            "--index-dir",
            str(index_dir),
            "--instance-dir",
            str(tmp_path),
            "--redis-url",
            redis_server.url,
            "--redis-prefix",
            redis_server.prefix,
            "--conversation-id",
            "cli-1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "conversation cli-1" in out
    assert "source=faq faq_id=order-001" in out and "handoff=no" in out
    assert "customer: How do I cancel my order?" in out
    assert "(conversation erased)" in out
    assert out.count("customer: How do I cancel") == 1  # the second /history came after /reset


def test_chat_over_http_against_a_running_server(monkeypatch, capsys, make_app):
    app = make_app()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        feed(monkeypatch, ["tell me a joke about penguins", "x" * 3000])  # then EOF (Ctrl-D)
        code = main(
            ["chat", "--url", f"http://127.0.0.1:{server.server_port}", "--conversation-id", "http-1"]
        )
        out = capsys.readouterr().out
    finally:
        server.shutdown()
        thread.join()
    assert code == 0
    assert "bot> echo after 1 turns: tell me a joke about penguins" in out and "source=model" in out
    assert "[413 text_too_long]" in out


def test_chat_reports_an_unreachable_server(monkeypatch, capsys):
    feed(monkeypatch, ["hello"])
    assert main(["chat", "--url", "http://127.0.0.1:9"]) == 2
    assert "error: cannot reach http://127.0.0.1:9" in capsys.readouterr().err


def test_serve_refuses_insecure_production_settings(capsys, tmp_path):
    assert main(["serve", "--env", "production", "--instance-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "ASSISTANT_API_KEY" in err and "Traceback" not in err


def test_serve_reports_a_missing_index_dir(capsys, tmp_path, redis_server):
    code = main(
        [
            "serve",
            "--env",
            "testing",
            "--index-dir",
            str(tmp_path / "nope"),
            "--instance-dir",
            str(tmp_path),
            "--redis-url",
            redis_server.url,
        ]
    )
    assert code == 2 and "nope" in capsys.readouterr().err


def test_pipeline_setting_reaches_the_loaded_pipeline(make_app, index_dir):
    fallback = json.dumps({"fallback_text": "A colleague will take over."})
    client = make_app(use_pipeline=None, index_dir=str(index_dir), pipeline=fallback).test_client()
    answer = client.post("/v1/chat", json={"conversation_id": "p", "text": "tell me a joke about penguins"})
    assert answer.json["replies"] == [{"text": "A colleague will take over.", "source": "fallback"}]
    assert answer.json["handoff"] is True  # an index and no model: out of scope hands off
    app = client.application
    assert app.extensions["assistant"].model_info["index_dir"] == str(index_dir)
    assert str(index_dir) not in client.get("/readyz").get_data(as_text=True)  # no path to anonymous callers


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory, demo_data):
    from finetune.build_baseline import main as build_baseline

    out = tmp_path_factory.mktemp("baseline") / "model"
    assert build_baseline(["--train", str(demo_data / "dialogs" / "train.jsonl"), "--out", str(out)]) == 0
    return out


def test_generator_options_reach_the_model_loader(make_app, baseline_dir):
    from assistant.errors import ConfigError

    app = make_app(use_pipeline=None, model_dir=str(baseline_dir), generator_options='{"top_k": 1}')
    generator = app.extensions["assistant"].pipeline.generator
    assert generator.config.top_k == 1  # the saved default is 10
    with pytest.raises(ConfigError, match=r"does not accept option\(s\) \['beam_size'\]"):
        make_app(use_pipeline=None, model_dir=str(baseline_dir), generator_options='{"beam_size": 4}')


def test_index_rebuild_adds_a_new_entry(tmp_path, index_dir, capsys, demo_data):
    from assistant.retrieval.index import FaqIndex

    directory = tmp_path / "index"
    FaqIndex.load(index_dir).save(directory)
    faq = tmp_path / "faq.jsonl"
    extra = {
        "id": "eco-001",
        "question": "Is your packaging recyclable?",
        "answer": "Yes, all of it.",
        "examples": ["recyclable packaging", "eco friendly boxes"],
    }
    faq.write_text((demo_data / "faq" / "faq.jsonl").read_text() + json.dumps(extra) + "\n")
    assert main(["index", "rebuild", "--index-dir", str(directory), "--faq", str(faq)]) == 0
    assert "restart the server" in capsys.readouterr().out
    assert FaqIndex.load(directory).search("is the packaging recyclable", k=2)[0].faq_id == "eco-001"


def test_serve_refuses_a_taken_port_before_loading_anything(tmp_path, capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code = main(
            [
                "serve",
                "--port",
                str(port),
                "--env",
                "testing",
                "--model-dir",
                str(tmp_path / "never-loaded"),
                "--instance-dir",
                str(tmp_path / "instance"),
            ]
        )
    captured = capsys.readouterr()
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in captured.err and "--port" in captured.err
    assert "never-loaded" not in captured.err  # the model was not even looked at
    assert "assistant server on" not in captured.out


@pytest.mark.slow
def test_the_printed_curl_line_works_when_pasted(tmp_path, redis_server, index_dir):
    """``assistant serve`` with an API key prints a curl line; pasted into a shell it gets a 200."""
    key = "k" * 24
    port = free_loopback_port()
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
        "ASSISTANT_API_KEY": key,
    }
    command = [sys.executable, "-m", "server", "serve", "--port", str(port), "--env", "testing"]
    command += ["--index-dir", str(index_dir), "--instance-dir", str(tmp_path / "instance")]
    command += ["--redis-url", redis_server.url, "--redis-prefix", redis_server.prefix]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        banner = server.stdout.readline()
        assert banner.startswith(f"assistant server on http://127.0.0.1:{port}")
        line = server.stdout.readline()
        assert line.startswith("try: curl ")
        pasted = subprocess.run(
            ["bash", "-c", line.strip().removeprefix("try: ") + " -o /dev/null -w '%{http_code}'"],
            env={**os.environ, "ASSISTANT_API_KEY": key},
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert pasted.stdout == "200", (line, pasted.stdout, pasted.stderr)
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_a_bad_settings_flag_gets_the_same_message_as_its_environment_variable(capsys, monkeypatch):
    assert main(["serve", "--history-max-turns", "many"]) == 2
    flag_error = capsys.readouterr().err
    assert "history_max_turns = 'many' is not an integer" in flag_error
    monkeypatch.setenv("ASSISTANT_HISTORY_MAX_TURNS", "many")
    assert main(["serve"]) == 2
    assert "ASSISTANT_HISTORY_MAX_TURNS = 'many' is not an integer" in capsys.readouterr().err
