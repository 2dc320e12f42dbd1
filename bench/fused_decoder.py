"""Benchmark: teacher-forced training of the LSTM decoder, fused over the target vs step by step.

The decoder (``assistant/generators/lstm/decoder.py``) puts attention after the LSTM, so teacher forcing
runs one fused ``nn.LSTM`` call over the whole target. The peer is the same model, same weights,
run one target position at a time (what an ``LSTMCell`` loop, or input feeding, forces). Both do a
forward and backward pass over the same batch; the script checks they compute the same loss, then
prints milliseconds per batch and the speed-up ratio.

    python bench/fused_decoder.py [--batch 64 --src-len 64 --tgt-len 24 --vocab 6000 --hidden 384 --threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from assistant.generators.lstm.config import Seq2SeqConfig
from assistant.generators.lstm.model import Seq2SeqModel


def teacher_forced_loss(model: Seq2SeqModel, src, lengths, tgt_in, tgt_out, stepwise: bool) -> torch.Tensor:
    """Mean token NLL of ``tgt_out``: one decoder call over the target, or one call per position."""
    if not stepwise:
        logits = model(src, lengths, tgt_in)  # (B, T, V)
    else:
        state = model.encode(src, lengths)
        steps = []
        for t in range(tgt_in.size(1)):
            log_probs, state = model.step(tgt_in[:, t], state)  # (B, V)
            steps.append(log_probs)
        logits = torch.stack(steps, dim=1)  # (B, T, V); log-probs are logits up to a constant per row
    return model.token_nll(logits, tgt_out).mean()


def time_it(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--src-len", type=int, default=64)
    parser.add_argument("--tgt-len", type=int, default=24)
    parser.add_argument("--vocab", type=int, default=6000)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = Seq2SeqConfig(
        emb_size=256,
        hidden_size=args.hidden,
        dropout=0.0,
        max_source_len=args.src_len,
        max_target_len=args.tgt_len,
    )
    model = Seq2SeqModel(config, vocab_size=args.vocab, pad_id=0)
    src = torch.randint(4, args.vocab, (args.batch, args.src_len))
    lengths = torch.full((args.batch,), args.src_len)
    tgt = torch.randint(4, args.vocab, (args.batch, args.tgt_len + 1))
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]

    fused = teacher_forced_loss(model, src, lengths, tgt_in, tgt_out, stepwise=False)
    stepwise = teacher_forced_loss(model, src, lengths, tgt_in, tgt_out, stepwise=True)
    if not torch.allclose(fused, stepwise, atol=1e-4):
        raise SystemExit(
            f"the two paths disagree: fused loss {fused.item():.6f}, stepwise {stepwise.item():.6f}"
        )

    def run(stepwise: bool):
        def once():
            model.zero_grad(set_to_none=True)
            teacher_forced_loss(model, src, lengths, tgt_in, tgt_out, stepwise).backward()

        return once

    fused_ms = time_it(run(False), args.repeats)
    step_ms = time_it(run(True), args.repeats)
    print(
        f"batch {args.batch}, src {args.src_len}, tgt {args.tgt_len}, vocab {args.vocab}, hidden {args.hidden}, "
        f"{args.threads} thread(s); same loss {fused.item():.4f}"
    )
    print(f"fused decoder (ours)      : {fused_ms:8.1f} ms per forward+backward")
    print(f"step-by-step decoder (peer): {step_ms:8.1f} ms per forward+backward")
    print(f"speed-up: {step_ms / fused_ms:.2f}x")


if __name__ == "__main__":
    main()
