"""``assistant-import``: convert support logs and FAQ spreadsheets into the canonical JSONL formats.

Subcommands ``faq-csv``, ``twitter`` and ``chatwoot`` (see ``assistant/ingest/importers.py`` for what each
reads), and ``dialogs`` for logs already in the canonical format (validated, then scrubbed). Dialogs have personal data scrubbed by default (``assistant/ingest/scrub.py``); ``--no-scrub-pii``
keeps the text as it is. What was not imported is printed by reason. This module only parses flags
and writes files.
"""

from __future__ import annotations

import argparse
import sys

from assistant.config import add_dataclass_arguments, dataclass_from_args
from assistant.data import dialog_to_json, faq_entry_to_json, read_dialogs, write_jsonl
from assistant.errors import report_errors
from assistant.ingest.importers import ImportReport, import_chatwoot, import_faq_csv, import_twitter_csv
from assistant.ingest.scrub import Scrubber, ScrubConfig


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``assistant-import``."""
    parser = argparse.ArgumentParser(prog="assistant-import", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="source", required=True)

    faq = sub.add_parser("faq-csv", help="a CSV of question/answer pairs → FAQ JSONL")
    faq.add_argument("input", help="the CSV file (header row required)")
    faq.add_argument(
        "--question-column", default="question", help="column with the question (default: question)"
    )
    faq.add_argument("--answer-column", default="answer", help="column with the answer (default: answer)")
    faq.add_argument("--id-column", help="column with a stable id (default: faq-0001, ... in row order)")
    faq.add_argument("--examples-column", help="column with other phrasings of the question")
    faq.add_argument(
        "--examples-separator", default="|", help="separator inside --examples-column (default: |)"
    )

    tw = sub.add_parser("twitter", help="the Twitter customer support CSV → dialogs JSONL")
    tw.add_argument("input", help="twcs.csv")
    tw.add_argument("--company", help="keep only threads answered by this author_id, e.g. AppleSupport")

    cw = sub.add_parser("chatwoot", help="Chatwoot message exports (JSON/JSONL) → dialogs JSONL")
    cw.add_argument("input", nargs="+", help="one or more exported files")

    canon = sub.add_parser("dialogs", help="canonical dialogs JSONL → validated, personal data scrubbed")
    canon.add_argument("input", help="a dialogs JSONL file in the canonical format (docs/data.md)")

    for p in (tw, cw):
        p.add_argument("--min-turns", type=int, default=2, help="skip dialogs shorter than this (default: 2)")
    for p in (tw, cw, canon):
        p.add_argument(
            "--scrub-pii",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="replace e-mails, phones, cards, IBANs, URLs, IPs with placeholders (default: on)",
        )
        add_dataclass_arguments(p, ScrubConfig, prefix="scrub-")
    for p in (faq, tw, cw, canon):
        p.add_argument("--out", required=True, help="the JSONL file to write")
    return parser


@report_errors
def main(argv: list[str] | None = None) -> int:
    """Run ``assistant-import``; returns the exit status (2 on bad input)."""
    args = build_parser().parse_args(argv)
    if args.source == "faq-csv":
        entries, report = import_faq_csv(
            args.input,
            args.question_column,
            args.answer_column,
            args.id_column,
            args.examples_column,
            args.examples_separator,
        )
        write_jsonl(args.out, [faq_entry_to_json(e) for e in entries])
    else:
        if args.source == "twitter":
            dialogs, report = import_twitter_csv(args.input, company=args.company, min_turns=args.min_turns)
        elif args.source == "chatwoot":
            dialogs, report = import_chatwoot(args.input, min_turns=args.min_turns)
        else:
            dialogs = read_dialogs(args.input)
            report = ImportReport(imported=len(dialogs))
        if args.scrub_pii:
            dialogs = Scrubber(dataclass_from_args(ScrubConfig, args, prefix="scrub-")).scrub_dialogs(dialogs)
        write_jsonl(args.out, [dialog_to_json(d) for d in dialogs])
    print(f"{args.out}: {report.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
