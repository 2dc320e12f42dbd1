"""SentencePiece subword tokenizer for the LSTM reply model: train on a corpus, save, load, encode, decode.

Wraps the ``sentencepiece`` library (Kudo & Richardson, 2018, "SentencePiece: A simple and language
independent subword tokenizer and detokenizer for Neural Text Processing"), with either the unigram
language-model segmentation (Kudo, 2018) or byte-pair encoding (Sennrich et al., 2016).

Fixed ids, so that models and checkpoints agree: ``pad=0, unk=1, bos=2, eos=3``. The role markers of
:data:`assistant.data.SPECIAL_MARKERS` (``<customer>``, ``<agent>``, ``<faq>``) are user-defined
symbols: each is always one piece and never split.

This module does not add bos/eos to sequences and does not truncate or pad; the model's input
preparation (``assistant/generators/lstm/generator.py``, ``finetune/lstm_data.py``) does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import sentencepiece as spm

from assistant.config import require
from assistant.errors import ModelError
from assistant.model_input import SPECIAL_MARKERS
from assistant.subword import train_sentencepiece

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
#: File name of the tokenizer model inside a checkpoint directory.
TOKENIZER_FILE = "tokenizer.model"


@dataclass
class TokenizerConfig:
    """SentencePiece training settings for the LSTM model's tokenizer."""

    model_type: Literal["unigram", "bpe"] = field(
        default="unigram",
        metadata={"help": "subword algorithm: 'unigram' (Kudo 2018) or 'bpe' (Sennrich et al. 2016)"},
    )
    vocab_size: int = field(
        default=8000,
        metadata={
            "help": "most pieces, pad/unk/bos/eos and the role markers included; a small corpus may "
            "give fewer (the model takes the tokenizer's actual size)"
        },
    )
    character_coverage: float = field(
        default=1.0,
        metadata={
            "help": "fraction of characters covered by the vocabulary (1.0 for small alphabets "
            "such as English; 0.9995 for CJK)"
        },
    )
    max_sentences: int = field(
        default=300_000,
        metadata={"help": "train the tokenizer on at most this many sentences (a seeded sample)"},
    )
    split_digits: bool = field(
        default=True,
        metadata={"help": "split numbers into single digits (codes, times and amounts then share pieces)"},
    )

    def __post_init__(self) -> None:
        require(
            self.model_type in ("unigram", "bpe"),
            f"model_type must be 'unigram' or 'bpe', got {self.model_type!r}",
        )
        minimum = 4 + len(SPECIAL_MARKERS) + 1
        require(
            isinstance(self.vocab_size, int) and self.vocab_size >= minimum,
            f"vocab_size must be an integer >= {minimum} (4 special ids + role markers + 1), "
            f"got {self.vocab_size!r}",
        )
        require(
            0.9 <= self.character_coverage <= 1.0,
            f"character_coverage must be in [0.9, 1.0], got {self.character_coverage}",
        )
        require(self.max_sentences >= 1, f"max_sentences must be >= 1, got {self.max_sentences}")


class Tokenizer:
    """A loaded SentencePiece model with the project's fixed special ids.

    Use :meth:`train` or :meth:`load` to get one.
    """

    pad_id = PAD_ID
    unk_id = UNK_ID
    bos_id = BOS_ID
    eos_id = EOS_ID

    def __init__(self, model_proto: bytes, source: str = "<memory>") -> None:
        """Wrap a serialized SentencePiece model.

        Raises:
            ModelError: the bytes are not a SentencePiece model, or its special ids differ from the
                project's fixed ``pad=0, unk=1, bos=2, eos=3``.
        """
        processor = spm.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(model_proto)
        except (RuntimeError, OSError) as e:
            raise ModelError(f"{source}: not a SentencePiece model ({e})") from e
        ids = (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id())
        if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise ModelError(
                f"{source}: special ids (pad, unk, bos, eos) are {ids}, expected "
                f"{(PAD_ID, UNK_ID, BOS_ID, EOS_ID)}; train it with assistant.generators.lstm.tokenizer"
            )
        self._sp = processor
        self._proto = model_proto

    @classmethod
    def train(cls, texts: Iterable[str], config: TokenizerConfig, seed: int = 0) -> Tokenizer:
        """Train a SentencePiece model on ``texts`` (e.g. every turn of the training dialogs).

        Args:
            texts: training sentences; empty strings are ignored.
            config: algorithm and vocabulary size.
            seed: seeds the sentence sample when there are more than ``config.max_sentences``.

        The vocabulary size is an upper bound (SentencePiece's ``hard_vocab_limit=False``): a corpus
        too small for ``config.vocab_size`` pieces gives fewer, so support logs of any size train.

        Raises:
            ConfigError: no text, or SentencePiece rejects the corpus or the settings.
        """
        proto = train_sentencepiece(
            texts,
            config.vocab_size,
            seed=seed,
            max_sentences=config.max_sentences,
            model_type=config.model_type,
            character_coverage=config.character_coverage,
            split_digits=config.split_digits,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            user_defined_symbols=list(SPECIAL_MARKERS),
        )
        return cls(proto, source="trained tokenizer")

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Load a tokenizer saved with :meth:`save`.

        Raises:
            ModelError: the file is missing or not a SentencePiece model with the project's ids.
        """
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: no such tokenizer file")
        return cls(path.read_bytes(), source=str(path))

    def save(self, path: str | Path) -> None:
        """Write the SentencePiece model to ``path`` (conventionally ``<dir>/tokenizer.model``)."""
        Path(path).write_bytes(self._proto)

    @property
    def vocab_size(self) -> int:
        """Number of pieces, special ids included."""
        return self._sp.get_piece_size()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode each text into piece ids (no bos/eos added).

        Returns:
            one list of ids per text; an empty text gives an empty list.
        """
        return self._sp.encode(list(texts), out_type=int)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Decode each id sequence into text; pad/bos/eos are control symbols and vanish.

        Raises:
            ModelError: an id is outside ``[0, vocab_size)``.
        """
        rows = [list(map(int, row)) for row in ids]
        size = self.vocab_size
        for row in rows:
            bad = [i for i in row if not 0 <= i < size]
            if bad:
                raise ModelError(f"token ids {bad[:5]} are outside the vocabulary [0, {size})")
        return [text.strip() for text in self._sp.decode(rows)]

    def id_to_piece(self, token_id: int) -> str:
        """The piece string of one id (for inspection and tests)."""
        return self._sp.id_to_piece(int(token_id))
