"""``finetune.record_scores``: an evaluation report's scores land in each T5 model directory's manifest,
once per (name, dialogs, filters, options); other kinds are skipped; a bad report is refused."""

from __future__ import annotations

import json
from pathlib import Path

from assistant.generators.t5.model import write_manifest
from finetune.record_scores import main, record_scores


def report(tmp_path: Path, t5_dir: Path, domain: str | None, f1: float) -> Path:
    path = tmp_path / f"report-{domain}-{f1}.json"
    body = {
        "dialogs": "test.jsonl",
        "dialogs_sha256": "abc",
        "filters": {"domain": domain, "limit": None},
        "n_examples": 7,
        "date": "2026-11-30T06:00:00+00:00",
        "models": [
            {
                "name": "t5",
                "model_dir": str(t5_dir),
                "kind": "t5",
                "options": {},
                "metrics": {"token_f1": f1},
            },
            {"name": "lstm", "model_dir": str(tmp_path), "kind": "lstm", "options": {}, "metrics": {}},
        ],
    }
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def test_scores_are_recorded_replaced_and_kept_per_filter(tmp_path, capsys):
    t5_dir = tmp_path / "t5"
    t5_dir.mkdir()
    write_manifest(t5_dir, {"training": {"steps": 3}})
    assert record_scores(report(tmp_path, t5_dir, None, 0.1)) == [
        ("t5", "recorded"),
        ("lstm", "skipped (kind lstm)"),
    ]
    assert main([str(report(tmp_path, t5_dir, None, 0.2))]) == 0  # same identity: replaces
    assert main([str(report(tmp_path, t5_dir, "bank", 0.3))]) == 0  # another filter: added
    manifest = json.loads((t5_dir / "assistant.json").read_text(encoding="utf-8"))
    assert manifest["training"] == {"steps": 3} and manifest["kind"] == "t5"
    assert [(s["filters"]["domain"], s["metrics"]["token_f1"]) for s in manifest["scores"]] == [
        (None, 0.2),
        ("bank", 0.3),
    ]
    assert "lstm: skipped (kind lstm)" in capsys.readouterr().out


def test_a_file_that_is_not_a_report_is_refused(tmp_path, capsys):
    bad = tmp_path / "r.json"
    bad.write_text("[1, 2]", encoding="utf-8")
    assert main([str(bad)]) == 2
    assert "not an evaluation report.json" in capsys.readouterr().err
