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

It does not evaluate replies (``finetune/evaluate.py``) and defines no model (``assistant/t5.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader

from assistant.config import add_dataclass_arguments, dataclass_from_args, require
from assistant.data import Dialog, build_examples, format_context, read_dialogs
from assistant.errors import AssistantError, ConfigError, DataError
from assistant.t5 import (
    PRESETS,
    T5GenerationSettings,
    build_model,
    encode_targets,
    load_base_model,
    load_tokenizer,
    resolve_model_config,
    write_manifest,
)
from assistant.t5_adapters import (
    LoraSettings,
    attach_lora,
    check_adapter_name,
    save_adapter,
    trainable_parameters,
)


@dataclass
class TrainConfig:
    """What to train on, for how long, and where to write it."""

    train: str = field(default="", metadata={"help": "training dialogs (JSONL)"})
    valid: str = field(default="", metadata={"help": "validation dialogs (JSONL)"})
    output_dir: str = field(
        default="", metadata={"help": "where the best model, manifest and checkpoint/ go"}
    )
    model: str | None = field(
        default=None,
        metadata={
            "help": "base model: a Hugging Face id (e.g. google/flan-t5-small, needs network) "
            "or a local directory"
        },
    )
    init_from_config: str | None = field(
        default=None,
        metadata={
            "help": f"build a new model instead: a preset {sorted(PRESETS)} or a config JSON; "
            "needs --tokenizer"
        },
    )
    tokenizer: str | None = field(
        default=None,
        metadata={"help": "tokenizer id/dir (required with --init-from-config; default: the --model's own)"},
    )
    full_finetune: bool = field(
        default=False,
        metadata={"help": "train every weight (needed to train from scratch) instead of a LoRA adapter"},
    )
    adapter_name: str = field(default="default", metadata={"help": "name of the trained LoRA adapter"})
    include_domains: list[str] | None = field(
        default=None, metadata={"help": "keep only dialogs with one of these STAR meta.domains"}
    )
    exclude_domains: list[str] | None = field(
        default=None, metadata={"help": "drop dialogs with any of these meta.domains"}
    )
    max_valid_examples: int = field(
        default=512, metadata={"help": "validation examples used (a seeded sample; 0 = all)"}
    )
    batch_size: int = field(default=16, metadata={"help": "examples per device per micro-batch"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate (AdamW)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    schedule: Literal["linear", "cosine", "constant_with_warmup", "inverse_sqrt"] = field(
        default="linear",
        metadata={"help": "learning-rate schedule after warm-up (transformers.get_scheduler)"},
    )
    warmup_steps: int = field(default=100, metadata={"help": "linear warm-up, optimizer steps"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "clip gradients to this L2 norm (0 = off)"})
    epochs: int = field(default=3, metadata={"help": "passes over the training examples (if no --max-steps)"})
    max_steps: int | None = field(default=None, metadata={"help": "optimizer steps; overrides --epochs"})
    max_minutes: float | None = field(
        default=None,
        metadata={"help": "stop (evaluate, save, checkpoint) after this many minutes of training"},
    )
    eval_every: int = field(default=200, metadata={"help": "validation loss every N optimizer steps"})
    checkpoint_every: int | None = field(
        default=None,
        metadata={"help": "save the resumable state every N steps (default: at every evaluation)"},
    )
    patience: int = field(
        default=5, metadata={"help": "stop after this many evaluations without improvement"}
    )
    seed: int = field(default=0, metadata={"help": "seed for initialisation, shuffling and dropout"})
    mixed_precision: Literal["no", "fp16", "bf16"] = field(
        default="no", metadata={"help": "autocast precision (fp16 needs CUDA; bf16 on recent GPUs)"}
    )
    resume: bool = field(default=False, metadata={"help": "continue from OUTPUT_DIR/checkpoint exactly"})
    threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: torch's)"})

    def __post_init__(self) -> None:
        require(
            bool(self.train) and bool(self.valid) and bool(self.output_dir),
            "--train, --valid and --output-dir are required",
        )
        require(
            (self.model is None) != (self.init_from_config is None),
            "give exactly one of --model ID_OR_DIR and --init-from-config CONFIG",
        )
        require(
            self.init_from_config is None or self.tokenizer is not None,
            "--init-from-config needs --tokenizer DIR (e.g. ../shared/data/models/t5-small-tokenizer)",
        )
        require(
            self.init_from_config is None or self.full_finetune,
            "--init-from-config builds a random model: LoRA on random weights is pointless; "
            "add --full-finetune",
        )
        for name in ("batch_size", "grad_accum", "epochs", "eval_every", "patience"):
            require(
                getattr(self, name) >= 1,
                f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}",
            )
        require(self.lr > 0, f"--lr must be > 0, got {self.lr}")
        require(
            self.warmup_steps >= 0 and self.max_grad_norm >= 0 and self.max_valid_examples >= 0,
            "--warmup-steps, --max-grad-norm and --max-valid-examples must be >= 0",
        )
        require(
            self.max_steps is None or self.max_steps >= 1, f"--max-steps must be >= 1, got {self.max_steps}"
        )
        require(
            self.max_minutes is None or self.max_minutes > 0,
            f"--max-minutes must be > 0, got {self.max_minutes}",
        )
        require(
            self.checkpoint_every is None or self.checkpoint_every >= 1, "--checkpoint-every must be >= 1"
        )
        require(self.threads is None or self.threads >= 1, f"--threads must be >= 1, got {self.threads}")
        check_adapter_name(self.adapter_name)


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
    examples_seen: int = 0

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def filter_domains(
    dialogs: list[Dialog], include: list[str] | None, exclude: list[str] | None, where: str
) -> list[Dialog]:
    """Keep dialogs whose ``meta.domains`` match ``include`` (any) and none of ``exclude``.

    Raises:
        DataError: nothing is left.
    """
    inc, exc = set(include or ()), set(exclude or ())
    kept = []
    for d in dialogs:
        domains = {x for x in d.meta.get("domains", []) or [] if isinstance(x, str)}
        if (not inc or domains & inc) and not domains & exc:
            kept.append(d)
    if not kept:
        raise DataError(
            f"{where}: no dialog left after --include-domains {sorted(inc)} --exclude-domains {sorted(exc)}"
        )
    return kept


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tokenize_examples(
    dialogs: list[Dialog], tokenizer: Any, gen: T5GenerationSettings
) -> list[dict[str, list[int]]]:
    """``{"input_ids", "attention_mask", "labels"}`` per agent turn (source left-cut, target right-cut)."""
    examples = build_examples(dialogs, gen.max_context_turns)
    sources = tokenizer(
        [format_context(e.context) for e in examples], truncation=True, max_length=gen.max_source_len
    )
    labels = encode_targets(tokenizer, [e.target for e in examples], gen.max_target_len)
    return [
        {"input_ids": i, "attention_mask": m, "labels": y}
        for i, m, y in zip(sources.input_ids, sources.attention_mask, labels)
    ]


def collate(pad_id: int):
    """Pad a list of tokenized examples: inputs with ``pad_id``, labels with -100 (ignored by the loss)."""

    def fn(rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        src = max(len(r["input_ids"]) for r in rows)
        tgt = max(len(r["labels"]) for r in rows)
        out = {
            "input_ids": torch.full((len(rows), src), pad_id),  # (B, S)
            "attention_mask": torch.zeros((len(rows), src), dtype=torch.long),
            "labels": torch.full((len(rows), tgt), -100),
        }  # (B, T)
        for i, r in enumerate(rows):
            out["input_ids"][i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
            out["attention_mask"][i, : len(r["input_ids"])] = 1
            out["labels"][i, : len(r["labels"])] = torch.tensor(r["labels"])
        return out

    return fn


def build_model_and_tokenizer(cfg: TrainConfig, lora: LoraSettings):
    """The model to train (a PeftModel with one adapter unless ``full_finetune``) and its tokenizer."""
    if cfg.init_from_config:
        tokenizer = load_tokenizer(cfg.tokenizer)
        model = build_model(resolve_model_config(cfg.init_from_config), tokenizer, seed=cfg.seed)
    else:
        tokenizer = load_tokenizer(cfg.tokenizer) if cfg.tokenizer else None
        model, tokenizer = load_base_model(cfg.model, tokenizer)
    if not cfg.full_finetune:
        model = attach_lora(model, lora, cfg.adapter_name)
    return model, tokenizer


@torch.no_grad()
def evaluate_loss(accelerator: Any, model: Any, loader: DataLoader) -> float:
    """Mean validation loss per target token (nats), over every process (``gather_for_metrics``)."""
    model.eval()
    total, count = 0.0, 0
    for batch in loader:
        logits = model(**batch).logits  # (B, T, V)
        nll = torch.nn.functional.cross_entropy(
            logits.float().transpose(1, 2), batch["labels"], ignore_index=-100, reduction="none"
        ).sum(dim=1)  # (B,)
        tokens = (batch["labels"] != -100).sum(dim=1)  # (B,)
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
    add_dataclass_arguments(parser, T5GenerationSettings)
    add_dataclass_arguments(parser, LoraSettings, prefix="lora-")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: parse flags, train, write the model directory. Returns 0, or 2 on a bad input."""
    args = build_parser().parse_args(argv)
    try:
        cfg = dataclass_from_args(TrainConfig, args)
        gen = dataclass_from_args(T5GenerationSettings, args)
        lora = dataclass_from_args(LoraSettings, args, prefix="lora-")
        train(cfg, gen, lora)
    except AssistantError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def make_accelerator(cfg: TrainConfig):
    """An ``Accelerator`` with gradient accumulation, mixed precision and a seedable sampler."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed

    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("--mixed-precision fp16 needs a CUDA GPU; use bf16 or no on CPU")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.grad_accum,
        mixed_precision=cfg.mixed_precision,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
    )
    set_seed(cfg.seed)
    return accelerator


def load_data(cfg: TrainConfig, tokenizer: Any, gen: T5GenerationSettings, accelerator: Any):
    """Tokenized training and validation examples (validation: a seeded sample of max_valid_examples)."""
    with accelerator.main_process_first():
        train_d = filter_domains(read_dialogs(cfg.train), cfg.include_domains, cfg.exclude_domains, cfg.train)
        valid_d = filter_domains(read_dialogs(cfg.valid), cfg.include_domains, cfg.exclude_domains, cfg.valid)
        train_ex = tokenize_examples(train_d, tokenizer, gen)
        valid_ex = tokenize_examples(valid_d, tokenizer, gen)
    if cfg.max_valid_examples and len(valid_ex) > cfg.max_valid_examples:
        order = torch.randperm(len(valid_ex), generator=torch.Generator().manual_seed(cfg.seed))
        valid_ex = [valid_ex[i] for i in order[: cfg.max_valid_examples].tolist()]
    counts = {
        "train_dialogs": len(train_d),
        "train_examples": len(train_ex),
        "valid_dialogs": len(valid_d),
        "valid_examples": len(valid_ex),
    }
    return train_ex, valid_ex, counts


def train(
    cfg: TrainConfig,
    gen: T5GenerationSettings,
    lora: LoraSettings,
    *,
    interrupt_after_steps: int | None = None,
) -> dict[str, Any]:
    """Train and write the output directory; returns the manifest written.

    Args:
        interrupt_after_steps: stop after this many optimizer steps *without* finishing (no final
            evaluation or save), as a crash would, after saving the resumable state; for resume tests.

    Raises:
        ConfigError / DataError / ModelError: bad flags, data or model.
    """
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    accelerator = make_accelerator(cfg)
    out = Path(cfg.output_dir)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    if cfg.resume and not (out / "checkpoint").is_dir():
        raise ConfigError(f"--resume: no {out / 'checkpoint'} to resume from")
    model, tokenizer = build_model_and_tokenizer(cfg, lora)
    train_ex, valid_ex, counts = load_data(cfg, tokenizer, gen, accelerator)
    pad = collate(tokenizer.pad_token_id)
    # own generators: creating a DataLoader iterator draws a seed, and must not consume the global RNG
    # (whose state, restored by load_state, drives dropout) or a resumed run would diverge
    train_loader = DataLoader(
        train_ex,
        batch_size=cfg.batch_size,
        shuffle=True,
        collate_fn=pad,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    valid_loader = DataLoader(
        valid_ex,
        batch_size=cfg.batch_size * 2,
        shuffle=False,
        collate_fn=pad,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    trainable, total = trainable_parameters(model)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
    )
    steps_per_epoch = math.ceil(
        math.ceil(len(train_ex) / (cfg.batch_size * accelerator.num_processes)) / cfg.grad_accum
    )
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    # the prepared scheduler steps once per process each optimizer step (as in the no_trainer examples)
    scheduler = get_scheduler(
        cfg.schedule,
        optimizer,
        num_warmup_steps=cfg.warmup_steps * accelerator.num_processes,
        num_training_steps=total_steps * accelerator.num_processes,
    )
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
    manifest: dict[str, Any] = {
        "base_model": {"path": "."} if cfg.full_finetune else base_model_reference(cfg),
        "tokenizer": ".",
        "adapters": []
        if cfg.full_finetune
        else [{"name": cfg.adapter_name, "path": f"adapters/{cfg.adapter_name}"}],
        "model_config": accelerator.unwrap_model(model).config.to_dict() if cfg.full_finetune else None,
        "lora": None if cfg.full_finetune else lora.to_dict(),
        "generation": asdict(gen),
        "train_config": asdict(cfg),
        "data": {
            "train": cfg.train,
            "train_sha256": file_sha256(cfg.train),
            "valid": cfg.valid,
            "valid_sha256": file_sha256(cfg.valid),
            **counts,
        },
        "parameters": {"trainable": trainable, "total": total},
        "versions": library_versions(),
    }
    every_ckpt = cfg.checkpoint_every or cfg.eval_every
    bar = tqdm(
        total=total_steps,
        initial=state.step,
        disable=not accelerator.is_local_main_process,
        desc="train",
        dynamic_ncols=True,
    )
    model.train()
    start, start_seconds, start_examples = time.monotonic(), state.train_seconds, state.examples_seen
    stop_reason, loss_ema = "max steps", None

    def elapsed() -> float:
        return start_seconds + time.monotonic() - start

    def evaluate_and_checkpoint() -> bool:
        """Validation loss, best-model save, checkpoint; True when early stopping triggers."""
        nonlocal manifest
        val = evaluate_loss(accelerator, model, valid_loader)
        state.train_seconds, improved = elapsed(), val < state.best_loss
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
        return state.bad_evals >= cfg.patience

    done = state.step >= total_steps
    while not done and state.epoch < epochs:
        train_loader.set_epoch(state.epoch)
        loader = (
            accelerator.skip_first_batches(train_loader, state.batches_in_epoch)
            if state.batches_in_epoch
            else train_loader
        )
        for batch in loader:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            state.batches_in_epoch += 1
            state.examples_seen += batch["input_ids"].shape[0] * accelerator.num_processes
            lv = float(loss.detach())
            loss_ema = lv if loss_ema is None else 0.98 * loss_ema + 0.02 * lv
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss_ema:.3f}",
                ex_s=f"{(state.examples_seen - start_examples) / (time.monotonic() - start):.1f}",
            )
            if (
                cfg.max_minutes is not None
                and elapsed() > cfg.max_minutes * 60
                and accelerator.is_main_process
            ):
                accelerator.set_trigger()
            out_of_time = accelerator.check_trigger()
            if state.step % cfg.eval_every == 0 or state.step >= total_steps or out_of_time:
                if evaluate_and_checkpoint():
                    stop_reason, done = f"early stopping (patience {cfg.patience})", True
            elif state.step % every_ckpt == 0:
                state.train_seconds = elapsed()
                save_checkpoint(accelerator, cfg)
            if interrupt_after_steps is not None and state.step >= interrupt_after_steps:
                state.train_seconds = elapsed()
                save_checkpoint(accelerator, cfg)
                bar.close()
                return manifest
            if out_of_time:
                stop_reason, done = f"time budget ({cfg.max_minutes} min)", True
            if state.step >= total_steps:
                done = True
            if done:
                break
        else:
            state.epoch, state.batches_in_epoch = state.epoch + 1, 0
    bar.close()
    state.train_seconds = elapsed()
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
        "examples_seen": state.examples_seen,
        "examples_per_second": round(state.examples_seen / max(state.train_seconds, 1e-9), 2),
        "num_processes": accelerator.num_processes,
        "mixed_precision": cfg.mixed_precision,
        "device": str(accelerator.device),
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        fig["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return fig


def library_versions() -> dict[str, str]:
    import accelerate
    import peft
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
        "python": sys.version.split()[0],
    }


if __name__ == "__main__":
    raise SystemExit(main())
