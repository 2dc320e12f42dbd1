"""Knowledge-labelled dialogs: the reader, its file:line:field errors, folds by conversation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.data import Turn
from assistant.errors import ConfigError, DataError
from assistant.retrieval.labels import (
    KnowledgeTurn,
    fold_of,
    knowledge_turn_to_json,
    parse_knowledge_turn,
    read_knowledge_turns,
)

GOOD = {
    "id": "d1",
    "turns": [
        {"role": "customer", "text": "I booked the Hobsons House."},
        {"role": "agent", "text": "Lovely."},
        {"role": "customer", "text": "Do they have parking?"},
        {"role": "agent", "text": "Yes, free.", "knowledge": ["hob-park"], "review_knowledge": ["r1"]},
    ],
    "meta": {"target": True},
}


def write(path: Path, rows: list) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def test_reads_history_message_labels_and_reply(tmp_path: Path) -> None:
    open_turn = {
        "id": "d2",
        "turns": [{"role": "customer", "text": "Book it please"}],
        "meta": {"target": False},
    }
    review_only = {
        "id": "d3",
        "turns": [
            {"role": "customer", "text": "Is it quiet?"},
            {"role": "agent", "text": "Reviews say so.", "knowledge": []},
        ],
        "meta": {"target": True},
    }
    turns = read_knowledge_turns(
        write(tmp_path / "d.jsonl", [GOOD, "", open_turn, review_only]), faq_ids=["hob-park"]
    )
    first, second, third = turns
    assert first.history == (Turn("customer", "I booked the Hobsons House."), Turn("agent", "Lovely."))
    assert first.text == "Do they have parking?" and first.target and first.knowledge == ("hob-park",)
    assert first.reply == "Yes, free." and first.group == "I booked the Hobsons House."
    assert first.where == f"{tmp_path / 'd.jsonl'}:1"
    assert second.history == () and second.reply is None and not second.target and second.knowledge == ()
    assert third.target and third.knowledge == () and third.reply == "Reviews say so."
    assert parse_knowledge_turn(knowledge_turn_to_json(first), "x") == KnowledgeTurn(
        first.id, first.history, first.text, True, ("hob-park",), "Yes, free.", first.group, "x"
    )


def with_changes(**changes) -> dict:
    obj = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if key == "meta":
            obj["meta"] = value
        elif key == "last":
            obj["turns"][-1].update(value)
        elif key == "turns":
            obj["turns"] = value
    return obj


@pytest.mark.parametrize(
    ("obj", "field_message"),
    [
        (with_changes(meta={}), "field 'meta.target' is missing"),
        (with_changes(meta={"target": "yes"}), "field 'meta.target' must be true or false, got 'yes'"),
        (
            with_changes(last={"knowledge": "hob-park"}),
            "field 'turns\\[3\\].knowledge' must be a list of FAQ ids",
        ),
        (with_changes(last={"knowledge": [3]}), "field 'turns\\[3\\].knowledge' must be a list of FAQ ids"),
        (
            with_changes(last={"knowledge": ["nope"]}),
            "field 'turns\\[3\\].knowledge\\[0\\]' is 'nope', which is not an id of the FAQ file",
        ),
        (
            with_changes(meta={"target": False}),
            "field 'turns\\[3\\].knowledge' lists FAQ ids but 'meta.target' is false",
        ),
        (
            with_changes(
                turns=[{"role": "customer", "text": "hi", "knowledge": []}, {"role": "agent", "text": "yo"}]
            ),
            "field 'turns\\[0\\].knowledge' is only allowed on the final agent turn",
        ),
        (
            with_changes(turns=[{"role": "agent", "text": "Hello"}]),
            "field 'turns' must end with the customer turn",
        ),
        (with_changes(turns=[{"role": "bot", "text": "Hello"}]), "turns\\[0\\]: field 'role' must be one of"),
        ('{"id": "d1", "turns": [', "not valid JSON"),
    ],
)
def test_malformed_lines_name_file_line_and_field(tmp_path: Path, obj, field_message) -> None:
    path = write(tmp_path / "bad.jsonl", [GOOD | {"id": "ok"}, obj])
    with pytest.raises(DataError, match=f"^{tmp_path / 'bad.jsonl'}:2: .*{field_message}"):
        read_knowledge_turns(path, faq_ids=["hob-park"])


def test_duplicate_ids_and_empty_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="bad.jsonl:2: field 'id' 'd1' repeats line 1"):
        read_knowledge_turns(write(tmp_path / "bad.jsonl", [GOOD, GOOD]))
    with pytest.raises(DataError, match="empty.jsonl: no dialogs"):
        read_knowledge_turns(write(tmp_path / "empty.jsonl", [""]))


def test_folds_keep_a_conversation_together_and_ignore_order() -> None:
    def instance(id_: str, first: str) -> KnowledgeTurn:
        return KnowledgeTurn(id_, (), first, False, group=first)

    turns = [instance(f"a{i}", f"conversation {i % 7}") for i in range(40)]
    folds = [fold_of(t, 2) for t in turns]
    by_group: dict[str, set[int]] = {}
    for t, f in zip(turns, folds, strict=True):
        by_group.setdefault(t.group, set()).add(f)
    assert all(len(f) == 1 for f in by_group.values())
    assert set(folds) == {0, 1}
    assert [fold_of(t, 2) for t in reversed(turns)] == folds[::-1]
    with pytest.raises(ConfigError, match="n_folds must be >= 2, got 1"):
        fold_of(turns[0], 1)
