"""The signals of the routing evaluation: what routing depends on, recorded once per message
(:class:`Signals`), and the candidate in-domain signals compared by how well they separate dialog
turns (in domain) from out-of-scope messages (:func:`candidate_signals`: the in-domain check's
features and probability, the generator's length-normalised likelihood, an out-of-scope classifier on
the same embeddings, the retrieval baseline's vote share). ``finetune/eval_routing.py`` records the
signals and routes them; this module routes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from assistant.data import FaqEntry, Turn
from assistant.generators.base import GenerationRequest, Generator
from assistant.retrieval import calibration as cal
from assistant.retrieval.embeddings import encode
from assistant.routing.generic import generic_out_of_scope
from assistant.routing.scope import ScopeCheck
from finetune.routing_metrics import Item


@dataclass
class Signals:
    """What the routing depends on, recorded once per item (arrays of length n)."""

    human: list[bool]
    smalltalk: list[str | None]
    earlier_failures: list[int]
    faq_confidence: np.ndarray  # (n,), nan without an index
    faq_top: list[FaqEntry | None]
    scope_features: np.ndarray | None  # (n, 2)
    scope_probability: np.ndarray | None  # (n,)
    generation_text: list[str]
    generation_confidence: np.ndarray  # (n,), nan without a generator
    embeddings: np.ndarray | None  # (n, dim) of the messages, when a scope check exists


def context_of(item: Item, max_history_turns: int) -> tuple[Turn, ...]:
    """The pipeline's context: the last ``max_history_turns`` turns and the message."""
    history = item.history[-max_history_turns:] if max_history_turns else ()
    return (*history, Turn("customer", item.text.strip()))


def _separation(scores: np.ndarray, in_domain: np.ndarray) -> dict[str, float | None]:
    """AUROC of ``scores`` (higher = in domain), and OOS rejected at 90 % / 95 % in-domain acceptance."""
    ok = ~np.isnan(scores)
    scores, in_domain = scores[ok], in_domain[ok]
    out: dict[str, float | None] = {"auroc": cal.auroc(scores, in_domain)}
    for keep in (0.90, 0.95):
        if in_domain.any() and (~in_domain).any():
            threshold = np.quantile(scores[in_domain], 1 - keep)
            out[f"oos_rejected_at_{int(keep * 100)}"] = float((scores[~in_domain] < threshold).mean())
        else:
            out[f"oos_rejected_at_{int(keep * 100)}"] = None
    return out


def classifier_scores(scope: ScopeCheck, embeddings: np.ndarray) -> np.ndarray:
    """An out-of-scope classifier candidate: logistic regression on MiniLM embeddings, the check's
    training turns (in domain) against the generic out-of-scope set, negatives repeated to balance."""
    negatives = encode([q.text for q in generic_out_of_scope()], scope.config.dense_model, 64)
    positives = scope.embeddings.astype(np.float64)
    repeat = max(1, len(positives) // len(negatives))
    x = np.concatenate([positives, np.repeat(negatives, repeat, axis=0)])
    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives) * repeat)].astype(bool)
    model = cal.fit_logistic(x, y, [f"e{i}" for i in range(x.shape[1])], l2=1e-3, max_iter=30)
    return model.predict(embeddings.astype(np.float64))


def candidate_signals(
    items: Sequence[Item],
    signals: Signals,
    scope: ScopeCheck | None,
    classifier: bool,
    baseline: Generator | None,
    max_history_turns: int,
) -> dict[str, dict[str, float | None]]:
    """Each candidate in-domain signal's separation of dialog turns from out-of-scope messages.

    ``max_history_turns``: the pipeline's context length, for the baseline's requests.
    """
    mask = np.array([i.kind in ("dialog", "oos") for i in items])
    in_domain = np.array([i.kind == "dialog" for i in items])[mask]
    candidates: dict[str, np.ndarray] = {}
    if signals.scope_features is not None:
        candidates["dense_top1 (nearest training turn)"] = signals.scope_features[:, 0]
        candidates["dense_topk (mean of the k nearest)"] = signals.scope_features[:, 1]
        candidates["in-domain check (calibrated top1 + topk)"] = signals.scope_probability
    if not np.isnan(signals.generation_confidence).all():
        candidates["generator likelihood (geometric-mean token probability)"] = signals.generation_confidence
    if classifier and scope is not None and signals.embeddings is not None:
        candidates["OOS classifier (embeddings, training turns vs generic set)"] = classifier_scores(
            scope, signals.embeddings
        )
    if baseline is not None:
        generations = baseline.generate(
            [GenerationRequest(context=context_of(i, max_history_turns)) for i in items]
        )
        candidates["retrieval baseline vote share"] = np.array([g.confidence for g in generations])
    return {
        name: _separation(np.asarray(s, dtype=np.float64)[mask], in_domain) for name, s in candidates.items()
    }
