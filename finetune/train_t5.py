"""Fine-tune a T5 reply model (LoRA adapter, or the full model) with an accelerate training loop.

Runs unchanged on one CPU, one GPU, or many GPUs / machines::

    python -m finetune.train_t5 --model DIR_OR_ID --train train.jsonl --valid valid.jsonl --output-dir out
    accelerate launch --config_file finetune/accelerate_configs/multi_gpu_ddp.yaml -m finetune.train_t5 ...

The loop follows the standard accelerate structure (transformers' ``run_summarization_no_trainer.py``):
``prepare``, ``accumulate`` + ``backward``, clipping when ``sync_gradients``, a learning-rate schedule,
validation loss with ``gather_for_metrics`` every N steps, early stopping, ``save_state`` /
``load_state`` + ``skip_first_batches`` for exact resume, and main-process-only logging and saving.
The output directory holds the best model by validation loss (the adapter, or the full model), its
tokenizer and an ``assistant.json`` manifest; ``checkpoint/`` holds the latest resumable state.

It does not prepare data (``finetune/t5_data.py``: the run config, tokenized examples, loaders),
evaluate replies (``finetune/evaluate.py``) or define a model (``assistant/generators/t5/model.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from assistant.config import add_dataclass_arguments, dataclass_from_args
from assistant.data import read_dialogs
from assistant.errors import ConfigError, report_errors
from assistant.generators.t5.adapters import LoraSettings, attach_lora, save_adapter, trainable_parameters
from assistant.generators.t5.model import (
    T5GenerationSettings,
    build_model,
    load_base_model,
    load_tokenizer,
    resolve_model_config,
    write_manifest,
)
from finetune.cli import add_threads_argument, apply_threads
from finetune.span_corruption import read_documents
from finetune.t5_data import TrainConfig, data_provenance, filter_domains, load_data, make_loaders
from finetune.t5_step import StepSettings, compile_model, target_token_loss, target_token_nll
from finetune.t5_vocab import padded_vocab_size, train_t5_tokenizer

#: read the (device) training loss back for the progress bar every this many optimizer steps, not every
#: micro-batch: on a GPU each read is a host-device synchronisation.
LOSS_READ_EVERY = 20


@dataclass
class TrainState:
    """Loop counters saved with the accelerate state (``register_for_checkpointing``)."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # current epoch
    batches_in_epoch: int = 0  # micro-batches of the current epoch consumed
    best_loss: float = math.inf
    best_step: int = 0
    bad_evals: int = 0
    train_seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time (time.process_time), all invocations
    examples_seen: int = 0
    history: list[dict[str, float]] = field(default_factory=list)  # one record per validation

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def build_model_and_tokenizer(
    cfg: TrainConfig, lora: LoraSettings, accelerator: Any | None = None, step: StepSettings | None = None
):
    """The model to train (a PeftModel with one adapter unless ``full_finetune``) and its tokenizer;
    its encoder and decoder compiled in place when ``step.compile``.

    With ``--init-from-config`` and no ``--tokenizer``, a ``--vocab-size`` SentencePiece vocabulary is
    trained on the (domain-filtered) training dialogs (:mod:`finetune.t5_vocab`), saved into the output
    directory at once (a ``--resume`` loads it from there) and the model's ``vocab_size`` set to fit it.
    """
    if cfg.init_from_config:
        config = resolve_model_config(cfg.init_from_config)
        if cfg.tokenizer:
            tokenizer = load_tokenizer(cfg.tokenizer)
        else:
            tokenizer = trained_vocabulary(cfg, accelerator)
            config.vocab_size = padded_vocab_size(tokenizer)
        model = build_model(config, tokenizer, seed=cfg.seed)
    else:
        tokenizer = load_tokenizer(cfg.tokenizer) if cfg.tokenizer else None
        model, tokenizer = load_base_model(cfg.model, tokenizer)
    if not cfg.full_finetune:
        model = attach_lora(model, lora, cfg.adapter_name)
    if step is not None and step.compile:
        compile_model(model)
    return model, tokenizer


def trained_vocabulary(cfg: TrainConfig, accelerator: Any | None):
    """The run's own vocabulary: trained on every turn of the training dialogs (main process first) and
    saved to the output directory, or loaded from there on ``--resume``."""
    from contextlib import nullcontext

    out = Path(cfg.output_dir)
    first = accelerator.main_process_first() if accelerator is not None else nullcontext()
    with first:
        if cfg.resume or (accelerator is not None and not accelerator.is_main_process):
            return load_tokenizer(out)
        if Path(cfg.train).suffix == ".txt":  # raw text for --objective span-corruption
            texts = read_documents(cfg.train)
        else:
            dialogs = filter_domains(
                read_dialogs(cfg.train), cfg.include_domains, cfg.exclude_domains, cfg.train
            )
            texts = [t.text for d in dialogs for t in d.turns]
        return train_t5_tokenizer(texts, cfg.vocab_size, out, seed=cfg.seed)


@torch.no_grad()
def evaluate_loss(accelerator: Any, model: Any, loader: DataLoader) -> float:
    """Mean validation loss per target token (nats), over every process (``gather_for_metrics``);
    the vocabulary projection runs on the real target tokens only (``finetune/t5_step.py``)."""
    model.eval()
    total, count = 0.0, 0
    for batch in loader:
        with accelerator.autocast():
            nll, tokens = target_token_nll(model, batch)  # (B,), (B,)
        nll, tokens = accelerator.gather_for_metrics((nll, tokens))
        total += float(nll.sum())
        count += int(tokens.sum())
    model.train()
    return total / max(count, 1)


def save_best(
    accelerator: Any, model: Any, tokenizer: Any, cfg: TrainConfig, manifest: dict[str, Any]
) -> None:
    """Write the best model so far (adapter or full weights), tokenizer and manifest (main process only)."""
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    # a full state dict gathered from every process (FSDP / DeepSpeed shard it); a collective call
    state_dict = accelerator.get_state_dict(model)
    out = Path(cfg.output_dir)
    if cfg.full_finetune:
        unwrapped.save_pretrained(
            str(out),
            is_main_process=accelerator.is_main_process,
            save_function=accelerator.save,
            state_dict=state_dict,
        )
    elif accelerator.is_main_process:
        tmp = out / "adapters" / (cfg.adapter_name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        save_adapter(unwrapped, tmp, cfg.adapter_name, state_dict=state_dict)
        final = out / "adapters" / cfg.adapter_name
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    if accelerator.is_main_process:
        tokenizer.save_pretrained(str(out))
        write_manifest(out, manifest)


def save_checkpoint(accelerator: Any, cfg: TrainConfig) -> None:
    """Save the resumable state into OUTPUT_DIR/checkpoint (written beside, then swapped in)."""
    out = Path(cfg.output_dir)
    tmp, final = out / "checkpoint.tmp", out / "checkpoint"
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()


def base_model_reference(cfg: TrainConfig) -> dict[str, str]:
    """``{"path": relative to the output dir}`` for a local base, ``{"id": ...}`` for a hub id."""
    if cfg.model and Path(cfg.model).is_dir():
        return {"path": os.path.relpath(Path(cfg.model).resolve(), Path(cfg.output_dir).resolve())}
    return {"id": cfg.model}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assistant-train-t5", description=__doc__.splitlines()[0])
    add_dataclass_arguments(parser, TrainConfig)
    add_threads_argument(parser, "training")
    add_dataclass_arguments(parser, T5GenerationSettings)
    add_dataclass_arguments(parser, LoraSettings, prefix="lora-")
    add_dataclass_arguments(parser, StepSettings)
    return parser


@report_errors
def main(argv: list[str] | None = None) -> int:
    """CLI entry point: parse flags, train, write the model directory. Returns 0, or 2 on a bad input."""
    args = build_parser().parse_args(argv)
    apply_threads(args.threads)
    cfg = dataclass_from_args(TrainConfig, args)
    gen = dataclass_from_args(T5GenerationSettings, args)
    lora = dataclass_from_args(LoraSettings, args, prefix="lora-")
    train(cfg, gen, lora, step=dataclass_from_args(StepSettings, args))
    print(
        "WARNING: no in-domain check was calibrated for this model (the T5 trainer does not build one; with "
        "adapters the domain depends on the adapter). Until you run assistant-calibrate-scope --model-dir "
        f"{cfg.output_dir} --train TRAIN --valid VALID, the pipeline lets it answer every message the FAQ "
        "does not, out of scope or not.",
        file=sys.stderr,
    )
    return 0


def make_accelerator(cfg: TrainConfig):
    """An ``Accelerator`` with gradient accumulation, mixed precision and a seedable sampler."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed

    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("--mixed-precision fp16 needs a CUDA GPU; use bf16 or no on CPU")
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.grad_accum,
        mixed_precision=cfg.mixed_precision,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
    )
    set_seed(cfg.seed)
    return accelerator


def make_optimizer(cfg: TrainConfig, model: Any) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; weight decay on matrices only (not biases / layer norms).

    The fused kernel (one pass over all parameters, CPU and CUDA, floating-point parameters) when it
    applies, else the for-each one: the same update rule (Loshchilov & Hutter, 2019), and the same
    optimizer state, so checkpoints from either resume with either.
    """
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in decay + no_decay)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        fused=fused,
    )


def plan_steps(cfg: TrainConfig, n_examples: int, num_processes: int) -> tuple[int, int, int]:
    """``(optimizer steps per epoch, total optimizer steps, epochs)`` for ``n_examples`` training examples."""
    steps_per_epoch = math.ceil(math.ceil(n_examples / (cfg.batch_size * num_processes)) / cfg.grad_accum)
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    return steps_per_epoch, total_steps, math.ceil(total_steps / steps_per_epoch)


class BudgetSchedule:
    """``LambdaLR`` multiplier: linear warm-up, then linear or cosine decay to 0 over
    ``max(steps done / planned steps, budget fraction)``, so that a run stopped by its time budget
    (``--max-minutes`` / ``--max-cpu-minutes``) ends annealed, like ``finetune.train_lstm``'s schedule.

    With no budget (fraction 0) it is ``transformers.get_scheduler``'s ``linear`` / ``cosine`` schedule
    (``get_linear_schedule_with_warmup``, ``get_cosine_schedule_with_warmup`` with half a cycle). Steps
    count scheduler steps: the prepared scheduler steps once per process each optimizer step, so
    ``warmup`` and ``total`` are optimizer steps x processes. ``budget_fraction`` is set by the training
    loop from the main process's clocks (the same on every process); being a plain attribute of a
    callable object it is saved with the scheduler's ``state_dict`` for ``--resume``.
    """

    def __init__(self, kind: str, warmup: int, total: int) -> None:
        self.kind, self.warmup, self.total, self.budget_fraction = kind, warmup, total, 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return step / max(1, self.warmup)
        progress = min(
            1.0, max((step - self.warmup) / max(1, self.total - self.warmup), self.budget_fraction)
        )
        if self.kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int, num_processes: int):
    """The learning-rate schedule with linear warm-up: :class:`BudgetSchedule` for ``linear`` and
    ``cosine``, ``transformers.get_scheduler`` for ``constant_with_warmup`` and ``inverse_sqrt`` (which
    have no end to anneal towards)."""
    from transformers import get_scheduler

    # the prepared scheduler steps once per process each optimizer step (as in the no_trainer examples)
    if cfg.schedule in ("linear", "cosine"):
        schedule = BudgetSchedule(cfg.schedule, cfg.warmup_steps * num_processes, total_steps * num_processes)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return get_scheduler(
        cfg.schedule,
        optimizer,
        num_warmup_steps=cfg.warmup_steps * num_processes,
        num_training_steps=total_steps * num_processes,
    )


def build_manifest(
    cfg: TrainConfig,
    gen: T5GenerationSettings,
    lora: LoraSettings,
    accelerator: Any,
    model: Any,
    counts: dict[str, int],
    parameters: tuple[int, int],
) -> dict[str, Any]:
    """The ``assistant.json`` content (without ``training`` figures) for the model being trained."""
    trainable, total = parameters
    return {
        "base_model": {"path": "."} if cfg.full_finetune else base_model_reference(cfg),
        "tokenizer": ".",
        "adapters": []
        if cfg.full_finetune
        else [{"name": cfg.adapter_name, "path": f"adapters/{cfg.adapter_name}"}],
        "model_config": accelerator.unwrap_model(model).config.to_dict() if cfg.full_finetune else None,
        "lora": None if cfg.full_finetune else lora.to_dict(),
        "generation": asdict(gen),
        "train_config": asdict(cfg),
        "data": data_provenance(cfg, counts),
        "parameters": {"trainable": trainable, "total": total},
    }


def epoch_batches(accelerator: Any, train_loader: Any, state: TrainState):
    """The current epoch's batches, skipping those already consumed before a resume."""
    train_loader.set_epoch(state.epoch)
    if state.batches_in_epoch:
        return accelerator.skip_first_batches(train_loader, state.batches_in_epoch)
    return train_loader


def accumulation_step(
    accelerator: Any,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    batch: dict[str, torch.Tensor],
    max_grad_norm: float,
) -> torch.Tensor:
    """Forward + backward of one micro-batch (optimizer step when ``sync_gradients``); returns the loss
    (a scalar tensor on the device: reading it is a host-device synchronisation on a GPU)."""
    with accelerator.accumulate(model):
        with accelerator.autocast():  # the short path calls submodules, not the prepared forward
            loss = target_token_loss(model, batch)
        accelerator.backward(loss)
        if accelerator.sync_gradients and max_grad_norm > 0:
            accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return loss


class RunClock:
    """Wall-clock and CPU time of a run, earlier invocations (``--resume``) included.

    CPU time is the process's (``time.process_time``: user + system time of all its threads), so with
    one torch thread it measures the compute a run was given whatever else loads the machine.
    """

    def __init__(self, state: TrainState) -> None:
        self._wall0, self._wall_before = time.monotonic(), state.train_seconds
        self._cpu0, self._cpu_before = time.process_time(), state.cpu_seconds

    def wall(self) -> float:
        """Wall-clock seconds of the run so far."""
        return self._wall_before + time.monotonic() - self._wall0

    def cpu(self) -> float:
        """CPU seconds of the run so far."""
        return self._cpu_before + time.process_time() - self._cpu0

    def stamp(self, state: TrainState) -> None:
        """Store both clocks in ``state`` (saved with the checkpoint)."""
        state.train_seconds, state.cpu_seconds = self.wall(), self.cpu()


def budget_fraction(cfg: TrainConfig, clock: RunClock) -> float:
    """Share of the time budget used: the larger of the wall-clock and CPU shares, capped at 1; 0 without
    a budget."""
    shares = [0.0]
    if cfg.max_minutes is not None:
        shares.append(clock.wall() / (cfg.max_minutes * 60))
    if cfg.max_cpu_minutes is not None:
        shares.append(clock.cpu() / (cfg.max_cpu_minutes * 60))
    return min(1.0, max(shares))


def budget_record(cfg: TrainConfig, state: TrainState) -> dict[str, Any]:
    """The manifest's ``budget``: kind (``cpu``, ``wall``, both or ``none``), limits and use, in minutes."""
    kinds = [k for k, v in (("cpu", cfg.max_cpu_minutes), ("wall", cfg.max_minutes)) if v is not None]
    return {
        "kind": "+".join(kinds) or "none",
        "max_cpu_minutes": cfg.max_cpu_minutes,
        "max_wall_minutes": cfg.max_minutes,
        "cpu_minutes_used": round(state.cpu_seconds / 60, 2),
        "wall_minutes_used": round(state.train_seconds / 60, 2),
    }


def time_is_up(accelerator: Any, cfg: TrainConfig, clock: RunClock, scheduler: Any) -> bool:
    """Whether the time budget is spent, agreed by every process (the main process's clocks decide);
    passes the budget fraction to a :class:`BudgetSchedule`.

    Without a budget it is ``False`` without asking the other processes (the broadcast is a collective
    and a host-device synchronisation).
    """
    from accelerate.utils import broadcast

    if cfg.max_minutes is None and cfg.max_cpu_minutes is None:
        return False
    fraction = torch.tensor([budget_fraction(cfg, clock)], dtype=torch.float32, device=accelerator.device)
    fraction = float(broadcast(fraction, from_process=0)[0])
    schedule = getattr(getattr(scheduler, "scheduler", scheduler), "lr_lambdas", [None])[0]
    if isinstance(schedule, BudgetSchedule):
        schedule.budget_fraction = fraction
    return fraction >= 1.0


def evaluate_and_checkpoint(
    accelerator: Any,
    model: Any,
    tokenizer: Any,
    valid_loader: DataLoader,
    state: TrainState,
    cfg: TrainConfig,
    manifest: dict[str, Any],
    clock: RunClock,
) -> tuple[dict[str, Any], bool]:
    """Validation loss, best-model save, checkpoint. Returns the manifest and whether patience ran out."""
    val = evaluate_loss(accelerator, model, valid_loader)
    clock.stamp(state)
    improved = val < state.best_loss
    state.history.append(
        {
            "step": state.step,
            "examples_seen": state.examples_seen,
            "valid_loss": val,
            "cpu_s": round(state.cpu_seconds, 1),
            "wall_s": round(state.train_seconds, 1),
        }
    )
    if improved:
        state.best_loss, state.best_step, state.bad_evals = val, state.step, 0
        manifest = {**manifest, "training": figures(state, val, cfg, accelerator, "best so far")}
        save_best(accelerator, model, tokenizer, cfg, manifest)
    else:
        state.bad_evals += 1
    accelerator.print(
        f"\nstep {state.step}: valid loss {val:.4f} (ppl {math.exp(min(val, 50)):.1f})"
        f"{' best' if improved else f' no gain ({state.bad_evals}/{cfg.patience})'}"
    )
    save_checkpoint(accelerator, cfg)
    return manifest, state.bad_evals >= cfg.patience


def train(
    cfg: TrainConfig,
    gen: T5GenerationSettings,
    lora: LoraSettings,
    *,
    step: StepSettings | None = None,
    interrupt_after_steps: int | None = None,
    on_step: Callable[[TrainState, dict[str, torch.Tensor], torch.Tensor], None] | None = None,
) -> dict[str, Any]:
    """Train and write the output directory; returns the manifest written.

    Args:
        step: how each step is computed (``--compile``); default :class:`StepSettings`.
        interrupt_after_steps: stop after this many optimizer steps *without* finishing (no final
            evaluation or save), as a crash would, after saving the resumable state; for resume tests.
        on_step: called after each optimizer step, before any evaluation or checkpoint, with the loop
            state, the step's last micro-batch and its loss tensor (``bench/t5_train_speed.py`` times
            steps with it).

    Raises:
        ConfigError / DataError / ModelError: bad flags, data or model.
    """
    from tqdm.auto import tqdm

    accelerator = make_accelerator(cfg)
    out = Path(cfg.output_dir)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    if cfg.resume and not (out / "checkpoint").is_dir():
        raise ConfigError(f"--resume: no {out / 'checkpoint'} to resume from")
    step = step if step is not None else StepSettings()
    model, tokenizer = build_model_and_tokenizer(cfg, lora, accelerator, step)
    train_ex, valid_ex, counts = load_data(cfg, tokenizer, gen, accelerator)
    train_loader, valid_loader = make_loaders(cfg, train_ex, valid_ex, tokenizer)
    trainable, total = trainable_parameters(model)
    optimizer = make_optimizer(cfg, model)
    steps_per_epoch, total_steps, epochs = plan_steps(cfg, len(train_ex), accelerator.num_processes)
    scheduler = make_scheduler(cfg, optimizer, total_steps, accelerator.num_processes)
    model, optimizer, train_loader, valid_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, valid_loader, scheduler
    )
    state = TrainState()
    accelerator.register_for_checkpointing(state)
    if cfg.resume:
        accelerator.load_state(str(out / "checkpoint"))
        accelerator.print(
            f"resumed at step {state.step} (epoch {state.epoch}, batch {state.batches_in_epoch})"
        )
    accelerator.print(
        f"{counts}; parameters: {trainable:,} trainable of {total:,}; "
        f"{total_steps} steps ({steps_per_epoch}/epoch)"
    )
    manifest = build_manifest(cfg, gen, lora, accelerator, model, counts, (trainable, total))
    manifest["step_settings"] = asdict(step)
    every_ckpt = cfg.checkpoint_every or cfg.eval_every
    bar = tqdm(
        total=total_steps,
        initial=state.step,
        disable=not accelerator.is_local_main_process,
        desc="train",
        dynamic_ncols=True,
    )
    model.train()
    start, start_examples = time.monotonic(), state.examples_seen
    clock = RunClock(state)
    stop_reason, loss_ema, loss_sum, loss_count = "max steps", None, None, 0

    done = state.step >= total_steps
    while not done and state.epoch < epochs:
        for batch in epoch_batches(accelerator, train_loader, state):
            loss = accumulation_step(accelerator, model, optimizer, scheduler, batch, cfg.max_grad_norm)
            state.batches_in_epoch += 1
            state.examples_seen += batch["input_ids"].shape[0] * accelerator.num_processes
            loss_sum = loss.detach() if loss_sum is None else loss_sum + loss.detach()
            loss_count += 1
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            if on_step is not None:
                on_step(state, batch, loss)
            bar.update(1)
            if state.step % LOSS_READ_EVERY == 0 or state.step >= total_steps:
                mean = float(loss_sum) / loss_count  # the one host-device sync per LOSS_READ_EVERY steps
                loss_ema = mean if loss_ema is None else 0.8 * loss_ema + 0.2 * mean
                loss_sum, loss_count = None, 0
                bar.set_postfix(
                    loss=f"{loss_ema:.3f}",
                    ex_s=f"{(state.examples_seen - start_examples) / (time.monotonic() - start):.1f}",
                )
            out_of_time = time_is_up(accelerator, cfg, clock, scheduler)
            if state.step % cfg.eval_every == 0 or state.step >= total_steps or out_of_time:
                manifest, patience_out = evaluate_and_checkpoint(
                    accelerator, model, tokenizer, valid_loader, state, cfg, manifest, clock
                )
                if patience_out:
                    stop_reason, done = f"early stopping (patience {cfg.patience})", True
            elif state.step % every_ckpt == 0:
                clock.stamp(state)
                save_checkpoint(accelerator, cfg)
            if interrupt_after_steps is not None and state.step >= interrupt_after_steps:
                clock.stamp(state)
                save_checkpoint(accelerator, cfg)
                bar.close()
                return manifest
            if out_of_time:
                stop_reason, done = f"time budget ({budget_record(cfg, state)['kind']})", True
            if state.step >= total_steps:
                done = True
            if done:
                break
        else:
            state.epoch, state.batches_in_epoch = state.epoch + 1, 0
    bar.close()
    clock.stamp(state)
    return finish(accelerator, out, cfg, state, manifest, stop_reason, total_steps)


def finish(
    accelerator: Any,
    out: Path,
    cfg: TrainConfig,
    state: TrainState,
    manifest: dict[str, Any],
    stop_reason: str,
    total_steps: int,
) -> dict[str, Any]:
    """Write the final manifest (best model's figures, why training stopped) and end training."""
    final = {**figures(state, state.best_loss, cfg, accelerator, stop_reason), "steps_total": total_steps}
    manifest = {**manifest, "training": final}
    if accelerator.is_main_process:
        write_manifest(out, manifest)
        accelerator.print(json.dumps(final, indent=2))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return manifest


def figures(state: TrainState, best: float, cfg: TrainConfig, accelerator: Any, note: str) -> dict[str, Any]:
    """Training figures for the manifest (time, throughput, peak GPU memory on CUDA)."""
    fig: dict[str, Any] = {
        "stopped": note,
        "steps": state.step,
        "best_step": state.best_step,
        "epochs_completed": state.epoch,
        "best_valid_loss": best,
        "best_valid_ppl": math.exp(min(best, 50)) if math.isfinite(best) else None,
        "train_seconds": round(state.train_seconds, 1),
        "cpu_seconds": round(state.cpu_seconds, 1),
        "examples_seen": state.examples_seen,
        "examples_per_second": round(state.examples_seen / max(state.train_seconds, 1e-9), 2),
        "examples_per_cpu_second": round(state.examples_seen / max(state.cpu_seconds, 1e-9), 2),
        "budget": budget_record(cfg, state),
        "valid_history": list(state.history),
        "num_processes": accelerator.num_processes,
        "mixed_precision": cfg.mixed_precision,
        "device": str(accelerator.device),
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        fig["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return fig


if __name__ == "__main__":
    raise SystemExit(main())
