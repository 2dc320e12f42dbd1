"""Train the LSTM seq2seq reply model on dialog JSONL files and write a model directory.

    python -m finetune.train_lstm --train my/train.jsonl --valid my/valid.jsonl \\
        --output-dir models/lstm [--epochs 10] [--max-minutes 40] [--threads 1] [--resume]
    python -m finetune.train_lstm --preset demo        # the shipped demo data, ~2-3 minutes on 2 cores

From Python, :func:`train_lstm` takes an :class:`LSTMTraining` (every setting, typed); the CLI builds
one from its flags (:func:`training_from_args`) and :func:`preset_training` from a preset, which is
what the server's first-run demo calls.

Steps: read dialogs → (context, agent reply) examples → train a SentencePiece tokenizer on the training
turns → AdamW with linear warmup then linear decay → per epoch: length-bucketed shuffled batches,
gradient clipping, validation loss and perplexity, the best model saved as a checkpoint
(``assistant/generators/lstm/checkpoint.py``), the full training state saved for ``--resume``, early stopping on
validation loss; when training stops, the model's in-domain check is calibrated on the validation
dialogs (``finetune/calibrate_scope.py``; ``--no-scope-check`` skips it). A time budget (``--max-minutes`` wall clock or ``--max-cpu-minutes`` CPU time, the whole run's,
resumes included) stops cleanly
mid-epoch, keeping the best checkpoint. Target tokens/s is logged and written to the manifest.

Learning-rate schedule: linear warmup over ``--warmup-steps``, then linear decay to
``--final-lr-ratio`` × ``--lr``, where decay progress is the larger of the fraction of planned steps
(epochs × batches) done and the fraction of the time budget used. On a machine shared with other jobs
the throughput is unknown in advance; this way the rate has decayed when the budget runs out, however
many epochs that allowed. Without a time budget the schedule depends on the step alone, and
``--resume`` continues it exactly. (ReduceLROnPlateau was the alternative; with a handful of epochs it
gets too few validation signals to act on.) This module does not evaluate replies
(``finetune/evaluate.py`` does).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm import tqdm

from assistant import artifacts, demo_data
from assistant.artifacts import file_sha256
from assistant.config import add_dataclass_arguments, dataclass_from_args, require
from assistant.data import read_dialogs
from assistant.errors import ConfigError, report_errors
from assistant.generators.base import MANIFEST
from assistant.generators.decoding import DecodingConfig
from assistant.generators.lstm import Seq2SeqConfig, Seq2SeqModel
from assistant.generators.lstm.checkpoint import FORMAT_VERSION, KIND, save_checkpoint
from assistant.generators.lstm.tokenizer import TOKENIZER_FILE, Tokenizer, TokenizerConfig
from finetune.calibrate_scope import add_scope_arguments, calibrate_after_training
from finetune.cli import add_threads_argument, apply_threads
from finetune.lstm_data import Batch, collate, encode_examples, load_examples, make_batches

STATE_FILE = "last-state.pt"
LOG_FILE = "train-log.jsonl"

#: ``--preset`` name → changed defaults (explicit flags still win).
PRESETS: dict[str, dict[str, Any]] = {
    "demo": {  # the shipped demo data: a small model, done in ~2-3 minutes on 2 cores
        "output_dir": "models/lstm-demo",  # relative to the working directory
        "vocab_size": 1000,
        "emb_size": 128,
        "hidden_size": 256,
        "dropout": 0.2,
        "max_source_len": 96,
        "max_target_len": 64,
        "decode_max_len": 64,
        "batch_size": 16,
        "lr": 3e-3,
        "epochs": 10,
        "patience": 3,
        "warmup_steps": 30,
        "max_minutes": 3.0,
    },
    "star": {  # STAR (45.8k agent turns, templated replies) in 40 minutes on one shared CPU thread
        "vocab_size": 4000,
        "emb_size": 256,
        "hidden_size": 384,
        "dropout": 0.1,
        "max_context_turns": 3,
        "max_source_len": 64,
        "max_target_len": 48,
        "batch_size": 64,
        "bucket_pool": 400,  # fewer distinct source lengths per batch: fewer encoder kernel calls
        "lr": 2e-3,
        "epochs": 8,
        "patience": 2,
        "warmup_steps": 200,
        "max_minutes": 40.0,
        "decode_beam_size": 4,
        "decode_length_penalty": 1.0,
        "decode_no_repeat_ngram_size": 3,
    },
}


@dataclass
class TrainConfig:
    """Optimisation and run settings of the LSTM trainer."""

    epochs: int = field(default=10, metadata={"help": "passes over the training examples (upper bound)"})
    max_minutes: float = field(
        default=0.0,
        metadata={
            "help": "wall-clock budget of the whole run in minutes (resumes included); stops "
            "cleanly, keeping the best model; the LR decay follows it; 0 = none"
        },
    )
    max_cpu_minutes: float = field(
        default=0.0,
        metadata={
            "help": "CPU-time budget instead (this process's time.process_time, resumes included): the "
            "compute given, whatever else loads the machine; needs --max-minutes 0; 0 = none"
        },
    )
    batch_size: int = field(default=64, metadata={"help": "examples per batch"})
    lr: float = field(default=1e-3, metadata={"help": "peak Adam learning rate"})
    warmup_steps: int = field(default=200, metadata={"help": "steps of linear learning-rate warmup"})
    final_lr_ratio: float = field(
        default=0.05,
        metadata={"help": "learning rate at the last planned step, as a fraction of --lr (linear decay)"},
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW decoupled weight decay"})
    clip_norm: float = field(default=1.0, metadata={"help": "clip the global gradient norm to this"})
    patience: int = field(
        default=3, metadata={"help": "stop after this many epochs without a lower validation loss"}
    )
    bucket_pool: int = field(
        default=100,
        metadata={"help": "batches per length-sorting pool (bigger = less padding, less randomness)"},
    )
    max_train_examples: int = field(
        default=0, metadata={"help": "use only the first N training examples (quick runs); 0 = all"}
    )
    max_steps: int = field(
        default=0,
        metadata={
            "help": "stop cleanly (resumable) once this many optimiser steps are done in total; "
            "does not change the learning-rate schedule; 0 = no limit"
        },
    )
    seed: int = field(default=0, metadata={"help": "seed for torch, batching and the tokenizer sample"})
    device: Literal["auto", "cpu", "cuda"] = field(
        default="auto", metadata={"help": "'auto' uses CUDA when available"}
    )

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience", "bucket_pool"):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        require(
            not (self.max_minutes and self.max_cpu_minutes),
            "--max-minutes and --max-cpu-minutes are alternative budgets; give --max-minutes 0 with "
            "--max-cpu-minutes (the presets set --max-minutes)",
        )
        for name in (
            "max_minutes",
            "max_cpu_minutes",
            "warmup_steps",
            "weight_decay",
            "max_train_examples",
            "max_steps",
        ):
            require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        require(self.lr > 0, f"lr must be > 0, got {self.lr}")
        require(
            0.0 <= self.final_lr_ratio <= 1.0, f"final_lr_ratio must be in [0, 1], got {self.final_lr_ratio}"
        )
        require(self.clip_norm > 0, f"clip_norm must be > 0, got {self.clip_norm}")
        require(
            self.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {self.device!r}"
        )


#: ``--preset`` name → its default ``(train, valid)`` files in the package's demo data
#: (:mod:`assistant.demo_data`, found wherever the project is installed).
PRESET_DATA: dict[str, tuple[str, str]] = {"demo": (demo_data.DIALOGS["train"], demo_data.DIALOGS["valid"])}


@dataclass
class LSTMTraining:
    """One LSTM training run, typed: its data, output directory and every setting.

    The CLI builds it from flags (:func:`training_from_args`), :func:`preset_training` from a preset;
    :func:`train_lstm` runs it.
    """

    train: Path
    valid: Path
    output_dir: Path
    train_config: TrainConfig = field(default_factory=TrainConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: Seq2SeqConfig = field(default_factory=Seq2SeqConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    #: continue the run saved in ``output_dir`` (same settings as its first invocation).
    resume: bool = False
    #: PyTorch intra-op threads (``None``: PyTorch's default).
    threads: int | None = None
    #: when training stops, calibrate the model's in-domain check on ``valid`` (``finetune/calibrate_scope.py``).
    scope_check: bool = True
    #: query files whose ``faq_id: null`` lines are out-of-scope messages for that check (none: the
    #: project's generic set, with a warning).
    oos_queries: tuple[Path, ...] = ()


# ----------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: paths, ``--preset``, ``--resume`` and flags from the config dataclasses."""
    parser = argparse.ArgumentParser(
        prog="assistant-train-lstm",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="change defaults for a known setting (explicit flags still win)",
    )
    parser.add_argument("--train", type=Path, default=None, help="training dialogs (JSONL)")
    parser.add_argument("--valid", type=Path, default=None, help="validation dialogs (JSONL)")
    parser.add_argument("--output-dir", type=Path, default=None, help="model directory to write")
    parser.add_argument(
        "--resume",
        action="store_true",
        help=f"continue from {STATE_FILE} in --output-dir (same flags as the first run)",
    )
    add_dataclass_arguments(parser, TrainConfig)
    add_threads_argument(parser, "training")
    add_scope_arguments(parser)
    add_dataclass_arguments(parser, TokenizerConfig)
    add_dataclass_arguments(parser, Seq2SeqConfig)
    add_dataclass_arguments(parser, DecodingConfig, prefix="decode-")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse flags, applying ``--preset`` defaults first.

    Raises:
        ConfigError: a required path is missing.
    """
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", choices=sorted(PRESETS), default=None)
    known, _ = pre.parse_known_args(argv)
    parser = build_parser()
    if known.preset:
        parser.set_defaults(**PRESETS[known.preset])
    args = parser.parse_args(argv)
    if known.preset in PRESET_DATA:
        train, valid = PRESET_DATA[known.preset]
        args.train = args.train if args.train is not None else demo_data.path(train)
        args.valid = args.valid if args.valid is not None else demo_data.path(valid)
    for name in ("train", "valid", "output_dir"):
        if getattr(args, name) is None:
            raise ConfigError(f"--{name.replace('_', '-')} is required (or use --preset demo)")
    args.train, args.valid, args.output_dir = Path(args.train), Path(args.valid), Path(args.output_dir)
    return args


def training_from_args(args: argparse.Namespace) -> LSTMTraining:
    """The :class:`LSTMTraining` that parsed flags (:func:`parse_args`) describe.

    Raises:
        ConfigError: a value fails its config's validation.
    """
    return LSTMTraining(
        train=args.train,
        valid=args.valid,
        output_dir=args.output_dir,
        train_config=dataclass_from_args(TrainConfig, args),
        tokenizer=dataclass_from_args(TokenizerConfig, args),
        model=dataclass_from_args(Seq2SeqConfig, args),
        decoding=dataclass_from_args(DecodingConfig, args, prefix="decode-"),
        resume=args.resume,
        threads=args.threads,
        scope_check=args.scope_check,
        oos_queries=tuple(args.oos_queries),
    )


def preset_training(
    name: str,
    *,
    output_dir: Path | None = None,
    train: Path | None = None,
    valid: Path | None = None,
    threads: int | None = None,
) -> LSTMTraining:
    """The :class:`LSTMTraining` of ``--preset name`` (the same settings the CLI gives it).

    Args:
        name: a key of :data:`PRESETS`.
        output_dir, train, valid: override the preset's paths (the demo preset reads the packaged demo
            dialogs and writes ``models/lstm-demo`` under the working directory).
        threads: PyTorch threads (``None``: PyTorch's default).

    Raises:
        ConfigError: an unknown preset, or a preset without data given no ``train`` / ``valid``.
        DataError: the packaged demo data is missing.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown LSTM preset {name!r}; presets are {sorted(PRESETS)}")
    parser = build_parser()
    parser.set_defaults(**PRESETS[name])
    args = parser.parse_args([])
    data = PRESET_DATA.get(name)
    for attr, given, default in (
        ("train", train, data and data[0]),
        ("valid", valid, data and data[1]),
    ):
        if given is None and default is None:
            raise ConfigError(f"preset {name!r} has no {attr} data; give {attr}=PATH")
        setattr(args, attr, Path(given) if given is not None else demo_data.path(default))
    if output_dir is not None:
        args.output_dir = output_dir
    if args.output_dir is None:
        raise ConfigError(f"preset {name!r} has no output directory; give output_dir=PATH")
    args.output_dir, args.threads = Path(args.output_dir), threads
    return training_from_args(args)


# ------------------------------------------------------------------------------------------ training


@dataclass
class Budget:
    """The run's time budget (wall clock or CPU time), carried across ``--resume`` invocations.

    Attributes:
        limit_s: seconds allowed in total (``inf`` = no budget).
        used_before_s: seconds used by earlier invocations of the same run.
        clock: ``time.monotonic`` (wall clock) or ``time.process_time`` (this process's CPU time).
        started: ``clock()`` at this invocation's start.
    """

    limit_s: float
    used_before_s: float = 0.0
    clock: Callable[[], float] = time.monotonic
    started: float | None = None

    def __post_init__(self) -> None:
        if self.started is None:
            self.started = self.clock()

    def used(self) -> float:
        """Seconds used so far, earlier invocations included."""
        return self.used_before_s + self.clock() - self.started

    def fraction(self) -> float:
        """Share of the budget used, in [0, 1]; 0 without a budget."""
        return min(1.0, self.used() / self.limit_s) if math.isfinite(self.limit_s) else 0.0

    def exhausted(self) -> bool:
        return self.used() >= self.limit_s


def lr_factor(
    step: int, time_fraction: float, warmup_steps: int, total_steps: int, final_ratio: float
) -> float:
    """Multiplier of the peak rate: linear warmup, then linear decay to ``final_ratio``.

    Decay progress is ``max(steps done / planned steps, time_fraction)`` (see the module docstring).
    """
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, max((step - warmup_steps) / max(1, total_steps - warmup_steps), time_fraction))
    return 1.0 - (1.0 - final_ratio) * progress


def make_optimizer(model: Seq2SeqModel, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter, 2019) at ``cfg.lr``; PyTorch's fused kernel on CPU and CUDA (one
    pass over all parameters instead of a dozen ops per tensor: about 3x less optimiser time per step
    on this CPU; the same update up to float rounding)."""
    return torch.optim.AdamW(
        model.parameters(),
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        fused=device.type in ("cpu", "cuda"),
    )


def train_step(
    model: Seq2SeqModel, optimizer: torch.optim.Optimizer, batch: Batch, clip_norm: float, lr: float
) -> float:
    """One optimiser step on a batch at learning rate ``lr``; returns the batch's mean token NLL (nats)."""
    model.train()
    for group in optimizer.param_groups:
        group["lr"] = lr
    logits = model(batch.src, batch.src_len, batch.tgt_in)  # (B, T, V)
    loss = model.token_nll(logits, batch.tgt_out).sum() / batch.n_tokens
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def evaluate_loss(
    model: Seq2SeqModel,
    pairs: list[tuple[list[int], list[int]]],
    tokenizer: Tokenizer,
    batch_size: int,
    device: torch.device,
) -> float:
    """Mean NLL per target token (nats, eos included) over ``pairs``; perplexity is its exp."""
    model.eval()
    total, count = 0.0, 0
    for index in make_batches(pairs, batch_size, 1, None):
        batch = collate(pairs, index, tokenizer, device)
        total += float(model.token_nll(model(batch.src, batch.src_len, batch.tgt_in), batch.tgt_out).sum())
        count += batch.n_tokens
    return total / count


def capture_rng() -> dict[str, Any]:
    """Torch (and CUDA) random states, for an exact resume."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def configs_dict(configs: dict[str, Any]) -> dict[str, Any]:
    return {name: dataclasses.asdict(value) for name, value in configs.items()}


def check_resume_configs(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Refuse to resume with a different model or tokenizer than the saved run's.

    Raises:
        ConfigError: naming the differing fields.
    """
    for name in ("tokenizer", "seq2seq"):
        diff = {k: (saved[name].get(k), v) for k, v in current[name].items() if saved[name].get(k) != v}
        if diff:
            raise ConfigError(
                f"{path}: cannot resume, {name} settings differ from the saved run "
                f"(field: (saved, now)) {diff}; pass the first run's flags"
            )


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU.

    Raises:
        ConfigError: ``cuda`` requested but not available.
    """
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but CUDA is not available (use --device auto or cpu)")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train_lstm(run: LSTMTraining) -> Path:
    """Train the LSTM reply model as ``run`` says and write its model directory.

    Writes ``run.output_dir``: the best model by validation loss (``assistant/generators/lstm/checkpoint.py``
    layout, its manifest recording the whole run), ``last-state.pt`` for ``resume``, ``train-log.jsonl``.

    Returns:
        ``run.output_dir``.

    Raises:
        ConfigError: bad settings, nothing to resume, a spent time budget on resume, CUDA unavailable.
        DataError: unreadable or malformed dialogs.
    """
    start_time = time.monotonic()
    train_cfg, tok_cfg, model_cfg, decode_cfg = run.train_config, run.tokenizer, run.model, run.decoding
    configs = {"train": train_cfg, "tokenizer": tok_cfg, "seq2seq": model_cfg, "decoding": decode_cfg}
    if train_cfg.max_cpu_minutes:
        budget = Budget(60 * train_cfg.max_cpu_minutes, clock=time.process_time)
    else:
        budget = Budget(60 * train_cfg.max_minutes if train_cfg.max_minutes else math.inf, started=start_time)
    apply_threads(run.threads)
    device = resolve_device(train_cfg.device)
    torch.manual_seed(train_cfg.seed)
    out = Path(run.output_dir)
    train_path, valid_path = Path(run.train), Path(run.valid)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE

    saved = load_train_state(state_path, configs) if run.resume else None
    tokenizer = prepare_tokenizer(train_path, out, tok_cfg, train_cfg.seed, resume=run.resume)
    train_pairs = encode_examples(
        load_examples(train_path, model_cfg.max_context_turns, train_cfg.max_train_examples),
        tokenizer,
        model_cfg,
    )
    valid_pairs = encode_examples(
        load_examples(valid_path, model_cfg.max_context_turns), tokenizer, model_cfg
    )

    model = Seq2SeqModel(model_cfg, tokenizer.vocab_size, tokenizer.pad_id).to(device)
    optimizer = make_optimizer(model, train_cfg, device)
    progress = {
        "epoch": 0,
        "next_batch": 0,
        "step": 0,
        "best_valid_loss": math.inf,
        "best_epoch": 0,
        "bad_epochs": 0,
        "train_tokens": 0,
        "train_seconds": 0.0,
        "budget_used_s": 0.0,
        "total_steps": math.ceil(len(train_pairs) / train_cfg.batch_size) * train_cfg.epochs,
        "history": [],
    }
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        progress.update({**saved["progress"], "total_steps": progress["total_steps"]})  # --epochs may grow
        restore_rng(saved["rng"])
        budget.used_before_s = progress["budget_used_s"]
        if budget.exhausted():
            raise ConfigError(
                f"--resume: the run already used {budget.used_before_s / 60:.1f} of its budget "
                f"(--max-minutes {train_cfg.max_minutes:g} / --max-cpu-minutes "
                f"{train_cfg.max_cpu_minutes:g}); raise it to continue"
            )
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"train examples {len(train_pairs)}, valid {len(valid_pairs)}, vocab {tokenizer.vocab_size}, "
        f"params {n_params / 1e6:.2f}M, device {device}, threads {torch.get_num_threads()}",
        flush=True,
    )

    data_info = [
        {"role": role, "path": str(path.resolve()), "sha256": file_sha256(path), "examples": n}
        for role, path, n in (
            ("train", train_path, len(train_pairs)),
            ("valid", valid_path, len(valid_pairs)),
        )
    ]
    stop_reason = "epochs"
    while progress["epoch"] < train_cfg.epochs:
        epoch = progress["epoch"]
        batches = make_batches(
            train_pairs,
            train_cfg.batch_size,
            train_cfg.bucket_pool,
            random.Random(train_cfg.seed * 100_003 + epoch),
        )
        finished_epoch = run_epoch(
            model, optimizer, train_pairs, batches, tokenizer, device, train_cfg, progress, budget
        )
        valid_loss = evaluate_loss(model, valid_pairs, tokenizer, train_cfg.batch_size, device)
        record = {
            "epoch": epoch + 1 if finished_epoch else epoch + progress["next_batch"] / len(batches),
            "step": progress["step"],
            "train_loss": progress.pop("epoch_loss"),
            "valid_loss": valid_loss,
            "valid_ppl": math.exp(valid_loss),
            "lr": optimizer.param_groups[0]["lr"],
            "target_tokens_per_s": progress["train_tokens"] / max(progress["train_seconds"], 1e-9),
            "elapsed_s": time.monotonic() - start_time,
            # seconds on the budget's clock (CPU time with --max-cpu-minutes), earlier invocations included
            "budget_used_s": budget.used(),
        }
        improved = update_progress(progress, record, finished_epoch)
        progress["budget_used_s"] = budget.used()
        if improved:
            save_checkpoint(
                out,
                model,
                tokenizer,
                tok_cfg,
                decode_cfg,
                data=data_info,
                training=training_summary(progress, train_cfg, device, n_params, start_time),
            )
        save_train_state(state_path, model, optimizer, progress, configs)
        log_epoch(out, record, improved)
        if not finished_epoch:
            stop_reason = (
                "max steps"
                if train_cfg.max_steps and progress["step"] >= train_cfg.max_steps
                else "time budget"
            )
            break
        if progress["epoch"] >= train_cfg.epochs:
            break
        if progress["bad_epochs"] >= train_cfg.patience:
            stop_reason = "early stopping"
            break
        if budget.exhausted():
            stop_reason = "time budget"
            break
    summary = {
        **training_summary(progress, train_cfg, device, n_params, start_time),
        "stop_reason": stop_reason,
    }
    finalize_manifest(out, summary)
    print(
        f"stopped ({stop_reason}); best valid loss {progress['best_valid_loss']:.3f} "
        f"(ppl {math.exp(progress['best_valid_loss']):.2f}) at epoch {progress['best_epoch']}; "
        f"model in {out}",
        flush=True,
    )
    if run.scope_check:
        calibrate_after_training(out, [train_path], [valid_path], run.oos_queries)
    return out


def load_train_state(path: Path, configs: dict[str, Any]) -> dict[str, Any]:
    """Read ``last-state.pt`` for ``--resume`` and check it was written with the same model settings.

    Raises:
        ConfigError: no state file, or different tokenizer/model settings.
    """
    if not path.is_file():
        raise ConfigError(f"--resume: {path} does not exist (nothing to resume)")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    check_resume_configs(saved["configs"], configs_dict(configs), path)
    return saved


def prepare_tokenizer(
    train_path: Path, out: Path, config: TokenizerConfig, seed: int, resume: bool
) -> Tokenizer:
    """Train the tokenizer on every turn of the training dialogs and save it to ``out`` (a new run), or
    load the run's saved one (``resume``). A new run also clears the old epoch log."""
    if resume:
        return Tokenizer.load(out / TOKENIZER_FILE)
    (out / LOG_FILE).unlink(missing_ok=True)
    tokenizer = Tokenizer.train(
        [t.text for d in read_dialogs(train_path) for t in d.turns], config, seed=seed
    )
    tokenizer.save(out / TOKENIZER_FILE)
    return tokenizer


def update_progress(progress: dict[str, Any], record: dict[str, Any], finished_epoch: bool) -> bool:
    """Add an epoch's record; track the best validation loss and epochs without improvement.

    Returns:
        whether this validation loss is the best so far (the model is then saved).
    """
    progress["history"].append(record)
    improved = record["valid_loss"] < progress["best_valid_loss"]
    if improved:
        progress.update(best_valid_loss=record["valid_loss"], best_epoch=record["epoch"], bad_epochs=0)
    else:
        progress["bad_epochs"] += 1
    if finished_epoch:
        progress.update(epoch=progress["epoch"] + 1, next_batch=0)
    return improved


def log_epoch(out: Path, record: dict[str, Any], improved: bool) -> None:
    """Append the epoch's record to ``train-log.jsonl`` and print a one-line summary."""
    with (out / LOG_FILE).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    print(
        f"epoch {record['epoch']:.2f}: train loss {record['train_loss']:.3f}, "
        f"valid loss {record['valid_loss']:.3f}, valid ppl {record['valid_ppl']:.2f}, lr {record['lr']:.2e}, "
        f"{record['target_tokens_per_s']:.0f} target tokens/s, {record['elapsed_s'] / 60:.1f} min"
        f"{' (best, saved)' if improved else ''}",
        flush=True,
    )


def run_epoch(
    model: Seq2SeqModel,
    optimizer: torch.optim.Optimizer,
    pairs: list[tuple[list[int], list[int]]],
    batches: list[list[int]],
    tokenizer: Tokenizer,
    device: torch.device,
    cfg: TrainConfig,
    progress: dict[str, Any],
    budget: Budget,
) -> bool:
    """Train from ``progress['next_batch']`` to the end of the epoch, the time budget or ``max_steps``.

    Updates ``progress`` (step, next_batch, token and time counters, ``epoch_loss``). Returns whether
    the epoch was completed.
    """
    bar = tqdm(
        total=len(batches),
        initial=progress["next_batch"],
        desc=f"epoch {progress['epoch'] + 1}",
        unit="batch",
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=1.0 if sys.stderr.isatty() else 60.0,
    )
    loss_sum, tokens = 0.0, 0
    completed = True
    for position in range(progress["next_batch"], len(batches)):
        if budget.exhausted() or (cfg.max_steps and progress["step"] >= cfg.max_steps):
            completed = False
            break
        batch = collate(pairs, batches[position], tokenizer, device)
        started = time.monotonic()
        lr = cfg.lr * lr_factor(
            progress["step"], budget.fraction(), cfg.warmup_steps, progress["total_steps"], cfg.final_lr_ratio
        )
        loss = train_step(model, optimizer, batch, cfg.clip_norm, lr)
        progress["train_seconds"] += time.monotonic() - started
        progress["train_tokens"] += batch.n_tokens
        progress["step"] += 1
        progress["next_batch"] = position + 1
        loss_sum += loss * batch.n_tokens
        tokens += batch.n_tokens
        bar.update(1)
        bar.set_postfix(
            loss=f"{loss_sum / tokens:.3f}",
            tok_s=f"{progress['train_tokens'] / max(progress['train_seconds'], 1e-9):.0f}",
            refresh=False,
        )
    bar.close()
    progress["epoch_loss"] = loss_sum / tokens if tokens else math.nan
    return completed


def training_summary(
    progress: dict[str, Any], cfg: TrainConfig, device: torch.device, n_params: int, start_time: float
) -> dict[str, Any]:
    """The training figures stored in the manifest.

    ``target_tokens_per_s`` counts real (non-pad) target tokens, eos included, over the time of the
    training steps (forward, backward, optimiser), excluding batch building, validation and saving.
    """
    return {
        "epochs_completed": progress["epoch"],
        "steps": progress["step"],
        "best_epoch": progress["best_epoch"],
        "best_valid_loss": progress["best_valid_loss"],
        "best_valid_ppl": math.exp(progress["best_valid_loss"])
        if math.isfinite(progress["best_valid_loss"])
        else None,
        "target_tokens_per_s": progress["train_tokens"] / max(progress["train_seconds"], 1e-9),
        "train_target_tokens": progress["train_tokens"],
        "train_compute_s": progress["train_seconds"],
        "wall_s": time.monotonic() - start_time,
        "parameters": n_params,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "train_config": dataclasses.asdict(cfg),
        "budget": {
            "kind": "cpu" if cfg.max_cpu_minutes else "wall" if cfg.max_minutes else "none",
            "limit_minutes": cfg.max_cpu_minutes or cfg.max_minutes or None,
            "used_minutes": round(progress["budget_used_s"] / 60, 2),
            "used_seconds": round(progress["budget_used_s"], 3),
        },
        "history": list(progress["history"]),
    }


def finalize_manifest(out: Path, summary: dict[str, Any]) -> None:
    """Record the whole run (all epochs, stop reason) in the best checkpoint's manifest.

    The best checkpoint's manifest was written when it was saved; this adds the later epochs'
    history under ``training.run``, keeping the figures of the saved model itself unchanged.
    """
    if not (out / MANIFEST).is_file():
        return
    manifest = artifacts.read_manifest(out, MANIFEST, kinds=(KIND,), format_version=FORMAT_VERSION)
    manifest["training"]["run"] = {
        k: summary[k]
        for k in (
            "epochs_completed",
            "steps",
            "stop_reason",
            "wall_s",
            "history",
            "target_tokens_per_s",
            "budget",
        )
    }
    artifacts.rewrite_manifest(out, MANIFEST, manifest)


def save_train_state(
    path: Path,
    model: Seq2SeqModel,
    optimizer: torch.optim.Optimizer,
    progress: dict[str, Any],
    configs: dict[str, Any],
) -> None:
    """Write everything ``--resume`` needs (model, optimizer, progress incl. step and budget used, RNG,
    configs); the learning rate is a function of the step and budget, so no scheduler state is needed."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "progress": progress,
        "rng": capture_rng(),
        "configs": configs_dict(configs),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


@report_errors
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``assistant-train-lstm`` / ``python -m finetune.train_lstm``."""
    train_lstm(training_from_args(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
