"""The bidirectional multi-layer LSTM encoder over packed (variable-length) source sequences.

Embeds source token ids, runs a fused ``nn.LSTM`` on ``pack_padded_sequence`` input so that padding
never enters the recurrence, and returns per-position outputs and the final states. It does not own the
embedding table (the model passes one in, so it can be shared with the decoder) and does not attend.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class Encoder(nn.Module):
    """Embedding → dropout → bidirectional ``nn.LSTM`` (packed).

    Args:
        embedding: the token embedding, ``vocab → emb_size``.
        hidden_size: output size per position; each direction has ``hidden_size // 2``.
        num_layers: stacked LSTM layers.
        dropout: on the embeddings and between layers.
    """

    def __init__(self, embedding: nn.Embedding, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.embedding = embedding
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            embedding.embedding_dim,
            hidden_size // 2,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )

    def forward(
        self, src: torch.Tensor, src_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Encode a padded batch.

        Args:
            src: token ids ``(batch, src_len)``, right-padded.
            src_lengths: ``(batch,)`` real lengths, each in ``[1, src_len]`` (any device).

        Returns:
            ``(outputs, (h, c))``: outputs ``(batch, src_len, hidden)`` (zeros at padded positions);
            ``h`` and ``c`` are the top layer's final states, both directions concatenated,
            ``(batch, hidden)``.
        """
        embedded = self.dropout(self.embedding(src))  # (B, S, E)
        packed = pack_padded_sequence(embedded, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_out, (h_n, c_n) = self.lstm(packed)  # h_n: (layers * 2, B, H/2)
        outputs, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=src.size(1))  # (B, S, H)
        h_top = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # (B, H): forward and backward of the top layer
        c_top = torch.cat([c_n[-2], c_n[-1]], dim=-1)  # (B, H)
        return outputs, (h_top, c_top)
