"""Tests for assistant/data.py: canonical JSONL readers, validation errors, examples, context format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.data import Turn, read_dialogs, read_faq, read_queries
from assistant.errors import DataError
from assistant.model_input import build_examples, format_context


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


DIALOG = {
    "id": "d1",
    "turns": [
        {"role": "customer", "text": "Hi, where is my order?"},
        {"role": "agent", "text": "Could I get the order number?"},
        {"role": "customer", "text": "PC-100234"},
        {"role": "agent", "text": "It ships tomorrow."},
    ],
    "meta": {"domains": ["ship"]},
}


def test_read_dialogs_roundtrip(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [DIALOG, "", {**DIALOG, "id": "d2"}])
    dialogs = read_dialogs(path)
    assert [d.id for d in dialogs] == ["d1", "d2"]
    assert dialogs[0].turns[1] == Turn("agent", "Could I get the order number?")
    assert dialogs[0].meta == {"domains": ["ship"]}


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("{not json", r"d\.jsonl:2: not valid JSON"),
        ([1, 2], r"d\.jsonl:2: expected a JSON object, got list"),
        ({"turns": DIALOG["turns"]}, r"d\.jsonl:2: field 'id' must be a non-empty string, got missing"),
        ({"id": "x", "turns": []}, r"d\.jsonl:2: field 'turns' must be a non-empty list"),
        (
            {"id": "x", "turns": [{"role": "bot", "text": "hi"}]},
            r"d\.jsonl:2: turns\[0\]: field 'role' must be one of \['customer', 'agent'\], got 'bot'",
        ),
        (
            {"id": "x", "turns": [{"role": "agent", "text": "  "}]},
            r"d\.jsonl:2: turns\[0\]: field 'text' must be a non-empty string",
        ),
        ({"id": "x", "turns": DIALOG["turns"], "meta": []}, r"d\.jsonl:2: field 'meta' must be an object"),
        ({**DIALOG}, r"d\.jsonl:2: duplicate dialog id 'd1' \(first on line 1\)"),
    ],
)
def test_malformed_dialog_line_names_file_line_and_field(tmp_path, row, expected):
    path = write_jsonl(tmp_path / "d.jsonl", [DIALOG, row])
    with pytest.raises(DataError, match=expected):
        read_dialogs(path)


def test_missing_empty_and_non_utf8_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_dialogs(tmp_path / "absent.jsonl")
    with pytest.raises(DataError, match="no FAQ entries"):
        read_faq(write_jsonl(tmp_path / "empty.jsonl", [""]))
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes('{"text": "caf\xe9", "faq_id": null}\n'.encode("latin-1"))
    with pytest.raises(DataError, match="not valid UTF-8"):
        read_queries(bad)


def test_read_faq_validates_examples_and_duplicates(tmp_path):
    good = {
        "id": "f1",
        "question": "How do I reset my password?",
        "answer": "Use the reset link.",
        "examples": ["forgot password", " "],
    }
    entries = read_faq(write_jsonl(tmp_path / "faq.jsonl", [good]))
    assert entries[0].examples == ("forgot password",)
    with pytest.raises(DataError, match=r"faq\.jsonl:2: field 'examples' must be a list of strings"):
        read_faq(write_jsonl(tmp_path / "faq.jsonl", [good, {**good, "id": "f2", "examples": "nope"}]))
    with pytest.raises(DataError, match=r"faq\.jsonl:2: duplicate FAQ id 'f1'"):
        read_faq(write_jsonl(tmp_path / "faq.jsonl", [good, good]))
    with pytest.raises(DataError, match=r"faq\.jsonl:1: field 'answer' must be a non-empty string"):
        read_faq(write_jsonl(tmp_path / "faq.jsonl", [{**good, "answer": 3}]))


def test_read_queries_checks_faq_ids(tmp_path):
    path = write_jsonl(
        tmp_path / "q.jsonl", [{"text": "reset pw", "faq_id": "f1"}, {"text": "weather?", "faq_id": None}]
    )
    queries = read_queries(path, faq_ids=["f1"])
    assert [q.faq_id for q in queries] == ["f1", None]
    with pytest.raises(DataError, match=r"q\.jsonl:1: faq_id 'f1' is not an id of the FAQ file"):
        read_queries(path, faq_ids=["f2"])
    with pytest.raises(DataError, match=r"q2\.jsonl:1: field 'faq_id' is missing"):
        read_queries(write_jsonl(tmp_path / "q2.jsonl", [{"text": "hi"}]))


def test_build_examples_one_per_agent_turn_with_bounded_context(tmp_path):
    dialogs = read_dialogs(write_jsonl(tmp_path / "d.jsonl", [DIALOG]))
    examples = build_examples(dialogs, max_context_turns=2)
    assert [e.turn_index for e in examples] == [1, 3]
    assert examples[0].context == (Turn("customer", "Hi, where is my order?"),)
    assert [t.text for t in examples[1].context] == ["Could I get the order number?", "PC-100234"]
    assert examples[1].target == "It ships tomorrow."
    with pytest.raises(DataError, match="max_context_turns must be >= 1, got 0"):
        build_examples(dialogs, max_context_turns=0)


def test_format_context_puts_grounding_last():
    turns = (Turn("customer", "Where is it?"), Turn("agent", "Order number?"), Turn("customer", "PC-1"))
    assert format_context(turns) == "<customer> Where is it? <agent> Order number? <customer> PC-1"
    assert (
        format_context(turns[:1], grounding=" Ships in 2 days. ")
        == "<customer> Where is it? <faq> Ships in 2 days."
    )
    assert format_context(()) == ""


def test_shared_star_file_reads(shared_data):
    dialogs = read_dialogs(shared_data / "dialogs" / "star" / "valid.jsonl")
    assert len(dialogs) == 300
    assert all(d.turns for d in dialogs)
