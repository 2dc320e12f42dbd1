"""Greedy and beam search against a stub step function with hand-built log-probs, and on a real tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from assistant.errors import ConfigError
from assistant.generators.decoding import DecodingConfig, beam_search, decode, greedy_search, length_penalty
from assistant.generators.lstm import Seq2SeqConfig, Seq2SeqModel, reorder_state

BOS, EOS, A, B, C = 0, 1, 2, 3, 4
VOCAB = 5


class TreeLM:
    """A stub model: the next-token distribution is looked up by the generated prefix.

    The state is the ``(N, t)`` tensor of tokens fed so far (bos first), so ``reorder`` is index_select.
    Prefixes not in the table get ``default``.
    """

    def __init__(self, table: dict[tuple[int, ...], dict[int, float]], default: dict[int, float]) -> None:
        self.table, self.default = table, default

    def start(self, n: int) -> torch.Tensor:
        return torch.zeros(n, 0, dtype=torch.long)

    def step(self, tokens: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = torch.cat([state, tokens.unsqueeze(1)], dim=1)
        rows = []
        for history in state.tolist():
            probs = self.table.get(tuple(history[1:]), self.default)
            rows.append([math.log(probs[v]) if probs.get(v, 0) > 0 else -1e9 for v in range(VOCAB)])
        return torch.tensor(rows), state

    @staticmethod
    def reorder(state: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        return state.index_select(0, indices)


def run(lm: TreeLM, n: int = 1, **config) -> tuple[list[list[int]], list[float]]:
    cfg = DecodingConfig(**config)
    out = decode(lm.step, lm.reorder, lm.start(n), n, BOS, EOS, cfg)
    return out.tokens, out.log_probs


# Greedy takes A (0.5) then must end: P(A eos) = 0.5 * 0.35 = 0.175.
# Beam 2 also keeps B (0.4), whose eos has 0.9: P(B eos) = 0.36, the true best.
GREEDY_TRAP = TreeLM(
    {(): {A: 0.5, B: 0.4, C: 0.1}, (A,): {EOS: 0.35, A: 0.33, B: 0.32}, (B,): {EOS: 0.9, A: 0.05, B: 0.05}},
    default={EOS: 0.9, A: 0.05, B: 0.05},
)


def test_greedy_and_beam_differ_and_beam_finds_the_better_reply() -> None:
    tokens, scores = run(GREEDY_TRAP, beam_size=1)
    assert tokens == [[A]] and scores[0] == pytest.approx(math.log(0.175), abs=1e-5)
    tokens, scores = run(GREEDY_TRAP, beam_size=2)
    assert tokens == [[B]] and scores[0] == pytest.approx(math.log(0.36), abs=1e-5)


def test_beam_search_is_batched_consistently() -> None:
    alone = run(GREEDY_TRAP, n=1, beam_size=3)
    batched = run(GREEDY_TRAP, n=4, beam_size=3)
    assert batched[0] == alone[0] * 4
    assert batched[1] == pytest.approx(alone[1] * 4)


# Short reply "A": P = 0.5 * 0.6 = 0.3 (2 tokens with eos). Long reply "B C": 0.5 * 0.5 * 0.9 = 0.225
# (3 tokens). Raw log-prob prefers "A"; the GNMT penalty with alpha=2 prefers "B C":
# log(0.3) / (7/6)^2 = -0.885 < log(0.225) / (8/6)^2 = -0.839.
LENGTH_TREE = TreeLM(
    {
        (): {A: 0.5, B: 0.5},
        (A,): {EOS: 0.6, A: 0.2, B: 0.2},
        (B,): {C: 0.5, EOS: 0.1, A: 0.2, B: 0.2},
        (B, C): {EOS: 0.9, A: 0.1},
    },
    default={EOS: 0.9, A: 0.1},
)


def test_length_penalty_changes_the_winner() -> None:
    assert run(LENGTH_TREE, beam_size=2, length_penalty=0.0)[0] == [[A]]
    tokens, scores = run(LENGTH_TREE, beam_size=2, length_penalty=2.0)
    assert tokens == [[B, C]]
    assert scores[0] == pytest.approx(math.log(0.225), abs=1e-5)  # raw log-prob is returned
    assert length_penalty(2, 2.0) == pytest.approx((7 / 6) ** 2)


def test_min_len_forbids_early_eos() -> None:
    assert run(GREEDY_TRAP, beam_size=1, min_len=2)[0] == [[A, A]]
    for beam in (1, 2, 3):
        tokens, _ = run(GREEDY_TRAP, beam_size=beam, min_len=3)
        assert len(tokens[0]) >= 3


def test_max_len_stops_unterminated_replies() -> None:
    loop = TreeLM({}, default={A: 0.9, EOS: 0.1})
    for beam in (1, 2):
        out = decode(
            loop.step, loop.reorder, loop.start(1), 1, BOS, EOS, DecodingConfig(beam_size=beam, max_len=4)
        )
        assert out.tokens == [[A, A, A, A]]
        assert out.n_scored == [4] and out.log_probs[0] == pytest.approx(4 * math.log(0.9), abs=1e-5)


def test_no_repeat_ngram_blocking() -> None:
    loop = TreeLM({}, default={A: 0.7, B: 0.2, EOS: 0.1})
    assert run(loop, beam_size=1, max_len=6)[0] == [[A] * 6]
    # bigrams: A A, then A A is blocked → B, then B A, then A A and A B are blocked → eos.
    assert run(loop, beam_size=1, max_len=10, no_repeat_ngram_size=2)[0] == [[A, A, B, A]]
    assert run(loop, beam_size=1, max_len=10, no_repeat_ngram_size=1)[0] == [[A, B]]
    tokens, _ = run(loop, beam_size=3, max_len=10, no_repeat_ngram_size=2)
    bigrams = list(zip(tokens[0], tokens[0][1:]))
    assert len(bigrams) == len(set(bigrams))


def test_decoding_config_validation() -> None:
    with pytest.raises(ConfigError, match="beam_size"):
        DecodingConfig(beam_size=0)
    with pytest.raises(ConfigError, match="min_len"):
        DecodingConfig(max_len=5, min_len=5)
    with pytest.raises(ConfigError, match="length_penalty"):
        DecodingConfig(length_penalty=-1.0)


@pytest.mark.parametrize("options", [{}, {"min_len": 3, "no_repeat_ngram_size": 2}, {"length_penalty": 0.8}])
def test_beam_one_equals_greedy_on_a_real_model(options: dict) -> None:
    torch.manual_seed(1)
    model = Seq2SeqModel(
        Seq2SeqConfig(emb_size=16, hidden_size=32, dropout=0.0), vocab_size=40, pad_id=0
    ).eval()
    with torch.no_grad():  # sharper distributions than the default init, so replies end at different steps
        for p in model.parameters():
            p.mul_(8.0)
    src = torch.randint(4, 40, (6, 7))
    src_len = torch.tensor([7, 3, 5, 1, 7, 2])
    config = DecodingConfig(beam_size=1, max_len=12, **options)
    with torch.no_grad():
        greedy = greedy_search(model.step, model.encode(src, src_len), 6, 2, 3, config)
        beam = beam_search(model.step, reorder_state, model.encode(src, src_len), 6, 2, 3, config)
    assert beam.tokens == greedy.tokens
    assert beam.log_probs == pytest.approx(greedy.log_probs, abs=1e-6)
    assert beam.n_scored == greedy.n_scored
    assert len({len(t) for t in greedy.tokens}) > 1  # the replies really end at different lengths
