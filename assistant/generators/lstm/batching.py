"""Model input for the LSTM as tensors, shared by training (``finetune/lstm_data.py``) and serving
(``generator.py``): source truncation with eos, and right padding into ``(batch, len)`` tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from assistant.generators.lstm.tokenizer import Tokenizer


def source_ids(tokenizer: Tokenizer, texts: Sequence[str], max_source_len: int) -> list[list[int]]:
    """Tokenize model inputs: keep the last ``max_source_len - 1`` tokens and append eos.

    Dropping from the left keeps the latest turns and a grounding answer (see
    :func:`assistant.model_input.format_context`); an answer near ``max_source_len`` tokens long leaves little
    or no room for the customer's message. eos makes every source at least one token long.
    """
    return [
        ids[len(ids) - (max_source_len - 1) :] + [tokenizer.eos_id]
        if len(ids) >= max_source_len
        else ids + [tokenizer.eos_id]
        for ids in tokenizer.encode(texts)
    ]


def pad_batch(
    rows: Sequence[Sequence[int]], pad_id: int, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into ``(batch, max_len)`` and return it with lengths ``(batch,)``."""
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    out = torch.full((len(rows), int(lengths.max()) if rows else 0), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out.to(device), lengths.to(device)
