"""FAQ retrieval speed side by side: our BM25 path vs ``bm25s`` alone, and the hybrid lookup per query on
each dense backend (ONNX Runtime int8 / float32 vs the PyTorch sentence-transformers encoder).

1. **BM25** (clinc150, stackfaq, banking77 from ``../shared/data/faq``): one ``bm25s.BM25`` index of
   each FAQ's texts, searched by ``FaqIndex.search_batch`` (ours: tokenize, score every text, best text
   per entry, top 10 entries with their ``Hit`` objects) and by ``bm25s`` alone on the *same* index
   object (``bm25s.tokenize`` + ``BM25.retrieve``, top 10 texts). Throughput (queries/s) over all
   queries of the set in one call, best of ``--repeats`` runs, taken in turns; and the median of single
   queries. The check that both compute the same: the best entry's BM25 score (ours) equals the best
   text's score (bm25s) for every query. Goal: ours ≥ 0.8 × bm25s' queries/s.
2. **Hybrid lookup** (``--latency-set``, default clinc150: 150 entries, 14,850 texts): ``FaqIndex.search``
   of one query (k 5) per call, the same ``--latency-queries`` queries on each backend in turns; p50 and
   p95 of the call, and of the query encoding alone. Goal: p95 ≤ 15 ms with the default backend.

Run with ``--threads 1`` (torch and ONNX Runtime intra-op threads) under the measurement lock::

    python bench/retrieval_speed.py --threads 1 \\
        --data ../shared/data/faq --embedding-cache runs/i16 --json runs/i16/retrieval-speed.json

``--embedding-cache DIR`` reuses ``DIR/cache-<set>-<backend>`` (index directories written by
``finetune.eval_retrieval --embedding-cache``, or by this script on its first run; encoding clinc150's
texts with PyTorch takes minutes), so that the run measures searching, not building. hit@1 per backend
is ``finetune/eval_retrieval.py``'s (``docs/results/retrieval-speed.md``), not this script's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import Stemmer

from assistant.data import FaqEntry, read_faq, read_queries
from assistant.retrieval.index import FaqIndex, RetrieverConfig
from finetune.cli import apply_threads
from finetune.eval_retrieval import holdout_examples

ROOT = Path(__file__).resolve().parent.parent
SETS = ("clinc150", "stackfaq", "banking77")
BACKENDS = ("onnx-int8", "onnx", "torch")
BM25_GOAL, P95_GOAL_MS = 0.8, 15.0


def load_set(data: Path, name: str) -> tuple[list[FaqEntry], list[str]]:
    """``(entries, query texts)`` as ``finetune/eval_retrieval.py`` evaluates the set (banking77: 20 % of
    each entry's examples held out as queries; the others: ``queries-dev.jsonl``, out of scope included)."""
    entries = read_faq(data / name / "faq.jsonl")
    if name == "banking77":
        entries, queries = holdout_examples(entries, 0.2)
        return entries, [q.text for q in queries]
    return entries, [q.text for q in read_queries(data / name / "queries-dev.jsonl", [e.id for e in entries])]


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    """Shortest wall time of ``repeats`` calls, seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bm25_side_by_side(entries: Sequence[FaqEntry], texts: Sequence[str], repeats: int) -> dict[str, Any]:
    """Ours vs bm25s alone on one index object and the same queries (see the module docstring)."""
    index = FaqIndex.build(entries, RetrieverConfig(method="bm25"))
    retriever = index._bm25  # the same bm25s.BM25 object our search uses

    def peer(batch: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        tokens = bm25s.tokenize(
            list(batch), stopwords="english", stemmer=Stemmer.Stemmer("english"), show_progress=False
        )
        return retriever.retrieve(tokens, k=10, show_progress=False)

    ours_hits = index.search_batch(texts, k=10)
    _, peer_scores = peer(texts)
    same = sum(
        abs(h[0].score - float(s[0])) <= 1e-4 * max(1.0, abs(float(s[0])))
        for h, s in zip(ours_hits, peer_scores, strict=True)
    )
    ours_s = peer_s = float("inf")
    for _ in range(repeats):  # in turns, so that a load change hits both
        ours_s = min(ours_s, best_of(lambda: index.search_batch(texts, k=10), 1))
        peer_s = min(peer_s, best_of(lambda: peer(texts), 1))
    single = texts[:200]
    ours_1 = [best_of(lambda t=t: index.search(t, k=10), 1) for t in single]
    peer_1 = [best_of(lambda t=t: peer([t]), 1) for t in single]
    return {
        "n_entries": len(entries),
        "n_texts": len(index.texts),
        "n_queries": len(texts),
        "same_top_score": same,
        "ours_queries_per_s": len(texts) / ours_s,
        "peer_queries_per_s": len(texts) / peer_s,
        "ratio": peer_s / ours_s,
        "ours_single_ms_p50": 1000 * statistics.median(ours_1),
        "peer_single_ms_p50": 1000 * statistics.median(peer_1),
    }


def hybrid_index(
    entries: Sequence[FaqEntry], backend: str, cache: Path | None, borrow: FaqIndex | None
) -> tuple[FaqIndex, str]:
    """A hybrid index of ``entries`` on ``backend`` and where its embeddings come from.

    They are reused from ``cache`` when it is there; else, with ``borrow`` (an index of the same texts
    on another backend), borrowed from it: search time does not depend on the vectors' values, only
    the query encoding does, and that runs on ``backend``; else encoded now (and saved to ``cache``).
    """
    config = RetrieverConfig(method="hybrid", dense_backend=backend)
    if cache is not None and cache.is_dir():
        return FaqIndex.build(entries, config, reuse=FaqIndex.load(cache)), f"{cache}"
    if borrow is not None:
        from assistant.retrieval.onnx_encoder import exported_encoder

        onnx = None if backend == "torch" else exported_encoder(config.dense_model, backend)
        index = FaqIndex(entries, config, bm25=borrow._bm25, embeddings=borrow._embeddings, onnx=onnx)
        return index, f"borrowed from the {borrow.config.dense_backend} index (same texts)"
    index = FaqIndex.build(entries, config, progress=True)
    if cache is not None:
        index.save(cache)
    return index, "encoded in this run"


def latency(
    entries: Sequence[FaqEntry],
    texts: Sequence[str],
    backends: Sequence[str],
    cache_dir: Path | None,
    name: str,
) -> dict[str, dict[str, Any]]:
    """p50/p95 of one ``search`` call and of the query encoding alone, per backend, in turns."""
    indexes: dict[str, FaqIndex] = {}
    sources: dict[str, str] = {}
    for b in backends:
        cache = None if cache_dir is None else cache_dir / f"cache-{name}-{b}"
        borrow = next(iter(indexes.values()), None)
        indexes[b], sources[b] = hybrid_index(entries, b, cache, borrow)
        print(f"{b}: embeddings {sources[b]}", file=sys.stderr, flush=True)
    for index in indexes.values():  # warm-up: first calls allocate
        for t in texts[:5]:
            index.search(t, k=5)
    calls: dict[str, list[float]] = {b: [] for b in backends}
    encodes: dict[str, list[float]] = {b: [] for b in backends}
    for t in texts:
        for b, index in indexes.items():
            calls[b].append(best_of(lambda i=index, t=t: i.search(t, k=5), 1))
            encodes[b].append(best_of(lambda i=index, t=t: i.encode_queries([t]), 1))
    return {
        b: {
            "n_texts": len(indexes[b].texts),
            "n_queries": len(texts),
            "embeddings": sources[b],
            "search_ms_p50": 1000 * float(np.percentile(calls[b], 50)),
            "search_ms_p95": 1000 * float(np.percentile(calls[b], 95)),
            "encode_ms_p50": 1000 * float(np.percentile(encodes[b], 50)),
            "encode_ms_p95": 1000 * float(np.percentile(encodes[b], 95)),
        }
        for b in backends
    }


def table(report: dict[str, Any]) -> str:
    """The Markdown table: measure, ours, peer, ratio, goal, met."""
    lines = ["| measure | ours | peer | ratio | goal | met |", "|---|---|---|---|---|---|"]
    for name, r in report["bm25"].items():
        lines.append(
            f"| BM25 queries/s, {name} ({r['n_texts']} texts, {r['n_queries']} queries) | "
            f"{r['ours_queries_per_s']:.0f} | bm25s {r['peer_queries_per_s']:.0f} | {r['ratio']:.2f}× | "
            f"≥ {BM25_GOAL}× | {'yes' if r['ratio'] >= BM25_GOAL else 'NO'} |"
        )
        lines.append(
            f"| BM25 single query p50 ms, {name} | {r['ours_single_ms_p50']:.2f} | "
            f"bm25s {r['peer_single_ms_p50']:.2f} | {r['peer_single_ms_p50'] / r['ours_single_ms_p50']:.2f}× | – | – |"
        )
    lat, ours = report["latency"], report["default_backend"]
    peer = "torch" if "torch" in lat else None
    for b, r in lat.items():
        for q in ("p50", "p95"):
            key = f"search_ms_{q}"
            ratio = f"{lat[peer][key] / r[key]:.2f}×" if peer and b != peer else "–"
            goal = f"≤ {P95_GOAL_MS:.0f} ms" if q == "p95" and b == ours else "–"
            met = ("yes" if r[key] <= P95_GOAL_MS else "NO") if goal != "–" else "–"
            lines.append(
                f"| hybrid search {q} ms, {report['latency_set']} ({r['n_texts']} texts), {b}"
                f"{' (default)' if b == ours else ''} | {r[key]:.1f} | "
                f"{'torch ' + format(lat[peer][key], '.1f') if peer and b != peer else '–'} | {ratio} | {goal} | {met} |"
            )
        lines.append(
            f"| query encoding p50 / p95 ms, {b} | {r['encode_ms_p50']:.1f} / {r['encode_ms_p95']:.1f} | – | – | – | – |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "faq")
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--latency-set", choices=SETS, default="clinc150")
    parser.add_argument("--latency-queries", type=int, default=300)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--repeats", type=int, default=5, help="BM25 batch runs per side (best counts)")
    parser.add_argument("--embedding-cache", type=Path, default=None, help="folder of cache-<set>-<backend>/")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    started = time.time()
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "threads": args.threads,
        "load_average_start": os.getloadavg(),
        "default_backend": RetrieverConfig().dense_backend,
        "bm25": {},
        "latency_set": args.latency_set,
    }
    for name in args.sets:
        entries, texts = load_set(args.data, name)
        report["bm25"][name] = bm25_side_by_side(entries, texts, args.repeats)
        print(f"bm25 {name}: {report['bm25'][name]}", file=sys.stderr, flush=True)
    entries, texts = load_set(args.data, args.latency_set)
    report["latency"] = latency(
        entries, texts[: args.latency_queries], args.backends, args.embedding_cache, args.latency_set
    )
    report["load_average_end"] = os.getloadavg()
    report["seconds"] = time.time() - started
    print(table(report))
    print(f"load average start {report['load_average_start']}, end {report['load_average_end']}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
