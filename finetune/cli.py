"""Pieces shared by the ``finetune`` command-line tools: the ``--threads`` flag.

It parses and applies nothing else; each tool builds its own parser from config dataclasses.
"""

from __future__ import annotations

import argparse

from assistant.errors import ConfigError


def add_threads_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--threads N``: PyTorch intra-op threads for ``what`` (default: PyTorch's choice)."""
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"torch intra-op threads for {what} (torch.set_num_threads; default: torch's "
        "choice); on a shared CPU, 1 is often faster for small batches",
    )


def apply_threads(threads: int | None) -> None:
    """Apply a parsed ``--threads`` value; ``None`` leaves PyTorch's default.

    Raises:
        ConfigError: ``threads`` is below 1.
    """
    if threads is None:
        return
    if threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)
