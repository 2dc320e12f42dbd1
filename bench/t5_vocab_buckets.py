"""Benchmark: from-scratch T5 training throughput, trained 4k vocabulary + length buckets vs t5-small's 32k
vocabulary + random batches (the recipe before issue 15), side by side on the same STAR examples.

    python bench/t5_vocab_buckets.py \\
        --dialogs ../shared/data/dialogs/star/train.jsonl --tokenizer ../shared/data/models/t5-small-tokenizer \\
        --json runs/t5-vocab-buckets.json

Four arms, each forward + backward + AdamW step on ``--steps`` batches of ``--batch-size`` examples of the
same dialogs (3 context turns, 64 source / 48 target tokens), one torch thread, measured in examples per
CPU second of this process (``time.process_time``, so other jobs on a shared machine change the figure
little): ``32k-random`` (star-small with t5-small's tokenizer, plain shuffled batches: the old recipe),
``32k-buckets``, ``4k-random`` (star-fast with a SentencePiece vocabulary of 4,000 pieces trained on the
same dialogs) and ``4k-buckets`` (the new recipe). The arms run interleaved, one batch each in turn, so a
change of machine load hits all of them alike. Prints a table (arm, examples/CPU s, padding share, ratio to
the old recipe) and writes ``--json``. Goal: the new recipe >= 3x the old one in examples per CPU second.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from assistant.data import read_dialogs
from assistant.generators.t5.model import PRESETS, T5GenerationSettings, build_model, load_tokenizer
from finetune.length_buckets import LengthBucketBatchSampler
from finetune.t5_data import example_length, make_collator, tokenize_examples
from finetune.t5_vocab import padded_vocab_size, train_t5_tokenizer

GOAL = 3.0


def arm_batches(examples, tokenizer, steps: int, batch_size: int, buckets: bool, seed: int):
    """``steps`` padded batches of ``examples``: length-bucketed or plain shuffled; and the padding share."""
    collate = make_collator(tokenizer)
    g = torch.Generator().manual_seed(seed)
    if buckets:
        index_batches = LengthBucketBatchSampler(
            [example_length(e) for e in examples], batch_size, 50, seed=seed
        ).batches()
    else:
        order = torch.randperm(len(examples), generator=g).tolist()
        index_batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches = [collate([examples[i] for i in b]) for b in index_batches[:steps]]
    real = sum(int(b["attention_mask"].sum()) + int((b["labels"] != -100).sum()) for b in batches)
    total = sum(b["input_ids"].numel() + b["labels"].numel() for b in batches)
    return batches, 1 - real / total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialogs", required=True, help="STAR train dialogs (JSONL)")
    parser.add_argument("--tokenizer", required=True, help="t5-small tokenizer directory (the old recipe)")
    parser.add_argument("--max-dialogs", type=int, default=1500)
    parser.add_argument("--steps", type=int, default=12, help="measured batches per arm")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dialogs = read_dialogs(args.dialogs)[: args.max_dialogs]
    gen = T5GenerationSettings(max_context_turns=3, max_source_len=64, max_target_len=48)
    with tempfile.TemporaryDirectory() as tmp:
        small = train_t5_tokenizer([t.text for d in dialogs for t in d.turns], 4000, tmp, seed=0)
    big = load_tokenizer(args.tokenizer)
    arms = {}
    for name, tok, preset, buckets in (
        ("32k-random", big, "star-small", False),
        ("32k-buckets", big, "star-small", True),
        ("4k-random", small, "star-fast", False),
        ("4k-buckets", small, "star-fast", True),
    ):
        cfg = PRESETS[preset].to_hf()
        cfg.vocab_size = (
            max(cfg.vocab_size, padded_vocab_size(tok)) if preset == "star-small" else padded_vocab_size(tok)
        )
        model = build_model(cfg, tok, seed=0)
        model.train()
        batches, pad = arm_batches(
            tokenize_examples(dialogs, tok, gen), tok, args.steps + 1, args.batch_size, buckets, 0
        )
        arms[name] = {
            "model": model,
            "opt": torch.optim.AdamW(model.parameters(), lr=1e-3),
            "batches": batches,
            "padding_share": pad,
            "cpu_s": 0.0,
            "examples": 0,
            "parameters": sum(p.numel() for p in model.parameters()),
        }
    for step in range(args.steps + 1):  # step 0 warms up and is not counted
        for arm in arms.values():
            batch = arm["batches"][step]
            t0 = time.process_time()
            loss = arm["model"](**batch).loss
            loss.backward()
            arm["opt"].step()
            arm["opt"].zero_grad(set_to_none=True)
            if step:
                arm["cpu_s"] += time.process_time() - t0
                arm["examples"] += batch["input_ids"].shape[0]
    base = arms["32k-random"]["examples"] / arms["32k-random"]["cpu_s"]
    rows = []
    print("| arm | parameters | padding share | examples / CPU s | ratio to 32k-random |")
    print("|---|---:|---:|---:|---:|")
    for name, arm in arms.items():
        rate = arm["examples"] / arm["cpu_s"]
        rows.append(
            {
                "arm": name,
                "parameters": arm["parameters"],
                "padding_share": round(arm["padding_share"], 3),
                "examples_per_cpu_second": round(rate, 2),
                "ratio": round(rate / base, 2),
            }
        )
        print(
            f"| {name} | {arm['parameters']:,} | {arm['padding_share']:.1%} | {rate:.1f} | {rate / base:.2f}x |"
        )
    ratio = rows[-1]["ratio"]
    print(f"new recipe vs old: {ratio:.2f}x (goal >= {GOAL}x): {'met' if ratio >= GOAL else 'NOT met'}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"rows": rows, "goal": GOAL, "met": ratio >= GOAL, "args": vars(args)}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
