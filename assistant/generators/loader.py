"""Load a reply model from its directory, whatever its kind (the manifest's ``kind`` picks the loader).

Each kind's module is imported only when a directory of that kind is loaded (T5 pulls in
transformers and peft), but the imports are written out here, so the dependency is visible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from assistant.generators.base import Generator, read_manifest


def load_generator(model_dir: str | Path, **options: Any) -> Generator:
    """Load the generator saved in ``model_dir``, whatever its kind.

    Args:
        model_dir: a directory written by one of the project's training or build commands.
        **options: passed to the kind's loader (e.g. ``device``, ``beam_size``, ``adapter``).

    Raises:
        CheckpointError: the directory is not a valid model directory.
        ConfigError: an option is not one the kind's loader takes.
    """
    kind = read_manifest(model_dir)["kind"]
    path = Path(model_dir)
    if kind == "lstm":
        from assistant.generators.lstm.generator import load_lstm_generator

        return load_lstm_generator(path, **options)
    if kind == "t5":
        from assistant.generators.t5.model import load_t5_generator

        return load_t5_generator(path, **options)
    from assistant.generators.baseline import load_retrieval_baseline  # read_manifest admits no other kind

    return load_retrieval_baseline(path, **options)
