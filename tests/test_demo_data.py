"""Validate the demo data shipped in ``assistant/demo_data/`` (Parcelo FAQ, dev queries, support dialogs).

Reads every file with the project's own readers (``assistant.data``), checks the minimum sizes the
first-run demo relies on, that queries and FAQ texts do not overlap (so the dev set measures
generalisation), that dialog splits are disjoint, that the agent states the FAQ's policies, and that
``data/build_demo_dialogs.py`` reproduces the committed dialog files byte for byte.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.data import Dialog, FaqEntry, Query, read_dialogs, read_faq, read_queries

SPLITS = ("train", "valid", "test")
#: the dialog generator: a development script in the repository's data/ folder (not installed)
GENERATOR = Path(__file__).resolve().parent.parent / "data" / "build_demo_dialogs.py"
MIN_FAQ_ENTRIES = 45
MIN_DIALOGS = 300
MIN_OUT_OF_SCOPE = 30
CATEGORIES = {
    "orders",
    "shipping",
    "returns",
    "payments",
    "account",
    "warranty",
    "products",
    "gift cards",
    "business",
    "privacy",
    "contact",
}


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


@pytest.fixture(scope="module")
def faq(demo_data: Path) -> list[FaqEntry]:
    return read_faq(demo_data / "faq" / "faq.jsonl")


@pytest.fixture(scope="module")
def queries(demo_data: Path, faq: list[FaqEntry]) -> list[Query]:
    return read_queries(demo_data / "faq" / "queries-dev.jsonl", faq_ids=[e.id for e in faq])


@pytest.fixture(scope="module")
def dialogs(demo_data: Path) -> dict[str, list[Dialog]]:
    return {name: read_dialogs(demo_data / "dialogs" / f"{name}.jsonl") for name in SPLITS}


def test_faq_entries_are_real_answers(faq: list[FaqEntry]) -> None:
    assert len(faq) >= MIN_FAQ_ENTRIES
    for e in faq:
        assert re.fullmatch(r"[a-z]+-\d{3}", e.id), f"{e.id}: ids look like 'ship-003'"
        assert e.meta.get("category") in CATEGORIES, f"{e.id}: category {e.meta.get('category')!r}"
        assert not e.meta.get("placeholder_answer"), e.id
        assert not (e.answer.startswith("[") and e.answer.endswith("]")), f"{e.id}: placeholder answer"
        assert len(e.answer.split()) >= 5, f"{e.id}: answer too short: {e.answer!r}"
        assert 5 <= len(e.examples) <= 8, f"{e.id}: {len(e.examples)} examples, expected 5-8"
    assert {e.meta["category"] for e in faq} == CATEGORIES


def test_faq_texts_belong_to_one_entry(faq: list[FaqEntry]) -> None:
    owner: dict[str, str] = {}
    for e in faq:
        for text in (e.question, *e.examples):
            key = _norm(text)
            assert key not in owner or owner[key] == e.id, f"{text!r} is in {owner.get(key)} and {e.id}"
            assert key not in owner, f"{text!r} repeated within {e.id}"
            owner[key] = e.id


def test_queries_cover_every_entry_and_out_of_scope(faq: list[FaqEntry], queries: list[Query]) -> None:
    per_entry = {e.id: 0 for e in faq}
    for q in queries:
        if q.faq_id is not None:
            per_entry[q.faq_id] += 1
    thin = {k: n for k, n in per_entry.items() if n < 2}
    assert not thin, f"FAQ entries with fewer than 2 dev queries: {thin}"
    assert sum(q.faq_id is None for q in queries) >= MIN_OUT_OF_SCOPE
    texts = [_norm(q.text) for q in queries]
    assert len(texts) == len(set(texts)), "duplicate dev queries"


def test_queries_are_not_faq_texts(faq: list[FaqEntry], queries: list[Query]) -> None:
    faq_texts = {_norm(t) for e in faq for t in (e.question, *e.examples)}
    verbatim = [q.text for q in queries if _norm(q.text) in faq_texts]
    assert not verbatim, f"dev queries copied from FAQ questions/examples: {verbatim}"


def test_dialog_splits_sizes_and_disjoint(dialogs: dict[str, list[Dialog]]) -> None:
    assert sum(len(d) for d in dialogs.values()) >= MIN_DIALOGS
    assert all(len(d) >= 30 for d in dialogs.values()), {k: len(v) for k, v in dialogs.items()}
    ids = [d.id for split in dialogs.values() for d in split]
    assert len(ids) == len(set(ids)), "a dialog id is in two splits"
    contents = [tuple((t.role, t.text) for t in d.turns) for split in dialogs.values() for d in split]
    assert len(contents) == len(set(contents)), "identical dialogs within or across splits"


def test_dialogs_shape_and_meta(dialogs: dict[str, list[Dialog]], faq: list[FaqEntry]) -> None:
    faq_ids = {e.id for e in faq}
    for split in dialogs.values():
        for d in split:
            roles = [t.role for t in d.turns]
            assert 2 <= len(roles) <= 8, f"{d.id}: {len(roles)} turns"
            assert roles == ["customer", "agent"] * (len(roles) // 2), f"{d.id}: roles {roles}"
            assert d.meta["source"] == "parcelo-demo"
            assert len(d.meta["domains"]) == 1 and d.meta["domains"][0] in CATEGORIES, d.id
            assert d.meta["tasks"] and all(isinstance(t, str) for t in d.meta["tasks"]), d.id
            assert set(d.meta.get("faq_ids", [])) <= faq_ids, f"{d.id}: unknown faq_ids"


def test_agent_states_the_faq_policies(dialogs: dict[str, list[Dialog]], faq: list[FaqEntry]) -> None:
    answers = {e.id: e.answer for e in faq}
    checked = 0
    for split in dialogs.values():
        for d in split:
            agent_texts = {t.text for t in d.turns if t.role == "agent"}
            if d.meta["tasks"][0] == "faq_question":
                assert answers[d.meta["faq_ids"][0]] in agent_texts, d.id
                checked += 1
    assert checked >= 30, f"only {checked} FAQ-answer dialogs"


def test_every_faq_entry_is_asked_in_some_dialog(
    dialogs: dict[str, list[Dialog]], faq: list[FaqEntry]
) -> None:
    asked = {i for split in dialogs.values() for d in split for i in d.meta.get("faq_ids", [])}
    assert {e.id for e in faq} - asked == set()


def test_dialogs_use_fictional_contact_data(dialogs: dict[str, list[Dialog]]) -> None:
    for split in dialogs.values():
        for d in split:
            for t in d.turns:
                for domain in re.findall(r"[\w.+-]+@([\w.-]*\w)", t.text):
                    assert domain == "example.com" or domain.endswith(".example.com"), f"{d.id}: {domain}"
                for order in re.findall(r"\bPC-\w+", t.text):
                    assert re.fullmatch(r"PC-\d{6}", order), f"{d.id}: odd order number {order}"


def test_dev_queries_are_not_dialog_turns(dialogs: dict[str, list[Dialog]], queries: list[Query]) -> None:
    query_texts = {_norm(q.text) for q in queries}
    leaked = [
        t.text
        for split in dialogs.values()
        for d in split
        for t in d.turns
        if t.role == "customer" and _norm(t.text) in query_texts
    ]
    assert not leaked, f"dev queries appear as dialog turns: {leaked[:5]}"


def _run_generator(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # output must not depend on hash order
    return subprocess.run(
        [sys.executable, str(GENERATOR), *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_generator_reproduces_committed_dialogs(demo_data: Path, tmp_path: Path) -> None:
    result = _run_generator("--out-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for name in SPLITS:
        committed = (demo_data / "dialogs" / f"{name}.jsonl").read_bytes()
        assert (tmp_path / f"{name}.jsonl").read_bytes() == committed, f"{name}.jsonl differs from a rerun"


def test_generator_rejects_missing_faq(tmp_path: Path) -> None:
    result = _run_generator("--faq", str(tmp_path / "nope.jsonl"), "--out-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and "nope.jsonl" in result.stderr
    assert not list(tmp_path.glob("*.jsonl"))
