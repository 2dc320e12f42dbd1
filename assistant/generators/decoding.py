"""Greedy and batched beam search over a model-agnostic step function.

A model exposes ``step(tokens, state) -> (log_probs, state)`` with ``tokens`` ``(N,)`` and ``log_probs``
``(N, vocab)``, and a ``reorder(state, indices)`` that selects state rows; this module searches with
them and knows nothing else about the model (the LSTM's ``Seq2SeqModel.step``/``reorder_state`` are one
such pair; a T5 wrapper can offer another). Search options: beam size, GNMT length penalty, maximum and
minimum length, and n-gram repeat blocking. It does not tokenize or detokenize.

Beam search follows the standard batched formulation (as in OpenNMT-py and fairseq): ``batch * beam``
rows, ``2 * beam`` candidates per item per step so that ``beam`` alive hypotheses survive even when some
candidates end with eos; a candidate ending with eos becomes finished only if it ranks among the top
``beam``. With ``beam_size=1`` this is exactly greedy search (tested).

Streaming: both searches take an optional ``on_step`` callback, called after every step with each item's
tokens that are already *final*, i.e. a prefix of the reply the search will return. In greedy search
that is every token generated so far. In beam search it is the longest common prefix of every
hypothesis that can still win: the finished hypotheses kept and the alive beams (every later
hypothesis extends an alive beam), so a beam reply streams as soon as its beams agree on a prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from assistant.config import require

StepFn = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]
ReorderFn = Callable[[Any, torch.Tensor], Any]
#: ``on_step(final_tokens)``: per batch item, the generated ids (no bos, no eos) already certain to start
#: the returned reply; each call's lists extend the previous call's.
StepCallback = Callable[[list[list[int]]], None]


@dataclass
class DecodingConfig:
    """Search settings for reply generation."""

    beam_size: int = field(default=1, metadata={"help": "beam width; 1 = greedy search"})
    max_len: int = field(default=48, metadata={"help": "most tokens generated per reply, eos included"})
    min_len: int = field(
        default=1, metadata={"help": "fewest tokens before eos may be generated (eos excluded)"}
    )
    length_penalty: float = field(
        default=0.0,
        metadata={
            "help": "GNMT length-penalty alpha (Wu et al. 2016): rank beams by logp / ((5+len)/6)^alpha; "
            "0 = raw log-prob (the T5 generator's length_penalty is Hugging Face's exponent instead)"
        },
    )
    no_repeat_ngram_size: int = field(
        default=0, metadata={"help": "forbid repeating any n-gram of this size within a reply; 0 = off"}
    )

    def __post_init__(self) -> None:
        require(
            isinstance(self.beam_size, int) and self.beam_size >= 1,
            f"beam_size must be an integer >= 1, got {self.beam_size!r}",
        )
        require(self.max_len >= 1, f"max_len must be >= 1, got {self.max_len}")
        require(
            0 <= self.min_len < self.max_len,
            f"min_len must be in [0, max_len={self.max_len}), got {self.min_len}",
        )
        require(self.length_penalty >= 0.0, f"length_penalty must be >= 0, got {self.length_penalty}")
        require(
            self.no_repeat_ngram_size >= 0,
            f"no_repeat_ngram_size must be >= 0 (0 = off), got {self.no_repeat_ngram_size}",
        )


@dataclass(frozen=True)
class DecodeResult:
    """The best hypothesis per batch item.

    Attributes:
        tokens: generated ids per item, without bos and eos.
        log_probs: summed log-probability of each item's scored tokens (eos included when it ended).
        n_scored: how many tokens ``log_probs`` sums over (``len(tokens) + 1`` when eos ended it).
    """

    tokens: list[list[int]]
    log_probs: list[float]
    n_scored: list[int]


def length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty ``((5 + length) / 6) ** alpha`` (Wu et al., 2016, "Google's Neural Machine
    Translation System", eq. 14); beams are ranked by ``log_prob / length_penalty``."""
    return ((5.0 + length) / 6.0) ** alpha


def _block_banned(
    log_probs: torch.Tensor, history: torch.Tensor, step: int, eos_id: int, config: DecodingConfig
) -> None:
    """In place: forbid eos before ``min_len`` and tokens that would repeat an n-gram.

    Args:
        log_probs: ``(N, vocab)``, modified in place.
        history: ``(N, 1 + step)`` tokens so far (bos first).
        step: tokens generated so far.
    """
    if step < config.min_len:
        log_probs[:, eos_id] = float("-inf")
    n = config.no_repeat_ngram_size
    if n == 0 or step < n:
        return
    generated = history[:, 1:].tolist()
    for row, tokens in enumerate(generated):
        prefix = tokens[len(tokens) - n + 1 :] if n > 1 else []
        banned = {tokens[i + n - 1] for i in range(len(tokens) - n + 1) if tokens[i : i + n - 1] == prefix}
        if banned:
            log_probs[row, list(banned)] = float("-inf")


def greedy_search(
    step: StepFn,
    state: Any,
    batch_size: int,
    bos_id: int,
    eos_id: int,
    config: DecodingConfig,
    device: torch.device | str = "cpu",
    on_step: StepCallback | None = None,
) -> DecodeResult:
    """Pick the most probable token at each step until eos or ``config.max_len``.

    Args:
        step: ``step(tokens (N,), state) -> (log_probs (N, vocab), state)``.
        state: the start state for ``batch_size`` rows.
        batch_size: rows in ``state``.
        bos_id, eos_id: start and end token ids.
        config: ``max_len``, ``min_len``, ``no_repeat_ngram_size`` apply (beam/length penalty do not).
        device: where token tensors live.
        on_step: called after each step with every item's tokens so far (see the module docstring).
    """
    tokens = torch.full((batch_size, 1), bos_id, dtype=torch.long, device=device)  # (B, 1)
    scores = torch.zeros(batch_size, device=device)  # (B,)
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    n_scored = torch.zeros(batch_size, dtype=torch.long, device=device)
    for t in range(config.max_len):
        log_probs, state = step(tokens[:, -1], state)  # (B, V)
        _block_banned(log_probs, tokens, t, eos_id, config)
        best_lp, best = log_probs.topk(1, dim=-1)  # (B, 1)
        best, best_lp = best.squeeze(1), best_lp.squeeze(1)
        best = best.masked_fill(finished, eos_id)
        scores = scores + best_lp.masked_fill(finished, 0.0)
        n_scored = n_scored + (~finished).long()
        tokens = torch.cat([tokens, best.unsqueeze(1)], dim=1)
        finished = finished | (best == eos_id)
        if on_step is not None:
            on_step(_until_eos(tokens[:, 1:].tolist(), eos_id))
        if bool(finished.all()):
            break
    return DecodeResult(_until_eos(tokens[:, 1:].tolist(), eos_id), scores.tolist(), n_scored.tolist())


def _until_eos(rows: list[list[int]], eos_id: int) -> list[list[int]]:
    return [row[: row.index(eos_id)] if eos_id in row else row for row in rows]


def _common_prefix(sequences: list[list[int]]) -> list[int]:
    if not sequences:
        return []
    prefix = sequences[0]
    for seq in sequences[1:]:
        n = 0
        while n < min(len(prefix), len(seq)) and prefix[n] == seq[n]:
            n += 1
        prefix = prefix[:n]
    return list(prefix)


def beam_search(
    step: StepFn,
    reorder: ReorderFn,
    state: Any,
    batch_size: int,
    bos_id: int,
    eos_id: int,
    config: DecodingConfig,
    device: torch.device | str = "cpu",
    on_step: StepCallback | None = None,
) -> DecodeResult:
    """Batched beam search with GNMT length normalisation.

    Hypotheses are ranked by ``sum log p / length_penalty(len, alpha)`` where ``len`` counts the
    generated tokens (eos included). An item stops when it has ``beam_size`` finished hypotheses and the
    best alive hypothesis, normalised at its current length, scores below the worst finished one (the
    ``early_stopping=False`` rule of Hugging Face transformers); at ``max_len`` alive hypotheses join the
    finished ones unterminated.

    Args:
        step: ``step(tokens (N,), state) -> (log_probs (N, vocab), state)``.
        reorder: ``reorder(state, indices (M,)) -> state`` with row ``i`` taken from row ``indices[i]``.
        state: start state for ``batch_size`` rows (expanded here to ``batch_size * beam_size``).
        batch_size, bos_id, eos_id, config, device: as in :func:`greedy_search`.
        on_step: called after each step with every item's final prefix (see the module docstring).
    """
    k = config.beam_size
    alpha = config.length_penalty
    state = reorder(state, torch.arange(batch_size, device=device).repeat_interleave(k))
    tokens = torch.full((batch_size * k, 1), bos_id, dtype=torch.long, device=device)  # (B*K, 1)
    beam_scores = torch.zeros(batch_size, k, device=device)
    beam_scores[:, 1:] = float("-inf")  # only beam 0 is alive at the start: no duplicate hypotheses
    finished: list[list[tuple[float, float, list[int], int]]] = [[] for _ in range(batch_size)]
    done = [False] * batch_size
    for t in range(config.max_len):
        log_probs, state = step(tokens[:, -1], state)  # (B*K, V)
        vocab = log_probs.size(-1)
        _block_banned(log_probs, tokens, t, eos_id, config)
        candidates = (beam_scores.view(-1, 1) + log_probs).view(batch_size, k * vocab)  # (B, K*V)
        top_scores, top_ids = candidates.topk(min(2 * k, k * vocab), dim=-1)  # (B, 2K)
        top_beams, top_tokens = top_ids // vocab, top_ids % vocab
        lp = length_penalty(t + 1, alpha)
        next_rows, next_tokens, next_scores = [], [], []
        scores_l, beams_l, tokens_l = top_scores.tolist(), top_beams.tolist(), top_tokens.tolist()
        history = tokens.tolist()
        for b in range(batch_size):
            chosen = 0
            for rank in range(len(scores_l[b])):
                score, beam, token = scores_l[b][rank], beams_l[b][rank], tokens_l[b][rank]
                row = b * k + beam
                if token == eos_id:
                    if rank < k and not done[b] and score > float("-inf"):
                        finished[b].append((score / lp, score, history[row][1:], t + 1))
                    continue
                next_rows.append(row)
                next_tokens.append(token)
                next_scores.append(score if not done[b] else float("-inf"))
                chosen += 1
                if chosen == k:
                    break
            while chosen < k:  # fewer than K non-eos candidates (tiny vocab): pad with dead beams
                next_rows.append(b * k)
                next_tokens.append(eos_id)
                next_scores.append(float("-inf"))
                chosen += 1
            if not done[b] and len(finished[b]) >= k:
                finished[b].sort(key=lambda h: h[0], reverse=True)
                del finished[b][k:]
                best_alive = max(next_scores[b * k : (b + 1) * k])
                done[b] = best_alive / lp <= finished[b][-1][0] if best_alive > float("-inf") else True
        if on_step is not None:
            on_step(
                [
                    _common_prefix(
                        [h[2] for h in finished[b]]
                        + [
                            history[next_rows[i]][1:] + [next_tokens[i]]
                            for i in range(b * k, (b + 1) * k)
                            if next_scores[i] > float("-inf")
                        ]
                    )
                    for b in range(batch_size)
                ]
            )
        if all(done):
            break
        rows = torch.tensor(next_rows, dtype=torch.long, device=device)
        state = reorder(state, rows)
        tokens = torch.cat(
            [
                tokens.index_select(0, rows),
                torch.tensor(next_tokens, dtype=torch.long, device=device).unsqueeze(1),
            ],
            dim=1,
        )
        beam_scores = torch.tensor(next_scores, device=device).view(batch_size, k)
    else:
        final_lp = length_penalty(config.max_len, alpha)
        for b in range(batch_size):
            if done[b]:
                continue
            for beam in range(k):
                score = float(beam_scores[b, beam])
                if score > float("-inf"):
                    finished[b].append(
                        (score / final_lp, score, tokens[b * k + beam, 1:].tolist(), config.max_len)
                    )
    out_tokens, out_scores, out_n = [], [], []
    for b in range(batch_size):
        if not finished[b]:  # every continuation was forbidden: return an empty reply with -inf score
            out_tokens.append([])
            out_scores.append(float("-inf"))
            out_n.append(1)
            continue
        _norm, score, seq, n_scored = max(finished[b], key=lambda h: h[0])
        out_tokens.append(seq)
        out_scores.append(score)
        out_n.append(n_scored)
    return DecodeResult(out_tokens, out_scores, out_n)


def decode(
    step: StepFn,
    reorder: ReorderFn,
    state: Any,
    batch_size: int,
    bos_id: int,
    eos_id: int,
    config: DecodingConfig,
    device: torch.device | str = "cpu",
    on_step: StepCallback | None = None,
) -> DecodeResult:
    """Greedy search when ``config.beam_size == 1``, beam search otherwise (same arguments as
    :func:`beam_search`)."""
    if config.beam_size == 1:
        return greedy_search(step, state, batch_size, bos_id, eos_id, config, device, on_step)
    return beam_search(step, reorder, state, batch_size, bos_id, eos_id, config, device, on_step)
