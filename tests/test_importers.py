"""Tests for assistant/ingest/importers.py and the assistant-import CLI: real files in, canonical JSONL out."""

from __future__ import annotations

import csv
import json

import pytest

from assistant.data import Turn, read_dialogs, read_faq
from assistant.errors import DataError
from assistant.ingest.importers import import_chatwoot, import_faq_csv, import_twitter_csv
from finetune.import_data import main

TWCS_HEADER = [
    "tweet_id",
    "author_id",
    "inbound",
    "created_at",
    "text",
    "response_tweet_id",
    "in_response_to_tweet_id",
]


def write_csv(path, header, rows):
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def twcs(tmp_path):
    return write_csv(
        tmp_path / "twcs.csv",
        TWCS_HEADER,
        [
            ["1", "cust1", "True", "", "@AcmeHelp my parcel is late", "2", ""],
            ["2", "AcmeHelp", "False", "", "@cust1 Sorry! Can you DM us the order number?", "3", "1"],
            ["3", "cust1", "True", "", "@AcmeHelp done", "4", "2"],
            ["4", "cust1", "True", "", "also call me on +1 415 555 0132", "5", "3"],
            ["5", "AcmeHelp", "False", "", "@cust1 Thanks, it ships today ^JK", "", "4"],
            ["10", "cust2", "True", "", "@OtherCo hello?", "11", ""],
            ["11", "OtherCo", "False", "", "@cust2 hi there", "", "10"],
            ["20", "cust3", "True", "", "@AcmeHelp anyone?", "", ""],
        ],
    )


def test_twitter_threads_become_dialogs(twcs):
    dialogs, report = import_twitter_csv(twcs, company="AcmeHelp")
    assert [d.id for d in dialogs] == ["tw-1"]
    assert dialogs[0].turns == (
        Turn("customer", "my parcel is late"),
        Turn("agent", "Sorry! Can you DM us the order number?"),
        Turn("customer", "done\nalso call me on +1 415 555 0132"),
        Turn("agent", "Thanks, it ships today ^JK"),
    )
    assert report.skipped == {
        "answered by another company": 1,
        "thread with fewer than 2 turns or no agent reply": 1,
    }


def test_twitter_bad_inbound_value(tmp_path):
    path = write_csv(tmp_path / "t.csv", TWCS_HEADER, [["1", "a", "yes", "", "hi", "", ""]])
    with pytest.raises(DataError, match=r"t\.csv:2: column 'inbound' must be True or False, got 'yes'"):
        import_twitter_csv(path)


def test_faq_csv(tmp_path):
    path = write_csv(
        tmp_path / "faq.csv",
        ["Q", "A", "alts"],
        [
            ["How do I return an item?", "Start a return in Orders.", "send back | return it"],
            ["", "orphan answer", ""],
        ],
    )
    entries, report = import_faq_csv(path, question_column="Q", answer_column="A", examples_column="alts")
    assert [(e.id, e.examples) for e in entries] == [("faq-0001", ("send back", "return it"))]
    assert report.skipped == {"empty question or answer": 1}
    with pytest.raises(
        DataError, match=r"missing column\(s\) \['question', 'answer'\]; the header has \['Q', 'A', 'alts'\]"
    ):
        import_faq_csv(path)


def test_chatwoot_export(tmp_path):
    payload = {
        "payload": [
            {"conversation_id": 7, "message_type": 1, "content": "Hello! How can we help?", "created_at": 2},
            {"conversation_id": 7, "message_type": 0, "content": "Where is my refund?", "created_at": 1},
            {
                "conversation_id": 7,
                "message_type": 1,
                "content": "customer is VIP",
                "private": True,
                "created_at": 3,
            },
            {"conversation_id": 7, "message_type": 2, "content": "Assigned to Ann", "created_at": 4},
            {
                "conversation_id": 7,
                "message_type": "outgoing",
                "content": "It was sent yesterday.",
                "created_at": 5,
            },
            {"conversation_id": 8, "message_type": 0, "content": "", "created_at": 1},
        ]
    }
    path = tmp_path / "conv.json"
    path.write_text(json.dumps(payload))
    dialogs, report = import_chatwoot([path])
    assert dialogs[0].turns == (
        Turn("customer", "Where is my refund?"),
        Turn("agent", "Hello! How can we help?\nIt was sent yesterday."),
    )
    assert report.skipped == {"private note": 1, "activity message": 1, "empty message (attachment only)": 1}
    path.write_text(json.dumps([{"conversation_id": 1, "message_type": 9, "content": "x"}]))
    with pytest.raises(DataError, match=r"conv\.json: message 0: 'message_type' must be 0-3"):
        import_chatwoot([path])


def test_cli_scrubs_by_default_and_output_reads_back(twcs, tmp_path, capsys):
    out = tmp_path / "dialogs.jsonl"
    assert main(["twitter", str(twcs), "--company", "AcmeHelp", "--out", str(out)]) == 0
    assert "imported 1; skipped:" in capsys.readouterr().out
    (dialog,) = read_dialogs(out)
    assert dialog.turns[2].text == "done\nalso call me on <PHONE>"
    assert main(["twitter", str(twcs), "--no-scrub-pii", "--out", str(out)]) == 0
    assert "+1 415 555 0132" in read_dialogs(out)[0].turns[2].text
    faq_out = tmp_path / "faq.jsonl"
    write_csv(tmp_path / "f.csv", ["question", "answer"], [["Q1?", "A1."]])
    assert main(["faq-csv", str(tmp_path / "f.csv"), "--out", str(faq_out)]) == 0
    assert read_faq(faq_out)[0].answer == "A1."


def test_cli_scrubs_canonical_dialogs(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps(
            {
                "id": "d1",
                "turns": [
                    {"role": "customer", "text": "card 4111 1111 1111 1111"},
                    {"role": "agent", "text": "Thanks"},
                ],
            }
        )
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    assert main(["dialogs", str(source), "--out", str(out)]) == 0
    assert read_dialogs(out)[0].turns[0].text == "card <CARD>"
    source.write_text('{"id": "d1", "turns": []}\n')
    assert main(["dialogs", str(source), "--out", str(out)]) == 2
    assert read_dialogs(out)[0].turns[0].text == "card <CARD>"  # the earlier output is left whole


def test_cli_reports_bad_input(tmp_path, capsys):
    assert main(["chatwoot", str(tmp_path / "absent.json"), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
