"""The bidirectional multi-layer LSTM encoder over variable-length (right-padded) source sequences.

Embeds source token ids and runs a bidirectional LSTM so that padding never enters the recurrence:
the result equals ``nn.LSTM`` on ``pack_padded_sequence`` input (tested), but it is computed with
PyTorch's fused whole-sequence LSTM kernel (oneDNN on CPU, cuDNN on GPU) instead of the packed path.
PyTorch runs a packed LSTM one time step at a time, and the backward pass of each step's slice of the
packed input allocates and adds a zero tensor the size of the whole input: O(length²) memory traffic,
which was most of a training step's time (``docs/results/lstm-speed.md``).

How: rows are sorted by length; time is cut at each distinct length, and each segment is one fused
call over the rows still running, carrying ``(h, c)`` over from the previous segment (a batch has a
handful of distinct source lengths, since most sources are cut at ``max_source_len``). The backward
direction runs the same way over each row reversed within its length. A batch of equal lengths (e.g.
one request) is a single fused bidirectional call.

It does not own the embedding table (the model passes one in, so it can be shared with the decoder)
and does not attend. Parameters are those of one ``nn.LSTM`` (checkpoints unchanged).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Encoder(nn.Module):
    """Embedding → dropout → bidirectional LSTM, padding excluded from the recurrence.

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
        lengths = src_lengths.to(src.device)
        if bool((lengths == src.size(1)).all()):  # no padding: one fused bidirectional call
            outputs, (h_n, c_n) = self.lstm(embedded)  # h_n: (layers * 2, B, H/2)
            return outputs, (torch.cat([h_n[-2], h_n[-1]], -1), torch.cat([c_n[-2], c_n[-1]], -1))
        return self._forward_padded(embedded, lengths)

    def _forward_padded(
        self, embedded: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The segmented computation for rows of different lengths (see the module docstring)."""
        batch, src_len, _ = embedded.shape
        sorted_lengths, order = lengths.sort(descending=True)
        restore = torch.empty_like(order)
        restore[order] = torch.arange(batch, device=order.device)
        plan = _segments(sorted_lengths.tolist())
        positions = torch.arange(src_len, device=embedded.device).unsqueeze(0)  # (1, S)
        # reversed[b, t] = len_b - 1 - t inside the row, t in the padding (padding stays at the end).
        reverse_index = torch.where(
            positions < sorted_lengths.unsqueeze(1), sorted_lengths.unsqueeze(1) - 1 - positions, positions
        )  # (B, S)
        layer_input = embedded.index_select(0, order)  # (B, S, E), rows longest first
        for layer in range(self.lstm.num_layers):
            if layer > 0 and self.training and self.lstm.dropout > 0:
                layer_input = F.dropout(layer_input, self.lstm.dropout, training=True)
            forward_out, h_f, c_f = _run_direction(layer_input, plan, self._weights(layer, ""), self.training)
            backward_out, h_b, c_b = _run_direction(
                _take_rows(layer_input, reverse_index), plan, self._weights(layer, "_reverse"), self.training
            )
            layer_input = torch.cat([forward_out, _take_rows(backward_out, reverse_index)], dim=-1)
        outputs = layer_input.index_select(0, restore)  # (B, S, H)
        h_top = torch.cat([h_f, h_b], dim=-1).index_select(0, restore)  # (B, H)
        c_top = torch.cat([c_f, c_b], dim=-1).index_select(0, restore)  # (B, H)
        return outputs, (h_top, c_top)

    def _weights(self, layer: int, suffix: str) -> list[torch.Tensor]:
        lstm = self.lstm
        return [
            getattr(lstm, f"{name}_l{layer}{suffix}")
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]


def _segments(sorted_lengths: list[int]) -> list[tuple[int, int]]:
    """``(segment length, rows still running)`` for rows sorted by decreasing length."""
    plan, start = [], 0
    for end in sorted(set(sorted_lengths)):
        plan.append((end - start, sum(1 for n in sorted_lengths if n >= end)))
        start = end
    return plan


def _take_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``out[b, t] = x[b, index[b, t]]`` for ``x`` ``(B, S, D)`` and ``index`` ``(B, S)``."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


def _run_direction(
    x: torch.Tensor, plan: list[tuple[int, int]], weights: list[torch.Tensor], train: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One LSTM direction over right-padded rows sorted by decreasing length.

    Args:
        x: ``(B, S, D)`` inputs; row ``b``'s real part is its first ``len_b`` positions.
        plan: from :func:`_segments`.
        weights: ``[w_ih, w_hh, b_ih, b_hh]`` of this direction and layer.
        train: the module's training flag (passed to the kernel as ``nn.LSTM`` does).

    Returns:
        ``(outputs (B, S, H), h (B, H), c (B, H))``: outputs zero after each row's length, ``h``/``c``
        each row's state after its last real position.
    """
    batch, src_len, _ = x.shape
    hidden = weights[1].size(1)
    h = x.new_zeros(1, batch, hidden)
    c = x.new_zeros(1, batch, hidden)
    covered = sum(size for size, _ in plan)
    pieces = x.split([size for size, _ in plan] + ([src_len - covered] if src_len > covered else []), dim=1)
    outputs, h_last, c_last = [], [], []
    for i, (size, rows) in enumerate(plan):
        # torch.lstm is the function nn.LSTM calls (fused oneDNN/cuDNN kernel); args: input, hx, params,
        # has_biases, num_layers, dropout, train, bidirectional, batch_first.
        out, h, c = torch.lstm(
            pieces[i][:rows], (h[:, :rows], c[:, :rows]), weights, True, 1, 0.0, train, False, True
        )
        outputs.append(F.pad(out, (0, 0, 0, 0, 0, batch - rows)) if rows < batch else out)
        next_rows = plan[i + 1][1] if i + 1 < len(plan) else 0
        h_last.append(h[0, next_rows:rows])
        c_last.append(c[0, next_rows:rows])
    if src_len > covered:
        outputs.append(x.new_zeros(batch, src_len - covered, hidden))
    return torch.cat(outputs, dim=1), torch.cat(h_last[::-1], dim=0), torch.cat(c_last[::-1], dim=0)
