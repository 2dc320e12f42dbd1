"""Tests for assistant/generators/baseline.py: retrieval on hand-made dialogs, the vote, save/load and its checks."""

from __future__ import annotations

import json
import shutil

import pytest

from assistant.data import Dialog, Turn
from assistant.errors import CheckpointError, ConfigError, ModelError
from assistant.generators.base import GenerationRequest
from assistant.generators.baseline import (
    BaselineConfig,
    RetrievalBaseline,
    load_retrieval_baseline,
    retrieval_key,
)
from assistant.generators.loader import load_generator


def _dialog(i: int, *texts: str, domain: str = "bank") -> Dialog:
    roles = ("customer", "agent")
    return Dialog(
        id=f"d{i}",
        turns=tuple(Turn(roles[j % 2], t) for j, t in enumerate(texts)),
        meta={"domains": [domain]},
    )


DIALOGS = [
    _dialog(1, "I lost my credit card yesterday", "I have blocked your card; a new one is on its way."),
    _dialog(
        2, "What is the weather tomorrow in Paris?", "Tomorrow in Paris it will be sunny.", domain="weather"
    ),
    _dialog(
        3,
        "I want to book a table for two at eight",
        "Your table for two at 8 pm is booked.",
        domain="restaurant",
    ),
    _dialog(
        4, "How do I reset my online banking password?", "Use the 'forgot password' link on the login page."
    ),
]

PARAPHRASES = {
    "my credit card got lost": "I have blocked your card; a new one is on its way.",
    "weather forecast for Paris tomorrow please": "Tomorrow in Paris it will be sunny.",
    "could you book a table for two people": "Your table for two at 8 pm is booked.",
    "I forgot my banking password, how to reset it?": "Use the 'forgot password' link on the login page.",
}


def _requests(texts):
    return [GenerationRequest(context=(Turn("customer", t),)) for t in texts]


def test_paraphrased_contexts_get_the_matching_reply():
    model = RetrievalBaseline.build(DIALOGS)
    out = model.generate(_requests(PARAPHRASES))
    assert [g.text for g in out] == list(PARAPHRASES.values())
    assert all(0.0 < g.confidence <= 1.0 for g in out)
    assert model.generate([]) == []
    assert not model.supports_perplexity


def test_multi_turn_context_and_key():
    config = BaselineConfig(max_context_turns=2, customer_weight=3)
    context = (Turn("customer", "old"), Turn("agent", "Your name?"), Turn("customer", "Ann"))
    assert retrieval_key(context, config) == "Your name? Ann Ann Ann"
    assert retrieval_key((Turn("agent", "hi"),), config) == "hi"  # no customer turn: no weight
    dialogs = [
        _dialog(5, "I lost my card", "What is your name?", "Ann Smith", "Thanks Ann, the card is blocked."),
        _dialog(6, "I want a new card", "What is your name?", "Bob Jones", "Thanks Bob, a card is ordered."),
    ]
    model = RetrievalBaseline.build(dialogs, BaselineConfig(max_context_turns=3, top_k=1))
    context = (
        Turn("customer", "my card was lost"),
        Turn("agent", "What is your name?"),
        Turn("customer", "Ann"),
    )
    assert model.generate([GenerationRequest(context=context)])[0].text == "Thanks Ann, the card is blocked."


def test_top_k_vote_pools_identical_replies():
    block = "Your card is blocked."
    dialogs = [
        _dialog(10 + i, text, block)
        for i, text in enumerate(["card lost today", "lost card again", "my card lost"])
    ]
    dialogs.append(_dialog(20, "card lost abroad", "Call us from abroad on +44 20 0000."))
    dialogs += [
        _dialog(30 + i, text, f"reply {i}")
        for i, text in enumerate(["weather in Rome", "book a taxi", "table for two", "opening hours"])
    ]
    query = _requests(["card lost abroad"])
    nearest = RetrievalBaseline.build(dialogs, BaselineConfig(top_k=1)).generate(query)[0]
    assert nearest.text == "Call us from abroad on +44 20 0000." and nearest.confidence == 1.0
    voted = RetrievalBaseline.build(dialogs, BaselineConfig(top_k=4)).generate(query)[0]
    assert voted.text == block
    assert 0.5 < voted.confidence < 1.0  # three of the four neighbours agree, the best one does not


def test_no_matching_term_gives_the_most_frequent_reply_with_zero_confidence():
    dialogs = DIALOGS + [_dialog(9, "hello there", "Tomorrow in Paris it will be sunny.")]
    model = RetrievalBaseline.build(dialogs)
    for request in [*_requests(["zzzz qqqq"]), GenerationRequest(context=())]:
        out = model.generate([request])[0]
        assert out.text == "Tomorrow in Paris it will be sunny." and out.confidence == 0.0


def test_config_and_build_errors():
    with pytest.raises(ConfigError, match="top_k must be an integer >= 1, got 0"):
        BaselineConfig(top_k=0)
    with pytest.raises(ConfigError, match="b must be in \\[0, 1\\]"):
        BaselineConfig(b=1.5)
    with pytest.raises(ModelError, match="hold no agent turn"):
        RetrievalBaseline.build([Dialog(id="x", turns=(Turn("customer", "hi"),))])


def test_save_load_round_trip(tmp_path):
    model = RetrievalBaseline.build(DIALOGS, data=[{"role": "train", "path": "mem", "sha256": "0" * 64}])
    model.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "assistant.json").read_text())
    assert manifest["kind"] == "retrieval-baseline" and manifest["format_version"] == 1
    assert manifest["documents"] == 4 and manifest["data"][0]["role"] == "train"
    assert {"bm25s", "PyStemmer"} <= set(manifest["versions"])
    requests = _requests([*PARAPHRASES, "zzzz"])
    loaded = load_generator(tmp_path / "m")
    assert isinstance(loaded, RetrievalBaseline)
    assert loaded.generate(requests) == model.generate(requests)
    assert load_retrieval_baseline(tmp_path / "m", top_k=1).config.top_k == 1
    model.save(tmp_path / "m")  # overwriting a baseline directory is allowed
    assert load_generator(tmp_path / "m").generate(requests) == model.generate(requests)


def test_bad_model_directories_fail_clearly(tmp_path):
    good = RetrievalBaseline.build(DIALOGS).save(tmp_path / "good")

    def copy(name):
        return shutil.copytree(good, tmp_path / name)

    with pytest.raises(CheckpointError, match="not a directory"):
        load_retrieval_baseline(tmp_path / "missing")
    with pytest.raises(ConfigError, match="does not accept option\\(s\\) \\['beam_size'\\]"):
        load_retrieval_baseline(good, beam_size=4)
    with pytest.raises(ConfigError, match="top_k must be"):
        load_retrieval_baseline(good, top_k=0)

    edited = copy("edited")
    (edited / "replies.jsonl").write_text('{"reply": "x", "dialog_id": "d", "turn_index": 1}\n')
    with pytest.raises(CheckpointError, match="replies.jsonl: sha256 .* differs from the manifest"):
        load_retrieval_baseline(edited)

    incomplete = copy("incomplete")
    (incomplete / "bm25" / "vocab.index.json").unlink()
    with pytest.raises(CheckpointError, match="missing bm25/vocab.index.json"):
        load_retrieval_baseline(incomplete)

    for name, change, message in [
        ("kind", {"kind": "lstm"}, "kind is 'lstm', expected 'retrieval-baseline'"),
        ("version", {"format_version": 7}, "format_version 7 is not supported"),
        ("config", {"config": {"top_k": 0}}, "top_k must be an integer >= 1"),
        ("field", {"config": {"depth": 3}}, "unknown BaselineConfig fields \\['depth'\\]"),
        ("documents", {"documents": 5}, "4 replies, but the manifest records 5 documents"),
    ]:
        broken = copy(name)
        manifest = json.loads((broken / "assistant.json").read_text())
        manifest.update(change)
        (broken / "assistant.json").write_text(json.dumps(manifest))
        with pytest.raises(CheckpointError, match=message):
            load_retrieval_baseline(broken)

    other = tmp_path / "other"
    other.mkdir()
    (other / "assistant.json").write_text(json.dumps({"kind": "lstm"}))
    with pytest.raises(CheckpointError, match="exists and is not empty \\(manifest kind 'lstm'\\)"):
        RetrievalBaseline.build(DIALOGS).save(other)
