"""``assistant export --out FILE``: stored conversations → a training dialogs JSONL file.

``assistant export --out dialogs.jsonl [--tenant T ...] [--no-scrub]`` writes every stored
conversation (of the given tenants) as one dialog per line in the canonical format
(``assistant.data``; ``docs/data.md``), scrubbed of personal data unless ``--no-scrub``, with the
handoff conversations marked in ``meta.handoff`` (``server/store/export.py`` lists every meta
field). The file is written atomically and can go straight to ``assistant-train-lstm --train`` after
a split, or to a person for review of the handoff dialogs first. Prints how many dialogs and how
many of them handed off.
"""

from __future__ import annotations

import argparse

from assistant.data import dialog_to_json, write_jsonl
from assistant.ingest.scrub import Scrubber
from server.cli.redis_access import add_redis_flags, redis_client, settings_from
from server.runtime import store_from_settings
from server.store.export import export_dialogs
from server.store.tenants import check_tenant


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="the dialogs JSONL file to write")
    parser.add_argument(
        "--tenant", dest="tenants", action="append", default=None, help="only this tenant (repeatable)"
    )
    parser.add_argument(
        "--no-scrub",
        dest="scrub",
        action="store_false",
        help="keep personal data (e-mails, phones, cards, ...) in the texts; default: scrubbed",
    )
    add_redis_flags(parser)


def run(args: argparse.Namespace) -> int:
    """Write the export; returns 0 (errors raise ``AssistantError`` or ``redis.RedisError``)."""
    tenants = {check_tenant(t) for t in args.tenants} if args.tenants else None
    settings = settings_from(args)
    with redis_client(settings) as client:
        store = store_from_settings(client, settings)
        dialogs = list(export_dialogs(store, tenants, Scrubber() if args.scrub else None))
    write_jsonl(args.out, [dialog_to_json(d) for d in dialogs])
    handoffs = sum(d.meta["handoff"] for d in dialogs)
    print(f"wrote {len(dialogs)} dialogs ({handoffs} handed off) to {args.out}")
    return 0
