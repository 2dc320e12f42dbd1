"""Benchmark: T5 training examples/s, our accelerate loop vs transformers' ``Seq2SeqTrainer`` (+ peft).

Ours is ``finetune.train_t5.train`` itself (its real code path: loader, ``accumulation_step``,
schedule, clipping), timed by its ``on_step`` hook. The peer is ``transformers.Seq2SeqTrainer`` on the
same model (the same weights, loaded from one ``save_pretrained`` directory; for LoRA the same
``peft.LoraConfig`` attached after the same seed), fed **the very batches our loop drew**, in the same
order (recorded by the hook, replayed through a one-batch-per-item dataset with
``train_sampling_strategy="sequential"``): same data, batch size, sequence lengths and padding. Both
use fused AdamW (Trainer's default ``adamw_torch_fused``; ours ``finetune.train_t5.make_optimizer``),
the same learning rate, weight decay, linear warm-up schedule and gradient clipping, float32 (or
bf16 autocast on both with ``--bf16``), one thread, dropout on, no evaluation, saving or logging
inside the timed steps (Trainer: ``eval_strategy="no"``, ``save_strategy="no"``,
``logging_strategy="no"``, ``report_to="none"``, ``dataloader_num_workers=0``). The replayed batches
are already padded, so the peer skips collation in its timed steps while ours collates: that favours
the peer.

Rows: full fine-tuning and LoRA. Each path runs ``--warmup`` steps, then ``--steps`` timed steps;
examples/s = examples in the timed steps / their wall time. The first steps' losses of both paths are
printed beside the speeds: with dropout off (``--model-config`` JSON with ``dropout_rate: 0`` and
``--lora-dropout 0``) they agree to float rounding, which ``tests/test_t5_train_speed.py`` checks.

On CUDA (``--device cuda``, optionally ``--bf16``) it also reports the peak memory
(``torch.cuda.max_memory_allocated``) and the model FLOPs utilisation, MFU = 6 · parameters · tokens/s
/ peak FLOP/s (Kaplan et al., 2020's 6N rule; tokens = real source + target tokens; for LoRA the rule
overstates the work, frozen weights get no weight gradients), the peak given by ``--peak-tflops``.
Not run on a GPU here (none was available).

    python bench/t5_train_speed.py [--model-config star-small] [--tokenizer ../shared/data/models/t5-small-tokenizer]
        [--train ../shared/data/dialogs/star/train.jsonl] [--dialogs 400] [--batch-size 16] [--warmup 5]
        [--steps 20] [--threads 1] [--modes full lora] [--compile] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from assistant import demo_data
from assistant.generators.t5.adapters import LoraSettings
from assistant.generators.t5.model import (
    T5GenerationSettings,
    build_model,
    load_tokenizer,
    resolve_model_config,
)
from finetune.t5_data import TrainConfig
from finetune.t5_step import StepSettings

ROOT = Path(__file__).resolve().parents[1]
#: ../shared/data beside the checkout, or $SHARED_DATA_DIR (as in tests/conftest.py)
SHARED = Path(os.environ.get("SHARED_DATA_DIR") or ROOT.parent / "shared" / "data")
STAR_TRAIN = SHARED / "dialogs" / "star" / "train.jsonl"
T5_TOKENIZER = SHARED / "models" / "t5-small-tokenizer"
DEMO_TRAIN = demo_data.directory() / "dialogs" / "train.jsonl"
GOAL = 1.3
#: losses of the first steps kept per path (the two paths' agreement check)
LOSSES_KEPT = 3


@dataclass
class PathResult:
    """What one training path did: per-step end times (s), batch sizes, tokens and losses."""

    name: str
    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)  # time.process_time: this process's CPU seconds
    examples: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    peak_memory_gib: float | None = None

    def record(self, batch: dict[str, torch.Tensor], loss: torch.Tensor | None) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        self.cpu_times.append(time.process_time())
        self.examples.append(int(batch["input_ids"].shape[0]))
        self.tokens.append(int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum()))
        if len(self.losses) < LOSSES_KEPT:  # later steps: no read-back (a host-device sync on a GPU)
            self.losses.append(float(loss.detach()) if loss is not None else float("nan"))

    def rate(self, warmup: int) -> tuple[float, float, float]:
        """(examples/s, tokens/s, examples per CPU second) over the steps after the first ``warmup`` (>= 1).

        The CPU-time figure counts this process's CPU seconds only (one torch thread, no loader
        workers), so it is much less affected by other jobs on a shared machine than the wall clock.

        Raises:
            RuntimeError: no step after the warm-up was recorded.
        """
        if len(self.times) <= warmup:
            raise RuntimeError(f"{self.name}: {len(self.times)} steps recorded, need more than {warmup}")
        seconds = self.times[-1] - self.times[warmup - 1]  # from the end of the last warm-up step
        cpu = self.cpu_times[-1] - self.cpu_times[warmup - 1]
        examples = sum(self.examples[warmup:])
        return examples / seconds, sum(self.tokens[warmup:]) / seconds, examples / cpu


def subset_dialogs(src: Path, n: int, out: Path) -> Path:
    """The first ``n`` dialogs (lines) of ``src`` written to ``out`` (returned)."""
    with src.open(encoding="utf-8") as f:
        lines = [line for _, line in zip(range(n), f)]
    out.write_text("".join(lines), encoding="utf-8")
    return out


def make_base(model_config: str, tokenizer_dir: Path, out: Path, seed: int) -> Path:
    """A T5 built from ``model_config`` (random weights, ``seed``) saved with its tokenizer to ``out``."""
    tok = load_tokenizer(tokenizer_dir)
    build_model(resolve_model_config(model_config), tok, seed=seed).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def run_ours(
    args: argparse.Namespace, base: Path, train_file: Path, out: Path, full: bool, compile_: bool
) -> tuple[PathResult, list[dict[str, torch.Tensor]]]:
    """Train with ``finetune.train_t5.train``; returns its timings and the batches it drew, in order."""
    from finetune.train_t5 import train

    name = "ours" + ("+compile" if compile_ else "")
    result, batches = PathResult(name), []
    cfg = TrainConfig(
        train=str(train_file),
        valid=str(train_file),
        output_dir=str(out),
        model=str(base),
        full_finetune=full,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.lr_warmup,
        max_steps=args.warmup + args.steps,
        eval_every=10**6,
        max_valid_examples=args.batch_size,
        seed=args.seed,
        mixed_precision="bf16" if args.bf16 else "no",
    )

    def on_step(state: Any, batch: dict[str, torch.Tensor], loss: torch.Tensor) -> None:
        result.record(batch, loss)
        batches.append({k: v.detach().to("cpu", copy=True) for k, v in batch.items()})

    reset_peak()
    train(cfg, generation(args), lora_settings(args), step=StepSettings(compile=compile_), on_step=on_step)
    result.peak_memory_gib = peak_gib()
    return result, batches


def run_peer(
    args: argparse.Namespace, base: Path, batches: list[dict[str, torch.Tensor]], out: Path, full: bool
) -> PathResult:
    """Train with ``Seq2SeqTrainer`` (+ ``peft.get_peft_model`` for LoRA) on ``batches``, in order."""
    from accelerate.utils import set_seed
    from peft import get_peft_model
    from transformers import (
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
        T5ForConditionalGeneration,
        TrainerCallback,
    )

    result = PathResult("Seq2SeqTrainer" + ("" if full else "+peft"))
    set_seed(args.seed)  # as finetune.train_t5 does before building the model (LoRA init draws from it)
    model = T5ForConditionalGeneration.from_pretrained(str(base))
    if not full:
        with quiet_peft():
            model = get_peft_model(model, lora_settings(args).to_peft())
    step_batches = iter(batches)

    class Timer(TrainerCallback):
        def on_step_end(self, targs, state, control, **kwargs):
            result.record(next(step_batches), last_loss.pop() if last_loss else None)

    last_loss: list[torch.Tensor] = []

    class Trainer(Seq2SeqTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            last_loss.append((loss[0] if return_outputs else loss).detach())
            return loss

    targs = Seq2SeqTrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=1,  # one item = one of our recorded, padded batches
        max_steps=len(batches),
        learning_rate=args.lr,
        weight_decay=TrainConfig.weight_decay,
        warmup_steps=args.lr_warmup,
        lr_scheduler_type="linear",
        max_grad_norm=TrainConfig.max_grad_norm,
        optim="adamw_torch_fused",
        train_sampling_strategy="sequential",
        dataloader_num_workers=0,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        remove_unused_columns=False,
        seed=args.seed,
        bf16=args.bf16,
        use_cpu=args.device == "cpu",
        disable_tqdm=False,
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=list(batches),
        data_collator=lambda items: items[0],
        callbacks=[Timer()],
    )
    reset_peak()
    with quiet_peft():
        trainer.train()
    result.peak_memory_gib = peak_gib()
    return result


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Silence the deprecation warning peft 0.21 triggers inside transformers 5 (as our adapters module does)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.* is deprecated", category=FutureWarning
        )
        yield


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if torch.cuda.is_available() else None


def generation(args: argparse.Namespace) -> T5GenerationSettings:
    return T5GenerationSettings(
        max_context_turns=args.max_context_turns,
        max_source_len=args.max_source_len,
        max_target_len=args.max_target_len,
    )


def lora_settings(args: argparse.Namespace) -> LoraSettings:
    return LoraSettings(r=args.lora_r, alpha=2 * args.lora_r, dropout=args.lora_dropout)


def count_parameters(base: Path) -> int:
    from transformers import T5ForConditionalGeneration

    return sum(p.numel() for p in T5ForConditionalGeneration.from_pretrained(str(base)).parameters())


def run_mode(args: argparse.Namespace, mode: str, base: Path, train_file: Path, work: Path) -> dict[str, Any]:
    """One table row: ours (and ours+compile with ``--compile``) and the peer, side by side."""
    full = mode == "full"
    ours, batches = run_ours(args, base, train_file, work / f"ours-{mode}", full, compile_=False)
    peer = run_peer(args, base, batches, work / f"peer-{mode}", full)
    paths = [ours, peer]
    if args.compile:
        compiled, _ = run_ours(args, base, train_file, work / f"ours-compile-{mode}", full, compile_=True)
        paths.append(compiled)
    params = count_parameters(base)
    row: dict[str, Any] = {"mode": mode, "paths": {}}
    for p in paths:
        ex_s, tok_s, ex_cpu_s = p.rate(args.warmup)
        info: dict[str, Any] = {
            "examples_per_s": round(ex_s, 2),
            "tokens_per_s": round(tok_s, 1),
            "examples_per_cpu_s": round(ex_cpu_s, 2),
            "first_losses": [round(x, 5) for x in p.losses[:3]],
            "steps": len(p.times),
        }
        if p.peak_memory_gib is not None:
            info["peak_memory_gib"] = p.peak_memory_gib
        if args.peak_tflops:
            info["mfu"] = round(6 * params * tok_s / (args.peak_tflops * 1e12), 4)
        row["paths"][p.name] = info
    row["ours"] = row["paths"][ours.name]["examples_per_s"]
    row["peer"] = row["paths"][peer.name]["examples_per_s"]
    row["ratio"] = round(row["ours"] / row["peer"], 3)
    row["cpu_ratio"] = round(
        row["paths"][ours.name]["examples_per_cpu_s"] / row["paths"][peer.name]["examples_per_cpu_s"], 3
    )
    row["goal"] = args.goal
    row["met"] = row["ratio"] >= args.goal
    if args.compile:
        row["compile_vs_eager"] = round(row["paths"][paths[2].name]["examples_per_s"] / row["ours"], 3)
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{'mode':<6} {'ours ex/s':>10} {'peer ex/s':>10} {'ratio':>7} {'goal':>6} {'met':>5}   first losses ours | peer"
    )
    for r in rows:
        names = list(r["paths"])
        print(
            f"{r['mode']:<6} {r['ours']:>10.2f} {r['peer']:>10.2f} {r['ratio']:>6.2f}x {r['goal']:>5.2f}x "
            f"{'yes' if r['met'] else 'NO':>5}   {r['paths'][names[0]]['first_losses']} | "
            f"{r['paths'][names[1]]['first_losses']}"
        )
        for name, info in r["paths"].items():
            keys = ("tokens_per_s", "examples_per_cpu_s", "peak_memory_gib", "mfu")
            extra = {k: v for k, v in info.items() if k in keys}
            print(f"       {name}: {info['examples_per_s']} ex/s {extra}")
        if "compile_vs_eager" in r:
            print(f"       torch.compile vs eager (ours): {r['compile_vs_eager']}x")
        print(f"       per CPU second: {r['cpu_ratio']}x")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model-config", default="star-small", help="preset name or config JSON (resolve_model_config)"
    )
    p.add_argument("--tokenizer", type=Path, default=None, help="default: ../shared t5-small tokenizer")
    p.add_argument("--train", type=Path, default=None, help="dialogs JSONL (default: STAR train, else demo)")
    p.add_argument("--dialogs", type=int, default=400, help="use the first N dialogs of --train")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-context-turns", type=int, default=4)
    p.add_argument("--max-source-len", type=int, default=96)
    p.add_argument("--max-target-len", type=int, default=48)
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-warmup", type=int, default=10, help="learning-rate warm-up steps (both paths)")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument("--modes", nargs="+", choices=["full", "lora"], default=["full", "lora"])
    p.add_argument("--compile", action="store_true", help="also time ours with --compile (a third path)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast on both paths (CUDA)")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak TFLOP/s, for MFU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--goal", type=float, default=GOAL)
    p.add_argument("--json", type=Path, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here", file=sys.stderr)
        return 2
    if args.warmup < 1 or args.steps < 1:
        print("--warmup and --steps must be >= 1", file=sys.stderr)
        return 2
    if args.device == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "true"  # both accelerate (ours) and the Trainer read it
    torch.set_num_threads(args.threads)
    train_src = args.train or (STAR_TRAIN if STAR_TRAIN.is_file() else DEMO_TRAIN)
    tokenizer = args.tokenizer or T5_TOKENIZER
    if not tokenizer.is_dir():
        print(f"--tokenizer {tokenizer}: not a directory (give a T5 tokenizer directory)", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="t5-train-speed-") as tmp:
        work = Path(tmp)
        train_file = subset_dialogs(train_src, args.dialogs, work / "train.jsonl")
        base = make_base(args.model_config, tokenizer, work / "base", args.seed)
        rows = [run_mode(args, mode, base, train_file, work) for mode in args.modes]
    report = {
        "benchmark": "t5_train_speed",
        "data": f"first {args.dialogs} dialogs of {train_src}",
        "tokenizer": str(tokenizer),
        "model_config": args.model_config,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "threads": torch.get_num_threads(),
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "rows": rows,
    }
    print_table(rows)
    print(f"load average before {report['load_average_before']}, after {report['load_average_after']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
