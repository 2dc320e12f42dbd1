"""Retrieval evaluation CLI: deterministic splits, metrics with known values, JSON + Markdown reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.data import FaqEntry, Query
from assistant.errors import ConfigError
from assistant.retrieval.index import FaqIndex, Hit, RetrieverConfig
from finetune import eval_retrieval
from finetune.build_index import ranking_metrics

FAQ = [
    {
        "id": "pw",
        "question": "How do I reset my password?",
        "answer": "Use 'Forgot password'.",
        "examples": [
            "forgot my password",
            "password reset link",
            "new password please",
            "locked out password",
        ],
    },
    {
        "id": "refund",
        "question": "How do I get a refund?",
        "answer": "Within 5 days.",
        "examples": [
            "I want my money back",
            "refund for a returned item",
            "refund status",
            "money back please",
        ],
    },
    {
        "id": "ship",
        "question": "Where is my order?",
        "answer": "Track it under Orders.",
        "examples": ["track my parcel", "my package has not arrived", "parcel status", "order tracking"],
    },
]
QUERIES = [
    ("reset password", "pw"),
    ("password forgotten", "pw"),
    ("forgot the password", "pw"),
    ("money back", "refund"),
    ("refund please", "refund"),
    ("get a refund", "refund"),
    ("track order", "ship"),
    ("parcel missing", "ship"),
    ("where is my package", "ship"),
    ("tell me a joke", None),
    ("weather in paris", None),
    ("who won the match", None),
    ("sing a song", None),
]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_split_is_stratified_deterministic_and_order_free() -> None:
    queries = [Query(t, f) for t, f in QUERIES]
    calibration, evaluation = eval_retrieval.split_queries(queries, 0.5)
    again = eval_retrieval.split_queries(list(reversed(queries)), 0.5)
    assert {q.text for q in calibration} == {q.text for q in again[0]}
    assert len(calibration) + len(evaluation) == len(queries)
    assert sum(q.faq_id is None for q in calibration) == 2  # round(4 × 0.5) out-of-scope
    assert sum(q.faq_id == "pw" for q in calibration) == 2  # round(3 × 0.5) = 2 (half rounds up)
    with pytest.raises(ConfigError, match="calibration-fraction must be in \\(0, 1\\)"):
        eval_retrieval.split_queries(queries, 1.0)


def test_holdout_moves_a_fixed_share_of_examples_into_queries() -> None:
    entries = [FaqEntry(r["id"], r["question"], r["answer"], tuple(r["examples"])) for r in FAQ]
    kept, queries = eval_retrieval.holdout_examples(entries, 0.25)
    assert len(queries) == 3 and all(len(e.examples) == 3 for e in kept)
    for entry, original in zip(kept, entries, strict=True):
        held = {q.text for q in queries if q.faq_id == entry.id}
        assert len(held) == 1 and held.isdisjoint(entry.examples) and held <= set(original.examples)


def test_ranking_metrics_known_values() -> None:
    e = FaqEntry("a", "q", "a")
    hits = [[Hit("a", 1, e), Hit("b", 0, e)], [Hit("b", 1, e), Hit("a", 0, e)], [Hit("c", 1, e)]]
    queries = [Query("1", "a"), Query("2", "a"), Query("3", "a"), Query("4", None)]
    metrics = ranking_metrics(hits + [[Hit("a", 1, e)]], queries)
    assert metrics == pytest.approx({"hit@1": 1 / 3, "hit@5": 2 / 3, "mrr@10": (1 + 0.5 + 0) / 3})


def test_cli_from_faq_writes_json_and_markdown(tmp_path: Path) -> None:
    faq = _write(tmp_path / "faq.jsonl", FAQ)
    queries = _write(tmp_path / "q.jsonl", [{"text": t, "faq_id": f} for t, f in QUERIES])
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    argv = [
        "--faq",
        str(faq),
        "--queries",
        str(queries),
        "--methods",
        "bm25",
        "--name",
        "tiny",
        "--json",
        str(out_json),
        "--markdown",
        str(out_md),
    ]
    assert eval_retrieval.main(argv) == 0
    report = json.loads(out_json.read_text())
    (row,) = report["results"]
    assert report["n_calibration_queries"] + report["n_evaluation_queries"] == len(QUERIES)
    # the same figures computed here: the evaluation half of the split, ranked by a BM25 index of the FAQ
    _, evaluation = eval_retrieval.split_queries([Query(t, f) for t, f in QUERIES], 0.5)
    in_scope = [q for q in evaluation if q.faq_id is not None]
    index = FaqIndex.from_faq_file(faq, RetrieverConfig(method="bm25"))
    ranked = [[h.faq_id for h in index.search(q.text, k=5)] for q in in_scope]
    assert row["method"] == "bm25" and row["n_queries"] == len(evaluation) == 5
    assert row["n_out_of_scope"] == 2
    assert row["hit@1"] == pytest.approx(sum(r[0] == q.faq_id for r, q in zip(ranked, in_scope)) / 3)
    assert row["hit@5"] == pytest.approx(sum(q.faq_id in r for r, q in zip(ranked, in_scope)) / 3)
    assert {"oos_recall", "oos_precision", "oos_auroc", "threshold", "queries_per_s"} <= set(row)
    table = out_md.read_text()
    assert table.startswith("### tiny") and "| OOS recall |" in table and "\n| bm25 |" in table


def test_cli_evaluates_saved_indexes_at_their_threshold(tmp_path: Path) -> None:
    faq = _write(tmp_path / "faq.jsonl", FAQ)
    index = FaqIndex.from_faq_file(faq, RetrieverConfig(method="bm25"))
    index.calibrate([Query(t, f) for t, f in QUERIES])
    index.save(tmp_path / "idx")
    queries = _write(tmp_path / "q.jsonl", [{"text": t, "faq_id": f} for t, f in QUERIES])
    out_json = tmp_path / "r.json"
    assert (
        eval_retrieval.main(
            ["--index", str(tmp_path / "idx"), "--queries", str(queries), "--json", str(out_json)]
        )
        == 0
    )
    (row,) = json.loads(out_json.read_text())["results"]
    assert row["threshold"] == index.threshold and row["n_queries"] == len(QUERIES)
    in_scope = [(t, f) for t, f in QUERIES if f is not None]
    right = sum(index.search(t)[0].faq_id == f for t, f in in_scope)
    assert row["hit@1"] == pytest.approx(right / len(in_scope))


def test_cli_metrics_on_a_known_case(tmp_path: Path) -> None:
    """Eight in-scope queries share words with their own entry only; one shipping question is worded like
    a refund ("want", "money", "back" all in the refund example "I want my money back"; "parcel" in two
    shipping texts), so BM25 ranks its entry second. Expected: hit@1 = 8/9, hit@5 = 9/9,
    MRR@10 = (8 + 1/2)/9. ("refund please" is left out: "please" ties it between two entries.)"""
    faq = _write(tmp_path / "faq.jsonl", FAQ)
    FaqIndex.from_faq_file(faq, RetrieverConfig(method="bm25")).save(tmp_path / "idx")
    known = [(t, f) for t, f in QUERIES if t != "refund please"]
    known.append(("my parcel never came, I want my money back", "ship"))
    queries = _write(tmp_path / "q.jsonl", [{"text": t, "faq_id": f} for t, f in known])
    out_json = tmp_path / "r.json"
    argv = ["--index", str(tmp_path / "idx"), "--queries", str(queries), "--json", str(out_json)]
    assert eval_retrieval.main(argv) == 0
    (row,) = json.loads(out_json.read_text())["results"]
    assert row["n_queries"] == 13 and row["n_out_of_scope"] == 4 and row["threshold"] is None
    assert row["hit@1"] == pytest.approx(8 / 9)
    assert row["hit@5"] == pytest.approx(1.0)
    assert row["mrr@10"] == pytest.approx(8.5 / 9)


def test_cli_error_exit_on_a_query_naming_an_unknown_id(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    faq = _write(tmp_path / "faq.jsonl", FAQ)
    queries = _write(tmp_path / "q.jsonl", [{"text": "hello", "faq_id": "nope"}])
    assert eval_retrieval.main(["--faq", str(faq), "--queries", str(queries), "--methods", "bm25"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
