"""The LSTM's fast paths compute what the reference paths compute (issue 15/16 speed work).

Reference: the encoder as it was, ``nn.LSTM`` over ``pack_padded_sequence`` input; the fast encoder
(segmented fused calls) must give the same outputs, final states, loss and gradients on tiny models.
"""

from __future__ import annotations

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
