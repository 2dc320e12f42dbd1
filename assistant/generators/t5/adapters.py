"""LoRA adapters on a T5 model: settings, attach, save, load several, merge (via peft).

An adapter is a small set of low-rank weight updates (LoRA: Hu et al., 2021, "LoRA: Low-Rank
Adaptation of Large Language Models") trained for one domain on top of a frozen base model. This
module turns :class:`LoraSettings` into a ``peft.LoraConfig``, attaches a new adapter
(``peft.get_peft_model``), saves only the adapter weights (``PeftModel.save_pretrained``), loads one
or several saved adapters onto one base (``PeftModel.from_pretrained`` + ``load_adapter``) and merges
one into the base weights for serving (``merge_and_unload``). Selecting an adapter per request is done
by :class:`assistant.generators.t5.generator.T5Generator` with peft's mixed-batch ``adapter_names``.

It does not load base models or tokenizers (``assistant/generators/t5/model.py``) and does not train
(``finetune/train_t5.py``).
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model

from assistant.config import require
from assistant.errors import CheckpointError, ModelError

#: peft's name for "no adapter" in a mixed batch (``adapter_names=[..., "__base__"]``).
BASE_ADAPTER = "__base__"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class LoraSettings:
    """LoRA adapter hyper-parameters (mapped one to one onto ``peft.LoraConfig``)."""

    r: int = field(default=8, metadata={"help": "LoRA rank: inner dimension of each low-rank update B·A"})
    alpha: int = field(
        default=16,
        metadata={
            "help": "LoRA scaling numerator: updates are scaled by alpha/r "
            "(alpha/sqrt(r) with --lora-use-rslora)"
        },
    )
    dropout: float = field(default=0.05, metadata={"help": "dropout on the adapter's input, in [0, 1)"})
    target_modules: list[str] = field(
        default_factory=lambda: ["q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"],
        metadata={
            "help": "names of the T5 linear layers that get adapters: attention q k v o and "
            "feed-forward wi wo (wi_0 wi_1 in gated-GELU models such as flan-t5); names that "
            "match no layer are ignored, but at least one must match"
        },
    )
    bias: Literal["none", "all", "lora_only"] = field(
        default="none",
        metadata={
            "help": "which biases train with the adapter "
            "(T5 linears have none, so 'none' is the usual choice)"
        },
    )
    use_rslora: bool = field(
        default=False, metadata={"help": "rank-stabilised LoRA scaling alpha/sqrt(r) (Kalajdzievski, 2023)"}
    )
    use_dora: bool = field(
        default=False,
        metadata={
            "help": "weight-decomposed LoRA (DoRA, Liu et al., 2024); not usable with per-request adapter "
            "selection in one batch"
        },
    )
    modules_to_save: list[str] | None = field(
        default=None,
        metadata={
            "help": "extra modules trained in full and saved with the adapter (e.g. lm_head); none by default"
        },
    )

    def __post_init__(self) -> None:
        require(self.r >= 1, f"lora r must be >= 1, got {self.r}")
        require(self.alpha >= 1, f"lora alpha must be >= 1, got {self.alpha}")
        require(0.0 <= self.dropout < 1.0, f"lora dropout must be in [0, 1), got {self.dropout}")
        require(len(self.target_modules) >= 1, "lora target_modules must name at least one layer")

    def to_peft(self, inference_mode: bool = False) -> LoraConfig:
        """The equivalent ``peft.LoraConfig`` for a sequence-to-sequence model."""
        return LoraConfig(
            task_type=TaskType.SEQ_2_SEQ_LM,
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            bias=self.bias,
            use_rslora=self.use_rslora,
            use_dora=self.use_dora,
            modules_to_save=list(self.modules_to_save) if self.modules_to_save else None,
            inference_mode=inference_mode,
        )

    def to_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    """Silence one deprecation warning that peft 0.21 triggers inside transformers 5 (not ours to fix)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.* is deprecated", category=FutureWarning
        )
        yield


def check_adapter_name(name: str) -> str:
    """Return ``name`` if it is a valid adapter name, else raise.

    Raises:
        ModelError: the name is empty, has odd characters, or is peft's reserved ``__base__``.
    """
    if not isinstance(name, str) or not _NAME.match(name) or name == BASE_ADAPTER or name in "lora_":
        raise ModelError(
            f"adapter name {name!r} is not valid: use 1-64 letters, digits, '_', '.', '-' "
            f"(starting with a letter or digit), not {BASE_ADAPTER!r} nor a part of 'lora_' "
            f"(peft's weight prefix)"
        )
    return name


def attach_lora(model: torch.nn.Module, settings: LoraSettings, name: str = "default") -> PeftModel:
    """Wrap ``model`` with a new trainable LoRA adapter; the base weights are frozen.

    Args:
        model: a ``T5ForConditionalGeneration`` (not already a ``PeftModel``).
        settings: the adapter's hyper-parameters.
        name: the adapter's name (used to select it per request later).

    Returns:
        the ``PeftModel``; only adapter weights (and ``modules_to_save``) have ``requires_grad``.

    Raises:
        ModelError: ``model`` already carries adapters, or no target module matches a layer.
    """
    check_adapter_name(name)
    if isinstance(model, PeftModel):
        raise ModelError(
            "the model already carries LoRA adapters; attach to a plain base model "
            "(or merge_and_unload first)"
        )
    try:
        with _quiet_peft():
            return get_peft_model(model, settings.to_peft(), adapter_name=name)
    except ValueError as e:
        raise ModelError(f"cannot attach LoRA with target_modules={settings.target_modules}: {e}") from e


def save_adapter(
    model: PeftModel, directory: str | Path, name: str, state_dict: dict[str, torch.Tensor] | None = None
) -> Path:
    """Save only the weights and config of adapter ``name`` into ``directory`` (created).

    peft writes ``adapter_config.json`` and ``adapter_model.safetensors``; the base weights are not saved.
    ``state_dict`` is the model's full state dict when it is sharded across processes (FSDP, DeepSpeed:
    ``accelerator.get_state_dict(model)``); by default the model's own.

    Returns:
        ``directory``, now holding the adapter files (and peft's model-card README.md).

    Raises:
        ModelError: ``model`` has no adapter called ``name``.
    """
    if not isinstance(model, PeftModel) or name not in model.peft_config:
        have = sorted(model.peft_config) if isinstance(model, PeftModel) else []
        raise ModelError(f"no adapter named {name!r} to save; the model has {have}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with _quiet_peft():
        model.save_pretrained(
            str(directory),
            selected_adapters=[name],
            **({"state_dict": state_dict} if state_dict is not None else {}),
        )
    if name != "default":  # peft puts adapters other than "default" in a sub-folder named after them
        sub = directory / name
        for item in sub.iterdir():
            os.replace(item, directory / item.name)
        sub.rmdir()
    return directory


def load_adapters(
    model: torch.nn.Module, adapters: Mapping[str, str | Path], is_trainable: bool = False
) -> PeftModel:
    """Load one or more saved adapters onto one base model.

    Args:
        model: the base ``T5ForConditionalGeneration`` (or a ``PeftModel`` to add to).
        adapters: adapter name → directory written by :func:`save_adapter`, in load order; the first
            becomes the active adapter.
        is_trainable: keep the adapters trainable (to continue training) instead of frozen.

    Raises:
        CheckpointError: an adapter directory is missing or does not fit the base model.
        ModelError: a name is invalid or already loaded.
    """
    if not adapters:
        raise ModelError("no adapters given to load")
    first = True
    for name, directory in adapters.items():
        check_adapter_name(name)
        directory = Path(directory)
        if not (directory / "adapter_config.json").is_file():
            raise CheckpointError(f"{directory}: no adapter_config.json (expected a saved LoRA adapter)")
        try:
            if first and not isinstance(model, PeftModel):
                with _quiet_peft():
                    model = PeftModel.from_pretrained(
                        model, str(directory), adapter_name=name, is_trainable=is_trainable
                    )
            else:
                if name in model.peft_config:
                    raise ModelError(f"adapter {name!r} is already loaded; names must be unique")
                model.load_adapter(str(directory), adapter_name=name, is_trainable=is_trainable)
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(
                f"{directory}: cannot load adapter {name!r} onto this base model: {e}"
            ) from e
        first = False
    return model  # type: ignore[return-value]


def merge_adapter(model: PeftModel, name: str) -> torch.nn.Module:
    """Merge adapter ``name`` into the base weights and drop every adapter (for fast serving).

    ``W' = W + (alpha/r) · B·A`` for each adapted layer (peft ``merge_and_unload``); outputs match the
    unmerged model up to float rounding.

    Returns:
        the plain base model with the merged weights.

    Raises:
        ModelError: the model has no adapter ``name``.
    """
    if not isinstance(model, PeftModel) or name not in model.peft_config:
        have = sorted(model.peft_config) if isinstance(model, PeftModel) else []
        raise ModelError(f"no adapter named {name!r} to merge; the model has {have}")
    model.set_adapter(name)
    return model.merge_and_unload(adapter_names=[name])


def trainable_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts (peft's ``get_nb_trainable_parameters`` for a PeftModel)."""
    if isinstance(model, PeftModel):
        return model.get_nb_trainable_parameters()
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total
