"""Command line: build the retrieval baseline reply model from a dialogs file and save its model directory.

    python -m finetune.build_baseline --train dialogs.jsonl --out models/baseline [--top-k 10 ...]

No training happens: every agent turn of the dialogs is indexed with BM25 (``assistant/generators/baseline.py``).
With ``--valid``, the model's in-domain check is calibrated on those dialogs' customer turns
(``finetune/calibrate_scope.py``); without it, the command warns that the model has none.
The manifest records the dialogs file's path and sha256. This command does not evaluate the model
(``python -m finetune.evaluate`` does).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from assistant.artifacts import file_sha256
from assistant.config import add_dataclass_arguments, dataclass_from_args
from assistant.data import read_dialogs
from assistant.errors import report_errors
from assistant.generators.baseline import BaselineConfig, RetrievalBaseline
from assistant.model_input import build_examples
from finetune.calibrate_scope import add_scope_arguments, calibrate_after_training


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (flags of :class:`BaselineConfig` included)."""
    parser = argparse.ArgumentParser(
        prog="assistant-build-baseline",
        description="Build the BM25 retrieval baseline (no training) from support dialogs and save it "
        "as a model directory that `assistant-eval` and the server can load.",
    )
    parser.add_argument(
        "--train",
        type=Path,
        required=True,
        help="dialogs JSONL file whose agent turns become the retrievable replies",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="model directory to write (created; an existing retrieval-baseline dir is replaced)",
    )
    parser.add_argument(
        "--valid",
        type=Path,
        default=None,
        help="held-out dialogs JSONL: calibrates the model's in-domain check (without it there is none)",
    )
    add_scope_arguments(parser)
    add_dataclass_arguments(parser, BaselineConfig)
    return parser


@report_errors
def main(argv: list[str] | None = None) -> int:
    """Build and save the baseline; print a one-line summary. Returns 0, or 2 on a bad input."""
    args = build_parser().parse_args(argv)
    config = dataclass_from_args(BaselineConfig, args)
    start = time.perf_counter()
    dialogs = read_dialogs(args.train)
    n_examples = len(build_examples(dialogs, config.max_context_turns))
    data = [
        {
            "role": "train",
            "path": str(args.train.resolve()),
            "sha256": file_sha256(args.train),
            "dialogs": len(dialogs),
            "examples": n_examples,
        }
    ]
    model = RetrievalBaseline.build(dialogs, config, data=data)
    model.save(args.out)
    seconds = time.perf_counter() - start
    print(f"indexed {n_examples} agent replies from {len(dialogs)} dialogs in {seconds:.1f} s -> {args.out}")
    if args.scope_check and args.valid is None:
        print(
            "WARNING: no --valid dialogs, so no in-domain check was calibrated: the pipeline will let this "
            "model answer every message the FAQ does not, out of scope or not. Add --valid FILE, or run "
            f"assistant-calibrate-scope --model-dir {args.out} --valid FILE.",
            file=sys.stderr,
        )
    elif args.scope_check:
        calibrate_after_training(args.out, [args.train], [args.valid], args.oos_queries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
