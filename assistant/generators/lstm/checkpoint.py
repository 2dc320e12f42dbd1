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
import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from assistant.artifacts import file_sha256, library_versions, verify_files
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


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


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
    tmp = directory / (SAFETENSORS_FILE + ".tmp")
    cpu_model = Seq2SeqModel(model.config, model.vocab_size, model.pad_id)
    cpu_model.load_state_dict(state)
    safetensors.torch.save_model(cpu_model, str(tmp))  # save_model stores tied weights once
    os.replace(tmp, directory / SAFETENSORS_FILE)
    _write_atomic(directory / CONFIG_FILE, json.dumps(configs, indent=2).encode("utf-8"))
    tokenizer.save(directory / (TOKENIZER_FILE + ".tmp"))
    os.replace(directory / (TOKENIZER_FILE + ".tmp"), directory / TOKENIZER_FILE)
    manifest = {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "files": {
            name: file_sha256(directory / name) for name in (SAFETENSORS_FILE, CONFIG_FILE, TOKENIZER_FILE)
        },
        "configs": configs,
        "data": data or [],
        "training": training or {},
        "versions": library_versions("torch", "sentencepiece"),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    _write_atomic(directory / MANIFEST, json.dumps(manifest, indent=2).encode("utf-8"))
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
    verify_files(directory, files, MANIFEST)
    return manifest


def _read_state(path: Path, device: str) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(str(path), device=device)
    except Exception as e:  # safetensors raises several unrelated types on a corrupt file
        raise CheckpointError(f"{path}: cannot read the weights ({type(e).__name__}: {e})") from e


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
    state = _read_state(directory / SAFETENSORS_FILE, "cpu")
    for key, tensor in state.items():
        if key.endswith("embedding.weight") and tensor.shape[0] != tokenizer.vocab_size:
            raise CheckpointError(
                f"{directory / SAFETENSORS_FILE}: {key} has {tensor.shape[0]} rows but the "
                f"tokenizer has {tokenizer.vocab_size} pieces (vocabulary size mismatch)"
            )
    model = Seq2SeqModel(model_config, vocab_size, pad_id)
    expected = model.state_dict()
    if model_config.share_embeddings and "encoder.embedding.weight" in state:
        state.setdefault("decoder.embedding.weight", state["encoder.embedding.weight"])
    if model_config.share_embeddings and "decoder.embedding.weight" in state:
        state.setdefault("encoder.embedding.weight", state["decoder.embedding.weight"])
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{directory / SAFETENSORS_FILE}: weights do not fit the configured model "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise CheckpointError(
                f"{directory / SAFETENSORS_FILE}: {key} has shape {tuple(tensor.shape)}, the config "
                f"gives {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state)
    model.to(device).eval()
    return LSTMCheckpoint(model, tokenizer, model_config, tokenizer_config, decoding_config, manifest)
