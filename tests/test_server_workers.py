"""``assistant serve --workers 2``: real gunicorn worker processes on one (embedded) Redis. Key revocation
and rate limits hold across the processes, SIGHUP replaces the workers without a failed request, and
SIGTERM lets the requests in flight finish: no message is stored without its answer reaching the client."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from server.store.embedded import EmbeddedRedis
from server.store.history import DialogStore, connect
from server.store.keys import KeyStore

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "shared-admin-key-0123456789"
TEXT = "tell me a joke about penguins"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, body, key=ADMIN, timeout=30):
    """``(status, headers)`` of one POST /v1/chat on a new connection; status 0 = no answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST",
            "/v1/chat",
            json.dumps(body),
            {"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        response = conn.getresponse()
        response.read()
        return response.status, dict(response.getheaders())
    except OSError:
        return 0, {}
    finally:
        conn.close()


class Server:
    """``python -m server serve --workers 2`` as a child process, its JSON log in a file."""

    def __init__(self, tmp_path: Path, index_dir: Path, **settings: str) -> None:
        self.instance = tmp_path / "instance"
        self.port = free_port()
        self.log = tmp_path / "server.log"
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
        command = [sys.executable, "-m", "server", "serve", "--workers", "2", "--threads", "4"]
        command += ["--port", str(self.port), "--env", "testing", "--api-key", ADMIN, "--log-format", "json"]
        command += [
            "--index-dir",
            str(index_dir),
            "--instance-dir",
            str(self.instance),
            "--graceful-timeout",
            "20",
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("REDIS_URL", None)  # the embedded Redis, started once by the master
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command + flags, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def loaded_workers(self) -> set[int]:
        """Worker pids that have built the app (server.metrics writes counter_<pid>.db on import)."""
        files = (self.instance / "prometheus").glob("counter_*.db")
        return {int(p.stem.rsplit("_", 1)[1]) for p in files} & set(self.worker_pids())

    def worker_pids(self) -> list[int]:
        """The master's gunicorn workers (not the embedded redis-server it also started)."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                if (
                    parent == self.process.pid
                    and b"redis-server" not in (stat.parent / "cmdline").read_bytes()
                ):
                    pids.append(int(stat.parent.name))
            except (OSError, ValueError, IndexError):
                continue
        return pids

    def wait_ready(self, old: set[int] = frozenset(), timeout: float = 180) -> set[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            ready = self.loaded_workers() - old
            if len(ready) >= 2 and not (set(self.worker_pids()) & old):
                return ready
            time.sleep(0.2)
        raise TimeoutError(self.log.read_text()[-3000:])

    def served(self, key_id: str) -> dict[str, set[int]]:
        """status → pids of the workers that answered requests of ``key_id`` (from the access log)."""
        out: dict[str, set[int]] = {}
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"server.access"' in line:
                record = json.loads(line)
                if record.get("key_id") == key_id:
                    out.setdefault(str(record["status"]), set()).add(record["pid"])
        return out

    def redis_url(self) -> str:
        return "unix://" + json.loads((self.instance / "redis" / "server.json").read_text())["socket"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, demo_faq_index):
    directory = tmp_path_factory.mktemp("index") / "demo-index"
    demo_faq_index.save(directory)
    return directory


@pytest.fixture
def server(tmp_path, index_dir):
    s = Server(tmp_path, index_dir, rate_limit_per_conversation="5/minute", rate_limit_per_key="")
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


@pytest.mark.slow
def test_revocation_and_rate_limits_hold_across_worker_processes(server):
    client = connect(
        server.redis_url(),
        socket_timeout=2,
        connect_timeout=2,
        retries=1,
        backoff_base=0.01,
        backoff_cap=0.1,
        max_connections=2,
    )
    keys = KeyStore(client, "assistant")
    key, record = keys.create("acme", ["chat"])
    for i in range(30):  # new connections: both workers answer some
        assert post(server.port, {"conversation_id": f"k{i}", "text": TEXT}, key)[0] == 200
    assert len(server.served(record.key_id)["200"]) == 2
    keys.revoke(record.key_id)
    assert {post(server.port, {"conversation_id": f"k{i}", "text": TEXT}, key)[0] for i in range(30)} == {401}
    assert len(server.served(record.key_id)["401"]) == 2  # refused by both processes

    statuses = [post(server.port, {"conversation_id": "busy", "text": TEXT})[0] for _ in range(8)]
    assert statuses == [200] * 5 + [429] * 3
    client.close()


@pytest.mark.slow
def test_sighup_reloads_and_sigterm_lets_requests_in_flight_finish(server):
    # clients send continuously through a reload: every request is answered 200
    stop = threading.Event()
    results: list[tuple[float, str, int, dict]] = []

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            body = {"conversation_id": f"h{n}-{i // 4}", "message_id": f"m{i}", "text": f"{TEXT} {i}"}
            status, _headers = post(server.port, body, timeout=60)
            results.append((time.monotonic(), body["conversation_id"], body["message_id"], status))
            i += 1
            time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    time.sleep(2)
    old = set(server.worker_pids())
    server.process.send_signal(signal.SIGHUP)
    server.wait_ready(old=old)
    time.sleep(2)
    reload_statuses = {r[3] for r in results}
    assert reload_statuses == {200}, reload_statuses
    assert not set(server.worker_pids()) & old  # every worker replaced

    # SIGTERM mid-load with one turn certainly in flight: it waits for its conversation's lock, held
    # here, which is released only after the SIGTERM; it must still be answered
    store = DialogStore(
        connect(server.redis_url(), socket_timeout=2, connect_timeout=2, retries=1, backoff_base=0.01, backoff_cap=0.1, max_connections=2),
        prefix="assistant", max_turns=20, ttl_seconds=86400, dedupe_ttl_seconds=86400, lock_timeout=30, lock_wait=5,
    )  # fmt: skip
    holder = store.attempt("slow", "holder", client_id=True)  # a turn of our own holds the lock
    assert store.claim(holder) is None and store.acquire(holder)
    in_flight: list[tuple[int, dict]] = []
    slow = threading.Thread(
        target=lambda: in_flight.append(
            post(server.port, {"conversation_id": "slow", "text": TEXT}, timeout=60)
        )
    )
    slow.start()
    time.sleep(1.0)  # the request is inside a worker, waiting for the lock (lock_wait_seconds 5)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    store.abandon(holder)  # the lock passes to the waiting request
    slow.join(timeout=60)
    store.client.close()
    assert server.process.wait(timeout=60) == 0
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert in_flight and in_flight[0][0] == 200, in_flight  # finished during the graceful stop
    unanswered = [r for r in results if r[3] != 200]
    assert all(r[3] == 0 for r in unanswered)  # refused connections, never an error status

    # nothing was cut off: no message without an answer is in the store
    with EmbeddedRedis(server.instance / "redis") as redis_server:
        store = DialogStore(
            connect(redis_server.url, socket_timeout=2, connect_timeout=2, retries=1, backoff_base=0.01, backoff_cap=0.1, max_connections=2),
            prefix="assistant", max_turns=20, ttl_seconds=86400, dedupe_ttl_seconds=86400, lock_timeout=30, lock_wait=5,
        )  # fmt: skip
        for _, conversation, message_id, _ in unanswered:
            stored = {t.message_id for t in store.history(conversation)}
            assert message_id not in stored, f"{conversation}/{message_id} was stored but its answer cut off"
        for _, conversation, message_id, status in results:
            if status == 200:
                assert message_id in {t.message_id for t in store.history(conversation)}
        store.client.close()
