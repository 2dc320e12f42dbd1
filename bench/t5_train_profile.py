"""Profile of the T5 training loop: top operators (torch.profiler) and Python functions (cProfile).

Runs ``finetune.train_t5.train`` of whichever checkout is first on ``PYTHONPATH`` (so the same script
profiles the loop before and after a change: ``PYTHONPATH=/path/to/old/checkout``) on a from-config
T5, for ``--steps`` optimizer steps, and prints the operators by self CPU time and the Python
functions by own time. The whole ``train`` call is profiled (data loading, model building and one
final validation of ``--batch-size`` examples included); with the defaults the steps are most of it.

    python bench/t5_train_profile.py [--model-config star-small] [--tokenizer DIR] [--train FILE]
        [--dialogs 400] [--batch-size 16] [--steps 8] [--rows 15] [--threads 1]

It measures nothing side by side (``bench/t5_train_speed.py`` does); figures in
``docs/results/t5-training-speed.md``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import tempfile
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    shared = Path(os.environ.get("SHARED_DATA_DIR") or root.parent / "shared" / "data")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-config", default="star-small")
    p.add_argument("--tokenizer", default=str(shared / "models" / "t5-small-tokenizer"))
    p.add_argument("--train", type=Path, default=shared / "dialogs" / "star" / "train.jsonl")
    p.add_argument("--dialogs", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--rows", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ["ACCELERATE_USE_CPU"] = "true"

    from assistant.generators.t5.adapters import LoraSettings
    from assistant.generators.t5.model import T5GenerationSettings
    from finetune import train_t5
    from finetune.t5_data import TrainConfig

    print(f"profiling {train_t5.__file__}")
    with tempfile.TemporaryDirectory(prefix="t5-profile-") as tmp:
        train_file = Path(tmp) / "train.jsonl"
        with args.train.open(encoding="utf-8") as f:
            train_file.write_text("".join(line for _, line in zip(range(args.dialogs), f)), encoding="utf-8")
        cfg = TrainConfig(
            train=str(train_file),
            valid=str(train_file),
            output_dir=str(Path(tmp) / "out"),
            init_from_config=args.model_config,
            tokenizer=args.tokenizer,
            full_finetune=True,
            batch_size=args.batch_size,
            max_steps=args.steps,
            eval_every=10**6,
            max_valid_examples=args.batch_size,
            warmup_steps=2,
        )
        gen = T5GenerationSettings(max_context_turns=4, max_source_len=96, max_target_len=48)
        py = cProfile.Profile()
        start = time.perf_counter()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            py.enable()
            manifest = train_t5.train(cfg, gen, LoraSettings())
            py.disable()
        wall = time.perf_counter() - start
    steps = manifest["training"]["steps"]
    print(f"\n{steps} steps; whole train() {wall:.1f} s; load average {os.getloadavg()}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    out = io.StringIO()
    pstats.Stats(py, stream=out).sort_stats("tottime").print_stats(args.rows)
    print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
