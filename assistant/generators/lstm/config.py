"""The LSTM seq2seq model's configuration: sizes, attention type, dropout, sequence limits.

Only the architecture; optimiser settings live in ``finetune/train_lstm.py`` and search settings in
``assistant/generators/decoding.py``. The vocabulary size is not here: it comes from the tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from assistant.config import require


@dataclass
class Seq2SeqConfig:
    """Architecture of the LSTM encoder-decoder with attention."""

    emb_size: int = field(default=256, metadata={"help": "token embedding size"})
    hidden_size: int = field(
        default=256,
        metadata={
            "help": "decoder LSTM size and encoder output size (each encoder direction has half); even"
        },
    )
    encoder_layers: int = field(
        default=1, metadata={"help": "stacked bidirectional LSTM layers in the encoder"}
    )
    decoder_layers: int = field(default=1, metadata={"help": "stacked LSTM layers in the decoder"})
    dropout: float = field(
        default=0.2,
        metadata={
            "help": "dropout probability on embeddings, between LSTM layers and before the output layer"
        },
    )
    attention: Literal["dot", "general", "concat"] = field(
        default="general",
        metadata={
            "help": "attention score: 'dot'/'general' (Luong et al. 2015) or 'concat' (Bahdanau et al. 2015)"
        },
    )
    tie_embeddings: bool = field(
        default=True,
        metadata={"help": "share the decoder input embedding with the output layer (Press & Wolf 2017)"},
    )
    share_embeddings: bool = field(
        default=True,
        metadata={"help": "encoder and decoder use one embedding table (one tokenizer serves both sides)"},
    )
    max_context_turns: int = field(
        default=3,
        metadata={
            "help": "dialog turns the model sees before a reply (the most recent); applied in training "
            "and generation alike"
        },
    )
    max_source_len: int = field(
        default=96,
        metadata={"help": "context tokens kept (the most recent; eos included); older tokens are dropped"},
    )
    max_target_len: int = field(
        default=48,
        metadata={
            "help": "reply tokens trained on (eos included); generation length is the decoding "
            "config's max_len (--decode-max-len)"
        },
    )

    def __post_init__(self) -> None:
        for name in ("emb_size", "hidden_size", "encoder_layers", "decoder_layers"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1, f"{name} must be an integer >= 1, got {value!r}")
        require(
            self.hidden_size % 2 == 0,
            f"hidden_size must be even (the bidirectional encoder gives half to each direction), "
            f"got {self.hidden_size}",
        )
        require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        require(
            self.attention in ("dot", "general", "concat"),
            f"attention must be 'dot', 'general' or 'concat', got {self.attention!r}",
        )
        require(self.max_context_turns >= 1, f"max_context_turns must be >= 1, got {self.max_context_turns}")
        require(self.max_source_len >= 2, f"max_source_len must be >= 2, got {self.max_source_len}")
        require(self.max_target_len >= 2, f"max_target_len must be >= 2, got {self.max_target_len}")
