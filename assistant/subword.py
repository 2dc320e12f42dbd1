"""Training a SentencePiece model in memory: the step the LSTM tokenizer and the T5 vocabulary share.

Both reply models train a subword vocabulary on the training dialogs' turns with the ``sentencepiece``
library (Kudo & Richardson, 2018), each with its own special-id layout (the LSTM's pad/unk/bos/eos and
role markers, ``assistant/generators/lstm/tokenizer.py``; T5's pad/eos/unk, ``finetune/t5_vocab.py``).
This module holds what they have in common: empty texts dropped, a seeded sample of at most
``max_sentences``, training from an iterator into bytes (no files), a vocabulary size that is an upper
bound (``hard_vocab_limit=False``: a small corpus gives fewer pieces, so logs of any size train), and one
clear error when SentencePiece refuses the corpus.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import sentencepiece as spm

from assistant.errors import ConfigError


class _BytesWriter:
    """Receives the trained model bytes from ``SentencePieceTrainer.train(model_writer=...)``."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


def train_sentencepiece(
    texts: Iterable[str], vocab_size: int, *, seed: int, max_sentences: int, **options: Any
) -> bytes:
    """The serialized SentencePiece model trained on ``texts``.

    Args:
        texts: training sentences (e.g. every turn of the training dialogs); empty ones are ignored.
        vocab_size: pieces including the special ones (an upper bound: a small corpus gives fewer).
        seed: seeds the sample of ``max_sentences`` sentences when there are more.
        max_sentences: most sentences to train on.
        options: ``SentencePieceTrainer.train`` settings of the caller (model type, special ids, ...).

    Raises:
        ConfigError: no text, or SentencePiece rejects the corpus or the settings.
    """
    sentences = [t.strip() for t in texts if t and t.strip()]
    if not sentences:
        raise ConfigError("cannot train a vocabulary on no text (all training texts are empty)")
    if len(sentences) > max_sentences:
        sentences = random.Random(seed).sample(sentences, max_sentences)
    writer = _BytesWriter()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=writer,
            vocab_size=vocab_size,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            hard_vocab_limit=False,
            num_threads=1,
            minloglevel=2,
            **options,
        )
    except RuntimeError as e:
        raise ConfigError(
            f"SentencePiece training failed with --vocab-size {vocab_size} on {len(sentences)} sentences: "
            f"{e} (lower --vocab-size or give more text)"
        ) from e
    return writer.data
