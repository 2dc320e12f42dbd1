"""Length-bucketed batches: examples of similar length share a batch, so dynamic padding pads little.

:class:`LengthBucketBatchSampler` is a ``batch_sampler`` for ``torch.utils.data.DataLoader``. Each epoch it
draws a permutation of the examples from ``seed`` and the epoch number alone (no global random state, so
a run resumed with accelerate's ``load_state`` + ``skip_first_batches`` sees the same batches), cuts it
into pools of ``pool_batches`` batches, sorts each pool by length, cuts the pool into batches and
shuffles the order of all batches. This is the "bucket iterator" of OpenNMT / torchtext (sort within a
random pool, then shuffle batches); with the padding collator (transformers' ``DataCollatorForSeq2Seq``)
each batch is padded to its own longest example only.

Every example appears in exactly one batch per epoch; only the last batch of a pool may be smaller than
``batch_size``. It does not pad (the collator does) and does not shard over processes (accelerate's
``prepare`` wraps the sampler in its ``BatchSamplerShard``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Batches of example indices grouped by length, reshuffled each epoch from ``(seed, epoch)``.

    Args:
        lengths: one length per example (e.g. source + target tokens).
        batch_size: examples per batch (>= 1).
        pool_batches: batches per sorting pool (>= 1); larger = less padding, less randomness.
        seed: the shuffling seed; ``set_epoch(e)`` selects epoch ``e``'s order.

    Raises:
        ValueError: an empty ``lengths``, ``batch_size`` or ``pool_batches`` below 1.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, pool_batches: int, seed: int = 0) -> None:
        if not lengths:
            raise ValueError("LengthBucketBatchSampler needs at least one example")
        if batch_size < 1 or pool_batches < 1:
            raise ValueError(f"batch_size and pool_batches must be >= 1, got {batch_size}, {pool_batches}")
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)
        self.batch_size = batch_size
        self.pool_batches = pool_batches
        self.seed = seed
        self.epoch = 0
        pool = batch_size * pool_batches
        n = len(self.lengths)
        # batches per full pool, plus the batches of the last, partial pool
        self._len = (n // pool) * pool_batches + math.ceil((n % pool) / batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order ``__iter__`` yields (called by accelerate's loader ``set_epoch``)."""
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """The current epoch's batches (lists of example indices), in training order."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g)
        pool = self.batch_size * self.pool_batches
        batches: list[list[int]] = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            # stable sort: ties keep the random order, so equal lengths are still mixed
            chunk = chunk[torch.sort(self.lengths[chunk], stable=True).indices]
            batches += [
                chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)
            ]
        shuffled = torch.randperm(len(batches), generator=g).tolist()
        return [batches[i] for i in shuffled]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()

    def __len__(self) -> int:
        return self._len
