"""Confidence for FAQ retrieval: features of a ranked hit list → calibrated probability, and the threshold.

The confidence of a search is the probability that its top hit is the FAQ entry that answers the
query (so 0 for an out-of-scope query). It is Platt scaling (Platt, 1999) generalised to a few
features: an L2-regularised logistic regression, fitted by Newton's method (IRLS) in numpy, on
standardised features of the hit list (see :data:`FEATURES_BY_METHOD`):

* ``*_top1``: the top hit's score of one retriever (BM25 score, or dense cosine similarity);
* ``*_margin``: top-1 minus top-2 of that score (how clearly the top entry wins);
* ``fused_margin``: the same margin of the hybrid's fused score.

The threshold on that probability is chosen on the calibration queries by :func:`select_threshold`:

* with out-of-scope queries (``faq_id: null``): maximise *in-scope accuracy + out-of-scope recall*,
  where in-scope accuracy counts an in-scope query as right only if its top hit is correct *and*
  accepted, and out-of-scope recall is the share of out-of-scope queries rejected (the joint
  criterion of Larson et al., 2019, "An Evaluation Dataset for Intent Classification and
  Out-of-Scope Prediction", which reports both numbers);
* without them: maximise *share of correct top hits accepted + share of wrong top hits rejected*
  (Youden's J on "top-1 correct").

Candidate thresholds are the midpoints between consecutive distinct confidences (plus one below all
and one above all); ties go to the lowest threshold (more answers at the same score). This module
also computes AUROC (rank-based, Mann-Whitney). It does not search; ``assistant/retrieval/index.py`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from assistant.errors import RetrievalError

#: retriever method → names of the confidence features computed from its hits.
FEATURES_BY_METHOD: dict[str, tuple[str, ...]] = {
    "bm25": ("bm25_top1", "bm25_margin"),
    "dense": ("dense_top1", "dense_margin"),
    "hybrid": ("dense_top1", "dense_margin", "bm25_top1", "bm25_margin", "fused_margin"),
}

THRESHOLD_RULE_OOS = "max in-scope accuracy + out-of-scope recall"
THRESHOLD_RULE_NO_OOS = "max share of correct top-1 accepted + share of wrong top-1 rejected"


def hit_features(hits: Sequence[Any], names: Sequence[str]) -> np.ndarray:
    """Confidence features of one ranked hit list.

    Args:
        hits: best first; objects with ``score``, ``bm25`` and ``dense`` attributes (``Hit``). A list
            of one hit is allowed only for a one-entry FAQ; a missing second hit counts as score 0.
        names: feature names from :data:`FEATURES_BY_METHOD`.

    Returns:
        ``(n_features,)`` float64.

    Raises:
        RetrievalError: no hits, or a hit lacks the component score a feature needs.
    """
    if not hits:
        raise RetrievalError("confidence needs at least one hit; got an empty hit list")
    values = []
    for name in names:
        component, kind = name.rsplit("_", 1)
        attr = "score" if component == "fused" else component
        top = getattr(hits[0], attr)
        second = getattr(hits[1], attr) if len(hits) > 1 else 0.0
        if top is None or second is None:
            raise RetrievalError(
                f"feature {name!r} needs each hit's {attr!r} score, which these hits lack "
                "(were they produced by an index of another method?)"
            )
        values.append(float(top) if kind == "top1" else float(top) - float(second))
    return np.asarray(values, dtype=np.float64)


@dataclass
class ConfidenceModel:
    """Logistic regression on standardised features: ``p = sigmoid(w · (x - mean) / scale + bias)``.

    Attributes:
        feature_names: the features, in column order.
        mean, scale: ``(n_features,)`` standardisation fitted on the calibration set.
        weights: ``(n_features,)``; bias: scalar.
    """

    feature_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for ``(n, n_features)`` features → ``(n,)`` in [0, 1]."""
        z = ((features - self.mean) / self.scale) @ self.weights + self.bias  # (N,)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature_names": list(self.feature_names),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "weights": self.weights.tolist(),
            "bias": self.bias,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> ConfidenceModel:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            RetrievalError: keys missing or arrays of inconsistent length.
        """
        try:
            names = tuple(str(n) for n in data["feature_names"])
            arrays = [np.asarray(data[k], dtype=np.float64) for k in ("mean", "scale", "weights")]
            bias = float(data["bias"])
        except (KeyError, TypeError, ValueError) as e:
            raise RetrievalError(f"{where}: malformed confidence model ({e!r})") from e
        if any(a.shape != (len(names),) for a in arrays):
            raise RetrievalError(f"{where}: confidence model arrays must each have {len(names)} values")
        return cls(names, arrays[0], arrays[1], arrays[2], bias)


def fit_logistic(
    features: np.ndarray,
    labels: np.ndarray,
    feature_names: Sequence[str],
    l2: float = 1e-2,
    max_iter: int = 100,
) -> ConfidenceModel:
    """Fit an L2-regularised logistic regression by Newton's method (IRLS).

    Args:
        features: ``(n, n_features)``.
        labels: ``(n,)`` booleans (top hit correct).
        feature_names: names of the columns.
        l2: penalty on the weights (not the bias), in units of the mean log-loss.
        max_iter: Newton steps at most (it converges in ~10 on these problems).

    Raises:
        RetrievalError: shapes disagree, or the labels are all one class (nothing to calibrate).
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[1] != len(feature_names):
        raise RetrievalError(
            f"features {x.shape} and labels {y.shape} do not match {len(feature_names)} names"
        )
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        raise RetrievalError(
            f"calibration needs queries whose top hit is right and queries whose top hit is wrong or out "
            f"of scope; got {n_pos} right of {len(y)}. Add out-of-scope queries (faq_id: null) or harder ones"
        )
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0
    xs = np.hstack([(x - mean) / scale, np.ones((len(y), 1))])  # (N, F+1), last column = bias
    theta = np.zeros(xs.shape[1])
    penalty = np.full(xs.shape[1], l2)
    penalty[-1] = 0.0
    n = len(y)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-np.clip(xs @ theta, -60.0, 60.0)))  # (N,)
        grad = xs.T @ (p - y) / n + penalty * theta  # (F+1,)
        hess = (xs.T * (p * (1 - p))) @ xs / n + np.diag(penalty) + 1e-9 * np.eye(len(theta))
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return ConfidenceModel(tuple(feature_names), mean, scale, theta[:-1].copy(), float(theta[-1]))


def select_threshold(
    confidence: np.ndarray, in_scope: np.ndarray, correct: np.ndarray
) -> tuple[float, str, float]:
    """Choose the acceptance threshold (accept when ``confidence >= threshold``) by the module's rule.

    Args:
        confidence: ``(n,)`` calibrated probabilities.
        in_scope: ``(n,)`` booleans, False for out-of-scope queries.
        correct: ``(n,)`` booleans, top hit is the right entry (always False out of scope).

    Returns:
        ``(threshold, rule, objective)``: the threshold, the rule's name, the objective's value.

    Raises:
        RetrievalError: no queries, or (without out-of-scope queries) no correct or no wrong top hit.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    in_scope = np.asarray(in_scope, dtype=bool)
    correct = np.asarray(correct, dtype=bool) & in_scope
    if conf.size == 0:
        raise RetrievalError("threshold selection needs at least one calibration query")
    values = np.unique(conf)  # sorted ascending
    candidates = np.concatenate(
        [[values[0] / 2], (values[:-1] + values[1:]) / 2, [np.nextafter(values[-1], 2.0)]]
    )
    accepted = conf[None, :] >= candidates[:, None]  # (C, N)
    if (~in_scope).any():
        rule = THRESHOLD_RULE_OOS
        objective = (accepted & correct).sum(1) / max(int(in_scope.sum()), 1) + (~accepted & ~in_scope).sum(
            1
        ) / int((~in_scope).sum())
    else:
        if correct.all() or not correct.any():
            raise RetrievalError(
                "threshold selection without out-of-scope queries needs both correct and wrong "
                f"top hits; got {int(correct.sum())} correct of {conf.size}"
            )
        rule = THRESHOLD_RULE_NO_OOS
        objective = (accepted & correct).sum(1) / correct.sum() + (~accepted & ~correct).sum(1) / (
            ~correct
        ).sum()
    best = int(np.argmax(objective))  # first maximum = lowest threshold among ties
    return float(candidates[best]), rule, float(objective[best])


def auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` separating ``positive`` from the rest (Mann-Whitney U).

    Tied scores get their average rank. Returns ``None`` when either class is empty.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(average, counts)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def decision_metrics(
    confidence: np.ndarray, threshold: float, in_scope: np.ndarray, correct: np.ndarray
) -> dict[str, float | None]:
    """Accept/handoff figures at a threshold.

    Returns a dict: ``in_scope_accuracy`` (in-scope queries answered with the right entry),
    ``answered_precision`` (accepted queries whose top hit is right), ``answer_rate``, and with
    out-of-scope queries ``oos_recall`` (out-of-scope rejected), ``oos_precision`` (rejected queries
    that are out of scope) and ``oos_auroc`` (confidence separating in-scope from out-of-scope);
    ``None`` where undefined.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    in_scope = np.asarray(in_scope, dtype=bool)
    correct = np.asarray(correct, dtype=bool) & in_scope
    accepted = conf >= threshold
    out: dict[str, float | None] = {
        "in_scope_accuracy": float((accepted & correct).sum() / in_scope.sum()) if in_scope.any() else None,
        "answered_precision": float((accepted & correct).sum() / accepted.sum()) if accepted.any() else None,
        "answer_rate": float(accepted.mean()) if conf.size else None,
    }
    if (~in_scope).any():
        rejected = ~accepted
        out["oos_recall"] = float((rejected & ~in_scope).sum() / (~in_scope).sum())
        out["oos_precision"] = (
            float((rejected & ~in_scope).sum() / rejected.sum()) if rejected.any() else None
        )
        out["oos_auroc"] = auroc(conf, in_scope)
    return out
