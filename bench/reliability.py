"""Load and fault harness: gunicorn (gthread workers) + a real redis-server, on 127.0.0.1 only.

Scenarios (each bounded in time and request count, each checks every stored conversation after):

* ``soak``: ``--clients`` chat clients for ``--duration`` s: requests/s, p50/p95/p99, status counts
  (zero 5xx expected), then every conversation read back: zero lost, duplicated, out-of-order or
  partial turns.
* ``redis``: Redis SIGKILLed a third into the load and restarted ``--outage`` s later on the same
  append-only file: the statuses seen meanwhile (only 503, no 500 expected), recovery without
  restarting the server, every turn acknowledged before the outage intact.
* ``kill``: a worker SIGKILLed mid-load three times; clients retry the same ``message_id``:
  exactly one stored reply per message (``duplicated == 0``), none lost.
* ``sigterm``: the gunicorn master SIGTERMed mid-load, then started again on the same port; a request
  that got no answer and whose retry was a replay (``Idempotent-Replayed``) was cut off after being
  processed: ``cut_off == 0`` expected.
* ``slow``: ``--clients`` chat clients alone, then beside 64 clients that send their bodies one byte a
  second: requests/s and p95 of the normal clients in both phases.

``python bench/reliability.py --model-dir M --index-dir I --scenario all --duration 180 --json out.json``
prints one JSON object per scenario (and writes them all to ``--json``). The texts sent are the demo
FAQ queries (``assistant/demo_data/faq/queries-dev.jsonl``): FAQ questions and out-of-scope ones, so both the FAQ
route and the reply model run.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_parts import (
    Gunicorn,
    LoadState,
    RedisServer,
    chat_client,
    percentile,
    slow_client,
    verify,
)

from assistant import demo_data


def texts() -> list[str]:
    lines = demo_data.path(demo_data.QUERIES).read_text().splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]


def run_clients(
    base: str, run: str, clients: int, duration: float, budget: int, events: list[tuple[float, callable]] = ()
) -> tuple[LoadState, dict[str, float]]:
    """Run ``clients`` chat clients for ``duration`` s; ``events`` are ``(at_seconds, action)`` run from
    this thread meanwhile; returns the state and the times (s since start) the events ran."""
    state = LoadState(base=base, run=run, texts=texts(), budget=budget)
    state.deadline = state.started + duration
    threads = [threading.Thread(target=chat_client, args=(state, i), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    marks: dict[str, float] = {}
    for at, action in sorted(events, key=lambda e: e[0]):
        delay = state.started + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        name = action()
        marks[name] = time.monotonic() - state.started
    for t in threads:
        t.join(timeout=duration + 600)
    marks["end"] = time.monotonic() - state.started
    return state, marks


def summarize(state: LoadState, window: tuple[float, float] | None = None) -> dict:
    """Figures of the outcomes (of those sent within ``window``, when given)."""
    outcomes = [o for o in state.outcomes if window is None or window[0] <= o.sent < window[1]]
    ok = [o.latency for o in outcomes if o.status == 200]
    span = (window[1] - window[0]) if window else max((o.sent + o.latency for o in outcomes), default=1)
    return {
        "requests": len(outcomes),
        "answered_200": len(ok),
        "requests_per_s": round(len(ok) / span, 2),
        "p50_ms": round(percentile(ok, 0.50) * 1000, 1),
        "p95_ms": round(percentile(ok, 0.95) * 1000, 1),
        "p99_ms": round(percentile(ok, 0.99) * 1000, 1),
        "statuses": dict(sorted(Counter(str(o.status) for o in outcomes).items())),
        "status_5xx": sum(1 for o in outcomes if o.status >= 500),
        "status_500": sum(1 for o in outcomes if o.status == 500),
    }


class Harness:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(tempfile.mkdtemp(prefix="assistant-reliability-"))
        self.redis = RedisServer(self.root / "redis")
        self.server: Gunicorn | None = None

    def start_server(self, port: int | None = None) -> Gunicorn:
        server = Gunicorn(
            self.root / "gunicorn",
            self.redis.url,
            self.args.model_dir,
            self.args.index_dir,
            workers=self.args.workers,
            threads=self.args.threads,
            worker_class=self.args.worker_class,
        )
        if port is not None:
            server.port = port
        server.start()
        self.server = server
        return server

    def warm_up(self) -> None:
        run_clients(self.server.url, f"warm-{time.time_ns()}", self.args.clients, 15, 100_000)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.redis.stop()

    # ----------------------------------------------------------------------------- scenarios
    def soak(self) -> dict:
        d = self.args.duration
        state, _ = run_clients(
            self.server.url, f"soak-{time.time_ns()}", self.args.clients, d, self.args.max_requests
        )
        return {
            "scenario": "soak",
            "clients": self.args.clients,
            "duration_s": d,
            **summarize(state),
            "verify": vars(verify(state)),
        }

    def redis_outage(self) -> dict:
        d, outage = self.args.fault_duration, self.args.outage
        events = [(d / 3, lambda: (self.redis.kill(), "redis_killed")[1])]
        events.append((d / 3 + outage, lambda: (self.redis.start(), "redis_restarted")[1]))
        state, marks = run_clients(
            self.server.url, f"redis-{time.time_ns()}", self.args.clients, d, self.args.max_requests, events
        )
        kill, back = marks["redis_killed"], marks["redis_restarted"]
        during = summarize(state, (kill, back))
        after = [o for o in state.outcomes if o.sent >= back and o.status == 200]
        recovery = min((o.sent + o.latency for o in after), default=float("nan")) - back
        before_ids = {
            f"{o.conversation}/{o.message_id}"
            for o in state.outcomes
            if o.status == 200 and o.sent + o.latency < kill
        }
        return {
            "scenario": "redis",
            "outage_s": round(back - kill, 1),
            "during_outage": during["statuses"],
            "status_500_total": summarize(state)["status_500"],
            "first_200_after_restart_s": round(recovery, 2),
            "acknowledged_before_outage": len(before_ids),
            "overall": summarize(state),
            "verify": vars(verify(state)),
        }

    def worker_kill(self) -> dict:
        d = self.args.fault_duration
        killed: list[int] = []

        def kill():
            pid = random.choice(sorted(self.server.loaded_workers()))  # serving, not still booting
            signal_pid(pid, signal.SIGKILL)
            killed.append(pid)
            return f"kill_{len(killed)}"

        events = [(d * f, kill) for f in (0.25, 0.5, 0.75)]
        state, _ = run_clients(
            self.server.url, f"kill-{time.time_ns()}", self.args.clients, d, self.args.max_requests, events
        )
        retried = {(o.conversation, o.message_id) for o in state.outcomes if o.attempt > 0}
        replays = sum(1 for o in state.outcomes if o.attempt > 0 and o.replayed)
        return {
            "scenario": "kill",
            "workers_killed": len(killed),
            "messages_retried": len(retried),
            "retries_answered_by_replay": replays,
            "overall": summarize(state),
            "verify": vars(verify(state)),
        }

    def sigterm(self) -> dict:
        d = self.args.fault_duration
        port = self.server.port
        marks_local: dict[str, float] = {}

        def term():
            self.server.signal(signal.SIGTERM)
            t0 = time.monotonic()
            code = self.server.wait(timeout=120)
            marks_local["master_exit_s"] = round(time.monotonic() - t0, 2)
            marks_local["master_exit_code"] = code
            self.start_server(port=port)
            return "sigterm"

        state, _marks = run_clients(
            self.server.url,
            f"term-{time.time_ns()}",
            self.args.clients,
            d,
            self.args.max_requests,
            [(d / 3, term)],
        )
        failed = {(o.conversation, o.message_id) for o in state.outcomes if o.status == 0}
        final = {}
        for o in state.outcomes:
            if o.status == 200:
                final[(o.conversation, o.message_id)] = o.replayed
        cut_off = sum(1 for key in failed if final.get(key) is True)
        return {
            "scenario": "sigterm",
            **marks_local,
            "no_response_attempts": sum(1 for o in state.outcomes if o.status == 0),
            "messages_without_response_then_retried": len(failed),
            "cut_off_after_processing": cut_off,
            "overall": summarize(state),
            "verify": vars(verify(state)),
        }

    def slow_clients(self) -> dict:
        d = self.args.fault_duration / 2
        base, _ = run_clients(
            self.server.url, f"base-{time.time_ns()}", self.args.clients, d, self.args.max_requests
        )
        stop = threading.Event()
        slow = [
            threading.Thread(target=slow_client, args=(self.server.url, stop), daemon=True) for _ in range(64)
        ]
        for t in slow:
            t.start()
        time.sleep(3)
        try:
            loaded, _ = run_clients(
                self.server.url, f"slow-{time.time_ns()}", self.args.clients, d, self.args.max_requests
            )
        finally:
            stop.set()
            for t in slow:
                t.join(timeout=10)
        return {
            "scenario": "slow",
            "slow_clients": len(slow),
            "without_slow_clients": summarize(base),
            "with_slow_clients": summarize(loaded),
            "verify": vars(verify(loaded)),
        }


def signal_pid(pid: int, signum: int) -> None:
    import os

    os.kill(pid, signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--index-dir", required=True)
    parser.add_argument(
        "--scenario", choices=["soak", "redis", "kill", "sigterm", "slow", "all"], default="all"
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4, help="request threads per worker")
    parser.add_argument(
        "--worker-class",
        default="",
        help="plain gunicorn with this worker class (e.g. gthread) instead of server/serving/gunicorn_conf.py",
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=600, help="soak seconds")
    parser.add_argument("--fault-duration", type=float, default=90, help="seconds of each fault scenario")
    parser.add_argument("--outage", type=float, default=8, help="seconds Redis stays down")
    parser.add_argument("--max-requests", type=int, default=500_000, help="request budget per phase")
    parser.add_argument("--json", default="", help="write all results to this file")
    args = parser.parse_args(argv)

    harness = Harness(args)
    results = []
    try:
        harness.redis.start()
        t0 = time.monotonic()
        harness.start_server()
        print(
            json.dumps({"server_start_s": round(time.monotonic() - t0, 1), "workers": args.workers}),
            flush=True,
        )
        harness.warm_up()
        chosen = ["soak", "redis", "kill", "sigterm", "slow"] if args.scenario == "all" else [args.scenario]
        runners = {
            "soak": harness.soak,
            "redis": harness.redis_outage,
            "kill": harness.worker_kill,
            "sigterm": harness.sigterm,
            "slow": harness.slow_clients,
        }
        for name in chosen:
            result = runners[name]()
            results.append(result)
            print(json.dumps(result), flush=True)
    finally:
        harness.close()
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["verify"]["lost"] == 0 and r["verify"]["duplicated"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
