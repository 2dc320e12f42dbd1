"""Conversation-aware retrieval: entity-first ranking, history weight, calibration and detection,
persistence and rebuild, the pipeline's first routing step, and the entity in the server's stored turn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conversation_data import ENTRIES, booked, labelled_turns

from assistant.data import FaqEntry, Query, Turn, faq_entry_to_json
from assistant.errors import DataError, RetrievalError
from assistant.pipeline import Pipeline
from assistant.retrieval.conversational import (
    HISTORY_WEIGHTS,
    ConversationalRetriever,
    ConversationConfig,
    selection_metrics,
)
from assistant.retrieval.detection import detection_metrics, fit_detector
from assistant.retrieval.index import FaqIndex, RetrieverConfig
from assistant.retrieval.labels import KnowledgeTurn
from assistant.retrieval.rebuild import rebuild_index


@pytest.fixture(scope="module")
def index() -> FaqIndex:
    return FaqIndex.build(ENTRIES, RetrieverConfig(method="bm25", mask_entity_names=True))


@pytest.fixture(scope="module")
def calibrated(index: FaqIndex) -> ConversationalRetriever:
    retriever = ConversationalRetriever(index)
    retriever.calibrate(labelled_turns())
    return retriever


def test_the_active_entitys_entry_ranks_first(index: FaqIndex) -> None:
    retriever = ConversationalRetriever(index)
    search = retriever.search(booked("Hobsons House"), "Is there parking?")
    assert search.entity == "HOBSONS HOUSE" and search.hits[0].faq_id == "hob-park"
    search = retriever.search(
        [*booked("Hobsons House"), Turn("customer", "And the avalon?"), Turn("agent", "Also nice.")],
        "parking?",
    )
    assert search.entity == "AVALON" and search.hits[0].faq_id == "ava-park"
    # every Avalon entry (and the domain-wide one) before any other entity's entry
    top = [h.faq_id for h in search.hits]
    assert set(top[:4]) == {"ava-park", "ava-wifi", "ava-pets", "hotel-cancel"}
    # the restaurant named last: its parking entry, not a hotel's
    search = retriever.search(
        [*booked("Avalon"), Turn("customer", "Dinner at the missing sock?"), Turn("agent", "Booked.")],
        "Is there parking?",
    )
    assert search.entity == "THE MISSING SOCK" and search.hits[0].faq_id == "sock-park"


def test_domain_wide_entries_rank_with_the_active_entity(index: FaqIndex) -> None:
    search = ConversationalRetriever(index).search(booked("Acorn Guest House"), "Can I cancel for free?")
    assert search.hits[0].faq_id == "hotel-cancel" and search.state.domain == "hotel"
    assert "sock-alcohol" not in [h.faq_id for h in search.hits[:5]]


def test_without_a_mentioned_entity_the_ranking_is_the_indexs(index: FaqIndex) -> None:
    search = ConversationalRetriever(index).search([Turn("customer", "hello")], "Does it serve alcohol?")
    assert search.entity is None
    assert [h.faq_id for h in search.hits] == [h.faq_id for h in index.search("Does it serve alcohol?")]


FLAT = [
    FaqEntry("pw", "How do I reset my password?", "Use the link.", ("forgot my password", "password reset")),
    FaqEntry("refund", "How do I get a refund?", "Within 5 days.", ("money back", "refund for an item")),
    FaqEntry("ship", "Where is my order?", "Track it online.", ("track my parcel", "package not arrived")),
    FaqEntry("hours", "When are you open?", "8 to 8.", ("opening hours", "open on sunday")),
]


def test_an_faq_without_entities_behaves_exactly_as_before() -> None:
    plain = FaqIndex.build(FLAT, RetrieverConfig(method="bm25"))
    masked = FaqIndex.build(FLAT, RetrieverConfig(method="bm25", mask_entity_names=True))
    assert masked.texts == plain.texts  # nothing to mask
    retriever = ConversationalRetriever(plain)
    assert len(retriever.catalog) == 0
    history = [Turn("customer", "my parcel from the refund"), Turn("agent", "I see.")]
    for text in ["forgot password", "money back please", "where is my parcel", "open on sunday?"]:
        search = retriever.search(history, text, k=4)
        assert search.entity is None
        assert [h.faq_id for h in search.hits] == [h.faq_id for h in plain.search(text, k=4)]
    # the pipeline of an index calibrated on queries does not use the conversational route at all
    plain.calibrate(
        [Query("reset password", "pw"), Query("money back", "refund"), Query("tell me a joke", None)]
    )
    pipeline = Pipeline(plain, None)
    assert pipeline.conversational is None
    reply = pipeline.respond(history, "forgot my password")
    assert (reply.source, reply.faq_id, reply.entity) == ("faq", "pw", None)


def test_history_weight_zero_ignores_history_and_a_weight_uses_it(index: FaqIndex) -> None:
    history = [Turn("customer", "can I bring my dog"), Turn("agent", "Which hotel?")]

    def scores(weight: float, turns: list[Turn]) -> dict[str, float]:
        retriever = ConversationalRetriever(index, ConversationConfig(history_weight=weight))
        return {h.faq_id: h.score for h in retriever.search(turns, "and is there wifi", k=len(ENTRIES)).hits}

    without = scores(0.0, history)
    assert without == scores(0.0, [])  # weight 0: the history changes nothing
    assert without["hob-wifi"] == 1.0 and without["hob-pets"] == without["hob-park"] == 0.0
    half = scores(0.5, history)  # the history's pets entries move up, the new question still wins
    assert half["hob-wifi"] > half["hob-pets"] > half["hob-park"]
    assert half["hob-wifi"] == pytest.approx(1 / 1.5) and half["hob-pets"] == pytest.approx(0.5 / 1.5)
    assert scores(1.0, history)["hob-pets"] == pytest.approx(
        scores(1.0, history)["hob-wifi"]
    )  # at most a tie


def test_tune_tries_every_history_weight_and_keeps_the_best(index: FaqIndex) -> None:
    tuned, rows = ConversationalRetriever(index).tune(labelled_turns())
    assert [r["history_weight"] for r in rows] == list(HISTORY_WEIGHTS)  # bm25: no dense weight grid
    best = max(rows, key=lambda r: (r["hit@1"], r["mrr@5"]))
    assert tuned.config.history_weight == best["history_weight"] and tuned.threshold is None
    with pytest.raises(DataError, match="tuning needs turns whose reference reply used FAQ entries"):
        ConversationalRetriever(index).tune([t for t in labelled_turns() if not t.knowledge])


def test_selection_metrics_known_values(index: FaqIndex) -> None:
    retriever = ConversationalRetriever(index)
    turns = [
        KnowledgeTurn("a", tuple(booked("Avalon")), "parking?", True, ("ava-park",)),
        KnowledgeTurn("b", tuple(booked("Avalon")), "parking?", True, ("ava-wifi", "nope-x")),
        KnowledgeTurn("c", (), "hello", False),
    ]
    searches = retriever.search_batch([(t.history, t.text) for t in turns])
    rank_b = [h.faq_id for h in searches[1].hits].index("ava-wifi") + 1
    assert rank_b > 1
    metrics = selection_metrics(searches, turns)
    assert metrics["n_selection"] == 2 and metrics["hit@1"] == 0.5
    assert metrics["mrr@5"] == pytest.approx((1 + (1 / rank_b if rank_b <= 5 else 0)) / 2)


def test_calibration_fits_confidence_and_detector(calibrated: ConversationalRetriever) -> None:
    report = calibrated.calibration["report"]
    assert report["n_turns"] == len(labelled_turns()) and report["n_faq_turns"] == 18
    assert 0.0 < calibrated.threshold < 1.0
    assert report["detection"]["f1"] > 0.9  # separable on its own training turns
    task = calibrated.search(booked("Avalon"), "Book it for two nights please")
    question = calibrated.search(booked("Avalon"), "is there parking?")
    assert calibrated.is_knowledge_seeking(question)[0] and not calibrated.is_knowledge_seeking(task)[0]
    assert calibrated.confidence(question) >= calibrated.threshold  # the right entry, answered


def test_calibration_errors_name_the_problem(index: FaqIndex) -> None:
    retriever = ConversationalRetriever(index)
    bad = KnowledgeTurn("x", (), "parking?", True, ("gone",), where="d.jsonl:4")
    with pytest.raises(DataError, match="d.jsonl:4: knowledge id 'gone' is not an entry of the FAQ index"):
        retriever.calibrate([bad])
    only_right = [t for t in labelled_turns() if t.knowledge][:1]
    with pytest.raises(
        RetrievalError, match="needs turns whose top hit is one of their knowledge ids and turns"
    ):
        retriever.calibrate(only_right)
    with pytest.raises(RetrievalError, match="no conversational calibration"):
        ConversationalRetriever.from_index(FaqIndex.build(FLAT, RetrieverConfig(method="bm25")))


def test_save_load_round_trip_and_rebuild_recalibrate(
    calibrated: ConversationalRetriever, tmp_path: Path
) -> None:
    directory = tmp_path / "index"
    calibrated.index.save(directory)
    assert (directory / "calibration-dialogs.jsonl").is_file()
    loaded = ConversationalRetriever.from_index(FaqIndex.load(directory))
    assert loaded.config == calibrated.config and loaded.threshold == calibrated.threshold
    pairs = [(booked("Avalon"), "parking?"), (booked("Acorn"), "Thanks, bye")]
    a, b = calibrated.search_batch(pairs), loaded.search_batch(pairs)
    assert np.allclose(calibrated.confidences(a), loaded.confidences(b))
    assert np.allclose(calibrated.knowledge_probabilities(a), loaded.knowledge_probabilities(b))
    # the FAQ loses an entry: the rebuild calibrates again on the stored dialogs, without that id
    faq = tmp_path / "faq.jsonl"
    faq.write_text("".join(json.dumps(faq_entry_to_json(e)) + "\n" for e in ENTRIES if e.id != "aco-pets"))
    rebuilt = rebuild_index(directory, faq)
    assert rebuilt.conversation["confidence"]["report"]["n_faq_turns"] == 16
    assert ConversationalRetriever.from_index(FaqIndex.load(directory)).threshold is not None


def test_detector_threshold_calibration_has_the_known_answer() -> None:
    features = np.array([[0.1], [0.2], [0.3], [0.7], [0.8], [0.9]])
    labels = np.array([False, False, False, True, True, True])
    detector = fit_detector(features, labels, ["x"])
    p = detector.probabilities(features)
    assert np.all(np.diff(p) > 0)
    # candidates are midpoints of consecutive probabilities; the first maximum of Youden's J is the
    # midpoint between the highest negative and the lowest positive
    assert detector.threshold == pytest.approx((p[2] + p[3]) / 2)
    assert detector.report["f1"] == 1.0 and detector.report["auroc"] == 1.0
    assert detection_metrics(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])) == {
        "precision": 0.5,
        "recall": 0.5,
        "f1": 0.5,
        "accuracy": 0.5,
    }
    with pytest.raises(RetrievalError, match="got 0 knowledge-seeking of 3"):
        fit_detector(features[:3], labels[:3], ["x"])
    with pytest.raises(RetrievalError, match="takes 1 features per turn"):
        detector.probabilities(np.zeros((2, 3)))


def test_pipeline_detects_then_answers_with_the_active_entity(
    calibrated: ConversationalRetriever, echo_generator
) -> None:
    generator = echo_generator
    pipeline = Pipeline(calibrated.index, generator)
    assert pipeline.conversational is not None
    reply = pipeline.respond(booked("Hobsons House"), "Is there parking?")
    assert (reply.source, reply.faq_id, reply.entity) == ("faq", "hob-park", "HOBSONS HOUSE")
    assert reply.text == "Hobsons House: park answer." and generator.requests == []
    reply = pipeline.respond(booked("Hobsons House"), "Book it for two nights please")
    assert (reply.source, reply.faq_id, reply.entity) == ("model", None, "HOBSONS HOUSE")
    assert len(generator.requests) == 1 and reply.hits  # the FAQ was searched, then skipped


def test_the_server_stores_the_active_entity(
    make_app, calibrated: ConversationalRetriever, echo_generator
) -> None:
    client = make_app(use_pipeline=Pipeline(calibrated.index, echo_generator)).test_client()
    first = client.post("/v1/chat", json={"conversation_id": "c-ent", "text": "I booked the Avalon."})
    assert first.status_code == 200 and first.json["replies"][0]["entity"] == "AVALON"
    second = client.post("/v1/chat", json={"conversation_id": "c-ent", "text": "Can I bring my dog?"})
    assert second.json["replies"][0] == {
        "text": "Avalon: pets answer.",
        "source": "faq",
        "faq_id": "ava-pets",
        "entity": "AVALON",
    }
    turns = client.get("/v1/conversations/c-ent").json["turns"]
    assert [t["entity"] for t in turns] == [None, "AVALON", None, "AVALON"]
