"""LSTM seq2seq model: shapes, padding invariance (encoder and full model), loss masking, step consistency."""

from __future__ import annotations

import pytest
import torch

from assistant.errors import ConfigError
from assistant.generators.lstm import Seq2SeqConfig, Seq2SeqModel, reorder_state
from assistant.generators.lstm.attention import Attention

VOCAB, PAD = 50, 0


def make_model(**overrides) -> Seq2SeqModel:
    torch.manual_seed(0)
    config = Seq2SeqConfig(
        **{
            "emb_size": 16,
            "hidden_size": 24,
            "encoder_layers": 2,
            "decoder_layers": 2,
            "dropout": 0.1,
            **overrides,
        }
    )
    return Seq2SeqModel(config, VOCAB, PAD).eval()


def padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(r) for r in rows])
    out = torch.full((len(rows), int(lengths.max())), PAD)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out, lengths


SRC = [[5, 6, 7, 8, 9, 10, 3], [11, 12, 3], [13, 14, 15, 16, 3]]
TGT_IN = [[2, 20, 21, 22], [2, 23], [2, 24, 25]]


@pytest.mark.parametrize("attention", ["dot", "general", "concat"])
@pytest.mark.parametrize("tie", [True, False])
def test_forward_shapes(attention: str, tie: bool) -> None:
    model = make_model(attention=attention, tie_embeddings=tie)
    src, src_len = padded(SRC)
    tgt_in, _ = padded(TGT_IN)
    logits = model(src, src_len, tgt_in)
    assert logits.shape == (3, 4, VOCAB)
    state = model.encode(src, src_len)
    assert state.h.shape == state.c.shape == (2, 3, 24)
    assert state.memory.shape == (3, 7, 24)
    assert state.src_mask.tolist()[1] == [True, True, True, False, False, False, False]
    log_probs, state2 = model.step(torch.tensor([2, 2, 2]), state)
    assert log_probs.shape == (3, VOCAB)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3), atol=1e-5)
    assert state2.h.shape == (2, 3, 24)


def test_encoder_padding_does_not_change_outputs() -> None:
    model = make_model()
    src, src_len = padded(SRC)
    outputs, (h, c) = model.encoder(src, src_len)
    for i, row in enumerate(SRC):
        alone_out, (alone_h, alone_c) = model.encoder(torch.tensor([row]), torch.tensor([len(row)]))
        assert torch.allclose(outputs[i, : len(row)], alone_out[0], atol=1e-6)
        assert torch.allclose(h[i], alone_h[0], atol=1e-6) and torch.allclose(c[i], alone_c[0], atol=1e-6)
        assert torch.count_nonzero(outputs[i, len(row) :]) == 0


@pytest.mark.parametrize("attention", ["dot", "general", "concat"])
def test_model_padding_does_not_change_logits(attention: str) -> None:
    model = make_model(attention=attention)
    src, src_len = padded(SRC)
    tgt_in, _ = padded(TGT_IN)
    batch_logits = model(src, src_len, tgt_in)
    for i, (s, t) in enumerate(zip(SRC, TGT_IN, strict=True)):
        alone = model(torch.tensor([s]), torch.tensor([len(s)]), torch.tensor([t]))
        assert torch.allclose(batch_logits[i, : len(t)], alone[0], atol=1e-5)


def test_attention_ignores_padding() -> None:
    torch.manual_seed(0)
    attention = Attention("general", 8, 8)
    memory = torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    _, weights = attention(torch.randn(2, 3, 8), memory, memory, mask)
    assert torch.all(weights[0, :, 3:] == 0)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 3))
    memory2 = memory.clone()
    memory2[0, 3:] = 100.0  # garbage at padded positions must not matter
    context, _ = attention(torch.randn(2, 3, 8).fill_(0.5), memory, memory, mask)
    context2, _ = attention(torch.randn(2, 3, 8).fill_(0.5), memory2, memory2, mask)
    assert torch.allclose(context[0], context2[0])


def test_loss_masks_padding() -> None:
    model = make_model()
    src, src_len = padded(SRC)
    tgt_in, _ = padded(TGT_IN)
    tgt_out, _ = padded([[20, 21, 22, 3], [23, 3], [24, 25, 3]])
    logits = model(src, src_len, tgt_in).detach().requires_grad_(True)
    nll = model.token_nll(logits, tgt_out)
    assert nll.shape == (3, 4)
    assert torch.all(nll[tgt_out == PAD] == 0) and torch.all(nll[tgt_out != PAD] > 0)
    nll.sum().backward()
    assert torch.all(logits.grad[tgt_out == PAD] == 0)  # pad positions get no gradient
    changed = logits.detach().clone()
    changed[tgt_out == PAD] = torch.randn_like(changed[tgt_out == PAD]) * 10
    assert torch.allclose(model.token_nll(changed, tgt_out).sum(), nll.sum())


@pytest.mark.parametrize("attention", ["dot", "general", "concat"])
def test_step_matches_teacher_forcing(attention: str) -> None:
    model = make_model(attention=attention)
    src, src_len = padded(SRC)
    tgt_in, _ = padded([[2, 20, 21, 22], [2, 23, 30, 31], [2, 24, 25, 26]])
    expected = torch.log_softmax(model(src, src_len, tgt_in), dim=-1)
    state = model.encode(src, src_len)
    for t in range(tgt_in.size(1)):
        log_probs, state = model.step(tgt_in[:, t], state)
        assert torch.allclose(log_probs, expected[:, t], atol=1e-5)


def test_reorder_state_selects_rows() -> None:
    model = make_model()
    src, src_len = padded(SRC)
    state = model.encode(src, src_len)
    picked = reorder_state(state, torch.tensor([2, 2, 0]))
    assert torch.equal(picked.h[:, 0], state.h[:, 2]) and torch.equal(picked.memory[2], state.memory[0])
    assert picked.src_mask.shape == (3, 7)


def test_tied_embeddings_share_the_table() -> None:
    tied, untied = make_model(tie_embeddings=True), make_model(tie_embeddings=False)
    assert tied.decoder.pre_output is not None  # emb 16 != hidden 24: projection before the tied layer
    assert sum(p.numel() for p in tied.parameters()) < sum(p.numel() for p in untied.parameters())
    assert not hasattr(tied.decoder, "output") and isinstance(untied.decoder.output, torch.nn.Linear)
    with torch.no_grad():  # the tied output layer reads the embedding table: changing one row moves its logit
        src, lengths, tgt = torch.tensor([[5, 6, 7]]), torch.tensor([3]), torch.tensor([[2, 5]])
        before = tied.eval()(src, lengths, tgt)[..., 9].clone()
        tied.decoder.embedding.weight[9] += 1.0
        assert not torch.allclose(tied(src, lengths, tgt)[..., 9], before)


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="hidden_size must be even"):
        Seq2SeqConfig(hidden_size=25)
    with pytest.raises(ConfigError, match="attention"):
        Seq2SeqConfig(attention="additive")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="dropout"):
        Seq2SeqConfig(dropout=1.0)
    with pytest.raises(ConfigError, match="dot"):
        Attention("dot", 8, 16)
