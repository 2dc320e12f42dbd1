"""Tests for assistant/generators/base.py: the manifest check and dispatch of load_generator."""

from __future__ import annotations

import json

import pytest

from assistant.errors import CheckpointError, ModelError
from assistant.generators.base import Generation, GenerationRequest, Generator, read_manifest
from assistant.generators.loader import load_generator


def test_manifest_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        read_manifest(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no assistant.json"):
        read_manifest(tmp_path)
    (tmp_path / "assistant.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_manifest(tmp_path)
    (tmp_path / "assistant.json").write_text(json.dumps({"kind": "gpt"}))
    with pytest.raises(
        CheckpointError, match=r"'kind' must be one of \['lstm', 'retrieval-baseline', 't5'\], got 'gpt'"
    ):
        load_generator(tmp_path)


def test_score_is_refused_without_a_likelihood():
    class Echo(Generator):
        name = "echo"

        def generate(self, requests):
            return [Generation(text=r.context[-1].text, confidence=1.0) for r in requests]

    echo = Echo()
    assert not echo.supports_perplexity
    from assistant.data import Turn

    assert echo.generate([GenerationRequest(context=(Turn("customer", "hi"),))]) == [Generation("hi", 1.0)]
    with pytest.raises(ModelError, match="echo defines no likelihood"):
        echo.score([], [])


def test_read_manifest_of_kind_checks_kind_and_version(tmp_path):
    from assistant.generators.base import read_manifest_of_kind

    (tmp_path / "assistant.json").write_text(json.dumps({"kind": "lstm", "format_version": 2}))
    with pytest.raises(CheckpointError, match="kind is 'lstm', expected 't5'"):
        read_manifest_of_kind(tmp_path, "t5", 1)
    with pytest.raises(CheckpointError, match="format_version 2 is not supported"):
        read_manifest_of_kind(tmp_path, "lstm", 1)
    assert read_manifest_of_kind(tmp_path, "lstm", 2)["kind"] == "lstm"
