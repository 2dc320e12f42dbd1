"""Reply-quality metrics for (prediction, reference) pairs: BLEU, ROUGE-L, token F1, length, perplexity.

* corpus BLEU: ``sacrebleu`` (Post, 2018, "A Call for Clarity in Reporting BLEU Scores"), default
  ``13a`` tokenization, one reference per prediction; the sacrebleu signature is returned so that a
  report says exactly which BLEU it is.
* ROUGE-L F: Google's ``rouge-score`` package (Lin, 2004), with its Porter stemmer, averaged over pairs.
* token F1: the unigram-overlap F1 used by ParlAI for dialog (Miller et al., 2017; ``parlai/core/
  metrics.py``: ``normalize_answer`` and ``F1Metric._prec_recall_f1_score``), reimplemented here:
  lowercase, punctuation → space, the articles a/an/the → space, whitespace tokens, multiset overlap;
  averaged over pairs.
* average reply length in whitespace-separated words, and perplexity from a summed NLL.

This module only scores strings and numbers; it does not run models or read files
(``finetune/evaluate.py`` does).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU

from assistant.errors import DataError

#: ASCII punctuation, the same set as ParlAI's ``re_punc``.
_PUNCTUATION = re.compile("[" + re.escape(string.punctuation) + "]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Normalise a reply for token F1, as ParlAI's ``normalize_answer`` does.

    Lowercase; replace each ASCII punctuation character by a space; replace the whole words
    ``a``, ``an``, ``the`` by a space; collapse runs of whitespace into one space and strip.

    Example: ``"The card's PIN, please!"`` → ``"card s pin please"``.
    """
    text = text.lower()
    text = _PUNCTUATION.sub(" ", text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def precision_recall_f1(pred_tokens: Sequence[str], gold_tokens: Sequence[str]) -> tuple[float, float, float]:
    """Multiset unigram overlap precision, recall and F1 (ParlAI's ``_prec_recall_f1_score``).

    ``overlap = |Counter(pred) ∩ Counter(gold)|``; precision = overlap / len(pred), recall =
    overlap / len(gold). When the overlap is 0 (including when either side is empty) all three are 0,
    as in ParlAI.
    """
    overlap = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0, 0.0, 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return precision, recall, 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, reference: str) -> float:
    """Token-level F1 of one prediction against one reference, after :func:`normalize_answer`; in [0, 1]."""
    return precision_recall_f1(normalize_answer(prediction).split(), normalize_answer(reference).split())[2]


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise DataError(
            f"got {len(predictions)} predictions but {len(references)} references; "
            "expected one reference per prediction"
        )
    if not predictions:
        raise DataError("no (prediction, reference) pairs to score; expected at least one")


def mean_token_f1(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Token F1 averaged over pairs, in [0, 1].

    Raises:
        DataError: the sequences differ in length or are empty.
    """
    _check_pairs(predictions, references)
    return sum(token_f1(p, r) for p, r in zip(predictions, references)) / len(predictions)


@dataclass(frozen=True)
class BleuResult:
    """Corpus BLEU on the 0-100 scale, with the sacrebleu signature that identifies its settings."""

    score: float
    signature: str


def corpus_bleu(predictions: Sequence[str], references: Sequence[str]) -> BleuResult:
    """Corpus BLEU (sacrebleu defaults: 13a tokenization, mixed case, exponential smoothing), one reference each.

    Identical corpora of sentences with at least four tokens score 100; corpora sharing no n-gram score 0.

    Raises:
        DataError: the sequences differ in length or are empty.
    """
    _check_pairs(predictions, references)
    bleu = BLEU()
    result = bleu.corpus_score(list(predictions), [list(references)])
    return BleuResult(score=float(result.score), signature=str(bleu.get_signature()))


def mean_rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """ROUGE-L F-measure (longest common subsequence, Porter stemming) averaged over pairs, in [0, 1].

    Raises:
        DataError: the sequences differ in length or are empty.
    """
    _check_pairs(predictions, references)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    total = sum(scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references))
    return total / len(predictions)


def mean_length_words(texts: Sequence[str]) -> float:
    """Average number of whitespace-separated words per text.

    Raises:
        DataError: ``texts`` is empty.
    """
    if not texts:
        raise DataError("no texts to measure; expected at least one")
    return sum(len(t.split()) for t in texts) / len(texts)


def perplexity(total_nll: float, n_tokens: int) -> float:
    """``exp(total_nll / n_tokens)``: per-token perplexity from a summed negative log-likelihood in nats.

    Raises:
        DataError: ``n_tokens`` is not positive, or ``total_nll`` is negative or not finite.
    """
    if n_tokens <= 0:
        raise DataError(f"n_tokens must be > 0 to compute a perplexity, got {n_tokens}")
    if not math.isfinite(total_nll) or total_nll < 0:
        raise DataError(f"total_nll must be a finite number >= 0 (nats), got {total_nll}")
    return math.exp(total_nll / n_tokens)
