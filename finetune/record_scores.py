"""Command line: record an evaluation's scores in the T5 model directories' ``assistant.json`` (model card).

    python -m finetune.evaluate models/t5-star ... --out-dir runs/eval-star
    python -m finetune.record_scores runs/eval-star/report.json

For every model of the report whose manifest is ``kind: "t5"``, the manifest gets (or has replaced) one
entry of its ``scores`` list per (dialogs file, filters, report label, loader options)::

    {"name", "dialogs", "dialogs_sha256", "filters", "n_examples", "options", "metrics": {bleu, rouge_l_f,
     token_f1, perplexity, avg_words, replies_per_second, ...}, "date", "report"}

so a model directory carries its data, budget, throughput (``training``) and scores together. Models of
other kinds are listed as skipped. This module does not evaluate (``finetune/evaluate.py`` does).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from assistant.artifacts import write_json
from assistant.errors import DataError, report_errors
from assistant.generators.base import MANIFEST

#: the identity of a score entry: a new evaluation with the same identity replaces the old entry.
IDENTITY = ("name", "dialogs_sha256", "filters", "options")


def score_entry(report: dict[str, Any], model: dict[str, Any], report_path: Path) -> dict[str, Any]:
    """One ``scores`` entry for ``model`` (an element of ``report["models"]``)."""
    return {
        "name": model["name"],
        "dialogs": report["dialogs"],
        "dialogs_sha256": report["dialogs_sha256"],
        "filters": report["filters"],
        "n_examples": report["n_examples"],
        "options": model["options"],
        "metrics": model["metrics"],
        "date": report["date"],
        "report": str(report_path.resolve()),
    }


def record_scores(report_path: Path) -> list[tuple[str, str]]:
    """Add the report's scores to each T5 model directory's manifest.

    Returns:
        ``(model name, "recorded" | "skipped (kind K)")`` per model of the report.

    Raises:
        DataError: the report or a manifest cannot be read or is not a JSON object.
    """
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        models = report["models"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{report_path}: not an evaluation report.json ({e})") from e
    done = []
    for model in models:
        if model.get("kind") != "t5":
            done.append((model["name"], f"skipped (kind {model.get('kind')})"))
            continue
        path = Path(model["model_dir"]) / MANIFEST
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: cannot read the model's manifest ({e})") from e
        entry = score_entry(report, model, report_path)
        key = tuple(json.dumps(entry[k], sort_keys=True) for k in IDENTITY)
        kept = [
            s
            for s in manifest.get("scores", [])
            if tuple(json.dumps(s.get(k), sort_keys=True) for k in IDENTITY) != key
        ]
        manifest["scores"] = [*kept, entry]
        write_json(path, manifest)
        done.append((model["name"], "recorded"))
    return done


@report_errors
def main(argv: list[str] | None = None) -> int:
    """CLI entry point. Returns 0, or 2 on a bad input (message on stderr)."""
    parser = argparse.ArgumentParser(prog="assistant-record-scores", description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="report.json written by finetune.evaluate --out-dir")
    args = parser.parse_args(argv)
    for name, what in record_scores(args.report):
        print(f"{name}: {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
