"""Build, calibrate and save an FAQ index (``assistant-build-index``), or rebuild one from a changed FAQ file.

Build::

    python -m finetune.build_index --faq my/faq.jsonl --queries my/queries-dev.jsonl \\
        --out models/faq-index [--method hybrid] [--tune-fusion] [other RetrieverConfig flags]

From Python, :func:`build_index` does the same with a typed :class:`RetrieverConfig` (the server's
first-run demo calls it).

Rebuild (keeps the saved index's config and calibration queries, takes the changed FAQ file; only
new texts are encoded, no model is trained)::

    python -m finetune.build_index --rebuild --faq my/faq.jsonl --out models/faq-index

Conversation-aware (an entity-scoped FAQ and knowledge-labelled dialogs, ``assistant/retrieval/labels.py``)::

    python -m finetune.build_index --faq faq.jsonl --dialogs dialogs-dev.jsonl --mask-entity-names \
        --out models/faq-index

``--dialogs`` chooses the conversational ranking's history weight (and a hybrid's dense weight) on
them, and calibrates its confidence and the knowledge-seeking turn detector
(``assistant/retrieval/conversational.py``); the reply pipeline then uses them.
``--out`` may also be a model directory: the index then lives in ``<model dir>/faq-index``. Without
``--queries`` the index is saved uncalibrated and the reply pipeline refuses it (it has no
threshold). ``--oos-queries FILE`` adds out-of-scope calibration messages (every line, whatever its
``faq_id``); when the calibration queries hold no out-of-scope one at all, the project's generic
out-of-scope messages (``assistant/routing/generic_oos.jsonl``) are added and a warning says so. With ``--queries`` and ``--method hybrid``, the hybrid's fusion and dense weight are chosen
on the calibration queries (:func:`tune_fusion`; ``--no-tune-fusion`` keeps the flags' values). This module does not evaluate; ``finetune/eval_retrieval.py`` does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assistant.config import add_dataclass_arguments, dataclass_from_args
from assistant.data import Query, read_faq, read_queries
from assistant.errors import ConfigError, report_errors
from assistant.generators.base import MANIFEST
from assistant.retrieval.conversational import ConversationalRetriever, ConversationConfig
from assistant.retrieval.embeddings import EmbeddingCache
from assistant.retrieval.index import FaqIndex, Hit, RetrieverConfig
from assistant.retrieval.labels import read_knowledge_turns
from assistant.retrieval.rebuild import rebuild_index
from assistant.retrieval.store import INDEX_SUBDIR
from assistant.routing.generic import GENERIC_OOS_PATH, with_generic_out_of_scope
from finetune.cli import add_threads_argument, apply_threads

#: the fusion settings :func:`tune_fusion` tries.
FUSION_GRID: tuple[tuple[str, float], ...] = tuple(
    [("convex", round(w, 1)) for w in np.arange(0.0, 1.01, 0.1)]
    + [("rrf", round(w, 1)) for w in (0.3, 0.5, 0.7)]
)


def ranking_metrics(hit_lists: Sequence[Sequence[Hit]], queries: Sequence[Query]) -> dict[str, float | None]:
    """hit@1, hit@5 and MRR@10 over the in-scope queries (``None`` when there are none)."""
    ranks = []
    for hits, q in zip(hit_lists, queries, strict=True):
        if q.faq_id is None:
            continue
        ids = [h.faq_id for h in hits[:10]]
        ranks.append(ids.index(q.faq_id) + 1 if q.faq_id in ids else None)
    if not ranks:
        return {"hit@1": None, "hit@5": None, "mrr@10": None}
    return {
        "hit@1": float(np.mean([r == 1 for r in ranks])),
        "hit@5": float(np.mean([r is not None and r <= 5 for r in ranks])),
        "mrr@10": float(np.mean([1.0 / r if r else 0.0 for r in ranks])),
    }


def tune_fusion(
    index: FaqIndex, queries: Sequence[Query], components: dict[str, np.ndarray] | None = None
) -> tuple[FaqIndex, list[dict[str, Any]]]:
    """Choose the hybrid's ``(fusion, dense_weight)`` from :data:`FUSION_GRID` by hit@1 (then MRR@10).

    Args:
        index: a hybrid index (both retrievers).
        queries: tuning queries (the calibration queries, never the evaluation ones).
        components: ``index.component_scores`` of the query texts, if already computed.

    Returns:
        ``(derived index with the best setting, one row per setting tried)``; ties go to the
        earlier setting in the grid.

    Raises:
        ConfigError: the index is not hybrid.
    """
    if index.config.method != "hybrid":
        raise ConfigError(f"--tune-fusion needs --method hybrid, got {index.config.method!r}")
    if components is None:
        components = index.component_scores([q.text for q in queries])
    rows = []
    for fusion, weight in FUSION_GRID:
        candidate = index.derive(fusion=fusion, dense_weight=weight)
        metrics = ranking_metrics(candidate.rank(components, k=10), queries)
        rows.append({"fusion": fusion, "dense_weight": weight, **metrics})
    best = max(rows, key=lambda r: (r["hit@1"] or 0.0, r["mrr@10"] or 0.0))  # max keeps the first of ties
    return index.derive(fusion=best["fusion"], dense_weight=best["dense_weight"]), rows


def build_index(
    faq: Path,
    out: Path,
    config: RetrieverConfig,
    *,
    queries: Path | None = None,
    oos_queries: Sequence[Path] = (),
    tune: bool | None = None,
    reuse_embeddings: Path | None = None,
    dialogs: Path | None = None,
    conversation: ConversationConfig | None = None,
    tune_conversation: bool = True,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> FaqIndex:
    """Build an FAQ index, tune its fusion and calibrate it on ``queries`` (and its conversational
    retrieval on ``dialogs``), and save it to ``out``.

    Args:
        faq: the FAQ JSONL file.
        out: the index directory (replaced as a whole), or a model directory (saved in its
            ``faq-index/``).
        config: the retriever configuration.
        queries: labelled calibration queries (``faq_id`` null = out of scope); ``None`` saves the
            index uncalibrated (the reply pipeline refuses it).
        oos_queries: files whose every line is an out-of-scope calibration message, added to
            ``queries``. When the calibration then holds no out-of-scope message, the project's
            generic ones (``assistant/routing/generic_oos.jsonl``) are added, and the calibration
            report says so (``generic_out_of_scope_added``; the CLI warns).
        tune: choose the hybrid's fusion and dense weight on ``queries`` (:func:`tune_fusion`);
            ``None`` = when ``config.method`` is hybrid and ``queries`` are given.
        reuse_embeddings: an existing index whose embeddings of identical texts are reused.
        dialogs: knowledge-labelled dialogs (``assistant/retrieval/labels.py``) on which the
            conversational ranking and the knowledge-seeking detector are calibrated; ``None``: none.
        conversation: the conversational retrieval settings (default ``ConversationConfig()``).
        tune_conversation: with ``dialogs``, choose the history weight (and a hybrid's dense weight)
            on them by hit@1 first.
        progress: show the encoder's progress bar.
        log: where the chosen fusion (and conversation) settings are reported.

    Returns:
        the saved index.

    Raises:
        ConfigError: ``tune`` without queries, or with a method other than hybrid.
        DataError: a malformed FAQ, query or dialog file, or a query or turn naming an unknown FAQ id.
        RetrievalError: the index cannot be built or saved (e.g. ``out`` holds something else).
    """
    turns = None
    if dialogs is not None:  # checked before the (slow) encoding of the FAQ
        turns = read_knowledge_turns(dialogs, faq_ids=[e.id for e in read_faq(faq)])
    if oos_queries and queries is None:
        raise ConfigError("--oos-queries needs --queries (the in-scope calibration queries)")
    reuse = FaqIndex.load(reuse_embeddings) if reuse_embeddings is not None else None
    index = FaqIndex.from_faq_file(faq, config, reuse=reuse, progress=progress)
    added_generic = False
    if queries is not None:
        labelled = read_queries(queries, faq_ids=[e.id for e in index.entries])
        labelled += [Query(q.text, None) for path in oos_queries for q in read_queries(path)]
        labelled, added_generic = with_generic_out_of_scope(labelled)
        if tune or (tune is None and config.method == "hybrid"):
            index, rows = tune_fusion(index, labelled)
            log(
                f"fusion: {index.config.fusion}, dense_weight {index.config.dense_weight} "
                f"(best hit@1 of {len(rows)} settings on the calibration queries)"
            )
        index.calibrate(labelled)
        index.calibration["report"]["generic_out_of_scope_added"] = added_generic
    elif tune:
        raise ConfigError("--tune-fusion needs --queries")
    if turns is not None:
        retriever = ConversationalRetriever(
            index,
            conversation or ConversationConfig(),
            # tuning and calibration search the same turns: encode each text once
            encoder=EmbeddingCache(config.dense_model, config.batch_size, onnx=index.onnx_encoder),
        )
        if tune_conversation:
            retriever, rows = retriever.tune(turns)
            log(
                f"conversation: history_weight {retriever.config.history_weight}, dense_weight "
                f"{retriever.config.dense_weight} (best hit@1 of {len(rows)} settings on the dialogs)"
            )
        retriever.calibrate(turns)
    index.save(_out_dir(out))
    return index


def _out_dir(out: Path) -> Path:
    """``out``, or ``out/faq-index`` when ``out`` is a model directory."""
    return out / INDEX_SUBDIR if (out / MANIFEST).is_file() else out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assistant-build-index",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--faq", type=Path, required=True, help="FAQ JSONL file")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="index directory, or a model directory (index saved in its faq-index/)",
    )
    parser.add_argument(
        "--queries",
        type=Path,
        default=None,
        help="calibration queries JSONL (faq_id null = out of scope); without it the index is uncalibrated",
    )
    parser.add_argument(
        "--oos-queries",
        type=Path,
        action="append",
        default=[],
        help="messages the FAQ must not answer, added to --queries as out of scope (repeatable)",
    )
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="rebuild the index in --out from a changed --faq, keeping its config and calibration queries",
    )
    parser.add_argument(
        "--reuse-embeddings",
        type=Path,
        default=None,
        help="an existing index whose embeddings of identical texts are reused instead of re-encoded",
    )
    parser.add_argument(
        "--tune-fusion",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="hybrid: choose fusion and dense weight on the --queries by hit@1 "
        "(default: on when --method hybrid and --queries are given)",
    )
    parser.add_argument(
        "--dialogs",
        type=Path,
        default=None,
        help="knowledge-labelled dialogs JSONL (meta.target, knowledge ids): calibrate conversational "
        "retrieval and knowledge-seeking detection on them",
    )
    parser.add_argument(
        "--tune-conversation",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --dialogs: choose the history weight (and hybrid dense weight) on them by hit@1",
    )
    add_threads_argument(parser, "the dense encoder")
    add_dataclass_arguments(parser, RetrieverConfig)
    add_dataclass_arguments(parser, ConversationConfig, prefix="conversation-")
    return parser


@report_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    apply_threads(args.threads)
    out = _out_dir(args.out)
    if args.rebuild:
        if (
            args.queries is not None
            or args.tune_fusion is not None
            or args.dialogs is not None
            or args.oos_queries
        ):
            raise ConfigError(
                "--rebuild keeps the saved calibration queries, dialogs and fusion; "
                "drop --queries/--oos-queries/--dialogs/--tune-fusion, or build afresh without --rebuild"
            )
        changed = [
            f"--{f.name.replace('_', '-')}"
            for f in dataclasses.fields(RetrieverConfig)
            if getattr(args, f.name) != f.default
        ] + [
            f"--conversation-{f.name.replace('_', '-')}"
            for f in dataclasses.fields(ConversationConfig)
            if getattr(args, f"conversation_{f.name}") != f.default
        ]
        if changed or args.reuse_embeddings is not None:
            raise ConfigError(
                f"--rebuild keeps the index's own retriever config; drop "
                f"{changed + (['--reuse-embeddings'] if args.reuse_embeddings else [])}, "
                "or build afresh without --rebuild"
            )
        index = rebuild_index(out, args.faq, progress=True)
    else:
        index = build_index(
            args.faq,
            args.out,
            dataclass_from_args(RetrieverConfig, args),
            queries=args.queries,
            oos_queries=args.oos_queries,
            tune=args.tune_fusion,
            reuse_embeddings=args.reuse_embeddings,
            dialogs=args.dialogs,
            conversation=dataclass_from_args(ConversationConfig, args, prefix="conversation-"),
            tune_conversation=args.tune_conversation,
            progress=True,
        )
    summary = {
        "index": str(out),
        "entries": len(index.entries),
        "texts": len(index.texts),
        "config": dataclasses.asdict(index.config),
        "calibration": None if index.calibration is None else index.calibration["report"],
        "conversation": None
        if index.conversation is None
        else {
            "config": index.conversation["config"],
            "confidence": index.conversation["confidence"]["report"],
        },
    }
    print(json.dumps(summary, indent=2))
    if index.calibration is None and index.conversation is None:
        print(
            "note: no --queries, so the index is uncalibrated; the reply pipeline needs a calibrated index",
            file=sys.stderr,
        )
    elif index.calibration is not None and index.calibration["report"].get("generic_out_of_scope_added"):
        print(
            "WARNING: the calibration queries have no out-of-scope examples (faq_id null). Without them the "
            "threshold only separates right from wrong top-1 hits and off-topic messages get FAQ answers "
            "(measured: 5.4% of STAR customer turns answered from StackFAQ), so the project's "
            f"{index.calibration['report']['n_out_of_scope']} generic out-of-scope messages ({GENERIC_OOS_PATH}) "
            "were added. They are not your customers' words: add queries your FAQ should not answer "
            "(faq_id null, or --oos-queries FILE).",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
