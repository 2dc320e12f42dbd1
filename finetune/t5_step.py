"""The arithmetic of one T5 training step: the loss over real target tokens only, and ``--compile``.

``T5ForConditionalGeneration.forward(labels=...)`` projects *every* decoder position onto the vocabulary
(``B·T × V`` logits, its log-softmax and their gradients) and only then drops the padded positions
(labels ``-100``) in the cross-entropy. With T5's 32k vocabulary that projection is most of a small
model's step, and about half the target positions of a shuffled batch are padding (STAR, batch 16:
0.53; ``docs/results/t5-training-speed.md``). :func:`target_token_loss` runs the same encoder and
decoder, then the output projection and the cross-entropy on the real target positions only: the same
loss (mean negative log-likelihood per target token, nats; equal to the model's own ``.loss`` up to
float rounding) for fewer FLOPs. In float32 the projection and the loss are one autograd function
(:class:`LinearCrossEntropy`) whose backward reuses the logits buffer for the softmax gradient.
:func:`target_token_nll` gives the per-example sums for validation.

The short path calls the model's ``encoder``, ``decoder`` and ``lm_head`` directly, so it needs the
model itself (a ``T5ForConditionalGeneration``, or a peft ``PeftModel`` over one, whose LoRA layers sit
inside those modules). A model wrapped for several processes (DDP / FSDP, after ``accelerator.prepare``)
must run its own ``forward`` to synchronise gradients; for it both functions use ``model(**batch)``
(the full projection), which gives the same values.

:class:`StepSettings` holds the step's options (``--compile``: ``torch.compile`` the encoder and decoder
in place, so state-dict keys and checkpoints are unchanged). This module does not run the loop
(``finetune/train_t5.py``) or build batches (``finetune/t5_data.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn import functional as F
from transformers import T5ForConditionalGeneration

IGNORE_INDEX = -100


@dataclass
class StepSettings:
    """How each training step is computed (the loss value does not depend on these)."""

    compile: bool = field(
        default=False,
        metadata={
            "help": "torch.compile the encoder and decoder (dynamic shapes); the first step compiles (minutes "
            "on CPU); measured 1.17x slower per step on a 2-core CPU (docs/results/t5-training-speed.md)"
        },
    )


def unwrapped_t5(model: Any) -> T5ForConditionalGeneration | None:
    """The ``T5ForConditionalGeneration`` inside ``model`` (itself, or a ``PeftModel``'s base), or ``None``
    when ``model`` is something else (e.g. a DDP / FSDP wrapper, whose ``forward`` must run)."""
    get_base = getattr(model, "get_base_model", None)
    base = get_base() if callable(get_base) else model
    return base if isinstance(base, T5ForConditionalGeneration) else None


class LinearCrossEntropy(torch.autograd.Function):
    """``mean_i CE(hidden_i · Wᵀ, target_i)`` with a hand-written backward that reuses the logits buffer.

    Forward: logits ``(N, V) = hidden (N, D) · weight (V, D)ᵀ``, their log-sum-exp, the mean of
    ``lse - logit[target]``. Backward: the softmax is formed in place in the saved logits, one is taken
    off at each target and the result scaled by ``grad / N`` (the gradient of the mean cross-entropy),
    then ``d hidden = P · W`` and ``d weight = Pᵀ · hidden``. Against ``F.cross_entropy(F.linear(...))``
    this skips the ``(N, V)`` log-softmax output, the zero-filled ``(N, V)`` gradient of the NLL and the
    log-softmax backward (the "fused linear cross-entropy" of e.g. Liger-Kernel, Hsu et al., 2024,
    without chunking). Same values to float rounding. Float32 only, one backward per forward (the
    logits buffer is overwritten by it).
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = hidden @ weight.t()  # (N, V)
        lse = torch.logsumexp(logits, dim=1)  # (N,)
        loss = (lse - logits.gather(1, targets[:, None]).squeeze(1)).mean()
        ctx.save_for_backward(hidden, weight, targets, logits, lse)
        return loss

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        hidden, weight, targets, logits, lse = ctx.saved_tensors
        n = logits.shape[0]
        probs = logits.sub_(lse[:, None]).exp_()  # (N, V) softmax, in the logits' own buffer
        probs[torch.arange(n, device=probs.device), targets] -= 1.0
        probs.mul_(grad / n)
        d_hidden = probs @ weight if ctx.needs_input_grad[0] else None
        d_weight = probs.t() @ hidden if ctx.needs_input_grad[1] else None
        return d_hidden, d_weight, None


def _fused_projection_applies(t5: T5ForConditionalGeneration, hidden: torch.Tensor) -> bool:
    """The fused projection + loss is used for float32 training without autocast and a plain bias-free
    ``lm_head`` (peft's ``modules_to_save`` wraps it: then the plain path)."""
    head = t5.lm_head
    return (
        type(head) is torch.nn.Linear
        and head.bias is None
        and hidden.dtype == torch.float32
        and head.weight.dtype == torch.float32
        and not torch.is_autocast_enabled(hidden.device.type)
    )


def _decoder_states(
    t5: T5ForConditionalGeneration, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(hidden (N, D), targets (N,), keep (B, T) bool)``: the decoder's output at the N non-ignored
    target positions, rescaled by ``d_model ** -0.5`` in tied models, as the model's forward does."""
    labels = batch["labels"]  # (B, T), IGNORE_INDEX at padding
    mask = batch["attention_mask"]  # (B, S)
    encoded = t5.encoder(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state  # (B, S, D)
    hidden = t5.decoder(
        input_ids=t5._shift_right(labels),
        encoder_hidden_states=encoded,
        encoder_attention_mask=mask,
        use_cache=False,
    ).last_hidden_state  # (B, T, D)
    keep = labels != IGNORE_INDEX  # (B, T)
    hidden = hidden[keep]  # (N, D)
    if t5.config.scale_decoder_outputs:
        hidden = hidden * (t5.model_dim**-0.5)
    return hidden, labels[keep], keep


def _target_logits(
    t5: T5ForConditionalGeneration, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(logits (N, V), targets (N,), keep (B, T) bool)`` for the N non-ignored target positions.

    The same computation as ``T5ForConditionalGeneration.forward`` (encoder, decoder fed the labels
    shifted right, the ``d_model ** -0.5`` rescale of tied models, ``lm_head``), with the projection
    applied to the kept positions only.
    """
    hidden, targets, keep = _decoder_states(t5, batch)
    return t5.lm_head(hidden), targets, keep


def target_token_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy per real target token (a scalar, nats), as ``model(**batch).loss`` computes it.

    Args:
        model: a ``T5ForConditionalGeneration`` or a ``PeftModel`` over one (short path), or any wrapper
            whose ``forward(**batch)`` returns ``.loss`` (full path).
        batch: ``{"input_ids": (B, S), "attention_mask": (B, S), "labels": (B, T)}`` int64, labels
            ``-100`` where padded.
    """
    t5 = unwrapped_t5(model)
    if t5 is None:
        return model(**batch).loss
    hidden, targets, _ = _decoder_states(t5, batch)
    if _fused_projection_applies(t5, hidden):
        return LinearCrossEntropy.apply(hidden, t5.lm_head.weight, targets)
    return F.cross_entropy(t5.lm_head(hidden).float(), targets)


def target_token_nll(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(summed NLL (B,) float32 nats, real target tokens (B,) int64)`` per example, for validation."""
    labels = batch["labels"]
    tokens = (labels != IGNORE_INDEX).sum(dim=1)  # (B,)
    t5 = unwrapped_t5(model)
    if t5 is None:
        logits = model(**batch).logits  # (B, T, V)
        nll = F.cross_entropy(
            logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none"
        ).sum(dim=1)
        return nll, tokens
    logits, targets, keep = _target_logits(t5, batch)
    per_token = F.cross_entropy(logits.float(), targets, reduction="none")  # (N,)
    rows = keep.nonzero()[:, 0]  # (N,) the example of each kept position
    nll = torch.zeros(labels.shape[0], dtype=per_token.dtype, device=per_token.device)
    return nll.index_add_(0, rows, per_token), tokens


def compile_model(model: Any) -> None:
    """``torch.compile`` the encoder and decoder of ``model`` in place (``nn.Module.compile``, dynamic
    shapes for the per-batch lengths); parameters and state-dict keys stay as they are.

    Raises:
        ValueError: ``model`` is not a T5 (or a PeftModel over one).
    """
    t5 = unwrapped_t5(model)
    if t5 is None:
        raise ValueError(f"--compile needs a T5ForConditionalGeneration (or a PeftModel), got {type(model)}")
    t5.encoder.compile(dynamic=True)
    t5.decoder.compile(dynamic=True)
