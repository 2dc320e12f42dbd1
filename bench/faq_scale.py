"""FAQ scale: build time, memory and lookup latency of a hybrid FAQ index with 1k, 10k and 100k entries,
exact dense search beside the HNSW graph (faiss) where exact stops meeting the p95 goal.

The FAQ: every entry of clinc150, banking77, stackfaq and the three hint3 sets
(``../shared/data/faq``), cut into entries of at most 3 texts (a question and two examples; 26,578
texts, 9,073 entries), then repeated with new ids (``<id>#r<n>``) up to the size. **Embeddings are
computed once per unique text** (the default ONNX int8 encoder, cached in ``--embedding-cache``) and
repeated for the copies, so the build times exclude encoding; the encoder's rate (texts/s, batch 64)
is measured and printed, to add ``n_unique_texts / rate`` for a real build.

Per size: the exact index (``ann="exact"``): build time (BM25 + embedding matrix), memory (the bytes of
the index's arrays and the process RSS growth), p50/p95 of one ``FaqIndex.search`` (k 10, one thread)
over ``--queries`` queries (clinc150 and stackfaq dev questions), and of the same search given the
query's embedding (the encoding does not grow with the FAQ); with ``--hnsw-from`` entries or more, or
when exact misses the p95 goal without the encoding, the same index with the HNSW graph (``ann="hnsw"``): graph build
time, memory, p50/p95, the dense retriever's **recall@10 against exact** (ties counted: an HNSW top-10
entry is right when its exact score is at least the exact 10th best, since the copies of an entry
score alike) and how often the hybrid's top entry has the exact hybrid's best score. Goal: p95 ≤ 15 ms.

    python bench/faq_scale.py --threads 1 \\
        --data ../shared/data/faq --embedding-cache runs/i16/faq-scale-embeddings.npz --json runs/i16/faq-scale.json

Run it once with ``--prepare`` first (outside the lock): it only fills the embedding cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from assistant.data import FaqEntry, read_faq, read_queries
from assistant.retrieval.embeddings import EmbeddingCache
from assistant.retrieval.index import FaqIndex, RetrieverConfig
from assistant.retrieval.onnx_encoder import OnnxEncoder, encoder_for, exported_encoder, register_encoder
from finetune.cli import apply_threads

ROOT = Path(__file__).resolve().parent.parent
SETS = ("clinc150", "banking77", "stackfaq", "hint3-curekart", "hint3-powerplay11", "hint3-sofmattress")
P95_GOAL_MS = 15.0


def pool(data: Path, per_entry: int = 3) -> list[FaqEntry]:
    """The real entries cut into entries of at most ``per_entry`` texts, with unique ids."""
    out = []
    for name in SETS:
        for e in read_faq(data / name / "faq.jsonl"):
            texts = [e.question, *e.examples]
            for j in range(0, len(texts), per_entry):
                chunk = texts[j : j + per_entry]
                out.append(FaqEntry(f"{name}/{e.id}/{j // per_entry}", chunk[0], e.answer, tuple(chunk[1:])))
    return out


def repeated(entries: Sequence[FaqEntry], n: int) -> list[FaqEntry]:
    """``n`` entries: ``entries`` in order, again and again, each copy with a new id."""
    p = len(entries)
    return [dataclasses.replace(entries[i % p], id=f"{entries[i % p].id}#r{i // p}") for i in range(n)]


def rss_bytes() -> int:
    """This process's resident set size."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def lookups(index: FaqIndex, texts: Sequence[str], vectors: np.ndarray) -> dict[str, float]:
    """p50/p95 ms of one ``search`` (k 10) per query, and of the same search given the query's embedding
    (``vectors``, ``(n, dim)``: all but the encoding, which does not depend on the FAQ's size)."""
    for t in texts[:3]:
        index.search(t, k=10)
    full, given = [], []
    for i, t in enumerate(texts):
        t0 = time.perf_counter()
        index.search(t, k=10)
        t1 = time.perf_counter()
        index.rank(index.component_scores([t], vectors[i : i + 1]), k=10)
        given.append(time.perf_counter() - t1)
        full.append(t1 - t0)
    return {
        "p50_ms": 1000 * float(np.percentile(full, 50)),
        "p95_ms": 1000 * float(np.percentile(full, 95)),
        "p50_ms_without_encoding": 1000 * float(np.percentile(given, 50)),
        "p95_ms_without_encoding": 1000 * float(np.percentile(given, 95)),
    }


def index_bytes(index: FaqIndex) -> int:
    """Bytes of the index's arrays: BM25 matrix, embeddings and the HNSW graph with its vectors."""
    total = sum(v.nbytes for v in index._bm25.scores.values() if hasattr(v, "nbytes"))
    total += index._embeddings.nbytes
    if index._ann is not None:
        import faiss

        total += faiss.serialize_index(index._ann.index).nbytes
    return total


def measured_build(make: Any) -> tuple[FaqIndex, dict[str, float]]:
    """Run ``make()``; its wall time, the RSS growth it leaves, and the index arrays' bytes."""
    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    index = make()
    seconds = time.perf_counter() - t0
    gc.collect()
    grown = rss_bytes() - before
    return index, {"build_s": seconds, "rss_growth_mb": grown / 2**20, "index_mb": index_bytes(index) / 2**20}


def recall_vs_exact(exact: FaqIndex, approx: FaqIndex, queries: np.ndarray) -> dict[str, float]:
    """Dense recall@10 of ``approx`` against ``exact`` (ties counted) and the hybrids' top-1 agreement."""
    texts = [f"q{i}" for i in range(len(queries))]
    ex_comp = exact.component_scores(texts, queries)
    ap_comp = approx.component_scores(texts, queries)
    dense_exact = ex_comp["dense"]  # (Q, F)
    ap_dense = approx.derive(method="dense")
    ids = {e.id: i for i, e in enumerate(exact.entries)}
    hits = ap_dense.rank({"dense": ap_comp["dense"]}, k=10)
    tenth = -np.sort(-dense_exact, axis=1)[:, 9]  # (Q,) the exact 10th best entry score
    recall = np.mean(
        [
            np.mean([dense_exact[q, ids[h.faq_id]] >= tenth[q] - 1e-5 for h in row])
            for q, row in enumerate(hits)
        ]
    )
    fused_exact = exact.fuse(ex_comp)
    ap_top1 = [row[0].faq_id for row in approx.rank(ap_comp, k=1)]
    same = np.mean([fused_exact[q, ids[f]] >= fused_exact[q].max() - 1e-5 for q, f in enumerate(ap_top1)])
    return {"dense_recall_at_10": float(recall), "hybrid_top1_same": float(same)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "faq")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument(
        "--hnsw-from", type=int, default=100_000, help="entries from which HNSW is measured too"
    )
    parser.add_argument(
        "--embedding-cache", type=Path, required=True, help=".npz of the unique texts' embeddings"
    )
    parser.add_argument("--prepare", action="store_true", help="only fill the embedding cache")
    parser.add_argument(
        "--encoder",
        type=Path,
        default=None,
        help="a saved ONNX encoder directory to use instead of exporting",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    config = RetrieverConfig(method="hybrid", ann="exact")
    if args.encoder is not None:
        register_encoder(config.dense_model, OnnxEncoder.load(args.encoder))
    base = pool(args.data)
    cache = EmbeddingCache(
        config.dense_model,
        config.batch_size,
        args.embedding_cache,
        onnx=encoder_for(config.dense_model, config.dense_backend),
    )
    texts = sorted({t for e in base for t in (e.question, *e.examples)})
    t0 = time.perf_counter()
    cache.encode(texts, progress=True)
    cache.save()
    print(f"embedded {len(texts)} unique texts ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    if args.prepare:
        return 0
    sample = texts[:128]
    encoder = exported_encoder(config.dense_model, config.dense_backend)
    encoder.encode(sample[:64])
    t0 = time.perf_counter()
    encoder.encode(sample, batch_size=64)
    rate = len(sample) / (time.perf_counter() - t0)
    pool_index = FaqIndex.build(base, config, encoder=cache)
    qs = [q.text for q in read_queries(args.data / "clinc150" / "queries-dev.jsonl") if q.faq_id][::20]
    qs += [q.text for q in read_queries(args.data / "stackfaq" / "queries-dev.jsonl")][::5]
    qs = qs[: args.queries]
    qv = pool_index.encode_queries(qs)  # (n, dim)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "threads": args.threads,
        "load_average_start": os.getloadavg(),
        "pool_entries": len(base),
        "unique_texts": len(texts),
        "encoder": config.dense_backend,
        "encode_texts_per_s": rate,
        "n_queries": len(qs),
        "config": {
            k: getattr(RetrieverConfig(), k)
            for k in ("ann_min_texts", "ann_candidates", "hnsw_m", "hnsw_ef_construction", "hnsw_ef_search")
        },
        "sizes": [],
    }
    print(f"encoder {rate:.0f} texts/s; pool {len(base)} entries, {len(texts)} texts", file=sys.stderr)
    for n in args.sizes:
        entries = repeated(base, n)
        exact, mem = measured_build(lambda e=entries: FaqIndex.build(e, config, reuse=pool_index))
        row: dict[str, Any] = {
            "entries": n,
            "texts": len(exact.texts),
            "exact": {**mem, **lookups(exact, qs, qv)},
        }
        print(f"{n}: exact {row['exact']}", file=sys.stderr, flush=True)
        if n >= args.hnsw_from or row["exact"]["p95_ms_without_encoding"] > P95_GOAL_MS:
            hnsw_config = dataclasses.replace(config, ann="hnsw")
            approx, mem = measured_build(
                lambda e=entries, x=exact, c=hnsw_config: FaqIndex(
                    e, c, bm25=x._bm25, embeddings=x._embeddings, onnx=x._onnx
                )
            )
            mem["build_s_graph_only"] = mem.pop("build_s")
            mem["build_s"] = row["exact"]["build_s"] + mem["build_s_graph_only"]
            row["hnsw"] = {
                **mem,
                **lookups(approx, qs, qv),
                **recall_vs_exact(exact, approx, qv),
            }
            print(f"{n}: hnsw {row['hnsw']}", file=sys.stderr, flush=True)
            del approx
        report["sizes"].append(row)
        if args.json is not None:  # after every size, so that a run cut short keeps what it measured
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        del exact, entries
        gc.collect()
    report["load_average_end"] = os.getloadavg()
    lines = [
        (
            "| entries | texts | search | build s | index MB | RSS growth MB | p50 ms | p95 ms "
            "| p50 / p95 ms without encoding | dense recall@10 vs exact | hybrid top-1 = exact |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["sizes"]:
        for kind in ("exact", "hnsw"):
            if kind in row:
                r = row[kind]
                lines.append(
                    f"| {row['entries']:,} | {row['texts']:,} | {kind} | {r['build_s']:.1f} | "
                    f"{r['index_mb']:.0f} | {r['rss_growth_mb']:.0f} | "
                    f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p50_ms_without_encoding']:.1f} / {r['p95_ms_without_encoding']:.1f} | "
                    + (
                        f"{r['dense_recall_at_10']:.3f} | {r['hybrid_top1_same']:.3f} |"
                        if kind == "hnsw"
                        else "(exact) | (exact) |"
                    )
                )
    print("\n".join(lines))
    print(
        f"encoder {rate:.0f} texts/s (int8 ONNX, batch 64, one thread); load average start "
        f"{report['load_average_start']}, end {report['load_average_end']}"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
