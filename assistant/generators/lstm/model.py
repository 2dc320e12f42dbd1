"""The LSTM encoder-decoder reply model: teacher-forced forward, masked loss, and a decoding step.

Assembles :class:`~assistant.generators.lstm.encoder.Encoder` and :class:`~assistant.generators.lstm.decoder.Decoder`
and bridges them (the encoder's final states, projected, start the decoder). Decoding state is an
explicit :class:`DecoderState` value passed in and out of :meth:`Seq2SeqModel.step`, never kept on the
module, so that ``assistant/generators/decoding.py`` can search with any model that offers the same ``step``.
This module does not tokenize, search or save.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from assistant.errors import ModelError
from assistant.generators.lstm.config import Seq2SeqConfig
from assistant.generators.lstm.decoder import Decoder
from assistant.generators.lstm.encoder import Encoder


class DecoderState(NamedTuple):
    """Everything one decoding step needs; every tensor has the batch (or hypothesis) dimension.

    Attributes:
        h, c: decoder LSTM state ``(decoder_layers, batch, hidden)``.
        memory: encoder outputs ``(batch, src_len, hidden)``, or ``(batch / G, src_len, hidden)`` when
            ``G`` consecutive rows (beams) share one source (see :func:`reorder_state`).
        keys: attention keys ``(batch, src_len, *)`` (rows as ``memory``).
        src_mask: ``(batch, src_len)`` bool, True at real source tokens (rows as ``memory``).
    """

    h: torch.Tensor
    c: torch.Tensor
    memory: torch.Tensor
    keys: torch.Tensor
    src_mask: torch.Tensor


def reorder_state(state: DecoderState, indices: torch.Tensor) -> DecoderState:
    """Select (and repeat) batch rows of a state: row ``i`` of the result is row ``indices[i]``.

    Used by beam search to expand a batch to ``batch * beam`` rows and to follow surviving beams.
    The source side (``memory``, ``keys``, ``src_mask``) is not copied per row when it need not be:
    it keeps one row per source item while every new row ``i`` comes from the same item as before,
    i.e. rows ``i*G .. i*G+G-1`` all select rows of item ``i`` (the expansion to ``G`` beams and
    every later beam reordering). Otherwise it is expanded to one row per row.

    Args:
        state: a state with ``N`` rows (its source side ``N`` or ``N / G_old`` rows).
        indices: ``(M,)`` long tensor of row indices in ``[0, N)``.
    """
    rows, items = state.h.size(1), state.memory.size(0)
    old_group = rows // items
    new_rows = indices.numel()
    source_items = indices // old_group if old_group > 1 else indices  # (M,) item of each new row
    if new_rows % items == 0 and bool(
        (source_items == torch.arange(new_rows, device=indices.device) // (new_rows // items)).all()
    ):
        memory, keys, src_mask = state.memory, state.keys, state.src_mask
    else:
        memory = state.memory.index_select(0, source_items)
        keys = state.keys.index_select(0, source_items)
        src_mask = state.src_mask.index_select(0, source_items)
    return DecoderState(
        h=state.h.index_select(1, indices),
        c=state.c.index_select(1, indices),
        memory=memory,
        keys=keys,
        src_mask=src_mask,
    )


class Seq2SeqModel(nn.Module):
    """Bidirectional LSTM encoder → bridge → attention LSTM decoder → logits.

    Args:
        config: the architecture.
        vocab_size: number of token ids (the tokenizer's).
        pad_id: the padding id (its embedding row is kept at zero and it is never a loss target).

    Raises:
        ModelError: ``vocab_size`` too small or ``pad_id`` outside the vocabulary.
    """

    def __init__(self, config: Seq2SeqConfig, vocab_size: int, pad_id: int) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ModelError(f"vocab_size must be >= 2, got {vocab_size}")
        if not 0 <= pad_id < vocab_size:
            raise ModelError(f"pad_id must be in [0, {vocab_size}), got {pad_id}")
        self.config = config
        self.vocab_size = vocab_size
        self.pad_id = pad_id
        hidden, layers = config.hidden_size, config.decoder_layers
        src_embedding = nn.Embedding(vocab_size, config.emb_size, padding_idx=pad_id)
        tgt_embedding = (
            src_embedding
            if config.share_embeddings
            else nn.Embedding(vocab_size, config.emb_size, padding_idx=pad_id)
        )
        self.encoder = Encoder(src_embedding, hidden, config.encoder_layers, config.dropout)
        self.decoder = Decoder(
            tgt_embedding, hidden, layers, config.dropout, config.attention, config.tie_embeddings
        )
        # Bridge: top encoder layer's final (h, c), both directions, → initial state of every decoder layer.
        self.bridge_h = nn.Linear(hidden, layers * hidden)
        self.bridge_c = nn.Linear(hidden, layers * hidden)
        self._init_weights()

    def _init_weights(self) -> None:
        for name, param in self.named_parameters():
            if "embedding" in name:
                nn.init.normal_(param, mean=0.0, std=self.config.emb_size**-0.5)
            elif param.dim() >= 2:
                nn.init.uniform_(param, -0.1, 0.1)
            else:
                nn.init.zeros_(param)
        with torch.no_grad():
            self.encoder.embedding.weight[self.pad_id].zero_()
            self.decoder.embedding.weight[self.pad_id].zero_()
            for lstm in (
                self.encoder.lstm,
                self.decoder.lstm,
            ):  # forget-gate bias 1 (Jozefowicz et al., 2015)
                for name, param in lstm.named_parameters():
                    if name.startswith("bias_ih"):
                        n = param.numel() // 4
                        param[n : 2 * n].fill_(1.0)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> DecoderState:
        """Encode the source and build the decoder's start state.

        Args:
            src: source ids ``(batch, src_len)``, right-padded with ``pad_id``.
            src_lengths: ``(batch,)`` real lengths, each >= 1.

        Returns:
            the :class:`DecoderState` before the first target token.

        Raises:
            ModelError: a length is below 1 or above ``src_len``.
        """
        if src_lengths.numel() and (int(src_lengths.min()) < 1 or int(src_lengths.max()) > src.size(1)):
            raise ModelError(
                f"source lengths must be in [1, {src.size(1)}], got min {int(src_lengths.min())} "
                f"max {int(src_lengths.max())}"
            )
        memory, (h_top, c_top) = self.encoder(src, src_lengths)  # (B, S, H), (B, H)
        batch, hidden, layers = src.size(0), self.config.hidden_size, self.config.decoder_layers
        h0 = (
            torch.tanh(self.bridge_h(h_top)).view(batch, layers, hidden).transpose(0, 1).contiguous()
        )  # (L, B, H)
        c0 = self.bridge_c(c_top).view(batch, layers, hidden).transpose(0, 1).contiguous()  # (L, B, H)
        src_mask = torch.arange(src.size(1), device=src.device).unsqueeze(0) < src_lengths.to(
            src.device
        ).unsqueeze(1)
        return DecoderState(h0, c0, memory, self.decoder.attention.prepare_keys(memory), src_mask)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits for a batch.

        Args:
            src: source ids ``(batch, src_len)``; src_lengths ``(batch,)``.
            tgt_in: decoder inputs ``(batch, tgt_len)``: bos followed by the target, right-padded.

        Returns:
            logits ``(batch, tgt_len, vocab)``; position ``t`` predicts target token ``t`` (the next one).
        """
        state = self.encode(src, src_lengths)
        logits, _ = self.decoder(tgt_in, (state.h, state.c), state.memory, state.keys, state.src_mask)
        return logits

    def token_nll(self, logits: torch.Tensor, tgt_out: torch.Tensor) -> torch.Tensor:
        """Per-token negative log-likelihood, zero at padding.

        Args:
            logits: ``(batch, tgt_len, vocab)``.
            tgt_out: gold next tokens ``(batch, tgt_len)`` (target followed by eos, right-padded).

        Returns:
            ``(batch, tgt_len)`` NLL in nats, 0 where ``tgt_out == pad_id``.
        """
        # Over (B*T, V) rows: contiguous, so log-softmax runs over unit-stride rows (the (B, V, T) layout
        # of ``logits.transpose(1, 2)`` made it and its backward strided and several times slower).
        nll = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)),
            tgt_out.reshape(-1),
            ignore_index=self.pad_id,
            reduction="none",
        )
        return nll.view(tgt_out.shape)  # (B, T)

    def step(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """One decoding step: the log-probabilities of the next token for each row.

        Args:
            tokens: ``(N,)`` the previous token of each row (bos at the first step).
            state: the rows' :class:`DecoderState` (``N`` rows).

        Returns:
            ``(log_probs, state)``: ``(N, vocab)`` log-softmax, and the state after consuming ``tokens``.
        """
        logits, (h, c) = self.decoder(
            tokens.unsqueeze(1), (state.h, state.c), state.memory, state.keys, state.src_mask
        )  # (N, 1, V)
        return torch.log_softmax(logits.squeeze(1).float(), dim=-1), state._replace(h=h, c=c)
