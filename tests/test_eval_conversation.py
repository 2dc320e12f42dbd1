"""``assistant-eval-retrieval --dialogs`` and ``assistant-build-index --dialogs``: reports, errors, real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conversation_data import ENTRIES, booked, labelled_turns

from assistant.data import read_faq
from assistant.retrieval.conversational import ConversationalRetriever
from assistant.retrieval.entities import EntityCatalog, track_entities
from assistant.retrieval.index import FaqIndex
from assistant.retrieval.labels import knowledge_turn_to_json, read_knowledge_turns
from finetune import build_index, eval_retrieval


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    from assistant.data import faq_entry_to_json

    faq = write_jsonl(tmp_path / "faq.jsonl", [faq_entry_to_json(e) for e in ENTRIES])
    dialogs = write_jsonl(tmp_path / "dialogs.jsonl", [knowledge_turn_to_json(t) for t in labelled_turns()])
    return faq, dialogs


def test_a_malformed_dialog_line_stops_the_cli_naming_file_line_field(files, tmp_path: Path, capsys) -> None:
    faq, dialogs = files
    lines = dialogs.read_text().splitlines()
    bad = json.loads(lines[2])
    bad["turns"][-1]["knowledge"] = ["no-such-entry"]
    lines[2] = json.dumps(bad)
    dialogs.write_text("\n".join(lines) + "\n")
    assert eval_retrieval.main(["--faq", str(faq), "--dialogs", str(dialogs)]) == 2
    err = capsys.readouterr().err
    assert (
        f"{dialogs}:3: field 'turns[3].knowledge[0]' is 'no-such-entry', which is not an id of the FAQ file"
        in err
    )
    assert build_index.main(["--faq", str(faq), "--dialogs", str(dialogs), "--out", str(tmp_path / "i")]) == 2
    assert eval_retrieval.main(["--dialogs", str(dialogs), "--index", str(tmp_path)]) == 2
    assert "--dialogs needs --faq" in capsys.readouterr().err


def test_build_index_with_dialogs_saves_a_conversational_index(files, tmp_path: Path, capsys) -> None:
    faq, dialogs = files
    out = tmp_path / "index"
    code = build_index.main(
        [
            "--faq",
            str(faq),
            "--dialogs",
            str(dialogs),
            "--method",
            "bm25",
            "--mask-entity-names",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert summary["conversation"]["confidence"]["n_turns"] == len(labelled_turns())
    retriever = ConversationalRetriever.from_index(FaqIndex.load(out))
    assert retriever.detector is not None and retriever.index.config.mask_entity_names
    search = retriever.search(booked("Avalon"), "Is there parking?")
    assert (search.entity, search.hits[0].faq_id) == ("AVALON", "ava-park")
    assert (
        build_index.main(
            ["--rebuild", "--faq", str(faq), "--out", str(out), "--conversation-entity-boost", "3"]
        )
        == 2
    )
    assert "--conversation-entity-boost" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_reports_every_row_side_by_side(files, tmp_path: Path) -> None:
    faq, dialogs = files
    report_path, table_path = tmp_path / "r.json", tmp_path / "r.md"
    code = eval_retrieval.main(
        [
            "--faq",
            str(faq),
            "--dialogs",
            str(dialogs),
            "--query-cache",
            str(tmp_path / "cache.npz"),
            "--threads",
            "1",
            "--json",
            str(report_path),
            "--markdown",
            str(table_path),
        ]
    )
    assert code == 0
    report = json.loads(report_path.read_text())
    names = [r["name"] for r in report["results"]]
    assert names == [
        "bm25, last message",
        "dense, last message",
        "hybrid, last message",
        "hybrid, last 3 customer turns joined",
        "conversational",
        "conversational, entity names not masked",
        "conversational, detector without the embedding",
    ]
    rows = {r["name"]: r for r in report["results"]}
    assert report["info"]["n_faq_turns"] == 18 and rows["conversational"]["n_selection"] == 18
    # the dialogs name the hotel before asking: the entity decides, the last message alone cannot
    assert rows["conversational"]["hit@1"] > rows["hybrid, last message"]["hit@1"]
    assert rows["conversational"]["entity_accuracy"] == 1.0
    assert [r["history_weight"] for r in report["history_sweep"]] == [0.0, 0.1, 0.2, 0.3, 0.5, 1.0]
    assert "| conversational |" in table_path.read_text()
    assert (tmp_path / "cache.npz").is_file()


@pytest.mark.slow
def test_dstc11_dialogs_read_and_entities_track(shared_data: Path) -> None:
    folder = shared_data / "grounded" / "dstc11-val"
    faq = read_faq(folder / "faq.jsonl")
    turns = read_knowledge_turns(folder / "dialogs.jsonl", faq_ids=[e.id for e in faq])
    assert len(turns) == 4173 and sum(t.target for t in turns) == 2129
    faq_turns = [t for t in turns if t.knowledge]
    assert len(faq_turns) == 367
    catalog = EntityCatalog.from_entries(faq)
    assert len(catalog) == 143
    by_id = {e.id: e for e in faq}
    right = [
        track_entities(catalog, t.turns).active in {by_id[k].meta["entity"] for k in t.knowledge}
        for t in faq_turns
    ]
    assert sum(right) / len(right) >= 0.96  # measured 0.970 (docs/results/conversational-retrieval.md)
