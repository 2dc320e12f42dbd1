"""Calibrate a reply model's in-domain check and save it in the model directory (``assistant-calibrate-scope``).

    python -m finetune.calibrate_scope --model-dir models/lstm-star \\
        [--train TRAIN.jsonl] [--valid VALID.jsonl] [--oos-queries OOS.jsonl ...] [--max-texts N]

The check (``assistant/routing/scope.py``) embeds the customer turns of ``--train`` (the dialogs the
model was trained on; default: the train file its manifest records), and is calibrated on the
customer turns of ``--valid`` (in domain) against the ``faq_id: null`` queries of ``--oos-queries``
(out of scope). Embeddings of an existing check's texts are reused, so recalibrating encodes only
the calibration messages. Without out-of-scope queries it uses the project's generic set
(``assistant/routing/generic_oos.jsonl``) and says so loudly: a team's own out-of-scope traffic
calibrates better. The result is written to ``<model dir>/scope/``; the pipeline then hands off
messages below its threshold instead of letting the model answer them.

``assistant-train-lstm`` and ``assistant-build-baseline --valid`` call :func:`calibrate_after_training`
when they finish (``--no-scope-check`` skips it; ``--oos-queries`` as here). Use this command for a model directory trained before the check existed, or to
recalibrate with your own out-of-scope messages. It does not train or evaluate the model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from assistant.artifacts import file_sha256
from assistant.config import add_dataclass_arguments, dataclass_from_args
from assistant.data import read_dialogs, read_queries
from assistant.errors import CheckpointError, ConfigError, report_errors
from assistant.generators.base import MANIFEST, read_manifest
from assistant.routing.generic import GENERIC_OOS_PATH, generic_out_of_scope
from assistant.routing.scope import SCOPE_MANIFEST, SCOPE_SUBDIR, ScopeCheck, ScopeConfig, has_scope_check
from finetune.cli import add_threads_argument, apply_threads

NO_OOS_WARNING = (
    "WARNING: no out-of-scope messages were given (--oos-queries with faq_id null), so the in-domain check "
    "was calibrated on the project's {n} generic out-of-scope messages ({path}). They are not your "
    "customers' words: add out-of-scope messages from your own traffic and recalibrate "
    "(assistant-calibrate-scope --model-dir DIR --oos-queries FILE)."
)


def customer_turns(paths: Sequence[Path]) -> list[str]:
    """Every customer turn's text in the dialog files, in file order.

    Raises:
        DataError: a file is missing or malformed.
    """
    return [t.text for path in paths for d in read_dialogs(path) for t in d.turns if t.role == "customer"]


def _provenance(role: str, path: Path, **extra: Any) -> dict[str, Any]:
    return {"role": role, "path": str(path.resolve()), "sha256": file_sha256(path), **extra}


def calibrate_model_scope(
    model_dir: str | Path,
    train: Sequence[Path],
    valid: Sequence[Path],
    oos_queries: Sequence[Path] = (),
    config: ScopeConfig | None = None,
    progress: bool = False,
) -> tuple[ScopeCheck, dict[str, Any], bool]:
    """Build the in-domain check from dialogs, calibrate it and save it in ``model_dir/scope``.

    Args:
        model_dir: the model directory (must exist).
        train: dialogs the model was trained on (their customer turns are the in-domain texts).
        valid: held-out dialogs (their customer turns are the in-domain calibration messages).
        oos_queries: query files; their ``faq_id: null`` queries are the out-of-scope messages.
            Without any, the generic set is used.
        config: check settings (defaults if ``None``).

    Returns:
        ``(check, calibration report, used_generic)``.

    Raises:
        DataError: a file is missing or malformed, or there is no customer turn.
        ConfigError: ``model_dir`` is not a directory, or no train / valid file is given.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ConfigError(f"{model_dir}: not a directory (give the model directory to calibrate)")
    if not train or not valid:
        raise ConfigError(
            "the in-domain check needs training dialogs (--train) and held-out dialogs (--valid)"
        )
    train_texts = customer_turns(train)
    valid_texts = customer_turns(valid)
    out_of_scope = [q.text for path in oos_queries for q in read_queries(path) if q.faq_id is None]
    used_generic = not out_of_scope
    oos_sources = [_provenance("out_of_scope", p) for p in oos_queries]
    if used_generic:
        out_of_scope = [q.text for q in generic_out_of_scope()]
        oos_sources = [_provenance("out_of_scope", GENERIC_OOS_PATH, generic=True)]
    data = [
        *(_provenance("train", p) for p in train),
        *(_provenance("valid", p) for p in valid),
        *oos_sources,
    ]
    reuse = None
    if has_scope_check(model_dir):
        try:
            reuse = ScopeCheck.load(model_dir)
        except CheckpointError as e:  # an invalid old check is replaced, not reused
            print(f"note: not reusing the existing in-domain check's embeddings ({e})", file=sys.stderr)
    check = ScopeCheck.build(train_texts, config, data=data, progress=progress, reuse=reuse)
    report = check.calibrate(
        valid_texts,
        out_of_scope,
        sources={"in_domain": [str(p) for p in valid], "out_of_scope": [d["path"] for d in oos_sources]},
    )
    report["generic_out_of_scope"] = used_generic
    check.save(model_dir)
    return check, report, used_generic


def no_oos_warning() -> str:
    """The loud message printed when the check was calibrated on the generic set only."""
    return NO_OOS_WARNING.format(n=len(generic_out_of_scope()), path=GENERIC_OOS_PATH)


def add_scope_arguments(parser: argparse.ArgumentParser) -> None:
    """The trainers' flags: ``--scope-check / --no-scope-check`` and ``--oos-queries``."""
    parser.add_argument(
        "--scope-check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after training, calibrate the model's in-domain check (assistant-calibrate-scope) on the "
        "validation dialogs against --oos-queries (default: the project's generic out-of-scope set)",
    )
    parser.add_argument(
        "--oos-queries",
        type=Path,
        action="append",
        default=[],
        help="query JSONL whose faq_id null entries are out-of-scope messages for the in-domain check "
        "(repeatable)",
    )


def calibrate_after_training(
    model_dir: Path, train: Sequence[Path], valid: Sequence[Path], oos_queries: Sequence[Path]
) -> dict[str, Any] | None:
    """What a trainer runs last: calibrate and save the check, print its figures, warn about the
    generic set. Skipped (``None``) when no model was saved.

    Raises:
        AssistantError: as :func:`calibrate_model_scope`.
    """
    if not (model_dir / MANIFEST).is_file():
        return None
    _, report, used_generic = calibrate_model_scope(model_dir, train, valid, oos_queries)
    print(
        f"in-domain check: threshold {report['threshold']:.3f}; on the calibration messages "
        f"{100 * report['in_domain_accepted']:.1f} % of {report['n_in_domain']} in-domain accepted, "
        f"{100 * report['out_of_scope_rejected']:.1f} % of {report['n_out_of_scope']} out-of-scope "
        f"rejected; saved in {model_dir / 'scope'}",
        flush=True,
    )
    if used_generic:
        print(no_oos_warning(), file=sys.stderr, flush=True)
    return report


def _recorded(model_dir: Path, role: str) -> list[Path]:
    """The data files of ``role`` the model's manifest records (or, failing that, its current in-domain
    check's manifest), when they still exist."""
    sources = [read_manifest(model_dir).get("data") or []]
    scope_manifest = model_dir / SCOPE_SUBDIR / SCOPE_MANIFEST
    if scope_manifest.is_file():
        sources.append(json.loads(scope_manifest.read_text(encoding="utf-8")).get("data") or [])
    for data in sources:
        paths = [Path(str(d.get("path"))) for d in data if isinstance(d, dict) and d.get("role") == role]
        if paths and all(p.is_file() for p in paths):
            return paths
    return []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assistant-calibrate-scope",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model-dir", type=Path, required=True, help="the reply model's directory")
    parser.add_argument(
        "--train",
        type=Path,
        action="append",
        default=[],
        help="training dialogs JSONL (repeatable; default: the train file the model's manifest records)",
    )
    parser.add_argument(
        "--valid",
        type=Path,
        action="append",
        default=[],
        help="held-out dialogs JSONL (repeatable; default: the valid file the model's manifest, or its "
        "current in-domain check, records)",
    )
    parser.add_argument(
        "--oos-queries",
        type=Path,
        action="append",
        default=[],
        help="query JSONL whose faq_id null entries are out-of-scope messages (repeatable; default: the "
        "project's generic set, with a warning)",
    )
    add_threads_argument(parser, "the sentence encoder")
    add_dataclass_arguments(parser, ScopeConfig)
    return parser


@report_errors
def main(argv: list[str] | None = None) -> int:
    """Entry point; prints the calibration report. Returns 0, or 2 on a bad input."""
    args = build_parser().parse_args(argv)
    apply_threads(args.threads)
    read_manifest(args.model_dir)  # a model directory of a known kind
    train = args.train or _recorded(args.model_dir, "train")
    valid = args.valid or _recorded(args.model_dir, "valid")
    start = time.perf_counter()
    _, report, used_generic = calibrate_model_scope(
        args.model_dir, train, valid, args.oos_queries, dataclass_from_args(ScopeConfig, args), True
    )
    print(json.dumps({**report, "seconds": round(time.perf_counter() - start, 1)}, indent=2))
    if used_generic:
        print(no_oos_warning(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
