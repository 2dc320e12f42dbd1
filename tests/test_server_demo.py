"""First-run demo assets: built once into the instance folder, reused after, never left half-built."""

from __future__ import annotations

import pytest

from assistant.errors import DataError, ModelError
from server.demo import _build, ensure_demo_index


def test_a_failed_build_leaves_no_asset_that_looks_finished(tmp_path):
    target = tmp_path / "models" / "thing"

    def run(out):
        out.mkdir(parents=True)
        (out / "half-written").write_text("x")
        raise DataError("the dialogs file is malformed")

    with pytest.raises(ModelError, match="building the thing failed: the dialogs file is malformed"):
        _build(target, lambda p: (p / "done").is_file(), run, "thing", ModelError, lambda m: None)
    assert not target.exists() and (tmp_path / "models" / "thing.partial" / "half-written").is_file()

    def run_incomplete(out):
        out.mkdir(parents=True)

    with pytest.raises(ModelError, match="finished without a complete result"):
        _build(target, lambda p: (p / "done").is_file(), run_incomplete, "thing", ModelError, print)
    assert not target.exists()

    def run_ok(out):
        out.mkdir(parents=True)
        (out / "done").write_text("ok")

    messages = []
    assert (
        _build(target, lambda p: (p / "done").is_file(), run_ok, "thing", ModelError, messages.append)
        == target
    )
    assert (target / "done").is_file() and not (tmp_path / "models" / "thing.partial").exists()
    assert messages == [f"building the thing in {target} (first run only) ...", f"thing ready: {target}"]
    # a later start reuses it without running anything
    assert (
        _build(target, lambda p: (p / "done").is_file(), lambda out: 1 / 0, "thing", ModelError, print)
        == target
    )


@pytest.mark.slow
def test_demo_index_is_built_once_and_reused(tmp_path):
    from assistant.retrieval.index import FaqIndex

    directory = ensure_demo_index(tmp_path, progress=lambda m: None)
    assert directory == tmp_path / "models" / "demo-index"
    manifest = directory / "faq-index.json"
    stamp = manifest.stat().st_mtime_ns
    assert ensure_demo_index(tmp_path, progress=lambda m: None) == directory
    assert manifest.stat().st_mtime_ns == stamp
    index = FaqIndex.load(directory)
    assert index.threshold is not None
    assert index.search("How do I cancel my order?", k=2)[0].faq_id == "order-001"


def test_demo_handoff_macro_is_the_one_the_demo_agents_use(demo_data):
    from assistant.data import read_dialogs
    from server.demo import DEMO_HANDOFF_REPLIES

    agent_turns = {
        t.text
        for d in read_dialogs(demo_data / "dialogs" / "train.jsonl")
        for t in d.turns
        if t.role == "agent"
    }
    assert set(DEMO_HANDOFF_REPLIES) <= agent_turns
