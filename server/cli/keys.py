"""``assistant keys create|list|revoke``: manage the per-tenant API keys stored (hashed) in Redis.

* ``assistant keys create --tenant acme --scope chat [--scope conversations:read ...] [--name LABEL]``
  prints the new key once (only its SHA-256 digest is stored) and its id;
* ``assistant keys list [--tenant acme] [--json]`` prints id, tenant, scopes, name and creation time
  of each key (never a key or a digest);
* ``assistant keys revoke KEY_ID`` deletes it: every worker refuses it from the next request on.

Scopes: ``chat`` (``/v1/chat``, the Rasa webhook), ``conversations:read`` (``GET
/v1/conversations/<id>``), ``conversations:erase`` (``DELETE``), ``admin`` (everything, and
``/metrics``). Redis is the server's (``--redis-url`` / ``REDIS_URL``, else the instance folder's
embedded Redis); see ``server/store/keys.py`` for how keys are stored.
"""

from __future__ import annotations

import argparse
import json
import time

from server.cli.redis_access import add_redis_flags, redis_client, settings_from
from server.store.keys import SCOPES, KeyStore
from server.store.tenants import TENANT_RULE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``keys`` sub-commands."""
    sub = parser.add_subparsers(dest="keys_command", required=True)
    create = sub.add_parser("create", help="create an API key for a tenant (printed once)")
    create.add_argument("--tenant", required=True, help=TENANT_RULE)
    create.add_argument(
        "--scope",
        dest="scopes",
        action="append",
        choices=list(SCOPES),
        required=True,
        help="what the key may do; repeat for several",
    )
    create.add_argument("--name", default="", help="a label, e.g. 'helpdesk prod'")
    listing = sub.add_parser("list", help="list keys (ids, tenants, scopes; never the keys)")
    listing.add_argument("--tenant", default=None, help="only this tenant's keys")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    revoke = sub.add_parser("revoke", help="revoke a key by its id (refused everywhere at once)")
    revoke.add_argument("key_id", help="the id shown by 'create' and 'list'")
    for p in (create, listing, revoke):
        add_redis_flags(p)


def run(args: argparse.Namespace) -> int:
    """Run a ``keys`` sub-command; returns the exit code (errors raise ``AssistantError``)."""
    settings = settings_from(args)
    with redis_client(settings) as client:
        store = KeyStore(client, settings.redis_prefix)
        if args.keys_command == "create":
            key, record = store.create(args.tenant, args.scopes, args.name)
            print(
                f"created key {record.key_id} for tenant {record.tenant} (scopes {', '.join(record.scopes)})"
            )
            print("the key (shown only now; store it as a secret):")
            print(key)
        elif args.keys_command == "list":
            for record in store.list(args.tenant):
                if args.json:
                    print(json.dumps(record.to_json()))
                else:
                    created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.created_at))
                    print(
                        f"{record.key_id}  {record.tenant:<16} {','.join(record.scopes):<40} "
                        f"{created}Z  {record.name}"
                    )
        else:
            record = store.revoke(args.key_id)
            print(f"revoked key {record.key_id} of tenant {record.tenant}")
    return 0
