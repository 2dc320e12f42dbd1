"""Approximate nearest-neighbour search over an FAQ index's text embeddings: an HNSW graph from faiss.

Exact dense search multiplies the query with every indexed text's embedding, ``O(n_texts × dim)`` per
query; past some hundred thousand texts that alone exceeds the lookup budget on one CPU thread
(``docs/results/retrieval-speed.md``). HNSW (Malkov & Yashunin, 2018, "Efficient and robust approximate
nearest neighbor search using Hierarchical Navigable Small World graphs"), as implemented by faiss
(``faiss.IndexHNSWFlat``, inner-product metric: the embeddings are unit length, so it is the cosine),
visits a few thousand of them instead.

:class:`HnswTexts` returns the ``n`` best texts of each query with their exact inner products (faiss
stores the vectors flat, so the scores are exact, only the candidate set is approximate). Which index
is used, and from what size, is :class:`assistant.retrieval.config.RetrieverConfig`'s ``ann`` and
``ann_min_texts``; ``assistant/retrieval/index.py`` turns text hits into per-entry scores. Saved as
``ann.faiss`` in the index directory (``assistant/retrieval/store.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from assistant.errors import RetrievalError


class HnswTexts:
    """An HNSW graph over ``(n_texts, dim)`` unit-length float32 embeddings (inner product).

    Args:
        index: a ``faiss.IndexHNSWFlat`` (inner-product metric) holding the texts in index order.
        ef_search: candidates kept while searching (faiss ``efSearch``): higher is slower and more exact.
    """

    def __init__(self, index: object, ef_search: int) -> None:
        self.index, self.ef_search = index, ef_search

    @classmethod
    def build(cls, embeddings: np.ndarray, m: int, ef_construction: int, ef_search: int) -> HnswTexts:
        """Build the graph (single-threaded when the caller set faiss/OpenMP to one thread).

        Args:
            embeddings: ``(n_texts, dim)`` float32, unit length.
            m: graph degree (faiss ``M``); ef_construction: candidates kept while inserting.

        Raises:
            RetrievalError: ``embeddings`` is not a non-empty 2-D array.
        """
        import faiss

        if embeddings.ndim != 2 or len(embeddings) == 0:
            raise RetrievalError(f"HNSW needs a non-empty (n_texts, dim) array, got shape {embeddings.shape}")
        index = faiss.IndexHNSWFlat(int(embeddings.shape[1]), m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
        return cls(index, ef_search)

    @property
    def n_texts(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` nearest texts of each query: ``(scores, text ids)``, each ``(n_queries, n)``, best first.

        Scores are exact inner products; ids are ``-1`` (score ``-inf``) where fewer than ``n`` were found.
        """
        import faiss

        params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, n))
        scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), n, params=params)
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
        return scores, ids

    def save(self, path: str | Path) -> None:
        """Write the graph and vectors (``faiss.write_index``)."""
        import faiss

        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: str | Path, n_texts: int, dim: int, ef_search: int) -> HnswTexts:
        """Read a graph written by :meth:`save`, checked against the index's text count and dimension.

        Raises:
            RetrievalError: the file is missing, not a faiss HNSW index, or of another size.
        """
        import faiss

        try:
            index = faiss.read_index(str(path))
        except RuntimeError as e:  # faiss reports a missing or malformed file as RuntimeError
            raise RetrievalError(f"{path}: not a faiss index ({e}); rebuild the FAQ index") from e
        if not isinstance(index, faiss.IndexHNSWFlat) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise RetrievalError(f"{path}: not an inner-product faiss IndexHNSWFlat; rebuild the FAQ index")
        if index.ntotal != n_texts or index.d != dim:
            raise RetrievalError(
                f"{path}: holds {index.ntotal} vectors of dimension {index.d}; the index has {n_texts} "
                f"texts of dimension {dim}; rebuild the FAQ index"
            )
        return cls(index, ef_search)
