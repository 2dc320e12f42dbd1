"""Profile of the T5 training loop: top operators (torch.profiler) and Python functions (cProfile).

Runs ``finetune.train_t5.train`` of whichever checkout is first on ``PYTHONPATH`` (so the same script
profiles the loop before and after a change: ``PYTHONPATH=/path/to/old/checkout``) on a from-config
T5, for ``--steps`` optimizer steps, and prints the operators by self CPU time and the Python
functions by own time, over steps 2 to ``--steps`` + 1 (from the start of the second
``accumulation_step`` to the end of the last; the loop's own work between steps, batch loading and
collation included; data preparation, model building and the final validation are not).

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
        cfg.max_steps = args.steps + 1  # the first step is not profiled (first-call allocations)
        prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
        py = cProfile.Profile()
        marks: dict[str, float] = {}
        step_fn, calls = train_t5.accumulation_step, [0]

        def profiled_step(*a, **kw):
            # the loop looks ``accumulation_step`` up in its module at each call, so this wraps the real one
            calls[0] += 1
            if calls[0] == 2:
                prof.start()
                py.enable()
                marks["wall"], marks["cpu"] = time.perf_counter(), time.process_time()
            loss = step_fn(*a, **kw)
            if calls[0] == args.steps + 1:
                marks["wall"], marks["cpu"] = (
                    time.perf_counter() - marks["wall"],
                    time.process_time() - marks["cpu"],
                )
                py.disable()
                prof.stop()
            return loss

        train_t5.accumulation_step = profiled_step
        try:
            train_t5.train(cfg, gen, LoraSettings())
        finally:
            train_t5.accumulation_step = step_fn
    n = args.steps
    print(
        f"\nprofiled steps 2..{n + 1} ({n} steps, batch {args.batch_size}): "
        f"{marks['wall'] / n * 1000:.0f} ms wall/step, {marks['cpu'] / n * 1000:.0f} ms CPU/step "
        f"(under the profilers); load average {os.getloadavg()}"
    )
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    out = io.StringIO()
    pstats.Stats(py, stream=out).sort_stats("tottime").print_stats(args.rows)
    print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
