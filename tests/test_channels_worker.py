"""Separate ``assistant worker`` processes against a real redis-server: a worker SIGKILLed mid-job has its
job run again by another worker, and the customer still gets exactly one reply."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from server.store.embedded import EmbeddedRedis
from tests.channel_helpers import CW_TOKEN, channels_setting, cw_message, post_chatwoot
from tests.conftest import DEMO_DATA, ROOT
from tests.helpdesk_fakes import FakeChatwoot
from tests.polling import wait_until

pytestmark = pytest.mark.slow
FAQ_QUESTION = "How do I cancel my order?"


@pytest.fixture(scope="module")
def faq_index(tmp_path_factory) -> Path:
    """A BM25 index of the demo FAQ: the workers' pipeline (FAQ answers, fallback otherwise)."""
    from finetune import build_index

    out = tmp_path_factory.mktemp("index") / "demo-index"
    code = build_index.main(
        [
            "--faq",
            str(DEMO_DATA / "faq" / "faq.jsonl"),
            "--queries",
            str(DEMO_DATA / "faq" / "queries-dev.jsonl"),
            "--out",
            str(out),
            "--method",
            "bm25",
        ]
    )
    assert code == 0
    return out


@pytest.fixture
def setup(tmp_path, faq_index):
    with EmbeddedRedis(tmp_path / "redis") as redis_server, FakeChatwoot(CW_TOKEN) as chatwoot:
        channels = channels_setting(
            chatwoot_url=chatwoot.url,
            worker="external",
            api_timeout_seconds=60,
            turn_lock_seconds=4,
            queue_heartbeat_seconds=2,
        )
        settings = {
            "env": "testing",
            "redis_url": redis_server.url,
            "redis_prefix": "kill",
            "index_dir": str(faq_index),
            "channels": channels,
            "lock_timeout_seconds": 3,
            "lock_wait_seconds": 0.2,
            "instance_dir": str(tmp_path / "instance"),
        }
        workers: list[subprocess.Popen] = []

        def start_worker(name: str) -> subprocess.Popen:
            args = [sys.executable, "-m", "server", "worker", "--threads", "1"]
            for key, value in settings.items():
                args += ["--" + key.replace("_", "-"), str(value)]
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            env.pop("REDIS_URL", None)
            with open(tmp_path / f"{name}.log", "w") as log:  # the child keeps its own descriptor
                proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
            workers.append(proc)
            return proc

        from server import create_app

        app = create_app(settings)  # the web side: accepts deliveries, runs no jobs
        yield app, chatwoot, start_worker, tmp_path
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
        app.extensions["assistant"].close()


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_worker_killed_before_the_reply_runs_again_and_replies_once(setup):
    app, chatwoot, start_worker, tmp_path = setup
    # the job blocks in its first call to Chatwoot (typing on), after its turn record is written
    hold = chatwoot.fault("/toggle_typing_status", times=1, hold=threading.Event(), hold_max=120)
    first = start_worker("w1")
    answer = post_chatwoot(app.test_client(), cw_message(chatwoot.next_id(), FAQ_QUESTION))
    assert answer.json["status"] == "queued"
    assert hold.arrived.wait(120), (tmp_path / "w1.log").read_text()
    _kill(first)  # mid-job: the turn is started, nothing posted
    hold.hold.set()
    assert chatwoot.posted(42) == []
    second = start_worker("w2")
    wait_until(lambda: chatwoot.posted(42), timeout=120, interval=0.2)
    time.sleep(3)  # nothing else arrives
    posts = chatwoot.posted(42)
    assert len(posts) == 1 and "cancel" in posts[0].body["content"].lower(), (tmp_path / "w2.log").read_text()
    turns = app.test_client().get("/v1/conversations/cw-1-42").json["turns"]
    assert [t["role"] for t in turns] == ["customer", "agent"]  # the turn stored once
    state = app.extensions["channels"].state
    assert state.failures() == [] and state.pending("cw-1-42") == []
    second.send_signal(signal.SIGTERM)  # a graceful stop
    assert second.wait(timeout=60) == 0


def test_worker_killed_while_posting_never_posts_twice(setup):
    app, chatwoot, start_worker, tmp_path = setup
    hold = chatwoot.fault("/messages", times=1, hold=threading.Event(), hold_max=120)
    first = start_worker("w1")
    post_chatwoot(app.test_client(), cw_message(chatwoot.next_id(), FAQ_QUESTION))
    assert hold.arrived.wait(120), (tmp_path / "w1.log").read_text()
    _kill(first)  # Chatwoot has the reply; the worker died before it learnt so
    hold.hold.set()
    start_worker("w2")
    state = app.extensions["channels"].state
    wait_until(state.failures, timeout=120, interval=0.2)
    assert len(chatwoot.posted(42)) == 1  # the one that reached Chatwoot; never repeated
    assert [t.body for t in chatwoot.calls("/toggle_status")] == [{"status": "open"}]
    failure = state.failures()[0]
    assert failure["stage"] == "Uncertain" and failure["handed_over"] is True, json.dumps(failure)
