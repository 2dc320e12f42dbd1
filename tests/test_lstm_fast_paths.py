"""The LSTM's fast paths compute what the reference paths compute (issue 15/16 speed work).

Reference: the encoder as it was, ``nn.LSTM`` over ``pack_padded_sequence`` input; the fast encoder
(segmented fused calls) must give the same outputs, final states, loss and gradients on tiny models.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from assistant.generators.lstm import Seq2SeqConfig, Seq2SeqModel


def packed_reference(model: Seq2SeqModel, src: torch.Tensor, lengths: torch.Tensor):
    """The encoder's computation before the fast path: a packed bidirectional nn.LSTM."""
    encoder = model.encoder
    embedded = encoder.dropout(encoder.embedding(src))
    packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
    packed_out, (h_n, c_n) = encoder.lstm(packed)
    outputs, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=src.size(1))
    return outputs, (torch.cat([h_n[-2], h_n[-1]], -1), torch.cat([c_n[-2], c_n[-1]], -1))


def tiny_model(layers: int, seed: int = 0) -> Seq2SeqModel:
    torch.manual_seed(seed)
    config = Seq2SeqConfig(emb_size=12, hidden_size=16, encoder_layers=layers, decoder_layers=1, dropout=0.0)
    return Seq2SeqModel(config, vocab_size=30, pad_id=0)


def batch(lengths: list[int], total: int | None = None, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    src = torch.zeros(len(lengths), total or max(lengths), dtype=torch.long)
    for row, n in enumerate(lengths):
        src[row, :n] = torch.randint(4, 30, (n,), generator=generator)
    return src, torch.tensor(lengths)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize(
    "lengths,total",
    [([5, 3, 5, 1, 4, 3], None), ([7, 7, 7], None), ([2, 6, 6, 3], 9), ([1], None), ([4, 4], 6)],
)
def test_fast_encoder_equals_the_packed_lstm(layers: int, lengths: list[int], total: int | None) -> None:
    model = tiny_model(layers)
    src, src_len = batch(lengths, total)
    for training in (False, True):  # train mode (dropout 0) takes the kernel's training path
        model.train(training)
        ref_out, (ref_h, ref_c) = packed_reference(model, src, src_len)
        out, (h, c) = model.encoder(src, src_len)
        assert out.shape == ref_out.shape
        torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(h, ref_h, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(c, ref_c, atol=1e-6, rtol=1e-5)
        mask = torch.arange(src.size(1)).unsqueeze(0) >= src_len.unsqueeze(1)
        assert bool((out[mask] == 0).all())  # zeros at padding, as pad_packed_sequence gives


def test_fast_encoder_gives_the_same_loss_logits_and_gradients() -> None:
    model = tiny_model(2)
    model.train()
    src, src_len = batch([6, 2, 5, 6, 1, 3])
    tgt = torch.randint(4, 30, (6, 5), generator=torch.Generator().manual_seed(3))
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]

    def loss_and_grads(encode):
        model.zero_grad(set_to_none=True)
        memory, (h_top, c_top) = encode(src, src_len)
        batch_size, hidden = src.size(0), model.config.hidden_size
        h0 = torch.tanh(model.bridge_h(h_top)).view(batch_size, 1, hidden).transpose(0, 1).contiguous()
        c0 = model.bridge_c(c_top).view(batch_size, 1, hidden).transpose(0, 1).contiguous()
        mask = torch.arange(src.size(1)).unsqueeze(0) < src_len.unsqueeze(1)
        keys = model.decoder.attention.prepare_keys(memory)
        logits, _ = model.decoder(tgt_in, (h0, c0), memory, keys, mask)
        loss = model.token_nll(logits, tgt_out).mean()
        loss.backward()
        return logits.detach(), loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    ref_logits, ref_loss, ref_grads = loss_and_grads(lambda s, n: packed_reference(model, s, n))
    logits, loss, grads = loss_and_grads(model.encoder)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=1e-6)
    assert ref_grads.keys() == grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    # and the model's own forward (the trainer's path) gives those logits
    torch.testing.assert_close(model(src, src_len, tgt_in).detach(), ref_logits, atol=1e-5, rtol=1e-5)


def full_copy_reorder(state, indices):
    """The beam reorder before the fast path: every tensor of the state copied per row."""
    from assistant.generators.lstm.model import DecoderState

    return DecoderState(
        h=state.h.index_select(1, indices),
        c=state.c.index_select(1, indices),
        memory=state.memory.index_select(0, indices),
        keys=state.keys.index_select(0, indices),
        src_mask=state.src_mask.index_select(0, indices),
    )


@functools.cache
def tiny_trained_model() -> Seq2SeqModel:
    """A tiny model trained 60 steps to copy its source reversed: peaked, varied-length replies."""
    torch.manual_seed(0)
    model = Seq2SeqModel(Seq2SeqConfig(emb_size=16, hidden_size=32, dropout=0.0), vocab_size=24, pad_id=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        lengths = torch.randint(1, 8, (16,), generator=generator)
        src = torch.zeros(16, 7, dtype=torch.long)
        tgt = torch.zeros(16, 9, dtype=torch.long)
        for row, n in enumerate(lengths.tolist()):
            tokens = torch.randint(4, 24, (n,), generator=generator)
            src[row, :n] = tokens
            tgt[row, 0] = 2
            tgt[row, 1 : n + 1] = tokens.flip(0)
            tgt[row, n + 1] = 3
        loss = model.token_nll(model(src, lengths, tgt[:, :-1]), tgt[:, 1:]).sum() / (lengths + 1).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


@pytest.mark.parametrize(
    "options",
    [
        {"beam_size": 1},
        {"beam_size": 4},
        {"beam_size": 4, "length_penalty": 1.0, "no_repeat_ngram_size": 2},
        {"beam_size": 3, "min_len": 2},
    ],
)
def test_fast_decoding_gives_the_replies_of_the_reference_path(options: dict) -> None:
    from assistant.generators.decoding import DecodingConfig, decode
    from assistant.generators.lstm import reorder_state

    model = tiny_trained_model()
    src, src_len = batch([7, 3, 5, 1, 7, 2, 4, 6], seed=5)
    src = src.clamp(max=23)
    config = DecodingConfig(max_len=10, **options)
    with torch.no_grad():
        model.train()  # dropout 0: the reference path (fused nn.LSTM per step, full-copy reorder)
        reference = decode(model.step, full_copy_reorder, model.encode(src, src_len), 8, 2, 3, config)
        model.eval()  # the fast path: LSTM cell steps, beams sharing their source's memory
        fast = decode(model.step, reorder_state, model.encode(src, src_len), 8, 2, 3, config)
        single = [
            decode(
                model.step,
                reorder_state,
                model.encode(src[i : i + 1, : int(src_len[i])], src_len[i : i + 1]),
                1,
                2,
                3,
                config,
            )
            for i in range(8)
        ]
    assert fast.tokens == reference.tokens
    assert fast.n_scored == reference.n_scored
    assert fast.log_probs == pytest.approx(reference.log_probs, abs=1e-5)
    assert [s.tokens[0] for s in single] == reference.tokens  # batch 1 (one fused encoder call) too
    assert len({len(t) for t in reference.tokens}) > 1


def test_reorder_keeps_one_memory_row_per_source_until_rows_change_source() -> None:
    from assistant.generators.lstm import reorder_state

    model = tiny_model(1).eval()
    src, src_len = batch([3, 2])
    state = model.encode(src, src_len)
    expanded = reorder_state(state, torch.tensor([0, 0, 0, 1, 1, 1]))
    assert expanded.h.size(1) == 6 and expanded.memory.size(0) == 2  # 3 beams share each source
    moved = reorder_state(expanded, torch.tensor([2, 0, 0, 5, 3, 4]))
    assert moved.memory.size(0) == 2
    torch.testing.assert_close(moved.h, expanded.h[:, [2, 0, 0, 5, 3, 4]])
    mixed = reorder_state(expanded, torch.tensor([3, 0, 1, 4, 5, 5]))  # row 0 now follows source 1
    assert mixed.memory.size(0) == 6
    torch.testing.assert_close(mixed.memory, state.memory[[1, 0, 0, 1, 1, 1]])
    torch.testing.assert_close(mixed.src_mask, state.src_mask[[1, 0, 0, 1, 1, 1]])
