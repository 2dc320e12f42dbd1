"""Conversation-aware FAQ retrieval: the dialog's entity and history, a calibrated confidence, and
knowledge-seeking turn detection.

:class:`ConversationalRetriever` wraps an :class:`~assistant.retrieval.index.FaqIndex` and scores
every entry for the customer's new message *given the turns before it*:

    score = (m(last) + λ · h · m(history)) / (1 + λ · h)  +  boost · prior(entry)

* ``m(·)``: the index's fused score of a query (BM25, dense or hybrid; the hybrid's dense weight may
  be the conversation's own, ``dense_weight``), min-max normalised to [0, 1] per query;
* ``history``: the ``history_turns`` customer turns before the new message, joined; ``h`` = 1 when
  there are any, else 0; ``λ`` = ``history_weight``. Dividing by ``1 + λ`` keeps the new message's
  share at least ``1 / (1 + λ)``, so old turns never swamp it; ``λ = 0`` ignores them;
* ``prior``: 1 for entries of the active entity, ``entity_decay ** t`` for an entity named ``t`` turns
  ago, 1 for domain-wide entries (``meta.entity: "*"``) of the conversation's domain and for unscoped
  entries, 0 for every other entity's entries (``assistant/retrieval/entities.py``). When no entity
  or domain is named the prior is 0 everywhere and the ranking is the index's own. With
  ``entity_boost`` > 1 every entry of the active entity ranks above every other entity's entries.

An FAQ without entities has an empty catalogue, so with ``λ = 0`` the ranking equals
``FaqIndex.search``. On top of the ranking it carries two calibrated decisions, both fitted on
knowledge-labelled dialogs (``assistant/retrieval/labels.py``) with ``calibration.py``'s tools:

* **confidence** that the top hit answers the turn: a logistic regression on the hit-list features
  of ``calibration.FEATURES_BY_METHOD`` (of the conversational hits) plus "an entity is active",
  with the threshold rule of ``calibration.select_threshold`` (turns that used FAQ entries are in
  scope; turns that needed no FAQ entry are out of scope);
* **knowledge-seeking detection** (``assistant/retrieval/detection.py``): the same hit-list features
  of the message alone, the conversational features, and the message's sentence embedding.

Both, the settings and the calibration dialogs are stored with the index (``FaqIndex.conversation``,
``calibration-dialogs.jsonl``), so a server loads them with it (:meth:`ConversationalRetriever.from_index`).
This module does not decide how to reply (``assistant/pipeline.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from assistant.config import dataclass_from_dict, require
from assistant.data import Turn
from assistant.errors import AssistantError, DataError, RetrievalError
from assistant.retrieval import calibration as cal
from assistant.retrieval.config import Hit
from assistant.retrieval.detection import TurnDetector, detection_metrics, fit_detector
from assistant.retrieval.embeddings import EmbeddingCache
from assistant.retrieval.entities import (
    DOMAIN_WIDE,
    EntityCatalog,
    EntityState,
    entity_fields,
    track_entities,
)
from assistant.retrieval.index import FaqIndex, _minmax
from assistant.retrieval.labels import KnowledgeTurn, knowledge_turn_to_json, parse_knowledge_turn

#: ``history_weight`` values :meth:`ConversationalRetriever.tune` tries (0 = the new message alone).
HISTORY_WEIGHTS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)
#: hybrid ``dense_weight`` values it tries.
DENSE_WEIGHTS: tuple[float, ...] = tuple(float(round(w, 1)) for w in np.arange(0.0, 1.01, 0.1))
#: queries scored at once (bounds memory: a few ``(chunk, n_entries)`` float arrays).
CHUNK = 256


@dataclass
class ConversationConfig:
    """How the conversation shapes FAQ retrieval (see the module docstring for the score)."""

    history_weight: float = field(
        default=0.0,
        metadata={
            "help": "λ: weight of the earlier customer turns' score beside the new message's (0 = new message "
            "only); assistant-build-index --dialogs chooses it on the calibration dialogs"
        },
    )
    history_turns: int = field(
        default=1, metadata={"help": "earlier customer turns joined into the history query (>= 1)"}
    )
    entity_boost: float = field(
        default=2.0,
        metadata={
            "help": "added to the normalised score of the active entity's entries (times the entity's recency "
            "weight); > 1 ranks all of them above every other entity's entries; 0 ignores entities"
        },
    )
    entity_decay: float = field(
        default=0.5,
        metadata={"help": "recency weight per turn of an entity that is no longer active, in (0, 1]"},
    )
    dense_weight: float | None = field(
        default=None,
        metadata={"help": "hybrid indexes: the dense weight of this ranking (None = the index's own)"},
    )
    detect: bool = field(
        default=True,
        metadata={
            "help": "fit a knowledge-seeking turn detector on the calibration dialogs (the pipeline's first step)"
        },
    )
    embedding_features: bool = field(
        default=True,
        metadata={
            "help": "the detector also reads the message's sentence embedding (needs a dense/hybrid index)"
        },
    )

    def __post_init__(self) -> None:
        require(self.history_weight >= 0.0, f"history_weight must be >= 0, got {self.history_weight}")
        require(
            isinstance(self.history_turns, int) and self.history_turns >= 1,
            f"history_turns must be an integer >= 1, got {self.history_turns!r}",
        )
        require(self.entity_boost >= 0.0, f"entity_boost must be >= 0, got {self.entity_boost}")
        require(0.0 < self.entity_decay <= 1.0, f"entity_decay must be in (0, 1], got {self.entity_decay}")
        require(
            self.dense_weight is None or 0.0 <= self.dense_weight <= 1.0,
            f"dense_weight must be None or in [0, 1], got {self.dense_weight}",
        )


@dataclass(frozen=True)
class ConversationalSearch:
    """One conversational search.

    Attributes:
        hits: the conversational ranking, best first (``Hit.score`` is the combined score;
            ``bm25``/``dense`` are the new message's component scores).
        state: the entities of the conversation (``state.active`` is the active entity).
        plain_hits: the top 2 of the new message alone by the index's method (detection features).
        embedding: ``(dim,)`` sentence embedding of the new message, or ``None`` without a dense model.
    """

    hits: tuple[Hit, ...]
    state: EntityState
    plain_hits: tuple[Hit, ...]
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def entity(self) -> str | None:
        """The active entity's name, or ``None``."""
        return self.state.active


@dataclass
class _Prepared:
    """Everything a ranking needs that does not depend on the weights (see ``_prepare``)."""

    comp: dict[str, np.ndarray]  # the new message: name -> (Q, F)
    hist: dict[str, np.ndarray] | None  # the history query: name -> (Q, F)
    has_hist: np.ndarray  # (Q,) bool
    states: list[EntityState]
    embeddings: np.ndarray | None  # (Q, D)
    priors: np.ndarray | None = None  # (Q, F), filled by the first ranking


class ConversationalRetriever:
    """FAQ retrieval over a conversation (see the module docstring)."""

    def __init__(
        self,
        index: FaqIndex,
        config: ConversationConfig | None = None,
        *,
        encoder: EmbeddingCache | None = None,
    ) -> None:
        """
        Args:
            index: the FAQ index (calibrated or not: this class has its own calibration).
            config: settings (defaults if ``None``).
            encoder: an embedding cache of the index's dense model, for evaluations that meet the
                same texts often; ``None`` encodes every query afresh (servers).

        Raises:
            DataError: an entry's entity fields are malformed. RetrievalError: ``dense_weight`` set for
                a non-hybrid index.
        """
        self.index = index
        self.config = config or ConversationConfig()
        if self.config.dense_weight is not None and index.config.method != "hybrid":
            raise RetrievalError(
                f"dense_weight {self.config.dense_weight} needs a hybrid index, not {index.config.method!r}"
            )
        self._ranker = (
            index.derive(dense_weight=self.config.dense_weight)
            if self.config.dense_weight is not None
            else index
        )
        self.catalog = EntityCatalog.from_entries(index.entries)
        self._encoder = encoder
        self._confidence: dict[str, Any] | None = None
        self._confidence_model: cal.ConfidenceModel | None = None
        self.detector: TurnDetector | None = None
        n = len(index.entries)
        self._unscoped = np.zeros(n, dtype=bool)
        self._entity_rows: dict[str, list[int]] = {}
        self._domain_wide: dict[str, list[int]] = {}
        for j, entry in enumerate(index.entries):
            entity, domain, _ = entity_fields(entry)
            if entity is None:
                self._unscoped[j] = True
            elif entity == DOMAIN_WIDE:
                self._domain_wide.setdefault(domain, []).append(j)
            else:
                self._entity_rows.setdefault(self.catalog.name_of(entity), []).append(j)
        self._features = cal.FEATURES_BY_METHOD[index.config.method]

    # -- persistence
    @classmethod
    def from_index(cls, index: FaqIndex, encoder: EmbeddingCache | None = None) -> ConversationalRetriever:
        """The calibrated retriever stored with ``index`` (``index.conversation``).

        Raises:
            RetrievalError: the index was not calibrated on dialogs, or its stored settings are malformed.
        """
        data = index.conversation
        if data is None:
            raise RetrievalError(
                "this FAQ index has no conversational calibration; build it with "
                "assistant-build-index --faq FILE --dialogs LABELLED_DIALOGS"
            )
        where = "FAQ index manifest 'conversation'"
        try:
            config = dataclass_from_dict(ConversationConfig, data["config"], where)
            retriever = cls(index, config, encoder=encoder)
            confidence = data["confidence"]
            retriever._confidence_model = cal.ConfidenceModel.from_dict(confidence["model"], where)
            retriever._confidence = {k: v for k, v in confidence.items() if k != "model"}
            float(confidence["threshold"])
            if data.get("detector") is not None:
                retriever.detector = TurnDetector.from_dict(data["detector"], where)
        except RetrievalError:
            raise
        except (AssistantError, KeyError, TypeError, ValueError) as e:
            raise RetrievalError(f"{where}: malformed ({e!r}); rebuild the index") from e
        return retriever

    def to_dict(self) -> dict[str, Any]:
        """Settings and calibration, as stored in ``FaqIndex.conversation``."""
        return {
            "config": dataclasses.asdict(self.config),
            "confidence": None
            if self._confidence is None
            else {**self._confidence, "model": self._confidence_model.to_dict()},
            "detector": None if self.detector is None else self.detector.to_dict(),
        }

    # -- searching
    def search(self, history: Sequence[Turn], text: str, k: int = 5) -> ConversationalSearch:
        """Search for the customer's message ``text`` after the turns ``history`` (oldest first)."""
        return self.search_batch([(history, text)], k)[0]

    def search_batch(
        self, conversations: Sequence[tuple[Sequence[Turn], str]], k: int = 5
    ) -> list[ConversationalSearch]:
        """Search many ``(history, text)`` pairs; ``k`` hits each (fewer if the FAQ is smaller).

        Raises:
            DataError: a text is empty. RetrievalError: ``k`` < 1.
        """
        out: list[ConversationalSearch] = []
        for start in range(0, len(conversations), CHUNK):
            chunk = conversations[start : start + CHUNK]
            out += self._rank(self._prepare(chunk, self.config.history_weight > 0), k)
        return out

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._encoder is not None:
            return self._encoder.encode(texts)
        return self.index.encode_queries(texts)

    def _prepare(self, conversations: Sequence[tuple[Sequence[Turn], str]], with_history: bool) -> _Prepared:
        texts = []
        for history, text in conversations:
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"the customer's message must be a non-empty string, got {text!r}")
            texts.append(text.strip())
        dense = "dense" in self.index.config.components
        embeddings = self._encode(texts) if dense else None
        comp = self.index.component_scores(texts, query_embeddings=embeddings)
        hist, has_hist = None, np.zeros(len(texts), dtype=bool)
        if with_history:
            joined = []
            for i, (history, text) in enumerate(conversations):
                earlier = [t.text for t in history if t.role == "customer"][-self.config.history_turns :]
                has_hist[i] = bool(earlier)
                joined.append(" ".join(earlier) if earlier else text.strip())
            hist = self.index.component_scores(
                joined, query_embeddings=self._encode(joined) if dense else None
            )
        states = [
            track_entities(self.catalog, (*history, Turn("customer", text)), self.config.entity_decay)
            for history, text in conversations
        ]
        return _Prepared(comp, hist, has_hist, states, embeddings)

    def _priors(self, states: Sequence[EntityState]) -> np.ndarray:
        """``(Q, F)`` entry priors in [0, 1] (see the module docstring)."""
        priors = np.zeros((len(states), len(self.index.entries)), dtype=np.float64)
        for q, state in enumerate(states):
            if state.active is None and state.domain is None:
                continue
            for entity, weight in state.weights.items():
                priors[q, self._entity_rows.get(entity, [])] = weight
            priors[q, self._unscoped] = 1.0
            priors[q, self._domain_wide.get(state.domain, [])] = 1.0
        return priors

    def _rank(
        self,
        prep: _Prepared,
        k: int,
        *,
        ranker: FaqIndex | None = None,
        history_weight: float | None = None,
    ) -> list[ConversationalSearch]:
        if not isinstance(k, int) or k < 1:
            raise RetrievalError(f"k must be a positive integer, got {k!r}")
        ranker = ranker or self._ranker
        lam = self.config.history_weight if history_weight is None else history_weight
        fused = ranker.fuse(prep.comp)  # (Q, F)
        score = _minmax(fused)
        if lam > 0:
            if prep.hist is None:
                raise RetrievalError("internal: a history weight needs the history scores")
            h = prep.has_hist[:, None].astype(np.float64)
            score = (score + lam * h * _minmax(ranker.fuse(prep.hist))) / (1.0 + lam * h)
        if self.config.entity_boost > 0:
            if prep.priors is None:
                prep.priors = self._priors(prep.states)
            score = score + self.config.entity_boost * prep.priors
        top = np.argsort(-score, axis=1, kind="stable")[:, :k]
        plain_top = np.argsort(-fused, axis=1, kind="stable")[:, :2]
        bm25, dense = prep.comp.get("bm25"), prep.comp.get("dense")

        def hit(q: int, j: int, value: float) -> Hit:
            return Hit(
                self.index.entries[j].id,
                float(value),
                self.index.entries[j],
                bm25=None if bm25 is None else float(bm25[q, j]),
                dense=None if dense is None else float(dense[q, j]),
            )

        return [
            ConversationalSearch(
                hits=tuple(hit(q, j, score[q, j]) for j in top[q]),
                state=prep.states[q],
                plain_hits=tuple(hit(q, j, fused[q, j]) for j in plain_top[q]),
                embedding=None if prep.embeddings is None else prep.embeddings[q],
            )
            for q in range(len(prep.states))
        ]

    # -- features and decisions
    def confidence_feature_names(self) -> tuple[str, ...]:
        return (*self._features, "entity_active")

    def confidence_features(self, searches: Sequence[ConversationalSearch]) -> np.ndarray:
        """``(n, n_features)``: the hit-list features of each search's hits, and "an entity is active"."""
        return np.stack(
            [
                np.append(cal.hit_features(s.hits, self._features), 1.0 if s.state.active else 0.0)
                for s in searches
            ]
        )

    def detection_feature_names(self) -> tuple[str, ...]:
        names = [f"message_{n}" for n in self._features] + list(self.confidence_feature_names())
        if self._uses_embedding():
            dim = self.index._embeddings.shape[1]
            names += [f"embedding_{i}" for i in range(dim)]
        return tuple(names)

    def _uses_embedding(self) -> bool:
        return self.config.embedding_features and "dense" in self.index.config.components

    def detection_features(self, searches: Sequence[ConversationalSearch]) -> np.ndarray:
        """``(n, n_features)``: the message's own hit-list features, :meth:`confidence_features`, and
        (with ``embedding_features``) the message's sentence embedding."""
        plain = np.stack([cal.hit_features(s.plain_hits, self._features) for s in searches])
        parts = [plain, self.confidence_features(searches)]
        if self._uses_embedding():
            parts.append(np.stack([s.embedding for s in searches]).astype(np.float64))
        return np.hstack(parts)

    @property
    def threshold(self) -> float | None:
        """The confidence threshold chosen by :meth:`calibrate`, or ``None`` when uncalibrated."""
        return None if self._confidence is None else float(self._confidence["threshold"])

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The stored confidence calibration (threshold, rule, report), or ``None``."""
        return self._confidence

    def confidences(self, searches: Sequence[ConversationalSearch]) -> np.ndarray:
        """Calibrated probability that each search's top hit answers its turn → ``(n,)``.

        Raises:
            RetrievalError: not calibrated.
        """
        if self._confidence_model is None:
            raise RetrievalError(
                "the conversational retriever is not calibrated; calibrate it on labelled dialogs "
                "(assistant-build-index --dialogs FILE)"
            )
        return self._confidence_model.predict(self.confidence_features(searches))

    def confidence(self, search: ConversationalSearch) -> float:
        """:meth:`confidences` of one search."""
        return float(self.confidences([search])[0])

    def knowledge_probabilities(self, searches: Sequence[ConversationalSearch]) -> np.ndarray:
        """The detector's probability that each turn is knowledge-seeking → ``(n,)``.

        Raises:
            RetrievalError: no detector was fitted.
        """
        if self.detector is None:
            raise RetrievalError("this conversational retriever has no knowledge-seeking detector")
        return self.detector.probabilities(self.detection_features(searches))

    def is_knowledge_seeking(self, search: ConversationalSearch) -> tuple[bool, float]:
        """``(decision, probability)`` of the detector for one search (see :meth:`knowledge_probabilities`)."""
        p = float(self.knowledge_probabilities([search])[0])
        return p >= self.detector.threshold, p

    # -- calibration
    def check_turns(self, turns: Sequence[KnowledgeTurn]) -> None:
        """Every knowledge id of ``turns`` must be an entry of the index.

        Raises:
            DataError: naming the turn's ``file:line`` and the unknown id; or no turns.
        """
        if not turns:
            raise DataError("conversational calibration needs at least one labelled dialog turn")
        known = {e.id for e in self.index.entries}
        for t in turns:
            for k in t.knowledge:
                if k not in known:
                    raise DataError(f"{t.where or t.id}: knowledge id {k!r} is not an entry of the FAQ index")

    def calibrate(
        self, turns: Sequence[KnowledgeTurn], *, searches: Sequence[ConversationalSearch] | None = None
    ) -> dict[str, Any]:
        """Fit the confidence and (with ``detect``) the detector on labelled turns; store them in the index.

        Args:
            turns: labelled dialog turns; need turns whose top hit is one of their ``knowledge`` ids
                and turns where it is not (or that used no FAQ entry); for the detector, turns with
                ``target`` true and false.
            searches: this retriever's searches of ``turns`` (k >= 2), to skip searching again.

        Returns:
            the report: counts, selection figures, the confidence threshold with its accept/handoff
            figures, and the detector's figures on these turns.

        Raises:
            DataError: unknown knowledge ids. RetrievalError: a class is missing.
        """
        self.check_turns(turns)
        if searches is None:
            searches = self.search_batch(
                [(t.history, t.text) for t in turns], k=min(10, len(self.index.entries))
            )
        elif len(searches) != len(turns):
            raise RetrievalError(f"calibrate() got {len(searches)} searches for {len(turns)} turns")
        in_scope = np.array([bool(t.knowledge) for t in turns])
        correct = np.array(
            [
                bool(t.knowledge) and s.hits[0].faq_id in t.knowledge
                for s, t in zip(searches, turns, strict=True)
            ]
        )
        if correct.all() or not correct.any():
            raise RetrievalError(
                "conversational calibration needs turns whose top hit is one of their knowledge ids and "
                f"turns where it is not (or that used no FAQ entry); got {int(correct.sum())} of {len(turns)} "
                "right. Add turns that need no FAQ entry (knowledge empty)"
            )
        names = self.confidence_feature_names()
        feats = self.confidence_features(searches)
        model = cal.fit_logistic(feats, correct, names)
        conf = model.predict(feats)
        threshold, rule, objective = cal.select_threshold(conf, in_scope, correct)
        report: dict[str, Any] = {
            "n_turns": len(turns),
            "n_faq_turns": int(in_scope.sum()),
            "n_knowledge_seeking": int(sum(t.target for t in turns)),
            **selection_metrics(searches, turns),
            "threshold": threshold,
            "rule": rule,
            "objective": objective,
            **cal.decision_metrics(conf, threshold, in_scope, correct),
        }
        self._confidence_model = model
        self._confidence = {"threshold": threshold, "rule": rule, "report": report}
        self.detector = None
        if self.config.detect:
            labels = np.array([t.target for t in turns])
            self.detector = fit_detector(
                self.detection_features(searches), labels, self.detection_feature_names()
            )
            report["detection"] = self.detector.report
        self.index.conversation = self.to_dict()
        self.index.calibration_dialogs = [knowledge_turn_to_json(t) for t in turns]
        return report

    def tune(self, turns: Sequence[KnowledgeTurn]) -> tuple[ConversationalRetriever, list[dict[str, Any]]]:
        """Choose ``history_weight`` (:data:`HISTORY_WEIGHTS`) and, for a hybrid index, ``dense_weight``
        (:data:`DENSE_WEIGHTS`) by hit@1 then MRR@5 on the turns that used FAQ entries.

        Returns:
            ``(a new, uncalibrated retriever with the best settings, one row per setting tried)``;
            ties go to the earlier setting (smaller history weight first).

        Raises:
            DataError: no turn used an FAQ entry, or unknown knowledge ids.
        """
        self.check_turns(turns)
        faq_turns = [t for t in turns if t.knowledge]
        if not faq_turns:
            raise DataError("tuning needs turns whose reference reply used FAQ entries (knowledge ids)")
        prep = self._prepare([(t.history, t.text) for t in faq_turns], with_history=True)
        weights = DENSE_WEIGHTS if self.index.config.method == "hybrid" else (None,)
        rows = []
        for lam in HISTORY_WEIGHTS:
            for w in weights:
                ranker = self.index if w is None else self.index.derive(dense_weight=w)
                searches = self._rank(prep, 5, ranker=ranker, history_weight=lam)
                rows.append(
                    {"history_weight": lam, "dense_weight": w, **selection_metrics(searches, faq_turns)}
                )
        best = max(rows, key=lambda r: (r["hit@1"], r["mrr@5"]))
        config = dataclasses.replace(
            self.config, history_weight=best["history_weight"], dense_weight=best["dense_weight"]
        )
        return ConversationalRetriever(self.index, config, encoder=self._encoder), rows


def selection_metrics(
    searches: Sequence[ConversationalSearch], turns: Sequence[KnowledgeTurn]
) -> dict[str, float | None]:
    """hit@1, hit@5 and MRR@5 over the turns that used FAQ entries (DSTC's R@1, R@5, MRR@5).

    A turn's rank is that of its first hit among its ``knowledge`` ids; beyond 5 it counts 0 in MRR@5.
    """
    ranks = []
    for s, t in zip(searches, turns, strict=True):
        if not t.knowledge:
            continue
        ids = [h.faq_id for h in s.hits[:5]]
        ranks.append(next((r for r, i in enumerate(ids, start=1) if i in t.knowledge), None))
    if not ranks:
        return {"n_selection": 0, "hit@1": None, "hit@5": None, "mrr@5": None}
    return {
        "n_selection": len(ranks),
        "hit@1": float(np.mean([r == 1 for r in ranks])),
        "hit@5": float(np.mean([r is not None for r in ranks])),
        "mrr@5": float(np.mean([1.0 / r if r else 0.0 for r in ranks])),
    }


def entity_accuracy(
    searches: Sequence[ConversationalSearch],
    turns: Sequence[KnowledgeTurn],
    catalog: EntityCatalog,
    index: FaqIndex,
) -> float | None:
    """Share of the turns that used entity-scoped FAQ entries whose active entity is one of theirs
    (``None`` when no turn did)."""
    by_id = {e.id: e for e in index.entries}
    hits = []
    for s, t in zip(searches, turns, strict=True):
        gold = {by_id[k].meta.get("entity") for k in t.knowledge} - {None, DOMAIN_WIDE}
        if gold:
            hits.append(s.entity in {catalog.name_of(g) for g in gold})
    return float(np.mean(hits)) if hits else None


def recalibrate(
    index: FaqIndex, conversation: dict[str, Any], dialogs: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Calibrate a rebuilt index's conversational retrieval again, with its stored settings and dialogs.

    Knowledge ids whose entries left the FAQ are dropped from their turns (such a turn then needs
    no FAQ entry), counted in the report as ``relabelled_turns``.

    Raises:
        RetrievalError: the stored settings or dialogs are malformed, or calibration fails.
    """
    where = "FAQ index calibration-dialogs.jsonl"
    try:
        config = dataclass_from_dict(
            ConversationConfig, conversation["config"], "FAQ index manifest 'conversation'"
        )
        turns = [parse_knowledge_turn(obj, f"{where}:{i}") for i, obj in enumerate(dialogs, start=1)]
    except (AssistantError, KeyError, TypeError) as e:
        raise RetrievalError(f"cannot recalibrate the conversational retrieval: {e}") from e
    ids = {e.id for e in index.entries}
    relabelled = 0
    kept = []
    for t in turns:
        knowledge = tuple(k for k in t.knowledge if k in ids)
        relabelled += knowledge != t.knowledge
        kept.append(dataclasses.replace(t, knowledge=knowledge))
    if config.dense_weight is not None and index.config.method != "hybrid":
        config = dataclasses.replace(config, dense_weight=None)
    report = ConversationalRetriever(index, config).calibrate(kept)
    report["relabelled_turns"] = relabelled
    return report


def detection_report(
    probabilities: np.ndarray, threshold: float, labels: np.ndarray
) -> dict[str, float | None]:
    """Detection precision/recall/F1 at ``threshold`` and the AUROC of ``probabilities``."""
    labels = np.asarray(labels, dtype=bool)
    return {
        **detection_metrics(np.asarray(probabilities) >= threshold, labels),
        "auroc": cal.auroc(probabilities, labels),
    }
