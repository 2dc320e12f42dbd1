"""Evaluate FAQ retrievers side by side (``assistant-eval-retrieval``): hit@k, MRR, out-of-scope, speed.

From an FAQ file (several methods, one encoding of the FAQ)::

    python -m finetune.eval_retrieval --faq F.jsonl --queries Q.jsonl --methods bm25 dense hybrid \\
        --json report.json --markdown report.md [--holdout-examples 0.2] [--tune-fusion]

The queries are split, stratified by ``faq_id`` (out of scope is one group), into a *calibration*
part (``--calibration-fraction``, default 0.5) and an *evaluation* part: inside each group queries
are ordered by ``sha256(text)`` and the first ``round(n × fraction)`` go to calibration. The split
depends only on the texts, not on file order or a random seed. Each method's confidence model and
threshold (and with ``--tune-fusion`` the hybrid's fusion) are fitted on the calibration part; every
reported figure is on the evaluation part. ``--holdout-examples P`` makes queries out of the FAQ's
own examples (for sets such as banking77 that ship none): the first ``round(n × P)`` examples of
each entry by ``sha256(text)`` become queries and leave the index.

On knowledge-labelled dialogs (``assistant/retrieval/labels.py``; an entity-scoped FAQ such as
``../shared/data/grounded/dstc11-val``): detection P/R/F1 and selection hit@1/hit@5/MRR@5 of the
last-message retrievers beside the conversation-aware one, cross-fitted over ``--folds`` parts
(``finetune/eval_conversation.py``)::

    python -m finetune.eval_retrieval --faq faq.jsonl --dialogs dialogs.jsonl --query-cache runs/q.npz \
        --json report.json --markdown report.md

From saved indexes (each at its stored threshold, on all the queries)::

    python -m finetune.eval_retrieval --index DIR [DIR ...] --queries Q.jsonl --json report.json

Figures: hit@1, hit@5, MRR@10 (in-scope queries); at the threshold: in-scope accuracy (right entry
and answered), out-of-scope recall and precision, AUROC of the confidence separating in-scope from
out-of-scope; queries/s of ``search_batch`` over all evaluation queries, and the median latency of a
single ``search`` call (first 100 queries). This module does not build saved indexes
(``finetune/build_index.py`` does).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import platform
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from assistant.artifacts import file_sha256
from assistant.config import add_dataclass_arguments, dataclass_from_args
from assistant.data import (
    FaqEntry,
    Query,
    faq_entry_to_json,
    query_to_json,
    read_faq,
    read_queries,
    write_jsonl,
)
from assistant.errors import ConfigError, report_errors
from assistant.retrieval.calibration import decision_metrics
from assistant.retrieval.embeddings import EmbeddingCache
from assistant.retrieval.index import FaqIndex, RetrieverConfig
from assistant.retrieval.labels import read_knowledge_turns
from assistant.retrieval.onnx_encoder import encoder_for
from finetune import eval_conversation
from finetune.build_index import ranking_metrics, tune_fusion
from finetune.cli import add_threads_argument, apply_threads

METHODS = ("bm25", "dense", "hybrid")


def _order_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _take(n: int, fraction: float) -> int:
    return int(np.floor(n * fraction + 0.5))  # round half up, not Python's round-half-even


def split_queries(queries: Sequence[Query], fraction: float) -> tuple[list[Query], list[Query]]:
    """Split into ``(calibration, evaluation)``, stratified by ``faq_id``, ordered by ``sha256(text)``.

    Raises:
        ConfigError: ``fraction`` not in (0, 1).
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"--calibration-fraction must be in (0, 1), got {fraction}")
    groups: dict[str | None, list[Query]] = {}
    for q in queries:
        groups.setdefault(q.faq_id, []).append(q)
    calibration, evaluation = [], []
    for group in groups.values():
        ordered = sorted(group, key=lambda q: _order_key(q.text))
        n = _take(len(ordered), fraction)
        calibration += ordered[:n]
        evaluation += ordered[n:]
    return calibration, evaluation


def holdout_examples(entries: Sequence[FaqEntry], fraction: float) -> tuple[list[FaqEntry], list[Query]]:
    """Move ``round(n × fraction)`` examples of each entry (first by ``sha256(text)``) out into queries.

    Returns:
        ``(entries without the held-out examples, held-out queries labelled with their entry's id)``.

    Raises:
        ConfigError: ``fraction`` not in (0, 1).
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"--holdout-examples must be in (0, 1), got {fraction}")
    kept, queries = [], []
    for e in entries:
        ordered = sorted(e.examples, key=_order_key)
        n = _take(len(ordered), fraction)
        held = set(ordered[:n])
        queries += [Query(text, e.id) for text in ordered[:n]]
        kept.append(dataclasses.replace(e, examples=tuple(x for x in e.examples if x not in held)))
    return kept, queries


def evaluate_index(index: FaqIndex, queries: Sequence[Query]) -> dict[str, Any]:
    """All figures of one calibrated (or uncalibrated) index on evaluation queries."""
    texts = [q.text for q in queries]
    k = min(10, len(index.entries))
    start = time.perf_counter()
    hits = index.search_batch(texts, k=k)
    elapsed = time.perf_counter() - start
    latencies = []
    for text in texts[:100]:
        t0 = time.perf_counter()
        index.search(text, k=k)
        latencies.append(time.perf_counter() - t0)
    result: dict[str, Any] = {
        "method": index.config.method,
        "n_queries": len(queries),
        "n_out_of_scope": sum(q.faq_id is None for q in queries),
        **ranking_metrics(hits, queries),
        "queries_per_s": len(texts) / elapsed,
        "latency_ms_p50": 1000 * float(np.median(latencies)),
        "threshold": index.threshold,
    }
    if index.threshold is not None:
        in_scope = np.array([q.faq_id is not None for q in queries])
        correct = np.array([h[0].faq_id == q.faq_id for h, q in zip(hits, queries, strict=True)])
        result.update(decision_metrics(index.confidences(hits), index.threshold, in_scope, correct))
    if index.config.method == "hybrid":
        result["fusion"] = {"fusion": index.config.fusion, "dense_weight": index.config.dense_weight}
    return result


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown_table(title: str, results: Sequence[dict[str, Any]]) -> str:
    """One Markdown table, one row per retriever."""
    cols = [
        ("retriever", "name"),
        ("hit@1", "hit@1"),
        ("hit@5", "hit@5"),
        ("MRR@10", "mrr@10"),
        ("threshold", "threshold"),
        ("in-scope acc.", "in_scope_accuracy"),
        ("answered prec.", "answered_precision"),
        ("OOS recall", "oos_recall"),
        ("OOS prec.", "oos_precision"),
        ("OOS AUROC", "oos_auroc"),
        ("queries/s", "queries_per_s"),
        ("p50 ms", "latency_ms_p50"),
    ]
    has_oos = any(r.get("n_out_of_scope") for r in results)
    cols = [c for c in cols if has_oos or not c[1].startswith("oos")]
    lines = [f"### {title}", "", "| " + " | ".join(c[0] for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in results:
        cells = [_fmt(r.get(key)) for _, key in cols]
        cells[-2] = f"{r['queries_per_s']:.0f}"
        cells[-1] = f"{r['latency_ms_p50']:.1f}"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assistant-eval-retrieval",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--faq", type=Path, help="FAQ JSONL file: build and compare --methods")
    source.add_argument(
        "--index", type=Path, nargs="+", help="saved index directories, each at its stored threshold"
    )
    parser.add_argument("--queries", type=Path, default=None, help="query JSONL (faq_id null = out of scope)")
    parser.add_argument(
        "--dialogs",
        type=Path,
        default=None,
        help="with --faq: knowledge-labelled dialogs JSONL (meta.target, knowledge ids): detection and "
        "selection of last-message vs conversation-aware retrieval",
    )
    parser.add_argument(
        "--folds", type=int, default=2, help="with --dialogs: cross-fitting parts, split by conversation"
    )
    parser.add_argument(
        "--query-cache",
        type=Path,
        default=None,
        help="with --dialogs: .npz file of the embeddings of FAQ and query texts, reused across runs "
        "(written at the end)",
    )
    parser.add_argument(
        "--holdout-examples",
        type=float,
        default=None,
        help="with --faq: hold out this fraction of each entry's examples as queries",
    )
    parser.add_argument(
        "--calibration-fraction",
        type=float,
        default=0.5,
        help="with --faq: share of the queries used for calibration (the rest is evaluated)",
    )
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(METHODS), help="with --faq: retrievers"
    )
    parser.add_argument(
        "--tune-fusion",
        action="store_true",
        help="with --faq: choose the hybrid's fusion and dense weight on the calibration part",
    )
    parser.add_argument(
        "--embedding-cache",
        type=Path,
        default=None,
        help="with --faq: an index directory whose embeddings of identical texts are reused "
        "(written there on the first run); build time then excludes encoding",
    )
    parser.add_argument(
        "--write-splits",
        type=Path,
        default=None,
        help="with --faq: write calibration.jsonl and evaluation.jsonl (and, with --holdout-examples, "
        "faq-kept.jsonl) to this directory, to build and evaluate a saved index on the same split",
    )
    parser.add_argument(
        "--name", default=None, help="data set name in the report (default: the FAQ folder name)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the Markdown table here")
    add_threads_argument(parser, "the dense encoder")
    add_dataclass_arguments(parser, RetrieverConfig)
    return parser


def _run_from_faq(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    config = dataclass_from_args(RetrieverConfig, args)
    entries = read_faq(args.faq)
    queries: list[Query] = []
    if args.holdout_examples is not None:
        entries, queries = holdout_examples(entries, args.holdout_examples)
    if args.queries is not None:
        queries += read_queries(args.queries, faq_ids=[e.id for e in entries])
    if not queries:
        raise ConfigError("no queries: give --queries and/or --holdout-examples")
    calibration, evaluation = split_queries(queries, args.calibration_fraction)
    if args.write_splits is not None:
        write_jsonl(args.write_splits / "calibration.jsonl", [query_to_json(q) for q in calibration])
        write_jsonl(args.write_splits / "evaluation.jsonl", [query_to_json(q) for q in evaluation])
        if args.holdout_examples is not None:
            write_jsonl(args.write_splits / "faq-kept.jsonl", [faq_entry_to_json(e) for e in entries])
    needs = {c for m in args.methods for c in RetrieverConfig(method=m).components}
    base_method = "hybrid" if needs == {"bm25", "dense"} else next(iter(needs))
    start = time.perf_counter()
    reuse = None
    if args.embedding_cache is not None and args.embedding_cache.is_dir():
        reuse = FaqIndex.load(args.embedding_cache)
    base = FaqIndex.build(
        entries, dataclasses.replace(config, method=base_method), reuse=reuse, progress=True
    )
    build_s = time.perf_counter() - start
    if args.embedding_cache is not None and reuse is None:
        base.save(args.embedding_cache)
    components = base.component_scores([q.text for q in calibration])
    results, tuning = [], None
    for method in args.methods:
        index = base.derive(method=method)
        if method == "hybrid" and args.tune_fusion:
            index, tuning = tune_fusion(index, calibration, components)
        index.calibrate(calibration, hits=index.rank(components, k=min(10, len(entries))))
        results.append(
            {"name": method, **evaluate_index(index, evaluation), "calibration": index.calibration["report"]}
        )
    info = {
        "faq": str(args.faq),
        "faq_sha256": file_sha256(args.faq),
        "queries": None if args.queries is None else str(args.queries),
        "holdout_examples": args.holdout_examples,
        "calibration_fraction": args.calibration_fraction,
        "n_entries": len(entries),
        "n_indexed_texts": len(base.texts),
        "n_calibration_queries": len(calibration),
        "n_evaluation_queries": len(evaluation),
        "build_seconds_all_retrievers": build_s,
        "embeddings_reused": reuse is not None,
        "config": dataclasses.asdict(config),
        "fusion_tuning": tuning,
    }
    return info, results


def _run_dialogs(args: argparse.Namespace) -> int:
    """``--dialogs``: the dialog evaluation (``finetune/eval_conversation.py``), written and printed."""
    if args.faq is None:
        raise ConfigError("--dialogs needs --faq (the evaluation builds its own indexes)")
    if args.queries is not None or args.holdout_examples is not None:
        raise ConfigError("--dialogs runs alone; evaluate --queries / --holdout-examples in another run")
    config = dataclass_from_args(RetrieverConfig, args)
    entries = read_faq(args.faq)
    turns = read_knowledge_turns(args.dialogs, faq_ids=[e.id for e in entries])
    encoder = EmbeddingCache(
        config.dense_model,
        config.batch_size,
        args.query_cache,
        onnx=encoder_for(config.dense_model, config.dense_backend),
    )
    reuse = None
    if args.embedding_cache is not None and args.embedding_cache.is_dir():
        reuse = FaqIndex.load(args.embedding_cache)
    report = eval_conversation.evaluate_dialogs(
        entries,
        turns,
        config,
        methods=args.methods,
        folds=args.folds,
        encoder=encoder,
        reuse=reuse,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    encoder.save()
    name = args.name or args.dialogs.parent.name
    full = {
        "name": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "faq": str(args.faq),
        "faq_sha256": file_sha256(args.faq),
        "dialogs": str(args.dialogs),
        "dialogs_sha256": file_sha256(args.dialogs),
        **report,
    }
    table = eval_conversation.markdown_tables(name, report)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table, encoding="utf-8")
    print(table)
    return 0


@report_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    apply_threads(args.threads)
    if args.dialogs is not None:
        return _run_dialogs(args)
    if args.faq is not None:
        info, results = _run_from_faq(args)
        name = args.name or args.faq.parent.name
    else:
        if args.queries is None:
            raise ConfigError("--index needs --queries")
        results = []
        for directory in args.index:
            index = FaqIndex.load(directory)
            queries = read_queries(args.queries, faq_ids=[e.id for e in index.entries])
            results.append(
                {"name": f"{directory.name} ({index.config.method})", **evaluate_index(index, queries)}
            )
        info = {"indexes": [str(d) for d in args.index], "queries": str(args.queries)}
        name = args.name or args.queries.parent.name
    report = {
        "name": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        **info,
        "results": results,
    }
    table = markdown_table(name, results)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
