"""Benchmark: LSTM training target tokens/s, our trainer vs OpenNMT-py 3.5 ``onmt_train``, side by side.

Same data (STAR train cut into our SentencePiece pieces, ``bench/lstm_peer.py``), same sizes
(bidirectional 1x384 encoder, 1x384 decoder, embedding 256, general attention, no input feed, bridge,
dropout 0.1), 64 sentences per batch, Adam-family optimiser at 2e-3 with gradient clipping, one thread
each. Each trainer uses its own batching (ours: the STAR preset's length-bucketed pools of 400 batches sorted
by target then source length; OpenNMT-py: one bucket of the whole corpus sorted by source then target length).

Ours runs in this process through the trainer's own loop (``finetune.train_lstm.run_epoch``: batch
building, learning rate, forward, backward, clipping, optimiser); its figure is non-pad target tokens
(eos included) over the wall-clock time of the measured steps. OpenNMT-py runs as ``onmt_train`` in a
subprocess; its figure is its own report (non-pad target tokens, eos included, over the time of each
report interval: its whole training loop, batch fetching included). Both skip ``--warmup`` steps and
measure ``--steps`` steps. By default both run at the same time, one thread each on the 2-core
machine, so that both see the same machine load (``--sequential`` runs ours first, then the peer).

    python bench/lstm_train_speed.py [--steps 300 --warmup 20 --workdir runs/bench-lstm --json out.json]

With ``--keep-models`` the two trained models stay in ``WORKDIR/ours`` and
``WORKDIR/onmt/model_step_N.pt`` for ``bench/lstm_decode_speed.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lstm_peer

from assistant.generators.decoding import DecodingConfig
from assistant.generators.lstm import Seq2SeqModel
from assistant.generators.lstm.checkpoint import save_checkpoint
from assistant.generators.lstm.tokenizer import TokenizerConfig
from finetune.lstm_data import make_batches
from finetune.train_lstm import PRESETS, Budget, TrainConfig, make_optimizer, run_epoch

GOAL = 1.2
REPORT = re.compile(
    r"Step\s+(\d+)/\s*\d+;.*?bsz:\s*([\d.]+)/\s*([\d.]+)/\s*([\d.]+);\s*([\d.]+)/\s*([\d.]+) tok/s"
)


def train_ours(data: lstm_peer.PeerData, warmup: int, steps: int, keep: Path | None) -> dict:
    """Our trainer's loop for ``warmup + steps`` optimiser steps; tokens/s over the last ``steps``."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = TrainConfig(
        epochs=1,
        batch_size=64,
        lr=lstm_peer.LR,
        warmup_steps=0,
        final_lr_ratio=1.0,
        clip_norm=1.0,
        bucket_pool=PRESETS["star"]["bucket_pool"],
        seed=0,
        device="cpu",
    )
    device = torch.device("cpu")
    model = Seq2SeqModel(lstm_peer.MODEL, data.tokenizer.vocab_size, data.tokenizer.pad_id)
    optimizer = make_optimizer(model, cfg, device)
    batches = make_batches(data.train_pairs, cfg.batch_size, cfg.bucket_pool, random.Random(0))
    progress = {"epoch": 0, "next_batch": 0, "step": 0, "train_tokens": 0, "train_seconds": 0.0}
    progress["total_steps"] = len(batches)
    budget = Budget(math.inf)
    run_epoch(
        model,
        optimizer,
        data.train_pairs,
        batches,
        data.tokenizer,
        device,
        _steps(cfg, warmup),
        progress,
        budget,
    )
    tokens_before = progress["train_tokens"]
    started = time.perf_counter()
    run_epoch(
        model,
        optimizer,
        data.train_pairs,
        batches,
        data.tokenizer,
        device,
        _steps(cfg, warmup + steps),
        progress,
        budget,
    )
    seconds = time.perf_counter() - started
    tokens = progress["train_tokens"] - tokens_before
    if keep is not None:
        save_checkpoint(
            keep,
            model,
            data.tokenizer,
            TokenizerConfig(vocab_size=lstm_peer.VOCAB_SIZE),
            DecodingConfig(beam_size=4, max_len=lstm_peer.MODEL.max_target_len, length_penalty=1.0),
            training={"steps": progress["step"], "bench": "bench/lstm_train_speed.py"},
        )
    return {
        "target_tokens": tokens,
        "seconds": seconds,
        "target_tokens_per_s": tokens / seconds,
        "steps": steps,
        "step_ms": 1000 * seconds / steps,
        "loss_last_steps": progress.get("epoch_loss"),
    }


def _steps(cfg: TrainConfig, max_steps: int) -> TrainConfig:
    import dataclasses

    return dataclasses.replace(cfg, max_steps=max_steps)


def start_onmt(
    data: lstm_peer.PeerData, warmup: int, steps: int, run_dir: Path
) -> tuple[subprocess.Popen, Path]:
    """Start ``onmt_train`` for ``warmup + steps`` steps (reports every 10); returns it and its log."""
    config = lstm_peer.onmt_config(data, run_dir, warmup + steps, report_every=10)
    with config.open("a", encoding="utf-8") as fh:
        fh.write(f"bucket_size: {len(data.train_pairs)}\n")  # one pass over the corpus, loaded before step 1
    log = run_dir / "train.log"
    process = subprocess.Popen(
        [str(lstm_peer.onmt_bin("onmt_train")), "-config", str(config)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=lstm_peer.peer_env(),
        cwd=run_dir,
    )
    return process, log


def onmt_result(log: Path, warmup: int) -> dict:
    """OpenNMT-py's target tokens/s over the reports after step ``warmup``, from its log.

    Raises:
        SystemExit: no report after the warm-up (the run failed; the log's tail is printed).
    """
    text = log.read_text(encoding="utf-8", errors="replace")
    tokens = seconds = 0.0
    last = warmup
    for match in REPORT.finditer(text):
        step, tgt_per_batch, tgt_per_s = int(match.group(1)), float(match.group(3)), float(match.group(6))
        if step <= warmup:
            last = step
            continue
        interval_tokens = tgt_per_batch * (step - last)
        tokens += interval_tokens
        seconds += interval_tokens / tgt_per_s
        last = step
    if not tokens:
        raise SystemExit(f"onmt_train gave no report after step {warmup}; its log ends:\n{text[-3000:]}")
    return {
        "target_tokens": tokens,
        "seconds": seconds,
        "target_tokens_per_s": tokens / seconds,
        "steps": last - warmup,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="measured steps per trainer")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured steps first (a multiple of 10)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench-lstm"))
    parser.add_argument(
        "--keep-models", action="store_true", help="save both models for lstm_decode_speed.py"
    )
    parser.add_argument(
        "--sequential", action="store_true", help="run ours, then the peer (default: together)"
    )
    parser.add_argument("--timeout", type=float, default=1200, help="seconds before the peer is stopped")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()  # subprocesses run in other directories
    if args.warmup % 10 or args.steps % 10:
        raise SystemExit(
            f"--warmup and --steps must be multiples of 10 (onmt reports every 10), got {args.warmup}, {args.steps}"
        )
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    load_before = os.getloadavg()
    data = lstm_peer.prepare(args.workdir / "data")
    keep = args.workdir / "ours" if args.keep_models else None
    if args.sequential:
        ours = train_ours(data, args.warmup, args.steps, keep)
        process, log = start_onmt(data, args.warmup, args.steps, args.workdir / "onmt")
    else:
        process, log = start_onmt(data, args.warmup, args.steps, args.workdir / "onmt")
        ours = train_ours(data, args.warmup, args.steps, keep)
    try:
        process.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise SystemExit(f"onmt_train did not finish in {args.timeout:.0f} s; partial log in {log}") from None
    peer = onmt_result(log, args.warmup)
    load_after = os.getloadavg()
    ratio = ours["target_tokens_per_s"] / peer["target_tokens_per_s"]
    print(
        f"LSTM training, STAR train in our {data.tokenizer.vocab_size} pieces, batch 64, 1 thread each, "
        f"{args.steps} steps after {args.warmup} warm-up, {'sequential' if args.sequential else 'side by side'}"
    )
    print(f"{'':28s} {'target tok/s':>12s} {'ms/step':>9s}")
    print(f"{'ours (finetune.train_lstm)':28s} {ours['target_tokens_per_s']:12.0f} {ours['step_ms']:9.0f}")
    print(
        f"{'OpenNMT-py 3.5 onmt_train':28s} {peer['target_tokens_per_s']:12.0f} "
        f"{1000 * peer['seconds'] / peer['steps']:9.0f}"
    )
    print(f"ratio ours/peer {ratio:.2f}x, goal >= {GOAL}x: {'met' if ratio >= GOAL else 'NOT met'}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1-minute)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "benchmark": "lstm_train_speed",
                    "ours": ours,
                    "peer": {"name": "OpenNMT-py 3.5.1 onmt_train", **peer},
                    "ratio": ratio,
                    "goal": GOAL,
                    "met": ratio >= GOAL,
                    "steps": args.steps,
                    "warmup": args.warmup,
                    "mode": "sequential" if args.sequential else "side by side",
                    "load_average_before": load_before,
                    "load_average_after": load_after,
                    "torch": torch.__version__,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
