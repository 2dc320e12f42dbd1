"""The one artifact module: manifests stamped and written atomically, read with older key names, checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant import artifacts
from assistant.data import FaqEntry
from assistant.errors import CheckpointError, RetrievalError
from assistant.retrieval.index import FaqIndex, RetrieverConfig
from assistant.retrieval.store import INDEX_MANIFEST


def test_write_manifest_stamps_kind_files_versions_and_time(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\x00\x01")
    written = artifacts.write_manifest(
        tmp_path,
        "m.json",
        kind="thing",
        format_version=3,
        body={"config": {"a": 1}},
        libraries=("numpy", "no-such-distribution"),
        files=("weights.bin",),
    )
    stored = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert stored == written
    assert list(stored)[:4] == ["kind", "format_version", "files", "config"]
    assert stored["files"] == {"weights.bin": artifacts.file_sha256(tmp_path / "weights.bin")}
    assert set(stored["versions"]) == {"python", "numpy", "no-such-distribution"}
    assert stored["versions"]["no-such-distribution"] == "not installed"
    assert stored["created"].endswith("+00:00")
    with pytest.raises(ValueError, match=r"stamped keys \['versions'\]"):
        artifacts.write_manifest(
            tmp_path, "m.json", kind="thing", format_version=3, body={"versions": {}}, libraries=()
        )


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    artifacts.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError, match="crash"), artifacts.replacing(target) as tmp:
        tmp.write_text('{"v": 2, "half', encoding="utf-8")
        raise RuntimeError("crash while writing")
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_read_manifest_checks_kind_and_version(tmp_path: Path) -> None:
    artifacts.write_manifest(tmp_path, "m.json", kind="lstm", format_version=1, body={}, libraries=())
    read = artifacts.read_manifest(tmp_path, "m.json", kinds=("lstm", "t5"), kind="lstm", format_version=1)
    assert read["kind"] == "lstm"
    with pytest.raises(CheckpointError, match="kind is 'lstm', expected 't5'"):
        artifacts.read_manifest(tmp_path, "m.json", kinds=("lstm", "t5"), kind="t5")
    with pytest.raises(RetrievalError, match="'kind' must be 'faq-index', got 'lstm'"):
        artifacts.read_manifest(tmp_path, "m.json", kinds=("faq-index",), error=RetrievalError)
    with pytest.raises(
        CheckpointError, match=r"format_version 1 is not supported .*reads format_version 2\); x"
    ):
        artifacts.read_manifest(tmp_path, "m.json", kinds=("lstm",), format_version=2, hint="x")
    (tmp_path / "m.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="expected a JSON object, got list"):
        artifacts.read_manifest(tmp_path, "m.json", kinds=("lstm",))
    with pytest.raises(CheckpointError, match="no other.json; this is not a FAQ index"):
        artifacts.read_manifest(tmp_path, "other.json", kinds=("lstm",), what="FAQ index")
    assert artifacts.manifest_kind(tmp_path, "m.json") is None
    assert artifacts.manifest_kind(tmp_path / "absent", "m.json") is None


def test_an_index_written_with_the_old_libraries_key_still_loads(tmp_path: Path) -> None:
    entries = [
        FaqEntry("pw", "How do I reset my password?", "Use 'Forgot password'."),
        FaqEntry("refund", "How do I get a refund?", "Within 5 days."),
    ]
    FaqIndex.build(entries, RetrieverConfig(method="bm25")).save(tmp_path / "index")
    path = tmp_path / "index" / INDEX_MANIFEST
    manifest = json.loads(path.read_text())
    assert "libraries" not in manifest and manifest["versions"]["python"]
    # the manifest as indexes were written before the artifact module: library versions under "libraries"
    old = {k: v for k, v in manifest.items() if k not in ("versions", "created")}
    old["libraries"] = manifest["versions"]
    path.write_text(json.dumps(old))
    assert FaqIndex.load(tmp_path / "index").search("reset my password")[0].faq_id == "pw"
    read = artifacts.read_manifest(tmp_path / "index", INDEX_MANIFEST, kinds=("faq-index",), format_version=1)
    assert read["versions"] == manifest["versions"] and "libraries" not in read
