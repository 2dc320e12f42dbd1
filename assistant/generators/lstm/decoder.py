"""The attention LSTM decoder: one code path for teacher forcing (a whole target) and single steps.

Layout of Luong et al. (2015), without input feeding: the fused ``nn.LSTM`` runs over all target
positions at once, attention is computed after it from each LSTM output, and the attentional hidden
state ``tanh(W_c [context; h_t])`` feeds the output layer. Because no step's input depends on the
previous step's attention, teacher forcing needs no Python loop over time, and decoding one step is the
same call with a target of length 1. (Input feeding would make the recurrence depend on attention, which
forces a per-step loop; on a small CPU budget the fused LSTM buys more epochs than input feeding buys
quality.)

It does not search; ``assistant/generators/decoding.py`` does, through ``Seq2SeqModel.step``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from assistant.generators.lstm.attention import Attention


class Decoder(nn.Module):
    """Embedding → LSTM → attention → ``tanh(W_c [c; h])`` → output layer.

    Args:
        embedding: the target embedding ``vocab → emb_size``.
        hidden_size: LSTM size; also the encoder output (memory) size.
        num_layers: stacked LSTM layers.
        dropout: on embeddings, between layers, and before the output layer.
        attention: ``"dot"``, ``"general"`` or ``"concat"`` (see :class:`Attention`).
        tie_embeddings: the output layer reuses ``embedding.weight`` (Press & Wolf, 2017, "Using the Output
            Embedding to Improve Language Models"); when ``emb_size != hidden_size`` a bias-free
            projection ``hidden → emb`` comes first.
    """

    def __init__(
        self,
        embedding: nn.Embedding,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        attention: str,
        tie_embeddings: bool,
    ) -> None:
        super().__init__()
        vocab_size, emb_size = embedding.num_embeddings, embedding.embedding_dim
        self.embedding = embedding
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            emb_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.attention = Attention(attention, hidden_size, hidden_size)
        self.combine = nn.Linear(2 * hidden_size, hidden_size, bias=False)
        self.tie_embeddings = tie_embeddings
        if tie_embeddings:
            self.pre_output = (
                nn.Linear(hidden_size, emb_size, bias=False) if emb_size != hidden_size else None
            )
            self.output_bias = nn.Parameter(torch.zeros(vocab_size))
        else:
            self.output = nn.Linear(hidden_size, vocab_size)

    def forward(
        self,
        tokens: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        memory: torch.Tensor,
        keys: torch.Tensor,
        src_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run the decoder over ``tgt_len`` input tokens.

        Args:
            tokens: decoder input ids ``(batch, tgt_len)`` (bos-shifted target when teacher forcing,
                ``tgt_len == 1`` when decoding step by step).
            state: LSTM ``(h, c)``, each ``(num_layers, batch, hidden)``.
            memory: encoder outputs ``(batch, src_len, hidden)``.
            keys: ``Attention.prepare_keys(memory)``.
            src_mask: ``(batch, src_len)`` bool, True at real source tokens.

        Returns:
            ``(logits, state)``: logits ``(batch, tgt_len, vocab)``, and the LSTM state after the last
            position.
        """
        embedded = self.dropout(self.embedding(tokens))  # (B, T, E)
        if tokens.size(1) == 1 and not self.training:
            outputs, state = self._lstm_step(embedded, state)  # (B, 1, H)
        else:
            outputs, state = self.lstm(embedded, state)  # (B, T, H)
        context, _ = self.attention(outputs, keys, memory, src_mask)  # (B, T, H)
        attentional = torch.tanh(self.combine(torch.cat([context, outputs], dim=-1)))  # (B, T, H)
        attentional = self.dropout(attentional)
        if self.tie_embeddings:
            if self.pre_output is not None:
                attentional = self.pre_output(attentional)  # (B, T, E)
            logits = F.linear(attentional, self.embedding.weight, self.output_bias)  # (B, T, V)
        else:
            logits = self.output(attentional)  # (B, T, V)
        return logits, state

    def _lstm_step(
        self, embedded: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One time step of ``self.lstm`` (eval mode) as LSTM cells: the same weights and equations.

        ``nn.LSTM`` on one position costs a fused-kernel call that re-packs the weights every call
        (most of a beam-search step on CPU); ``torch.lstm_cell`` (what ``nn.LSTMCell`` calls) does two
        matrix products. Args and returns as ``nn.LSTM`` with ``batch_first``: ``(B, 1, E)`` in,
        ``(B, 1, H)`` out, state ``(layers, B, H)``.
        """
        h, c = state
        layer_input = embedded.squeeze(1)  # (B, E)
        hs, cs = [], []
        for layer in range(self.lstm.num_layers):
            weights = [
                getattr(self.lstm, f"{n}_l{layer}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ]
            h_l, c_l = torch.lstm_cell(layer_input, (h[layer], c[layer]), *weights)  # (B, H) each
            hs.append(h_l)
            cs.append(c_l)
            layer_input = h_l
        return layer_input.unsqueeze(1), (torch.stack(hs), torch.stack(cs))
