"""``assistant replay``: send real customer messages to a running server and measure its answers.

It posts each message to ``POST /v1/chat`` of a server over HTTP, one conversation per message (or
per dialog, for several turns of a dialog), and reports

* the transcript: each distinct exchange once (message, reply, source: faq / model / smalltalk /
  fallback, FAQ id, confidence, handoff), with how often it occurred;
* wall-clock latency of each request as the client sees it (milliseconds; median, 95th percentile,
  mean, max);
* how replies were routed, and for query files with gold ``faq_id`` how often a confident FAQ
  answer named the right entry and how often out-of-scope queries were handed off.

Messages come from a dialogs file (the first ``turns_per_dialog`` customer turns of each dialog; the
server's own replies stand in for the agent's) and/or a query file. Use it to check a deployment, or
to measure a model + index pair on real traffic shapes. It does not start a server.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from assistant.data import read_dialogs, read_queries
from assistant.errors import DataError
from server.cli.client import HttpClient


@dataclass(frozen=True)
class Message:
    """One message to send: its conversation, text, and (for query files) the gold FAQ id."""

    conversation_id: str
    text: str
    source_file: str
    gold_faq_id: str | None = None
    has_gold: bool = False


@dataclass(frozen=True)
class Exchange:
    """One request and what came back (``status`` is the HTTP status; ``latency_ms`` client-side)."""

    message: Message
    status: int
    latency_ms: float
    reply: str | None
    source: str | None
    faq_id: str | None
    confidence: float | None
    handoff: bool | None


def messages_from_dialogs(path: str | Path, turns_per_dialog: int, limit: int | None) -> list[Message]:
    """The first ``turns_per_dialog`` customer turns of each dialog (at most ``limit`` dialogs).

    Raises:
        DataError: malformed file, or ``turns_per_dialog`` below 1.
    """
    if turns_per_dialog < 1:
        raise DataError(f"turns_per_dialog must be >= 1, got {turns_per_dialog}")
    run = uuid.uuid4().hex[:8]
    messages = []
    for dialog in read_dialogs(path)[:limit]:
        customer = [t.text for t in dialog.turns if t.role == "customer"][:turns_per_dialog]
        messages += [Message(f"replay-{run}-{dialog.id}", text, str(path)) for text in customer]
    return messages


def messages_from_queries(path: str | Path, limit: int | None) -> list[Message]:
    """One new conversation per query (at most ``limit``), keeping the gold ``faq_id``.

    Raises:
        DataError: malformed file.
    """
    run = uuid.uuid4().hex[:8]
    return [
        Message(f"replay-{run}-q{i}", q.text, str(path), q.faq_id, True)
        for i, q in enumerate(read_queries(path)[:limit])
    ]


def send_all(client: HttpClient, messages: list[Message]) -> list[Exchange]:
    """Post every message to ``/v1/chat`` in order, timing each request.

    Raises:
        AssistantError: the server cannot be reached.
    """
    exchanges = []
    for m in messages:
        start = time.perf_counter()
        status, body = client.send("POST", "/v1/chat", {"conversation_id": m.conversation_id, "text": m.text})
        latency = (time.perf_counter() - start) * 1000
        if status == 200:
            first = body["replies"][0]
            exchanges.append(
                Exchange(
                    m,
                    status,
                    latency,
                    first["text"],
                    first["source"],
                    first.get("faq_id"),
                    body["confidence"],
                    body["handoff"],
                )
            )
        else:
            exchanges.append(Exchange(m, status, latency, json.dumps(body), None, None, None, None))
    return exchanges


def summarize(exchanges: list[Exchange]) -> dict[str, Any]:
    """Latency percentiles (ms), routing counts, errors, and gold-label figures where known."""
    if not exchanges:
        raise DataError("no messages were sent (empty input after --limit?)")
    latencies = sorted(e.latency_ms for e in exchanges)
    ok = [e for e in exchanges if e.status == 200]
    summary: dict[str, Any] = {
        "messages": len(exchanges),
        "errors": len(exchanges) - len(ok),
        "latency_ms": {
            "p50": round(statistics.median(latencies), 2),
            "p95": round(statistics.quantiles(latencies, n=20, method="inclusive")[-1], 2)
            if len(latencies) > 1
            else round(latencies[0], 2),
            "mean": round(statistics.fmean(latencies), 2),
            "max": round(latencies[-1], 2),
        },
        "sources": {s: sum(e.source == s for e in ok) for s in ("faq", "model", "smalltalk", "fallback")},
        "handoff_rate": round(sum(bool(e.handoff) for e in ok) / len(ok), 4) if ok else None,
    }
    gold = [e for e in ok if e.message.has_gold]
    in_scope = [e for e in gold if e.message.gold_faq_id is not None]
    out_scope = [e for e in gold if e.message.gold_faq_id is None]
    if in_scope:
        answered = [e for e in in_scope if e.source == "faq"]
        summary["in_scope"] = {
            "queries": len(in_scope),
            "answered_from_faq": len(answered),
            "answered_correctly": sum(e.faq_id == e.message.gold_faq_id for e in answered),
        }
    if out_scope:
        summary["out_of_scope"] = {
            "queries": len(out_scope),
            "handed_off": sum(bool(e.handoff) for e in out_scope),
        }
    return summary


def transcript_markdown(exchanges: list[Exchange], rows: int) -> str:
    """A Markdown table of the first ``rows`` *distinct* exchanges, each once.

    Replayed traffic repeats itself (many dialogs open with "hi" and close with "thanks, bye"), and
    one row per request showed the same exchange again and again. Exchanges with the same message,
    reply, route, FAQ id, handoff and status form one row, in order of first appearance, with how
    many times it occurred and its median latency; confidence is the first occurrence's.
    """

    def cell(text: Any) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")[:160]

    groups: dict[tuple[Any, ...], list[Exchange]] = {}
    for e in exchanges:
        key = (e.message.text, e.reply, e.source, e.faq_id, e.handoff, e.status)
        groups.setdefault(key, []).append(e)
    lines = [
        "| message | reply | source | faq_id | confidence | handoff | times | ms (median) |",
        "|---|---|---|---|---:|---|---:|---:|",
    ]
    for same in list(groups.values())[:rows]:
        e = same[0]
        conf = "" if e.confidence is None else f"{e.confidence:.2f}"
        ms = statistics.median(x.latency_ms for x in same)
        lines.append(
            f"| {cell(e.message.text)} | {cell(e.reply)} | {e.source or e.status} | {e.faq_id or ''} "
            f"| {conf} | {e.handoff} | {len(same)} | {ms:.1f} |"
        )
    if len(groups) > rows:
        lines.append(f"\n({len(groups) - rows} more distinct exchanges in replay.json)")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``assistant replay``."""
    parser.add_argument(
        "--url", required=True, help="base URL of a running server, e.g. http://127.0.0.1:8000"
    )
    parser.add_argument("--api-key", default="", help="the server's API key, if it requires one")
    parser.add_argument(
        "--dialogs", action="append", default=[], help="dialogs JSONL: its customer turns are sent"
    )
    parser.add_argument(
        "--turns-per-dialog",
        type=int,
        default=1,
        help="customer turns of each dialog sent in one conversation (default: 1)",
    )
    parser.add_argument(
        "--queries", action="append", default=[], help="query JSONL: each query in a new conversation"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="at most this many dialogs / queries per file"
    )
    parser.add_argument(
        "--transcript-rows",
        type=int,
        default=10,
        help="distinct exchanges of each file shown in the transcript",
    )
    parser.add_argument("--out-dir", help="write replay.json (every exchange + summary) and replay.md here")


def run(args: argparse.Namespace) -> int:
    """Run ``assistant replay`` with parsed flags; prints the summary and transcript."""
    if not args.dialogs and not args.queries:
        raise DataError("nothing to send: give --dialogs FILE and/or --queries FILE")
    client = HttpClient(args.url, args.api_key)
    groups = [messages_from_dialogs(p, args.turns_per_dialog, args.limit) for p in args.dialogs]
    groups += [messages_from_queries(p, args.limit) for p in args.queries]
    exchanges, sections = [], []
    for messages in groups:
        sent = send_all(client, messages)
        exchanges += sent
        summary = summarize(sent)
        sections.append((messages[0].source_file, summary, transcript_markdown(sent, args.transcript_rows)))
    report = "\n\n".join(
        f"### {name}\n\n```json\n{json.dumps(s, indent=2)}\n```\n\n{table}" for name, s, table in sections
    )
    print(report)
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "replay.md").write_text(report + "\n", encoding="utf-8")
        (out / "replay.json").write_text(
            json.dumps(
                {
                    "url": args.url,
                    "sections": [{"file": n, "summary": s} for n, s, _ in sections],
                    "exchanges": [asdict(e) for e in exchanges],
                },
                indent=2,
            ),
            encoding="utf-8",
        )
    failed = sum(s["errors"] for _, s, _ in sections)
    if failed:
        print(f"error: {failed} request(s) did not answer 200 (see the transcript)", file=sys.stderr)
        return 1
    return 0
