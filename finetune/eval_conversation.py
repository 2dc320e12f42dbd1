"""Evaluate FAQ retrieval on knowledge-labelled dialogs (``assistant-eval-retrieval --dialogs``).

Every figure is **cross-fitted**: the dialogs are split into ``folds`` parts by conversation
(``labels.fold_of``: instances of one dialog stay together); each part is evaluated with settings,
thresholds and detectors fitted on the other parts only, and the figures pool all parts. No turn is
scored by anything fitted on it.

Rows, side by side in one run, all over the same turns:

* ``<method>, last message`` (bm25 / dense / hybrid): today's retriever on the new message alone
  (the hybrid's dense weight chosen on the fitting parts); detection by a detector on that search's
  confidence features (``calibration.FEATURES_BY_METHOD``), fitted like the conversational one;
* ``hybrid, last 3 customer turns joined``: the naive history query (the new message and the two
  customer turns before it, concatenated);
* ``conversational``: ``assistant/retrieval/conversational.py`` over an index with entity names
  masked (history weight and dense weight tuned, confidence and detector calibrated, on the fitting
  parts); ablations: without name masking, and with a detector that does not read the embedding.

Figures: detection precision / recall / F1 (``meta.target``) and AUROC; selection hit@1, hit@5 and
MRR@5 (DSTC's R@1, R@5, MRR@5) over the turns whose reference reply used FAQ entries; for the
conversational rows the share of those turns whose active entity is right, and the end-to-end FAQ
route (detected, confident, right entry). Also a sweep of the history weight. This module does not
build saved indexes (``finetune/build_index.py``) and does not print (``finetune/eval_retrieval.py``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from assistant.data import FaqEntry
from assistant.errors import ConfigError
from assistant.retrieval import calibration as cal
from assistant.retrieval.config import Hit, RetrieverConfig
from assistant.retrieval.conversational import (
    DENSE_WEIGHTS,
    HISTORY_WEIGHTS,
    ConversationalRetriever,
    ConversationalSearch,
    ConversationConfig,
    entity_accuracy,
    selection_metrics,
)
from assistant.retrieval.detection import detection_metrics, fit_detector
from assistant.retrieval.embeddings import EmbeddingCache
from assistant.retrieval.entities import EntityState
from assistant.retrieval.index import FaqIndex
from assistant.retrieval.labels import KnowledgeTurn, fold_of
from assistant.retrieval.onnx_encoder import encoder_for

#: customer turns (the new message included) joined for the naive history row.
CONCAT_TURNS = 3


def _as_searches(hit_lists: Sequence[Sequence[Hit]]) -> list[ConversationalSearch]:
    return [ConversationalSearch(tuple(h), EntityState(), tuple(h[:2])) for h in hit_lists]


def _pooled(values: list[tuple[list[int], Any]], n: int) -> list[Any]:
    out: list[Any] = [None] * n
    for indices, items in values:
        for i, item in zip(indices, items, strict=True):
            out[i] = item
    return out


def _detection_row(probabilities: np.ndarray, decisions: np.ndarray, turns: Sequence[KnowledgeTurn]) -> dict:
    labels = np.array([t.target for t in turns])
    return {**detection_metrics(decisions, labels), "detection_auroc": cal.auroc(probabilities, labels)}


def _reference_row(
    name: str,
    index: FaqIndex,
    components: dict[str, np.ndarray],
    turns: Sequence[KnowledgeTurn],
    folds: np.ndarray,
) -> dict[str, Any]:
    """A last-message (or joined-history) retriever: selection, and a detector on its confidence features."""
    names = cal.FEATURES_BY_METHOD[index.config.method]
    labels = np.array([t.target for t in turns])
    k = min(10, len(index.entries))
    probabilities = np.zeros(len(turns))
    decisions = np.zeros(len(turns), dtype=bool)
    hit_lists: list[Any] = [None] * len(turns)
    settings = []
    for f in sorted(set(folds.tolist())):
        fit, held = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        ranker = index
        if index.config.method == "hybrid":
            faq_fit = [i for i in fit if turns[i].knowledge]
            sub = {c: v[faq_fit] for c, v in components.items()}
            best = max(
                DENSE_WEIGHTS,
                key=lambda w: tuple(
                    selection_metrics(
                        _as_searches(index.derive(dense_weight=w).rank(sub, k)), [turns[i] for i in faq_fit]
                    )[m]
                    for m in ("hit@1", "mrr@5")
                ),
            )
            ranker = index.derive(dense_weight=best)
            settings.append({"fold": f, "dense_weight": best})
        hits = ranker.rank(components, k)
        feats = np.stack([cal.hit_features(h, names) for h in hits])
        detector = fit_detector(feats[fit], labels[fit], names)
        probabilities[held] = detector.probabilities(feats[held])
        decisions[held] = probabilities[held] >= detector.threshold
        for i in held:
            hit_lists[i] = hits[i]
    return {
        "name": name,
        **_detection_row(probabilities, decisions, turns),
        **selection_metrics(_as_searches(hit_lists), turns),
        "settings": settings,
    }


def _conversational_row(
    name: str,
    index: FaqIndex,
    config: ConversationConfig,
    turns: Sequence[KnowledgeTurn],
    folds: np.ndarray,
    encoder: EmbeddingCache | None,
    *,
    sweep: dict[float, list] | None = None,
) -> tuple[dict[str, Any], list[ConversationalSearch]]:
    """The conversational retriever, tuned and calibrated per fold; optionally fills a history-weight sweep."""
    n = len(turns)
    probabilities = np.zeros(n)
    decisions = np.zeros(n, dtype=bool)
    confidences = np.zeros(n)
    accepted = np.zeros(n, dtype=bool)
    searches: list[Any] = [None] * n
    settings = []
    base = ConversationalRetriever(index, config, encoder=encoder)
    for f in sorted(set(folds.tolist())):
        fit = [turns[i] for i in np.flatnonzero(folds != f)]
        held = np.flatnonzero(folds == f)
        pairs = [(turns[i].history, turns[i].text) for i in held]
        tuned, rows = base.tune(fit)
        tuned.calibrate(fit)
        found = tuned.search_batch(pairs, k=min(10, len(index.entries)))
        p = tuned.knowledge_probabilities(found)
        c = tuned.confidences(found)
        probabilities[held], decisions[held] = p, p >= tuned.detector.threshold
        confidences[held], accepted[held] = c, (p >= tuned.detector.threshold) & (c >= tuned.threshold)
        for i, s in zip(held, found, strict=True):
            searches[i] = s
        settings.append(
            {
                "fold": f,
                "history_weight": tuned.config.history_weight,
                "dense_weight": tuned.config.dense_weight,
                "confidence_threshold": tuned.threshold,
                "detection_threshold": tuned.detector.threshold,
            }
        )
        if sweep is not None:
            faq_held = [i for i in held if turns[i].knowledge]
            faq_pairs = [(turns[i].history, turns[i].text) for i in faq_held]
            for lam in HISTORY_WEIGHTS:
                best = max(
                    (r for r in rows if r["history_weight"] == lam), key=lambda r: (r["hit@1"], r["mrr@5"])
                )
                fixed = ConversationalRetriever(
                    index,
                    dataclasses.replace(config, history_weight=lam, dense_weight=best["dense_weight"]),
                    encoder=encoder,
                )
                sweep.setdefault(lam, []).append((faq_held, fixed.search_batch(faq_pairs, k=5)))
    in_scope = np.array([bool(t.knowledge) for t in turns])
    correct = np.array(
        [bool(t.knowledge) and s.hits[0].faq_id in t.knowledge for s, t in zip(searches, turns, strict=True)]
    )
    row = {
        "name": name,
        **_detection_row(probabilities, decisions, turns),
        **selection_metrics(searches, turns),
        "entity_accuracy": entity_accuracy(searches, turns, base.catalog, index),
        "faq_route": {
            "right_entry_answered": float((accepted & correct).sum() / in_scope.sum())
            if in_scope.any()
            else None,
            "answered_precision": float((accepted & correct).sum() / accepted.sum())
            if accepted.any()
            else None,
            "answer_rate": float(accepted.mean()),
            "confidence_auroc_faq_vs_rest": cal.auroc(confidences, in_scope),
        },
        "settings": settings,
    }
    return row, searches


def evaluate_dialogs(
    entries: Sequence[FaqEntry],
    turns: Sequence[KnowledgeTurn],
    config: RetrieverConfig,
    *,
    methods: Sequence[str] = ("bm25", "dense", "hybrid"),
    folds: int = 2,
    encoder: EmbeddingCache | None = None,
    reuse: FaqIndex | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """All rows of the dialog evaluation (see the module docstring), cross-fitted over ``folds``.

    Args:
        entries: the FAQ (entity-scoped or not).
        turns: knowledge-labelled turns whose knowledge ids are entries of ``entries``.
        config: the reference retrievers' configuration (``method`` and ``mask_entity_names`` are
            set per row); the conversational rows use its hybrid.
        methods: reference rows.
        folds: cross-fitting parts (>= 2).
        encoder: embedding cache for FAQ and query texts; reuse: an index whose FAQ embeddings are reused.
        log: progress messages.

    Returns:
        ``{"info", "results", "history_sweep"}``.

    Raises:
        ConfigError: fewer than 2 folds, or a fold without turns.
    """
    if folds < 2:
        raise ConfigError(f"--folds must be >= 2, got {folds}")
    fold_ids = np.array([fold_of(t, folds) for t in turns])
    if len(set(fold_ids.tolist())) < folds:
        raise ConfigError(f"{len(turns)} dialog turns do not fill {folds} folds; use fewer --folds")
    encoder = encoder or EmbeddingCache(
        config.dense_model, config.batch_size, onnx=encoder_for(config.dense_model, config.dense_backend)
    )
    start = time.perf_counter()
    plain = FaqIndex.build(
        entries,
        dataclasses.replace(config, method="hybrid", mask_entity_names=False),
        reuse=reuse,
        progress=True,
        encoder=encoder,
    )
    masked = FaqIndex.build(
        entries,
        dataclasses.replace(config, method="hybrid", mask_entity_names=True),
        reuse=plain,
        progress=True,
        encoder=encoder,
    )
    build_s = time.perf_counter() - start
    log(f"indexed {len(entries)} entries ({build_s:.0f} s); encoding {len(turns)} turns")
    texts = [t.text for t in turns]
    components = plain.component_scores(texts, query_embeddings=encoder.encode(texts, progress=True))
    results = []
    for method in methods:
        index = plain.derive(method=method)
        comps = {c: components[c] for c in index.config.components}
        results.append(_reference_row(f"{method}, last message", index, comps, turns, fold_ids))
        log(f"{results[-1]['name']}: hit@1 {results[-1]['hit@1']:.3f}")
    joined = []
    for t in turns:
        customer = [x.text for x in t.history if x.role == "customer"][-(CONCAT_TURNS - 1) :]
        joined.append(" ".join([*customer, t.text]))
    concat = plain.component_scores(joined, query_embeddings=encoder.encode(joined, progress=True))
    results.append(
        _reference_row(f"hybrid, last {CONCAT_TURNS} customer turns joined", plain, concat, turns, fold_ids)
    )
    log(f"{results[-1]['name']}: hit@1 {results[-1]['hit@1']:.3f}")
    sweep: dict[float, list] = {}
    row, _ = _conversational_row(
        "conversational", masked, ConversationConfig(), turns, fold_ids, encoder, sweep=sweep
    )
    results.append(row)
    log(f"conversational: hit@1 {row['hit@1']:.3f}, detection F1 {row['f1']:.3f}")
    row, _ = _conversational_row(
        "conversational, entity names not masked", plain, ConversationConfig(), turns, fold_ids, encoder
    )
    results.append(row)
    row, _ = _conversational_row(
        "conversational, detector without the embedding",
        masked,
        ConversationConfig(embedding_features=False),
        turns,
        fold_ids,
        encoder,
    )
    results.append(row)
    faq_turns = [i for i, t in enumerate(turns) if t.knowledge]
    history_sweep = []
    for lam, parts in sweep.items():
        pooled = _pooled(parts, len(turns))
        history_sweep.append(
            {
                "history_weight": lam,
                **selection_metrics([pooled[i] for i in faq_turns], [turns[i] for i in faq_turns]),
            }
        )
    info = {
        "n_turns": len(turns),
        "n_knowledge_seeking": int(sum(t.target for t in turns)),
        "n_faq_turns": int(sum(bool(t.knowledge) for t in turns)),
        "n_conversations": len({t.group for t in turns}),
        "folds": folds,
        "n_entries": len(entries),
        "n_entities": len(ConversationalRetriever(masked).catalog),
        "build_seconds_both_indexes": build_s,
        "config": dataclasses.asdict(config),
    }
    return {"info": info, "results": results, "history_sweep": history_sweep}


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown_tables(title: str, report: dict[str, Any]) -> str:
    """The dialog report as Markdown: one row per retriever, then the history-weight sweep."""
    info = report["info"]
    lines = [
        (
            f"### {title}: {info['n_turns']} turns ({info['n_knowledge_seeking']} knowledge-seeking, "
            f"{info['n_faq_turns']} answered from FAQ entries), {info['folds']}-fold cross-fitted"
        ),
        "",
        "| retriever | detection P | detection R | detection F1 | hit@1 | hit@5 | MRR@5 | entity acc. |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        cells = [r["name"]] + [
            _fmt(r.get(k))
            for k in ("precision", "recall", "f1", "hit@1", "hit@5", "mrr@5", "entity_accuracy")
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "History weight λ (conversational, dense weight tuned per fold):", ""]
    lines += ["| λ | hit@1 | hit@5 | MRR@5 |", "|---|---|---|---|"]
    for r in report["history_sweep"]:
        lines.append(
            f"| {r['history_weight']} | {_fmt(r['hit@1'])} | {_fmt(r['hit@5'])} | {_fmt(r['mrr@5'])} |"
        )
    return "\n".join(lines) + "\n"
