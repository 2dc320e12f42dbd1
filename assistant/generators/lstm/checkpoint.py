"""Save and load an LSTM reply-model directory: weights, config, tokenizer and the manifest.

Layout of a directory written by :func:`save_checkpoint`::

    model.safetensors   weights (safetensors; tied embeddings stored once)
    config.json         {"seq2seq": Seq2SeqConfig, "tokenizer": TokenizerConfig, "decoding": DecodingConfig,
                         "vocab_size": int, "pad_id": int}
    tokenizer.model     the SentencePiece model
    assistant.json      manifest: {"kind": "lstm", "format_version": 1, "files": {name: sha256},
                         "configs": (as config.json), "data": [{path, sha256, examples}], "training": {...},
                         "versions": {python, torch, sentencepiece}, "created": ISO time}

Loading checks that every file is present and matches its recorded sha256, that the format version is
known, that the configs are valid, and that the tokenizer's vocabulary size equals the weights'; any
disagreement is a :class:`~assistant.errors.CheckpointError` naming the file and the problem. Training
state for ``--resume`` is not part of a checkpoint (``finetune/train_lstm.py`` keeps it beside).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from assistant import artifacts
from assistant.config import dataclass_from_dict
from assistant.errors import AssistantError, CheckpointError
from assistant.generators.base import MANIFEST, read_manifest_of_kind
from assistant.generators.decoding import DecodingConfig
from assistant.generators.lstm import Seq2SeqConfig, Seq2SeqModel
from assistant.generators.lstm.tokenizer import TOKENIZER_FILE, Tokenizer, TokenizerConfig

KIND = "lstm"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"


@dataclass
class LSTMCheckpoint:
    """A loaded checkpoint: the model (in eval mode), its tokenizer, configs and manifest."""

    model: Seq2SeqModel
    tokenizer: Tokenizer
    model_config: Seq2SeqConfig
    tokenizer_config: TokenizerConfig
    decoding_config: DecodingConfig
    manifest: dict[str, Any]


def save_checkpoint(
    directory: str | Path,
    model: Seq2SeqModel,
    tokenizer: Tokenizer,
    tokenizer_config: TokenizerConfig,
    decoding_config: DecodingConfig,
    *,
    data: list[dict[str, Any]] | None = None,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write a complete model directory (files replaced atomically, the manifest last).

    Args:
        directory: created if missing; existing checkpoint files in it are replaced.
        model: the trained model (its ``config``, ``vocab_size`` and ``pad_id`` are saved).
        tokenizer: the tokenizer the model was trained with.
        tokenizer_config, decoding_config: saved for reproducibility / as generation defaults.
        data: descriptions of the data files, e.g. ``[{"role": "train", "path": ..., "sha256": ...}]``.
        training: training figures (epochs, time, target tokens/s, validation loss and perplexity, ...).

    Returns:
        the directory.

    Raises:
        CheckpointError: the tokenizer's vocabulary size differs from the model's.
    """
    directory = Path(directory)
    if tokenizer.vocab_size != model.vocab_size:
        raise CheckpointError(
            f"tokenizer has {tokenizer.vocab_size} pieces but the model was built for "
            f"{model.vocab_size}; they must match"
        )
    directory.mkdir(parents=True, exist_ok=True)
    configs = {
        "seq2seq": dataclasses.asdict(model.config),
        "tokenizer": dataclasses.asdict(tokenizer_config),
        "decoding": dataclasses.asdict(decoding_config),
        "vocab_size": model.vocab_size,
        "pad_id": model.pad_id,
    }
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    cpu_model = Seq2SeqModel(model.config, model.vocab_size, model.pad_id)
    cpu_model.load_state_dict(state)
    with artifacts.replacing(directory / SAFETENSORS_FILE) as tmp:
        safetensors.torch.save_model(cpu_model, str(tmp))  # save_model stores tied weights once
    artifacts.write_json(directory / CONFIG_FILE, configs)
    with artifacts.replacing(directory / TOKENIZER_FILE) as tmp:
        tokenizer.save(tmp)
    artifacts.write_manifest(
        directory,
        MANIFEST,
        kind=KIND,
        format_version=FORMAT_VERSION,
        body={"configs": configs, "data": data or [], "training": training or {}},
        libraries=("torch", "sentencepiece"),
        files=(SAFETENSORS_FILE, CONFIG_FILE, TOKENIZER_FILE),
    )
    return directory


def read_lstm_manifest(directory: str | Path) -> dict[str, Any]:
    """Read ``assistant.json`` and check kind, format version and the listed files' hashes.

    Raises:
        CheckpointError: missing directory/manifest/file, bad JSON, another kind, an unknown format
            version, or a file whose sha256 differs from the manifest's.
    """
    directory = Path(directory)
    path = directory / MANIFEST
    manifest = read_manifest_of_kind(directory, KIND, FORMAT_VERSION)
    files = manifest.get("files")
    if not isinstance(files, dict) or not {CONFIG_FILE, TOKENIZER_FILE, SAFETENSORS_FILE} <= set(files):
        raise CheckpointError(
            f"{path}: 'files' must list {CONFIG_FILE}, {TOKENIZER_FILE} and {SAFETENSORS_FILE}, got {files!r}"
        )
    artifacts.verify_files(directory, files, MANIFEST)
    return manifest


def _embedding_rows(path: Path) -> dict[str, int]:
    """Rows of each stored embedding matrix, read from the safetensors header (no weights loaded).

    Raises:
        CheckpointError: the file is not a readable safetensors file.
    """
    try:
        with safetensors.safe_open(str(path), framework="pt") as fh:
            return {
                key: int(fh.get_slice(key).get_shape()[0])
                for key in fh.keys()  # noqa: SIM118 (safe_open is not a mapping)
                if key.endswith("embedding.weight")
            }
    except Exception as e:  # safetensors raises several unrelated types on a corrupt file
        raise CheckpointError(f"{path}: cannot read the weights ({type(e).__name__}: {e})") from e


def _first(error: Exception, n: int) -> str:
    """The first ``n`` problems a PyTorch ``load_state_dict`` error lists (one per line), on one line."""
    lines = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
    more = f"; and {len(lines) - n} more" if len(lines) > n else ""
    return "; ".join(lines[:n]) + more


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> LSTMCheckpoint:
    """Load and validate a directory written by :func:`save_checkpoint`.

    Args:
        directory: the model directory.
        device: where to put the model (``"cpu"``, ``"cuda"``, ...).

    Returns:
        an :class:`LSTMCheckpoint` whose model is in eval mode on ``device``.

    Raises:
        CheckpointError: see :func:`read_lstm_manifest`; also invalid configs, a tokenizer whose
            vocabulary size differs from the weights', or weights that do not fit the configured model.
    """
    directory = Path(directory)
    manifest = read_lstm_manifest(directory)
    config_path = directory / CONFIG_FILE
    try:
        configs = json.loads(config_path.read_text(encoding="utf-8"))
        model_config = dataclass_from_dict(Seq2SeqConfig, configs["seq2seq"], f"{config_path}: seq2seq")
        tokenizer_config = dataclass_from_dict(
            TokenizerConfig, configs["tokenizer"], f"{config_path}: tokenizer"
        )
        decoding_config = dataclass_from_dict(DecodingConfig, configs["decoding"], f"{config_path}: decoding")
        vocab_size, pad_id = int(configs["vocab_size"]), int(configs["pad_id"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AssistantError) as e:
        raise CheckpointError(f"{config_path}: invalid configuration ({type(e).__name__}: {e})") from e
    try:
        tokenizer = Tokenizer.load(directory / TOKENIZER_FILE)
    except AssistantError as e:
        raise CheckpointError(f"{directory / TOKENIZER_FILE}: {e}") from e
    if tokenizer.vocab_size != vocab_size:
        raise CheckpointError(
            f"{directory}: tokenizer.model has {tokenizer.vocab_size} pieces but config.json "
            f"says vocab_size={vocab_size}"
        )
    weights = directory / SAFETENSORS_FILE
    for key, rows in _embedding_rows(weights).items():
        if rows != tokenizer.vocab_size:
            raise CheckpointError(
                f"{weights}: {key} has {rows} rows but the tokenizer has {tokenizer.vocab_size} pieces "
                "(vocabulary size mismatch)"
            )
    model = Seq2SeqModel(model_config, vocab_size, pad_id)
    try:
        # strict: every parameter of the configured model present with its shape, nothing else
        safetensors.torch.load_model(model, str(weights), strict=True)
    except RuntimeError as e:  # missing/unexpected keys or a shape that differs from the config
        raise CheckpointError(f"{weights}: weights do not fit the configured model ({_first(e, 3)})") from e
    except Exception as e:  # safetensors raises several unrelated types on a corrupt file
        raise CheckpointError(f"{weights}: cannot read the weights ({type(e).__name__}: {e})") from e
    model.to(device).eval()
    return LSTMCheckpoint(model, tokenizer, model_config, tokenizer_config, decoding_config, manifest)
