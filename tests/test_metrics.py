"""Tests for finetune/metrics.py against values computed by hand."""

from __future__ import annotations

import math

import pytest

from assistant.errors import DataError
from finetune.metrics import (
    corpus_bleu,
    mean_length_words,
    mean_rouge_l,
    mean_token_f1,
    normalize_answer,
    perplexity,
    precision_recall_f1,
    token_f1,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The card's PIN, please!", "card s pin please"),  # punctuation becomes a space, then 'the' goes
        ("An apple; the END.", "apple end"),
        ("theory and another thesis", "theory and another thesis"),  # articles only as whole words
        ("a-b", "b"),  # punctuation is removed before articles
        ("  many   spaces\there ", "many spaces here"),
        ("", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_token_f1_hand_computed():
    # "cat sat on mat" vs "cat is on mat": 3 shared of 4 and 4 -> P = R = F1 = 0.75
    assert token_f1("The cat sat on the mat.", "A cat is on a mat") == pytest.approx(0.75)
    # multiset overlap: min(3, 1) = 1 -> P = 1/3, R = 1/2, F1 = 2 * (1/6) / (5/6) = 0.4
    assert token_f1("yes yes yes", "yes no") == pytest.approx(0.4)
    assert precision_recall_f1(["yes", "yes", "yes"], ["yes", "no"]) == pytest.approx((1 / 3, 1 / 2, 0.4))
    assert token_f1("Hello, World!", "hello world") == 1.0
    assert token_f1("completely different", "nothing shared") == 0.0
    assert token_f1("", "something") == 0.0
    assert token_f1("the", "a") == 0.0  # both empty after normalisation: 0, as in ParlAI


def test_mean_token_f1_averages_pairs():
    assert mean_token_f1(
        ["The cat sat on the mat.", "yes yes yes"], ["A cat is on a mat", "yes no"]
    ) == pytest.approx((0.75 + 0.4) / 2)


def test_rouge_l_hand_computed():
    # LCS of [the cat sat on the mat] and [the cat is on the mat] = 5 -> P = R = F = 5/6
    assert mean_rouge_l(["the cat sat on the mat"], ["the cat is on the mat"]) == pytest.approx(5 / 6)
    # LCS [open account] = 2; P = 2/3, R = 2/4 -> F = 4/7; 'accounts' stems to 'account'
    assert mean_rouge_l(["open an accounts"], ["Open the account today"]) == pytest.approx(4 / 7)
    assert mean_rouge_l(
        ["the cat sat on the mat", "open an accounts"], ["the cat is on the mat", "Open the account today"]
    ) == pytest.approx((5 / 6 + 4 / 7) / 2)
    assert mean_rouge_l(["alpha beta"], ["gamma delta"]) == 0.0


def test_bleu_identical_and_disjoint():
    refs = ["Your table for two at eight is booked.", "Is there anything else I can do for you?"]
    same = corpus_bleu(refs, refs)
    assert same.score == pytest.approx(100.0)
    assert "tok:13a" in same.signature and "nrefs:1" in same.signature
    assert corpus_bleu(["zebra quantum violin harbor", "mango orbit"], refs).score == pytest.approx(
        0.0, abs=1e-9
    )
    partial = corpus_bleu(["Your table for two at nine is booked.", refs[1]], refs).score
    assert 0.0 < partial < 100.0


def test_length_and_perplexity():
    assert mean_length_words(["one two three", "four"]) == 2.0
    assert perplexity(10 * math.log(4.0), 10) == pytest.approx(4.0)
    assert perplexity(0.0, 3) == 1.0
    with pytest.raises(DataError, match="n_tokens must be > 0"):
        perplexity(1.0, 0)
    with pytest.raises(DataError, match="finite number >= 0"):
        perplexity(float("nan"), 5)


def test_bad_inputs_are_refused():
    with pytest.raises(DataError, match="2 predictions but 1 references"):
        mean_token_f1(["a", "b"], ["a"])
    with pytest.raises(DataError, match="no \\(prediction, reference\\) pairs"):
        corpus_bleu([], [])
    with pytest.raises(DataError, match="no texts"):
        mean_length_words([])
