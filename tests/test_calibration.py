"""Confidence calibration: threshold rule on tiny sets with known answers, logistic fit, AUROC, features."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.data import FaqEntry
from assistant.errors import RetrievalError
from assistant.retrieval.calibration import (
    THRESHOLD_RULE_NO_OOS,
    THRESHOLD_RULE_OOS,
    ConfidenceModel,
    auroc,
    decision_metrics,
    fit_logistic,
    hit_features,
    select_threshold,
)
from assistant.retrieval.index import Hit


def test_threshold_without_out_of_scope_is_the_midpoint_between_classes() -> None:
    conf = np.array([0.9, 0.8, 0.7, 0.3, 0.2])
    correct = np.array([True, True, True, False, False])
    threshold, rule, objective = select_threshold(conf, np.ones(5, bool), correct)
    assert (
        threshold == pytest.approx(0.5) and rule == THRESHOLD_RULE_NO_OOS and objective == pytest.approx(2.0)
    )


def test_threshold_with_out_of_scope_maximises_accuracy_plus_oos_recall() -> None:
    # in scope: right 0.9, right 0.6, wrong 0.7; out of scope: 0.4, 0.65.
    # t=0.5 → 2/3 + 1/2; t=0.675 → 1/3 + 2/2 = 1.333 (best; t=0.8 ties and the lower one wins).
    conf = np.array([0.9, 0.6, 0.7, 0.4, 0.65])
    in_scope = np.array([True, True, True, False, False])
    correct = np.array([True, True, False, False, False])
    threshold, rule, objective = select_threshold(conf, in_scope, correct)
    assert threshold == pytest.approx(0.675) and rule == THRESHOLD_RULE_OOS
    assert objective == pytest.approx(1 / 3 + 1)
    metrics = decision_metrics(conf, threshold, in_scope, correct)
    assert metrics["in_scope_accuracy"] == pytest.approx(1 / 3) and metrics["oos_recall"] == 1.0
    assert metrics["oos_precision"] == pytest.approx(2 / 3) and metrics[
        "answered_precision"
    ] == pytest.approx(0.5)
    assert metrics["oos_auroc"] == pytest.approx(
        5 / 6
    )  # in-scope {0.9,0.6,0.7} vs oos {0.4,0.65}: 5 of 6 pairs


def test_threshold_needs_both_outcomes_without_out_of_scope() -> None:
    with pytest.raises(RetrievalError, match="needs both correct and wrong"):
        select_threshold(np.array([0.9, 0.8]), np.ones(2, bool), np.ones(2, bool))


def test_auroc_known_values_and_ties() -> None:
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1], bool)) == pytest.approx(0.75)
    assert auroc(np.array([0.5, 0.5, 0.5]), np.array([1, 0, 1], bool)) == pytest.approx(0.5)
    assert auroc(np.array([0.5, 0.6]), np.array([1, 1], bool)) is None


def test_logistic_fit_recovers_a_known_slope_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 1))
    y = rng.random(4000) < 1 / (1 + np.exp(-(2.0 * x[:, 0] - 0.5)))
    model = fit_logistic(x, y, ["f"], l2=0.0)
    assert model.weights[0] / model.scale[0] == pytest.approx(2.0, rel=0.1)
    p = model.predict(x)
    assert p.mean() == pytest.approx(y.mean(), abs=0.01)
    again = ConfidenceModel.from_dict(model.to_dict(), "test")
    np.testing.assert_allclose(again.predict(x), p)


def test_logistic_fit_refuses_a_single_class() -> None:
    with pytest.raises(RetrievalError, match="got 3 right of 3"):
        fit_logistic(np.ones((3, 1)), np.ones(3, bool), ["f"])


def test_hit_features_top1_and_margins() -> None:
    entry = FaqEntry("a", "q", "a")
    hits = [Hit("a", 0.9, entry, bm25=7.0, dense=0.8), Hit("b", 0.4, entry, bm25=3.0, dense=0.5)]
    feats = hit_features(hits, ("dense_top1", "dense_margin", "bm25_top1", "bm25_margin", "fused_margin"))
    np.testing.assert_allclose(feats, [0.8, 0.3, 7.0, 4.0, 0.5])
    with pytest.raises(RetrievalError, match="'dense' score"):
        hit_features([Hit("a", 1.0, entry, bm25=1.0)], ("dense_top1",))
    with pytest.raises(RetrievalError, match="empty hit list"):
        hit_features([], ("bm25_top1",))
