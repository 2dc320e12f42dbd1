"""Convert a T5 model directory (adapter merged in) to CTranslate2, cached on disk and keyed by content.

CTranslate2 (OpenNMT, https://github.com/OpenNMT/CTranslate2) runs Transformer inference in C++ with
its own weight format. Its ``TransformersConverter`` reads a ``save_pretrained`` directory. This module
builds that directory for what a T5 model directory serves by default (the base weights with the
default LoRA adapter merged in: peft ``merge_and_unload``, :func:`assistant.generators.t5.adapters.merge_adapter`),
converts it to float32 CTranslate2 weights (int8 is chosen when the model is loaded: CTranslate2
quantizes float32 weights at load time, so one conversion serves both compute types), and keeps the
result in a cache folder::

    <cache_root>/<key>/      model.bin  config.json  shared_vocabulary.json  source.json

``<cache_root>`` is ``<model_dir>/ct2`` unless given. ``<key>`` is a SHA-256 over the ctranslate2
version, this module's format version, the adapter name and the SHA-256 of every file that makes the
served model (the model directory's manifest and top-level files, the base model's and tokenizer's
files, the adapter's files), so a retrained or edited model is converted again and an unchanged one
is reused. A conversion is written to a temporary folder and renamed into place
(:func:`assistant.artifacts.replacing_directory`): a reader never sees half a model; older keys are
removed after a new conversion. ``python -m finetune.convert_ct2 MODEL_DIR`` fills the cache ahead of
serving (for a read-only deployment, with ``--cache-dir``).

This module does not decode (:mod:`assistant.generators.t5.ct2_decode`) and does not read generation
settings.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from assistant import artifacts
from assistant.errors import CheckpointError, ModelError

#: bumped when what a cache folder holds changes (older cache folders are then converted again).
CACHE_FORMAT = 1

#: files of a cache folder that CTranslate2 needs to load it.
REQUIRED_FILES = ("model.bin", "config.json", "shared_vocabulary.json")

#: written last into a cache folder: what went into its key.
SOURCE_FILE = "source.json"


def ctranslate2_version() -> str:
    """The installed ctranslate2 version.

    Raises:
        ModelError: ctranslate2 is not installed.
    """
    try:
        import ctranslate2
    except ImportError as e:
        raise ModelError(
            "the ct2 backend needs the 'ctranslate2' package (pip install ctranslate2); "
            "or load with backend='transformers'"
        ) from e
    return ctranslate2.__version__


def _files_of(directory: Path) -> Iterable[Path]:
    """The regular files directly in ``directory`` (not sub-folders: checkpoints, adapters, caches)."""
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))


def cache_key(
    sources: Iterable[Path], adapter: str | None, base_id: str | None = None
) -> tuple[str, dict[str, object]]:
    """The cache key of a model made from ``sources`` (directories) with ``adapter`` merged.

    Args:
        sources: directories whose top-level files make the served model (model dir, base dir, tokenizer
            dir, adapter dir); duplicates are hashed once.
        adapter: the merged adapter's name, ``None`` for the base alone.
        base_id: a Hugging Face id when the base model is named by id (its files are not hashed).

    Returns:
        ``(key, record)``: a 64-hex-digit SHA-256 and the record it hashes (file path → SHA-256 and the rest).
    """
    files: dict[str, str] = {}
    for directory in dict.fromkeys(Path(d).resolve() for d in sources):
        for path in _files_of(directory):
            files[str(path)] = artifacts.file_sha256(path)
    record = {
        "cache_format": CACHE_FORMAT,
        "ctranslate2": ctranslate2_version(),
        "adapter": adapter,
        "base_id": base_id,
        "files": files,
    }
    key = hashlib.sha256(json.dumps(record, sort_keys=True).encode("utf-8")).hexdigest()
    return key, record


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds a finished conversion (its ``source.json`` is written last)."""
    return all((folder / name).is_file() for name in (*REQUIRED_FILES, SOURCE_FILE))


def convert_saved(model_dir: Path, out_dir: Path) -> None:
    """Convert a ``save_pretrained`` T5 directory (weights + tokenizer) to float32 CTranslate2 in ``out_dir``.

    Raises:
        ModelError: ctranslate2 is missing or rejects the model (e.g. an architecture it does not know).
    """
    ctranslate2_version()
    from ctranslate2.converters import TransformersConverter

    try:
        TransformersConverter(str(model_dir)).convert(str(out_dir), quantization=None, force=True)
    except (ValueError, NotImplementedError, OSError) as e:
        raise ModelError(f"CTranslate2 cannot convert the T5 model saved in {model_dir}: {e}") from e


def _rename_duplicate_tokens(vocabulary_file: Path) -> None:
    """Give each repeated token string of the converted vocabulary a unique name (rows past the
    tokenizer's size are padded with ``<extra_id_N>`` names the tokenizer may already use), so a
    token string names one row. Only padding rows are renamed (``<unused_ID>``); the tokenizer never
    produces them."""
    vocab = json.loads(vocabulary_file.read_text(encoding="utf-8"))
    seen: set[str] = set()
    for i, token in enumerate(vocab):
        if token in seen:
            vocab[i] = f"<unused_{i}>"
        seen.add(vocab[i])
    artifacts.write_json(vocabulary_file, vocab)


def converted_model(
    cache_root: Path,
    sources: Iterable[Path],
    adapter: str | None,
    build_merged: Callable[[], tuple[torch.nn.Module, object]],
    base_id: str | None = None,
    model_dir: Path | None = None,
) -> tuple[Path, bool]:
    """The cache folder of the converted model, converting it first when it is missing or stale.

    Args:
        cache_root: the folder holding one sub-folder per key (created if missing).
        sources: the directories whose files make the model (see :func:`cache_key`).
        adapter: the adapter merged into the weights (``None``: the base alone).
        build_merged: returns ``(model, tokenizer)``: a plain ``T5ForConditionalGeneration`` with the adapter
            already merged, and its tokenizer; called only on a cache miss.
        base_id: as in :func:`cache_key`.
        model_dir: the model directory served (recorded in ``source.json``; after a conversion, the
            cache's other folders made from the same model directory are removed).

    Returns:
        ``(folder, converted)``: the folder to load with ``ctranslate2.Translator`` and whether it was
        converted by this call (``False``: reused).

    Raises:
        CheckpointError: the cache folder cannot be written (say where a writable one is: ``ct2_cache_dir``).
        ModelError: the conversion failed.
    """
    key, record = cache_key(sources, adapter, base_id)
    folder = Path(cache_root) / key
    if is_complete(folder):
        return folder, False
    try:
        Path(cache_root).mkdir(parents=True, exist_ok=True)
        with artifacts.replacing_directory(folder) as tmp:
            model, tokenizer = build_merged()
            if hasattr(model, "peft_config"):
                raise ModelError("build_merged must return a plain model (merge the adapter first)")
            with tempfile.TemporaryDirectory(prefix=".hf-", dir=cache_root) as hf_dir:
                model.save_pretrained(hf_dir)
                tokenizer.save_pretrained(hf_dir)
                convert_saved(Path(hf_dir), tmp)
            _rename_duplicate_tokens(tmp / "shared_vocabulary.json")
            artifacts.write_json(tmp / SOURCE_FILE, {**record, "model_dir": str(model_dir)})
    except OSError as e:
        raise CheckpointError(
            f"cannot write the CTranslate2 conversion cache {cache_root}: {e}; pass a writable "
            "ct2_cache_dir, or fill the cache beforehand with python -m finetune.convert_ct2"
        ) from e
    _remove_older(Path(cache_root), key, str(model_dir))
    return folder, True


def _remove_older(cache_root: Path, key: str, model_dir: str) -> None:
    """Remove the cache's other conversions of ``model_dir`` (a cache shared by several models keeps theirs)."""
    for other in cache_root.iterdir():
        if not other.is_dir() or other.name == key or other.name.startswith("."):
            continue
        try:
            made_from = json.loads((other / SOURCE_FILE).read_text(encoding="utf-8")).get("model_dir")
        except (OSError, ValueError):
            continue  # not a finished conversion of ours: leave it
        if made_from == model_dir:
            shutil.rmtree(other, ignore_errors=True)
