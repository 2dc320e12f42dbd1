"""Knowledge-seeking turn detection: does a customer turn need FAQ knowledge at all?

DSTC9–11 Track 1/5 call it "knowledge-seeking turn detection" (Kim et al., 2020, "Beyond
Domain APIs: Task-oriented Conversational Modeling with Unstructured Knowledge Access"): "Do they
have free parking?" needs the hotel's FAQ; "Book it for two nights" is a task turn for the
booking flow. The reply pipeline asks this first, and searches the FAQ only for turns that need it.

The detector is calibrated the way the FAQ confidence is (``assistant/retrieval/calibration.py``):
an L2-regularised logistic regression (:func:`~assistant.retrieval.calibration.fit_logistic`) on
standardised features of the turn, and a threshold on its probability chosen by
:func:`~assistant.retrieval.calibration.select_threshold` with "top hit correct" read as
"knowledge-seeking" (the rule without out-of-scope queries): maximise the share of
knowledge-seeking turns passed plus the share of other turns held back (Youden's J). The features
(the message's retrieval scores, its entity, its sentence embedding) are assembled by
``assistant/retrieval/conversational.py``; this module only fits, stores and scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from assistant.errors import RetrievalError
from assistant.retrieval import calibration as cal

DETECTION_RULE = (
    "max share of knowledge-seeking turns passed + share of other turns held back (Youden's J), "
    "calibration.select_threshold"
)


@dataclass
class TurnDetector:
    """A fitted knowledge-seeking turn detector.

    Attributes:
        model: the logistic regression over named features (``model.feature_names``).
        threshold: a turn is knowledge-seeking when its probability is at or above it.
        report: figures on the turns it was fitted on (counts, precision, recall, F1).
    """

    model: cal.ConfidenceModel
    threshold: float
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.model.feature_names

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Probability that each turn is knowledge-seeking: ``(n, n_features)`` → ``(n,)`` in [0, 1].

        Raises:
            RetrievalError: the feature count differs from the model's.
        """
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != len(self.feature_names):
            raise RetrievalError(
                f"the detector takes {len(self.feature_names)} features per turn, got array {features.shape}"
            )
        return self.model.predict(features)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.to_dict(),
            "threshold": self.threshold,
            "rule": DETECTION_RULE,
            "report": self.report,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> TurnDetector:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            RetrievalError: keys missing or of the wrong type.
        """
        if not isinstance(data, dict) or "model" not in data or "threshold" not in data:
            raise RetrievalError(f"{where}: a detector needs 'model' and 'threshold'")
        try:
            threshold = float(data["threshold"])
        except (TypeError, ValueError) as e:
            raise RetrievalError(
                f"{where}: detector threshold must be a number, got {data['threshold']!r}"
            ) from e
        return cls(
            cal.ConfidenceModel.from_dict(data["model"], where), threshold, dict(data.get("report") or {})
        )


def fit_detector(
    features: np.ndarray, labels: np.ndarray, feature_names: Sequence[str], l2: float = 1e-2
) -> TurnDetector:
    """Fit the detector and choose its threshold on labelled turns (see the module docstring).

    Args:
        features: ``(n, n_features)``.
        labels: ``(n,)`` booleans, True for knowledge-seeking turns.
        feature_names: the columns' names.
        l2: the logistic regression's penalty (``calibration.fit_logistic``).

    Raises:
        RetrievalError: shapes disagree, or the turns are all of one kind.
    """
    labels = np.asarray(labels, dtype=bool)
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == len(labels):
        raise RetrievalError(
            "detection needs knowledge-seeking turns (meta.target true) and other turns (false); "
            f"got {n_pos} knowledge-seeking of {len(labels)}"
        )
    model = cal.fit_logistic(features, labels, feature_names, l2=l2)
    probabilities = model.predict(np.asarray(features, dtype=np.float64))
    threshold, _rule, _objective = cal.select_threshold(
        probabilities, np.ones(len(labels), dtype=bool), labels
    )
    report = {
        "n_turns": len(labels),
        "n_knowledge_seeking": n_pos,
        **detection_metrics(probabilities >= threshold, labels),
        "auroc": cal.auroc(probabilities, labels),
    }
    return TurnDetector(model, threshold, report)


def detection_metrics(decisions: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    """Precision, recall and F1 of "knowledge-seeking" decisions against labels (DSTC's detection figures).

    Returns:
        ``precision``, ``recall``, ``f1``, ``accuracy``; ``None`` where undefined (no positives
        predicted or present).
    """
    decisions = np.asarray(decisions, dtype=bool)
    labels = np.asarray(labels, dtype=bool)
    tp = int((decisions & labels).sum())
    precision = tp / int(decisions.sum()) if decisions.any() else None
    recall = tp / int(labels.sum()) if labels.any() else None
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall > 0
        else None
    )
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": float((decisions == labels).mean()) if labels.size else None,
    }
