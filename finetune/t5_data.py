"""Data for T5 fine-tuning: the run configuration, dialogs → tokenized examples → padded batches.

Holds :class:`TrainConfig` (the ``assistant-train-t5`` flags: data, model, optimisation, schedule,
stopping, resume), the STAR ``meta.domains`` filter, tokenisation of every agent turn into
``{"input_ids", "attention_mask", "labels"}``, the padding collator (transformers'
``DataCollatorForSeq2Seq``), the seeded validation sample, the ``DataLoader`` pair and the data
provenance recorded in the manifest.

It does not build or train a model (``finetune/train_t5.py`` runs the accelerate loop,
``assistant/generators/t5/model.py`` defines the model and tokenizer) and does not define the dialog format
(``assistant/data.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorForSeq2Seq

from assistant.artifacts import file_sha256
from assistant.config import require
from assistant.data import Dialog, read_dialogs
from assistant.errors import DataError
from assistant.generators.t5.adapters import check_adapter_name
from assistant.generators.t5.model import PRESETS, T5GenerationSettings, encode_targets
from assistant.model_input import build_examples, format_context
from finetune.length_buckets import LengthBucketBatchSampler
from finetune.span_corruption import (
    SpanCorruptionDataset,
    chunk_documents,
    read_documents,
    sentinel_token_ids,
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
        metadata={
            "help": "tokenizer id/dir (default: the --model's own; with --init-from-config: a vocabulary of "
            "--vocab-size pieces trained on the training dialogs)"
        },
    )
    vocab_size: int = field(
        default=8000,
        metadata={
            "help": "--init-from-config without --tokenizer: SentencePiece unigram pieces to train on the "
            "training dialogs (the model's embedding is sized to fit)"
        },
    )
    full_finetune: bool = field(
        default=False,
        metadata={"help": "train every weight (needed to train from scratch) instead of a LoRA adapter"},
    )
    adapter_name: str = field(default="default", metadata={"help": "name of the trained LoRA adapter"})
    objective: Literal["reply", "span-corruption"] = field(
        default="reply",
        metadata={
            "help": "reply: context -> agent reply; span-corruption: T5's pre-training objective on raw "
            "text (every dialog's turns, or a .txt file with one document per line) to pretrain a base "
            "on unpaired logs before fine-tuning it with --model"
        },
    )
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
    bucket_pool: int = field(
        default=50,
        metadata={
            "help": "length bucketing: batches per pool sorted by length (less padding; batches are "
            "shuffled per epoch); 0 = plain shuffled batches"
        },
    )
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate (AdamW)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    schedule: Literal["linear", "cosine", "constant_with_warmup", "inverse_sqrt"] = field(
        default="linear",
        metadata={
            "help": "learning-rate schedule after warm-up; linear and cosine also decay with the share of a time budget used"
        },
    )
    warmup_steps: int = field(default=100, metadata={"help": "linear warm-up, optimizer steps"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "clip gradients to this L2 norm (0 = off)"})
    epochs: int = field(default=3, metadata={"help": "passes over the training examples (if no --max-steps)"})
    max_steps: int | None = field(default=None, metadata={"help": "optimizer steps; overrides --epochs"})
    max_minutes: float | None = field(
        default=None,
        metadata={"help": "stop (evaluate, save, checkpoint) after this many minutes of training"},
    )
    max_cpu_minutes: float | None = field(
        default=None,
        metadata={
            "help": "stop (evaluate, save, checkpoint) after this many minutes of this process's CPU time "
            "(time.process_time, resumes included): fair on a shared machine"
        },
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

    def __post_init__(self) -> None:
        require(
            bool(self.train) and bool(self.valid) and bool(self.output_dir),
            "--train, --valid and --output-dir are required",
        )
        require(
            (self.model is None) != (self.init_from_config is None),
            "give exactly one of --model ID_OR_DIR and --init-from-config CONFIG",
        )
        require(self.vocab_size >= 16, f"--vocab-size must be >= 16, got {self.vocab_size}")
        require(self.bucket_pool >= 0, f"--bucket-pool must be >= 0, got {self.bucket_pool}")
        require(
            self.max_cpu_minutes is None or self.max_cpu_minutes > 0,
            f"--max-cpu-minutes must be > 0, got {self.max_cpu_minutes}",
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
        check_adapter_name(self.adapter_name)


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


def make_collator(tokenizer: Any) -> DataCollatorForSeq2Seq:
    """Pad a list of tokenized examples into a batch: ``transformers.DataCollatorForSeq2Seq``.

    Inputs are padded with the tokenizer's pad id (``attention_mask`` 0 there), labels with -100 (ignored
    by the loss); the model derives ``decoder_input_ids`` from the labels itself (T5 shifts them right).
    Each batch is ``{"input_ids": (B, S), "attention_mask": (B, S), "labels": (B, T)}`` int64 tensors,
    S and T the longest source and target in the batch.
    """
    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100, return_tensors="pt")


def load_data(cfg: TrainConfig, tokenizer: Any, gen: T5GenerationSettings, accelerator: Any):
    """Tokenized training and validation examples (validation: a seeded sample of max_valid_examples).

    With ``--objective span-corruption`` the examples are span-corrupted chunks of ``max_source_len``
    tokens of raw text (:mod:`finetune.span_corruption`; the counts are then documents and chunks).
    """
    if cfg.objective == "span-corruption":
        return load_span_corruption_data(cfg, tokenizer, gen)
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


def load_span_corruption_data(cfg: TrainConfig, tokenizer: Any, gen: T5GenerationSettings):
    """Span-corruption datasets of ``--train`` and ``--valid`` raw text (validation: its first
    ``max_valid_examples`` chunks, corrupted once from the seed)."""
    sentinels = sentinel_token_ids(tokenizer)
    datasets, counts = [], {}
    for role, path, seed in (("train", cfg.train, cfg.seed), ("valid", cfg.valid, cfg.seed + 1)):
        docs = read_documents(
            path, lambda ds, where=path: filter_domains(ds, cfg.include_domains, cfg.exclude_domains, where)
        )
        chunks = chunk_documents(docs, tokenizer, gen.max_source_len)
        if role == "valid" and cfg.max_valid_examples:
            chunks = chunks[: cfg.max_valid_examples]
        datasets.append(SpanCorruptionDataset(chunks, sentinels, tokenizer.eos_token_id, seed=seed))
        counts.update({f"{role}_documents": len(docs), f"{role}_examples": len(chunks)})
    return datasets[0], datasets[1], counts


def make_loaders(
    cfg: TrainConfig,
    train_ex: list[dict[str, list[int]]],
    valid_ex: list[dict[str, list[int]]],
    tokenizer: Any,
) -> tuple[DataLoader, DataLoader]:
    """Training and ordered validation loaders (validation batches are ``2 * batch_size``).

    Training batches are length-bucketed (:class:`finetune.length_buckets.LengthBucketBatchSampler`,
    ``--bucket-pool`` batches per sorted pool, reshuffled per epoch from ``--seed``) and padded to their
    own longest example; ``--bucket-pool 0`` gives plain shuffled batches instead. Validation examples
    are sorted by length (the loss is a sum over tokens, so the order does not change it).
    """
    pad = make_collator(tokenizer)
    # own generators: creating a DataLoader iterator draws a seed, and must not consume the global RNG
    # (whose state, restored by load_state, drives dropout) or a resumed run would diverge
    if cfg.bucket_pool:
        lengths = (
            [len(c) for c in train_ex.chunks]
            if isinstance(train_ex, SpanCorruptionDataset)
            else [example_length(e) for e in train_ex]
        )
        sampler = LengthBucketBatchSampler(lengths, cfg.batch_size, cfg.bucket_pool, seed=cfg.seed)
        train_loader = DataLoader(
            train_ex, batch_sampler=sampler, collate_fn=pad, generator=torch.Generator().manual_seed(cfg.seed)
        )
    else:
        train_loader = DataLoader(
            train_ex,
            batch_size=cfg.batch_size,
            shuffle=True,
            collate_fn=pad,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
    valid_loader = DataLoader(
        valid_ex if isinstance(valid_ex, SpanCorruptionDataset) else sorted(valid_ex, key=example_length),
        batch_size=cfg.batch_size * 2,
        shuffle=False,
        collate_fn=pad,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    return train_loader, valid_loader


def example_length(example: dict[str, list[int]]) -> int:
    """The bucketing key of a tokenized example: source + target tokens."""
    return len(example["input_ids"]) + len(example["labels"])


def data_provenance(cfg: TrainConfig, counts: dict[str, int]) -> dict[str, Any]:
    """The manifest's ``data`` record: both files with their sha256, and the dialog/example counts."""
    return {
        "train": cfg.train,
        "train_sha256": file_sha256(cfg.train),
        "valid": cfg.valid,
        "valid_sha256": file_sha256(cfg.valid),
        **counts,
    }
