"""FAQ index: build, search, calibrate, save/load round trip, rebuild from a changed FAQ file, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from assistant.data import Query
from assistant.errors import ConfigError, DataError, RetrievalError
from assistant.retrieval.index import FaqIndex, RetrieverConfig
from assistant.retrieval.rebuild import rebuild_index
from assistant.retrieval.store import INDEX_MANIFEST, INDEX_SUBDIR
from assistant.routing.generic import generic_out_of_scope
from finetune import build_index

FAQ = [
    {
        "id": "pw",
        "question": "How do I reset my password?",
        "answer": "Use 'Forgot password' on the sign-in page.",
        "examples": ["forgot my password", "can't log in, need a new password", "password reset link"],
    },
    {
        "id": "refund",
        "question": "How do I get a refund?",
        "answer": "Refunds reach your card within 5 days.",
        "examples": ["I want my money back", "refund for a returned item", "how long do refunds take"],
    },
    {
        "id": "ship",
        "question": "Where is my order?",
        "answer": "Track it under Account > Orders.",
        "examples": ["track my parcel", "my package has not arrived", "delivery status of my order"],
    },
    {
        "id": "hours",
        "question": "What are your opening hours?",
        "answer": "8am to 8pm, Monday to Saturday.",
        "examples": ["when are you open", "customer service hours", "are you open on sunday"],
    },
    {
        "id": "cancel",
        "question": "How do I cancel my subscription?",
        "answer": "Account > Subscription > Cancel.",
        "examples": ["stop my subscription", "end my membership", "cancel the monthly plan"],
    },
]
QUERIES = [
    ("reset password please", "pw"),
    ("password forgotten", "pw"),
    ("get my money back", "refund"),
    ("refund status", "refund"),
    ("track order", "ship"),
    ("parcel not arrived", "ship"),
    ("opening hours sunday", "hours"),
    ("cancel subscription", "cancel"),
    ("end membership now", "cancel"),
    ("tell me a joke", None),
    ("what is the weather like in paris", None),
    ("who won the football match", None),
    ("recommend a good movie", None),
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def faq_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "faq.jsonl", FAQ)


@pytest.fixture
def queries() -> list[Query]:
    return [Query(t, f) for t, f in QUERIES]


@pytest.fixture
def bm25_index(faq_file: Path, queries: list[Query]) -> FaqIndex:
    index = FaqIndex.from_faq_file(faq_file, RetrieverConfig(method="bm25"))
    index.calibrate(queries)
    return index


@pytest.fixture(scope="module")
def hybrid_index(tmp_path_factory: pytest.TempPathFactory) -> FaqIndex:
    """One real dense+BM25 index for the module (the MiniLM model loads once per process)."""
    faq = write_jsonl(tmp_path_factory.mktemp("faq") / "faq.jsonl", FAQ)
    index = FaqIndex.from_faq_file(faq, RetrieverConfig(method="hybrid"))
    index.calibrate([Query(t, f) for t, f in QUERIES])
    return index


def test_bm25_search_ranks_the_entry_sharing_words_first(bm25_index: FaqIndex) -> None:
    hits = bm25_index.search("I forgot the password of my account", k=3)
    assert hits[0].faq_id == "pw"
    assert len(hits) == 3 and hits[0].score > hits[1].score
    assert hits[0].entry.answer.startswith("Use 'Forgot password'") and hits[0].dense is None


def test_search_batch_matches_search_and_caps_k(bm25_index: FaqIndex) -> None:
    batch = bm25_index.search_batch(["track my parcel", "refund please"], k=50)
    assert [h.faq_id for h in batch[0]] == [h.faq_id for h in bm25_index.search("track my parcel", k=50)]
    assert len(batch[1]) == len(FAQ)


def test_search_rejects_empty_text_and_bad_k(bm25_index: FaqIndex) -> None:
    with pytest.raises(DataError, match="non-empty"):
        bm25_index.search("   ")
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        bm25_index.search("refund", k=0)


def test_calibration_accepts_in_scope_and_rejects_out_of_scope(bm25_index: FaqIndex) -> None:
    assert bm25_index.threshold is not None and 0.0 < bm25_index.threshold < 1.0
    for text in ("how do I reset my password", "where is my parcel"):
        assert bm25_index.is_confident(bm25_index.search(text))
    for text in ("tell me a joke", "recommend a good movie", "what is the capital of france"):
        hits = bm25_index.search(text)
        assert not bm25_index.is_confident(hits), (text, bm25_index.confidence(hits))
    report = bm25_index.calibration["report"]
    assert report["n_queries"] == len(QUERIES) and report["n_out_of_scope"] == 4
    assert report["oos_recall"] == 1.0


def test_uncalibrated_index_has_no_confidence(faq_file: Path) -> None:
    index = FaqIndex.from_faq_file(faq_file, RetrieverConfig(method="bm25"))
    assert index.threshold is None
    with pytest.raises(RetrievalError, match="not calibrated"):
        index.confidence(index.search("refund"))


def test_calibrate_rejects_unknown_faq_id(bm25_index: FaqIndex) -> None:
    with pytest.raises(DataError, match="'nope'"):
        bm25_index.calibrate([Query("refund", "nope")])


def test_save_load_round_trip(bm25_index: FaqIndex, tmp_path: Path) -> None:
    bm25_index.save(tmp_path / "index")
    manifest = json.loads((tmp_path / "index" / INDEX_MANIFEST).read_text())
    assert manifest["kind"] == "faq-index" and manifest["config"]["method"] == "bm25"
    assert manifest["faq"]["sha256"] and manifest["calibration"]["threshold"] == bm25_index.threshold
    loaded = FaqIndex.load(tmp_path / "index")
    assert loaded.config == bm25_index.config and loaded.threshold == bm25_index.threshold
    for text in ("password reset", "tell me a joke", "are you open on sunday"):
        a, b = bm25_index.search(text), loaded.search(text)
        assert [(h.faq_id, h.score) for h in a] == [(h.faq_id, h.score) for h in b]
        assert loaded.confidence(b) == pytest.approx(bm25_index.confidence(a))


def test_index_saved_with_a_model_directory(bm25_index: FaqIndex, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "assistant.json").write_text("{}")
    bm25_index.save(model_dir / INDEX_SUBDIR)
    assert FaqIndex.load(model_dir).search("refund")[0].faq_id == "refund"
    with pytest.raises(RetrievalError, match="not an FAQ index; refusing"):
        bm25_index.save(model_dir)


def test_load_fails_clearly_on_a_bad_index(bm25_index: FaqIndex, tmp_path: Path) -> None:
    with pytest.raises(RetrievalError, match="no faq-index.json"):
        FaqIndex.load(tmp_path)
    bm25_index.save(tmp_path / "index")
    entries = tmp_path / "index" / "entries.jsonl"
    entries.write_text(entries.read_text().replace("refund", "refunds"))
    with pytest.raises(RetrievalError, match="does not match the manifest's sha256"):
        FaqIndex.load(tmp_path / "index")
    manifest = tmp_path / "index" / INDEX_MANIFEST
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "format_version": 99}))
    with pytest.raises(RetrievalError, match="format_version 99"):
        FaqIndex.load(tmp_path / "index")


def test_malformed_faq_line_gives_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "faq.jsonl"
    bad.write_text(json.dumps(FAQ[0]) + "\n" + json.dumps({"id": "x", "answer": "a"}) + "\n")
    with pytest.raises(DataError, match=r"faq.jsonl:2: field 'question' must be a non-empty string"):
        FaqIndex.from_faq_file(bad, RetrieverConfig(method="bm25"))


def test_rebuild_picks_up_faq_changes_and_keeps_config(bm25_index: FaqIndex, tmp_path: Path) -> None:
    bm25_index.save(tmp_path / "index")
    changed = [e for e in FAQ if e["id"] != "hours"] + [
        {
            "id": "gift",
            "question": "Do you sell gift vouchers?",
            "answer": "Yes, from 10 to 200 euros.",
            "examples": ["buy a gift card", "voucher for a friend"],
        }
    ]
    new_faq = write_jsonl(tmp_path / "faq-v2.jsonl", changed)
    rebuilt = rebuild_index(tmp_path / "index", new_faq)
    assert rebuilt.search("can I buy a gift voucher")[0].faq_id == "gift"
    assert "hours" not in {e.id for e in rebuilt.entries}
    assert rebuilt.config == bm25_index.config and rebuilt.threshold is not None
    assert (
        rebuilt.calibration["report"]["relabelled_out_of_scope"] == 1
    )  # "opening hours sunday" lost its entry
    reloaded = FaqIndex.load(tmp_path / "index")
    assert reloaded.search("gift card for my sister")[0].faq_id == "gift"
    assert reloaded.source["sha256"] != bm25_index.source["sha256"]


def test_build_index_cli_build_rebuild_and_error(
    faq_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    queries = write_jsonl(tmp_path / "q.jsonl", [{"text": t, "faq_id": f} for t, f in QUERIES])
    out = tmp_path / "index"
    assert (
        build_index.main(
            ["--faq", str(faq_file), "--queries", str(queries), "--out", str(out), "--method", "bm25"]
        )
        == 0
    )
    assert FaqIndex.load(out).threshold is not None
    write_jsonl(faq_file, FAQ + [{"id": "gift", "question": "Do you sell gift vouchers?", "answer": "Yes."}])
    assert build_index.main(["--rebuild", "--faq", str(faq_file), "--out", str(out)]) == 0
    assert FaqIndex.load(out).search("gift vouchers")[0].faq_id == "gift"
    faq_file.write_text(
        faq_file.read_text() + '{"id": "oops", "question": "q", "answer": "a", "examples": "x"}\n'
    )
    capsys.readouterr()
    assert build_index.main(["--rebuild", "--faq", str(faq_file), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "faq.jsonl:7: field 'examples' must be a list of strings" in err


def test_rebuild_refuses_retriever_flags_it_would_ignore(
    faq_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    queries = write_jsonl(tmp_path / "q.jsonl", [{"text": t, "faq_id": f} for t, f in QUERIES])
    out = tmp_path / "index"
    assert (
        build_index.main(
            ["--faq", str(faq_file), "--queries", str(queries), "--out", str(out), "--method", "bm25"]
        )
        == 0
    )
    capsys.readouterr()
    assert build_index.main(["--rebuild", "--faq", str(faq_file), "--out", str(out), "--bm25-k1", "0.9"]) == 2
    assert "--rebuild keeps the index's own retriever config; drop ['--bm25-k1']" in capsys.readouterr().err
    assert FaqIndex.load(out).config.bm25_k1 == RetrieverConfig().bm25_k1


def test_build_index_warns_when_calibration_has_no_out_of_scope_queries(
    faq_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["--faq", str(faq_file), "--method", "bm25"]
    with_oos = write_jsonl(tmp_path / "q.jsonl", [{"text": t, "faq_id": f} for t, f in QUERIES])
    assert build_index.main([*args, "--queries", str(with_oos), "--out", str(tmp_path / "a")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert FaqIndex.load(tmp_path / "a").calibration["report"]["n_out_of_scope"] == 4  # the 4 faq_id nulls
    in_scope_only = write_jsonl(tmp_path / "q2.jsonl", [{"text": t, "faq_id": f} for t, f in QUERIES if f])
    assert build_index.main([*args, "--queries", str(in_scope_only), "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "WARNING: the calibration queries have no out-of-scope examples" in err
    assert "generic out-of-scope messages" in err
    report = FaqIndex.load(tmp_path / "b").calibration["report"]
    assert report["n_out_of_scope"] == len(generic_out_of_scope()) > 150


def test_derive_refuses_build_time_changes(bm25_index: FaqIndex) -> None:
    with pytest.raises(RetrievalError, match="derive\\(\\) can change only"):
        bm25_index.derive(include_answers=True)
    with pytest.raises(RetrievalError, match="needs a dense retriever"):
        bm25_index.derive(method="dense")


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ConfigError, match="dense_weight must be in \\[0, 1\\], got 1.5"):
        RetrieverConfig(dense_weight=1.5)


@pytest.mark.slow
def test_dense_and_hybrid_rank_paraphrases_without_shared_words(hybrid_index: FaqIndex) -> None:
    dense = hybrid_index.derive(method="dense")
    for text, expected in [
        ("I can't remember the secret code to sign in", "pw"),
        ("when does your shop close today", "hours"),
        ("I sent the jacket back, when do I see the cash again", "refund"),
    ]:
        assert dense.search(text)[0].faq_id == expected, text
        assert hybrid_index.search(text)[0].faq_id == expected, text
    hit = hybrid_index.search("parcel still missing")[0]
    assert hit.faq_id == "ship" and hit.bm25 is not None and -1.0 <= hit.dense <= 1.0
    assert hybrid_index.is_confident(hybrid_index.search("how can I reset my password"))
    assert not hybrid_index.is_confident(hybrid_index.search("what is the capital of france"))


@pytest.mark.slow
def test_dense_round_trip_keeps_embeddings_and_rebuild_reuses_them(
    hybrid_index: FaqIndex, tmp_path: Path
) -> None:
    hybrid_index.save(tmp_path / "index")
    assert np.load(tmp_path / "index" / "embeddings.npy").shape == (len(hybrid_index.texts), 384)
    loaded = FaqIndex.load(tmp_path / "index")
    text = "my package has still not shown up"
    assert [(h.faq_id, round(h.score, 5)) for h in loaded.search(text)] == [
        (h.faq_id, round(h.score, 5)) for h in hybrid_index.search(text)
    ]
    new_faq = write_jsonl(
        tmp_path / "faq-v2.jsonl",
        FAQ + [{"id": "gift", "question": "Do you sell gift vouchers?", "answer": "Yes.", "examples": []}],
    )
    rebuilt = rebuild_index(tmp_path / "index", new_faq)
    assert rebuilt.derive(method="dense").search("a present card for my mum")[0].faq_id == "gift"
    # reuse copies the stored rows of unchanged texts instead of encoding them: mark the stored rows
    marked = FaqIndex(
        hybrid_index.entries,
        hybrid_index.config,
        bm25=hybrid_index._bm25,
        embeddings=np.full_like(hybrid_index._embeddings, 0.5),
        onnx=hybrid_index._onnx,
    )
    entries = [*hybrid_index.entries, rebuilt.entries[-1]]
    fresh = FaqIndex.build(entries, hybrid_index.config, reuse=marked)
    n_old = len(hybrid_index.texts)
    assert np.all(fresh._embeddings[:n_old] == 0.5)
    assert np.linalg.norm(fresh._embeddings[n_old:], axis=1) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_tune_fusion_picks_the_best_grid_setting_on_the_given_queries(hybrid_index: FaqIndex) -> None:
    queries = [Query(t, f) for t, f in QUERIES]
    tuned, rows = build_index.tune_fusion(hybrid_index, queries)
    assert len(rows) == len(build_index.FUSION_GRID)
    best = max(r["hit@1"] for r in rows)
    chosen = next(
        r
        for r in rows
        if (r["fusion"], r["dense_weight"]) == (tuned.config.fusion, tuned.config.dense_weight)
    )
    assert chosen["hit@1"] == best and tuned.threshold is None  # derived indexes start uncalibrated
    with pytest.raises(ConfigError, match="needs --method hybrid"):
        build_index.tune_fusion(hybrid_index.derive(method="dense"), queries)
