"""Streamed vs JSON replies on a live server: time to the first chunk and to the full reply, per route.

Replays conversations against a running server, one request at a time: the customer turns of each demo
test dialog in order, then every demo dev query (in-scope and out-of-scope) as a conversation of its
own. Each conversation is sent twice, in two fresh conversation ids: once to ``POST /v1/chat`` as JSON,
once with ``Accept: text/event-stream`` (greedy decoding is deterministic, so both see the same history
and take the same route; a turn where they differ is reported and skipped). For the stream it records
when the first ``chunk`` event and the ``final`` event arrived; for JSON, when the whole body arrived.
Turns are grouped by the route the answer took (``faq``, ``model``, or ``handoff`` for any answer with
``handoff: true``: the model's handover macro or the fallback). Prints a Markdown table of p50/p95 in ms.

    assistant serve --port 8765 &            # the demo model (built into instance/ on first run)
    python bench/stream_latency.py --url http://127.0.0.1:8765 --per-route 40

It measures; it asserts nothing, and touches nothing but the server it is pointed at.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid

import requests
from sseclient import SSEClient

from assistant import demo_data


def conversations() -> list[list[str]]:
    """The customer turns of each demo test dialog, then each demo dev query alone."""
    convs = []
    for line in demo_data.path(demo_data.DIALOGS["test"]).read_text(encoding="utf-8").splitlines():
        convs.append([t["text"] for t in json.loads(line)["turns"] if t["role"] == "customer"])
    for line in demo_data.path(demo_data.QUERIES).read_text(encoding="utf-8").splitlines():
        convs.append([json.loads(line)["text"]])
    return convs


def route(answer: dict) -> str:
    return "handoff" if answer["handoff"] else answer["replies"][0]["source"]


def ask_json(session: requests.Session, url: str, conv: str, text: str, headers: dict) -> tuple[str, float]:
    body = {"conversation_id": conv, "text": text}
    start = time.perf_counter()
    response = session.post(f"{url}/v1/chat", json=body, headers=headers, timeout=60)
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return route(response.json()), elapsed


def ask_stream(
    session: requests.Session, url: str, conv: str, text: str, headers: dict
) -> tuple[str, float, float, int]:
    """``(route, first chunk s, final s, chunks)``."""
    body = {"conversation_id": conv, "text": text}
    start = time.perf_counter()
    response = session.post(
        f"{url}/v1/chat",
        json=body,
        headers={**headers, "Accept": "text/event-stream"},
        stream=True,
        timeout=60,
    )
    response.raise_for_status()
    first, chunks = None, 0
    for event in SSEClient(response.iter_content(chunk_size=None)).events():
        if event.event == "chunk":
            chunks += 1
            first = first if first is not None else time.perf_counter() - start
        elif event.event == "final":
            return route(json.loads(event.data)), first or 0.0, time.perf_counter() - start, chunks
        elif event.event == "error":
            raise RuntimeError(f"error event for {text!r}: {event.data}")
    raise RuntimeError(f"the stream for {text!r} ended without a final event")


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0-1) in milliseconds, inclusive method."""
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1] * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the running server, e.g. http://127.0.0.1:8765")
    parser.add_argument("--per-route", type=int, default=40, help="messages measured per route (default 40)")
    parser.add_argument("--api-key", default="", help="the server's API key, if it requires one")
    parser.add_argument("--label", default="", help="a name for this run in the table")
    args = parser.parse_args(argv)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    session = requests.Session()
    for text in conversations()[0][:2]:  # warm up (model weights, caches); not measured
        ask_json(session, args.url, f"bench-{uuid.uuid4().hex}", text, headers)
        ask_stream(session, args.url, f"bench-{uuid.uuid4().hex}", text, headers)
    rows: dict[str, dict[str, list[float]]] = {
        kind: {"json": [], "first": [], "final": [], "chunks": []} for kind in ("faq", "model", "handoff")
    }
    for turns in conversations():
        if all(len(r["json"]) >= args.per_route for r in rows.values()):
            break
        json_conv, stream_conv = f"bench-{uuid.uuid4().hex}", f"bench-{uuid.uuid4().hex}"
        for text in turns:
            kind, json_s = ask_json(session, args.url, json_conv, text, headers)
            stream_kind, first_s, final_s, chunks = ask_stream(session, args.url, stream_conv, text, headers)
            if stream_kind != kind:
                print(
                    f"note: {text!r} routed {kind} as JSON, {stream_kind} streamed; skipped", file=sys.stderr
                )
                continue
            row = rows[kind]
            if len(row["json"]) >= args.per_route:
                continue
            row["json"].append(json_s)
            row["first"].append(first_s)
            row["final"].append(final_s)
            row["chunks"].append(chunks)
    label = f"{args.label} " if args.label else ""
    print(
        f"| {label}route | n | chunks/reply | stream: first chunk p50 / p95 ms | stream: full reply p50 / p95 ms "
        "| JSON: full reply p50 / p95 ms |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for kind in ("faq", "model", "handoff"):
        if not rows[kind]["json"]:
            continue
        r = rows[kind]
        print(
            f"| {kind} | {len(r['json'])} | {statistics.mean(r['chunks']):.1f} "
            f"| {pct(r['first'], 0.5):.0f} / {pct(r['first'], 0.95):.0f} "
            f"| {pct(r['final'], 0.5):.0f} / {pct(r['final'], 0.95):.0f} "
            f"| {pct(r['json'], 0.5):.0f} / {pct(r['json'], 0.95):.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
