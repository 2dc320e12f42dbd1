"""The HNSW option of the FAQ index (``assistant/retrieval/ann.py``): recall against the exact scan on
synthetic unit vectors, the automatic switch, the exact top-k selection, and the save/load round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assistant.data import FaqEntry
from assistant.errors import ConfigError, RetrievalError
from assistant.retrieval.ann import HnswTexts
from assistant.retrieval.index import FaqIndex, RetrieverConfig, _top_k

DIM = 384


def unit_vectors(n: int, seed: int) -> np.ndarray:
    """``(n, DIM)`` float32 unit vectors in clusters (as sentence embeddings are), reproducible."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, n // 20), DIM))
    x = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def near(texts: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``(n, DIM)`` queries: unit vectors near random rows of ``texts`` (a paraphrase of an FAQ text)."""
    rng = np.random.default_rng(seed)
    x = texts[rng.integers(0, len(texts), n)] + 0.03 * rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def synthetic_index(n_entries: int, config: RetrieverConfig, seed: int = 0) -> FaqIndex:
    """A dense index of ``n_entries`` entries with two texts each and synthetic embeddings."""
    entries = [FaqEntry(f"e{i}", f"question {i}", f"answer {i}", (f"example {i}",)) for i in range(n_entries)]
    return FaqIndex(entries, config, embeddings=unit_vectors(2 * n_entries, seed))


def test_hnsw_recall_at_10_against_the_exact_scan() -> None:
    texts = unit_vectors(3000, 1)
    queries = near(texts, 50, 2)
    graph = HnswTexts.build(texts, m=32, ef_construction=80, ef_search=128)
    scores, ids = graph.search(queries, 10)
    exact = np.argsort(-(queries @ texts.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact, strict=True)])
    assert recall >= 0.95
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ texts.T, ids, axis=1), atol=1e-5)


def test_the_index_switches_to_hnsw_from_ann_min_texts_and_ranks_like_exact() -> None:
    exact = synthetic_index(1000, RetrieverConfig(method="dense", dense_backend="torch", ann="exact"))
    auto = synthetic_index(1000, RetrieverConfig(method="dense", dense_backend="torch", ann_min_texts=2000))
    small = synthetic_index(1000, RetrieverConfig(method="dense", dense_backend="torch", ann_min_texts=2001))
    assert (exact.uses_hnsw, auto.uses_hnsw, small.uses_hnsw) == (False, True, False)
    queries = near(exact._embeddings, 40, 3)
    texts = [f"q{i}" for i in range(len(queries))]
    want = exact.rank(exact.component_scores(texts, queries), k=10)
    got = auto.rank(auto.component_scores(texts, queries), k=10)
    recall = np.mean([len({h.faq_id for h in a} & {h.faq_id for h in b}) / 10 for a, b in zip(got, want)])
    assert recall >= 0.9
    assert np.mean([a[0].faq_id == b[0].faq_id for a, b in zip(got, want)]) >= 0.95
    for a, b in zip(got, want):  # an entry found by both has its exact score
        exact_scores = {h.faq_id: h.score for h in b}
        for h in a:
            if h.faq_id in exact_scores:
                assert h.score == pytest.approx(exact_scores[h.faq_id], abs=1e-5)


def test_hnsw_index_save_load_round_trip(tmp_path: Path) -> None:
    index = synthetic_index(300, RetrieverConfig(method="dense", dense_backend="torch", ann="hnsw"))
    index.save(tmp_path / "index")
    assert (tmp_path / "index" / "ann.faiss").is_file()
    loaded = FaqIndex.load(tmp_path / "index")
    assert loaded.uses_hnsw
    queries = near(index._embeddings, 20, 4)
    texts = [f"q{i}" for i in range(len(queries))]
    before = index.rank(index.component_scores(texts, queries), k=5)
    after = loaded.rank(loaded.component_scores(texts, queries), k=5)
    assert [[(h.faq_id, h.score) for h in r] for r in after] == [
        [(h.faq_id, h.score) for h in r] for r in before
    ]

    (tmp_path / "index" / "ann.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(RetrievalError, match="ann.faiss"):
        FaqIndex.load(tmp_path / "index")


def test_a_graph_of_another_size_is_refused(tmp_path: Path) -> None:
    HnswTexts.build(unit_vectors(50, 5), 8, 16, 16).save(tmp_path / "g.faiss")
    with pytest.raises(RetrievalError, match="holds 50 vectors"):
        HnswTexts.load(tmp_path / "g.faiss", n_texts=60, dim=DIM, ef_search=16)


def test_top_k_equals_a_stable_full_sort_with_ties() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(30, 200)).astype(np.float32)  # many ties
    for k in (1, 3, 10, 49, 50, 200):
        np.testing.assert_array_equal(_top_k(scores, k), np.argsort(-scores, axis=1, kind="stable")[:, :k])


def test_bad_ann_settings_are_named() -> None:
    with pytest.raises(ConfigError, match="ann must be auto, exact or hnsw, got 'fast'"):
        RetrieverConfig(ann="fast")
    with pytest.raises(ConfigError, match="ann_candidates must be >= 1, got 0"):
        RetrieverConfig(ann_candidates=0)
    with pytest.raises(ConfigError, match="dense_backend must be torch, onnx or onnx-int8"):
        RetrieverConfig(dense_backend="tensorrt")
