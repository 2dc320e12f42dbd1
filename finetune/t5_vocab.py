"""Train a small SentencePiece vocabulary for a T5 built from scratch, wrapped as a Hugging Face T5 tokenizer.

A T5 trained from random weights on one CPU spends most of its time in the output softmax when it uses
t5-small's 32k vocabulary (``docs/results/t5.md``). This module trains a unigram SentencePiece model
(Kudo, 2018, "Subword Regularization"; the ``sentencepiece`` library, Kudo & Richardson, 2018) of a few
thousand pieces on the training dialogs' turns and turns it into a ``transformers`` ``T5Tokenizer``
(the tokenizers-backed "fast" class) with T5's layout:

    id 0 ``<pad>``, 1 ``</s>``, 2 ``<unk>``, 3.. the trained pieces, then ``<extra_id_0>`` ..
    ``<extra_id_{N-1}>`` (sentinels for span corruption), then the role/FAQ markers ``<customer>``,
    ``<agent>``, ``<faq>`` (added by :func:`assistant.generators.t5.model.load_tokenizer`).

The result is saved with ``save_pretrained`` (``tokenizer.json`` + ``tokenizer_config.json``) and loaded by
the same ``from_pretrained`` path as any T5 tokenizer, so serving code does not change. SentencePiece's
normalisation (nmt_nfkc) travels as the tokenizer's ``Precompiled`` normalizer, as in transformers'
own slow-to-fast converter.

It does not build the model (``assistant/generators/t5/model.py``) or choose the training texts
(``finetune/train_t5.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sentencepiece import sentencepiece_model_pb2
from transformers import PreTrainedTokenizerBase, T5Tokenizer

from assistant import subword
from assistant.errors import ConfigError
from assistant.generators.t5.model import load_tokenizer

#: T5's special ids (``T5Config`` defaults: pad 0 = decoder start, eos 1) and its unknown-token id.
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
#: sentinels ``<extra_id_0..N-1>`` added after the trained pieces (T5 and its tokenizers use 100).
EXTRA_IDS = 100
#: at most this many sentences train the vocabulary (a seeded sample above it).
MAX_SENTENCES = 300_000


def train_sentencepiece(texts: Iterable[str], vocab_size: int, seed: int = 0) -> bytes:
    """A serialized unigram SentencePiece model with T5's special ids (pad 0, eos 1, unk 2, no bos).

    Args:
        texts: training sentences (e.g. every turn of the training dialogs); empty ones are ignored.
        vocab_size: pieces including the three special ones (an upper bound: a small corpus gives fewer).
        seed: seeds the sentence sample when there are more than :data:`MAX_SENTENCES`.

    Raises:
        ConfigError: no text, a vocabulary size below 16, or SentencePiece rejects the corpus.
    """
    if vocab_size < 16:
        raise ConfigError(f"--vocab-size must be >= 16, got {vocab_size}")
    return subword.train_sentencepiece(
        texts,
        vocab_size,
        seed=seed,
        max_sentences=MAX_SENTENCES,
        model_type="unigram",
        character_coverage=0.9995,
        pad_id=PAD_ID,
        eos_id=EOS_ID,
        unk_id=UNK_ID,
        bos_id=-1,
    )


def t5_tokenizer_from_sentencepiece(model_proto: bytes, extra_ids: int = EXTRA_IDS) -> T5Tokenizer:
    """A ``T5Tokenizer`` (tokenizers backend) over a unigram SentencePiece model with T5's special ids.

    The pieces and their log-probabilities become a ``tokenizers`` Unigram model, the SentencePiece
    normaliser its ``Precompiled`` normalizer; ``extra_ids`` sentinels are appended.

    Raises:
        ConfigError: not a unigram model, or special ids other than pad 0 / eos 1 / unk 2.
    """
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_proto)
    if proto.trainer_spec.model_type != sentencepiece_model_pb2.TrainerSpec.UNIGRAM:
        raise ConfigError("the SentencePiece model must be a unigram model (T5's tokenizer is Unigram)")
    spec = proto.trainer_spec
    if (spec.pad_id, spec.eos_id, spec.unk_id) != (PAD_ID, EOS_ID, UNK_ID):
        raise ConfigError(
            f"SentencePiece special ids (pad, eos, unk) are {(spec.pad_id, spec.eos_id, spec.unk_id)}; "
            f"T5 needs {(PAD_ID, EOS_ID, UNK_ID)}"
        )
    vocab = [(p.piece, 0.0 if i < 3 else p.score) for i, p in enumerate(proto.pieces)]
    charsmap = proto.normalizer_spec.precompiled_charsmap or None
    return T5Tokenizer(vocab=vocab, extra_ids=extra_ids, _spm_precompiled_charsmap=charsmap)


def train_t5_tokenizer(
    texts: Iterable[str], vocab_size: int, out_dir: str | Path, seed: int = 0
) -> PreTrainedTokenizerBase:
    """Train a vocabulary on ``texts``, save it as a T5 tokenizer in ``out_dir`` and load it back.

    Loading goes through :func:`assistant.generators.t5.model.load_tokenizer` (``from_pretrained``, the
    role/FAQ markers added, left truncation), exactly as a saved model directory is loaded later, so
    training and serving see the same ids.

    Returns:
        the tokenizer: ``len(tokenizer)`` = trained pieces + ``EXTRA_IDS`` + 3 markers.

    Raises:
        ConfigError: see :func:`train_sentencepiece`.
    """
    tokenizer = t5_tokenizer_from_sentencepiece(train_sentencepiece(texts, vocab_size, seed))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out))
    return load_tokenizer(out)


def padded_vocab_size(tokenizer: PreTrainedTokenizerBase, multiple: int = 64) -> int:
    """Embedding rows for ``tokenizer``: its size rounded up to ``multiple`` (faster matrix shapes)."""
    return -(-len(tokenizer) // multiple) * multiple
