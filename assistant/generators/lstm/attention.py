"""Attention over encoder outputs: Luong "dot"/"general" and Bahdanau "concat" scores, padding masked.

Scores a batch of decoder queries against every encoder position, masks padded positions, and returns
the softmax-weighted sum of encoder outputs (the context vector). It does not combine the context with
the decoder state; the decoder does that (``assistant/generators/lstm/decoder.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from assistant.errors import ConfigError


class Attention(nn.Module):
    """Global attention with one of three score functions.

    * ``"dot"``: ``score(q, k) = q · k`` and ``"general"``: ``score(q, k) = q · W k`` — Luong, Pham &
      Manning, 2015, "Effective Approaches to Attention-based Neural Machine Translation" (EMNLP).
    * ``"concat"``: ``score(q, k) = vᵀ tanh(W_q q + W_k k)`` — the additive attention of Bahdanau, Cho &
      Bengio, 2015, "Neural Machine Translation by Jointly Learning to Align and Translate" (ICLR), used
      here with the Luong decoder layout (attention after the LSTM).

    Keys are prepared once per source with :meth:`prepare_keys` and reused at every decoding step.

    Args:
        method: ``"dot"``, ``"general"`` or ``"concat"``.
        query_size: decoder hidden size.
        memory_size: encoder output size (must equal ``query_size`` for ``"dot"``).

    Raises:
        ConfigError: unknown ``method``, or ``"dot"`` with different sizes.
    """

    def __init__(self, method: str, query_size: int, memory_size: int) -> None:
        super().__init__()
        if method not in ("dot", "general", "concat"):
            raise ConfigError(f"attention method must be 'dot', 'general' or 'concat', got {method!r}")
        if method == "dot" and query_size != memory_size:
            raise ConfigError(
                f"'dot' attention needs query_size == memory_size, got {query_size} and {memory_size}"
            )
        self.method = method
        if method == "general":
            # q · (W k) computed as (Wᵀ q) · k: one projection per query, keys stay the raw memory.
            self.query_proj = nn.Linear(query_size, memory_size, bias=False)
        elif method == "concat":
            self.query_proj = nn.Linear(query_size, query_size, bias=True)
            self.key_proj = nn.Linear(memory_size, query_size, bias=False)
            self.v = nn.Linear(query_size, 1, bias=False)

    def prepare_keys(self, memory: torch.Tensor) -> torch.Tensor:
        """Precompute the key side of the score, once per source.

        Args:
            memory: encoder outputs ``(batch, src_len, memory_size)``.

        Returns:
            keys ``(batch, src_len, memory_size)`` for dot/general, ``(batch, src_len, query_size)`` for concat.
        """
        if self.method == "concat":
            return self.key_proj(memory)
        return memory

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend from each query position over the source.

        Args:
            query: decoder outputs ``(batch, tgt_len, query_size)``.
            keys: from :meth:`prepare_keys`, ``(batch, src_len, *)``.
            memory: encoder outputs ``(batch, src_len, memory_size)``.
            src_mask: ``(batch, src_len)`` bool, True at real tokens; every row needs at least one True.

        ``keys``, ``memory`` and ``src_mask`` may instead have ``batch / G`` rows, query rows
        ``i*G .. i*G+G-1`` then attending over memory row ``i`` (beam search: the beams of one request
        share its encoder outputs instead of carrying G copies).

        Returns:
            ``(context, weights)``: context ``(batch, tgt_len, memory_size)`` and attention weights
            ``(batch, tgt_len, src_len)`` (zero at padded positions, rows sum to 1).
        """
        if query.size(0) != keys.size(0):  # beams sharing their item's memory: (B*G, T, .) over (B, S, .)
            group = query.size(0) // keys.size(0)
            context, weights = self(
                query.reshape(keys.size(0), group * query.size(1), query.size(2)), keys, memory, src_mask
            )  # (B, G*T, H_mem), (B, G*T, S)
            return (
                context.view(query.size(0), query.size(1), -1),
                weights.view(query.size(0), query.size(1), -1),
            )
        if self.method == "dot":
            scores = torch.bmm(query, keys.transpose(1, 2))  # (B, T, S)
        elif self.method == "general":
            scores = torch.bmm(self.query_proj(query), keys.transpose(1, 2))  # (B, T, S)
        else:
            q = self.query_proj(query)  # (B, T, A)
            hidden = torch.tanh(q.unsqueeze(2) + keys.unsqueeze(1))  # (B, T, S, A)
            scores = self.v(hidden).squeeze(-1)  # (B, T, S)
        scores = scores.masked_fill(~src_mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, T, S)
        context = torch.bmm(weights, memory)  # (B, T, H_mem)
        return context, weights
