"""T5's span-corruption pre-training objective on raw support text (``--objective span-corruption``).

Source: Raffel et al., 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
Transformer" (JMLR 21(140)), section 3.1.4 and 3.3: 15 % of the tokens are dropped in spans of mean
length 3; each span is replaced in the input by one sentinel (``<extra_id_0>``, ``<extra_id_1>``, ... in
order) and the target is each sentinel followed by the tokens it replaced. The noise mask follows
``random_spans_noise_mask`` of the T5 code base (``t5.data.preprocessors``), also in transformers'
``examples/flax/language-modeling/run_t5_mlm_flax.py``; this is our own implementation of it (torch
random generator, no numpy), checked against that layout in ``tests/test_span_corruption.py``.

For a document of ``L`` tokens the mask has ``n = round(L * noise_density)`` noise tokens (at least 1,
at most ``L - 1``) in ``k = max(1, round(n / mean_span_length))`` spans; the ``L - n`` other tokens are
also cut into ``k`` spans, and the two kinds alternate, non-noise first (so the document ends with a
noise span). With tokens ``A B C D E F G`` and noise on ``C D`` and ``G``::

    input:  A B <extra_id_0> E F <extra_id_1> </s>
    target: <extra_id_0> C D <extra_id_1> G </s>

Raw text comes from dialog JSONL (each dialog's turns with their role markers, as the reply model reads
them) or from a plain ``.txt`` file (one document per line), cut into chunks of ``max_source_len``
tokens. :class:`SpanCorruptionDataset` draws a new mask for every example each epoch from
``(seed, epoch, index)`` (accelerate's ``set_epoch`` reaches it), so resumes are exact.

It does not train (``finetune/train_t5.py``) and does not build the vocabulary (``finetune/t5_vocab.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from assistant.data import Dialog, read_dialogs
from assistant.errors import DataError
from assistant.model_input import format_context

#: T5's defaults (Raffel et al. 2020, table 7 / section 3.7).
NOISE_DENSITY = 0.15
MEAN_SPAN_LENGTH = 3.0


def _random_segmentation(num_items: int, num_segments: int, g: torch.Generator) -> torch.Tensor:
    """Split ``num_items`` into ``num_segments`` non-empty parts of random lengths; ``(num_segments,)``."""
    first_in_segment = torch.zeros(num_items, dtype=torch.long)
    # num_segments - 1 of the num_items - 1 inner boundaries start a new segment
    starts = torch.randperm(num_items - 1, generator=g)[: num_segments - 1] + 1
    first_in_segment[starts] = 1
    segment_id = torch.cumsum(first_in_segment, 0)
    return torch.bincount(segment_id, minlength=num_segments)


def random_spans_noise_mask(
    length: int,
    g: torch.Generator,
    noise_density: float = NOISE_DENSITY,
    mean_span_length: float = MEAN_SPAN_LENGTH,
) -> torch.Tensor:
    """A boolean ``(length,)`` mask, True on the tokens to drop (T5's ``random_spans_noise_mask``).

    Non-noise and noise spans alternate, non-noise first; see the module docstring for the counts.

    Raises:
        ValueError: ``length`` below 2 (nothing can be both kept and dropped), or a density outside (0, 1).
    """
    if length < 2:
        raise ValueError(f"span corruption needs at least 2 tokens, got {length}")
    if not 0.0 < noise_density < 1.0 or mean_span_length <= 0:
        raise ValueError(f"noise_density must be in (0, 1) and mean_span_length > 0, got {noise_density}")
    num_noise = min(max(round(length * noise_density), 1), length - 1)
    num_spans = max(round(num_noise / mean_span_length), 1)
    num_spans = min(num_spans, num_noise, length - num_noise)
    noise_lengths = _random_segmentation(num_noise, num_spans, g)
    keep_lengths = _random_segmentation(length - num_noise, num_spans, g)
    interleaved = torch.stack([keep_lengths, noise_lengths], dim=1).reshape(-1)  # keep, noise, keep, ...
    span_index = torch.repeat_interleave(torch.arange(2 * num_spans), interleaved)
    return span_index % 2 == 1


def corrupt(
    ids: list[int], mask: torch.Tensor, sentinel_ids: list[int], eos_id: int
) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` for ``ids`` and a noise ``mask`` (both with a final ``eos_id``).

    Each noise span becomes ``sentinel_ids[i]`` (i = 0, 1, ... in order) in the input; the labels are
    ``sentinel_ids[i]`` followed by that span's tokens, for every span.

    Raises:
        ValueError: more spans than sentinels, or ``mask`` and ``ids`` of different lengths.
    """
    if len(mask) != len(ids):
        raise ValueError(f"mask has {len(mask)} entries for {len(ids)} tokens")
    inputs: list[int] = []
    labels: list[int] = []
    span = -1
    previous = False
    for token, noise in zip(ids, mask.tolist()):
        if noise:
            if not previous:
                span += 1
                if span >= len(sentinel_ids):
                    raise ValueError(f"more noise spans than the {len(sentinel_ids)} sentinel tokens")
                inputs.append(sentinel_ids[span])
                labels.append(sentinel_ids[span])
            labels.append(token)
        else:
            inputs.append(token)
        previous = noise
    return inputs + [eos_id], labels + [eos_id]


def sentinel_token_ids(tokenizer: Any) -> list[int]:
    """The ids of ``<extra_id_0>``, ``<extra_id_1>``, ... (in this order) in ``tokenizer``.

    Raises:
        DataError: the tokenizer has no sentinels (e.g. one built with ``extra_ids=0``).
    """
    vocab = tokenizer.get_vocab()
    ids = []
    while f"<extra_id_{len(ids)}>" in vocab:
        ids.append(vocab[f"<extra_id_{len(ids)}>"])
    if not ids:
        raise DataError(
            "--objective span-corruption needs a tokenizer with <extra_id_N> sentinel tokens (T5's own, or "
            "a vocabulary trained by --init-from-config without --tokenizer)"
        )
    return ids


def read_documents(
    path: str | Path, dialog_filter: Callable[[list[Dialog]], list[Dialog]] | None = None
) -> list[str]:
    """Raw text: one document per non-empty line of a ``.txt`` file, or per dialog of a dialog JSONL
    (its turns as the reply model reads them: ``<customer> .. <agent> ..``), after ``dialog_filter``
    (e.g. the ``meta.domains`` filter of ``finetune.t5_data``).

    Raises:
        DataError: unreadable file or no text.
    """
    path = Path(path)
    if path.suffix == ".txt":
        try:
            docs = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: cannot read raw text ({e})") from e
    else:
        dialogs = read_dialogs(path)
        if dialog_filter is not None:
            dialogs = dialog_filter(dialogs)
        docs = [format_context(d.turns) for d in dialogs if d.turns]
    if not docs:
        raise DataError(f"{path}: no text for span corruption")
    return docs


def chunk_documents(docs: list[str], tokenizer: Any, chunk_len: int) -> list[list[int]]:
    """Token ids of ``docs`` (no eos) cut into chunks of ``chunk_len`` tokens; chunks under 2 tokens are
    dropped (nothing to corrupt)."""
    chunks: list[list[int]] = []
    for ids in tokenizer(docs, add_special_tokens=False).input_ids:
        chunks += [ids[i : i + chunk_len] for i in range(0, len(ids), chunk_len)]
    return [c for c in chunks if len(c) >= 2]


class SpanCorruptionDataset(Dataset):
    """Span-corrupted examples ``{"input_ids", "attention_mask", "labels"}`` of token chunks.

    Example ``i`` of epoch ``e`` uses a generator seeded from ``(seed, e, i)``: a new corruption every
    epoch, the same one for the same epoch (resume), independent of the global random state.
    """

    def __init__(
        self,
        chunks: list[list[int]],
        sentinel_ids: list[int],
        eos_id: int,
        seed: int = 0,
        noise_density: float = NOISE_DENSITY,
        mean_span_length: float = MEAN_SPAN_LENGTH,
    ) -> None:
        if not chunks:
            raise DataError("span corruption: no chunk of at least 2 tokens")
        self.chunks, self.sentinel_ids, self.eos_id = chunks, sentinel_ids, eos_id
        self.seed, self.noise_density, self.mean_span_length = seed, noise_density, mean_span_length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose corruption ``__getitem__`` returns (accelerate calls this)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        ids = self.chunks[index]
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)
        mask = random_spans_noise_mask(len(ids), g, self.noise_density, self.mean_span_length)
        inputs, labels = corrupt(ids, mask, self.sentinel_ids, self.eos_id)
        return {"input_ids": inputs, "attention_mask": [1] * len(inputs), "labels": labels}
