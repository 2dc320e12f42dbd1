"""The ``assistant`` command: ``serve`` the HTTP API, ``chat``, ``replay``, ``worker``, ``channels``, ``index rebuild``.

* ``assistant serve [--host H] [--port P] [--model-dir D] [--index-dir D] [--redis-url U] ...``
  runs the server (Werkzeug's threaded server, for trying and small installs; production: gunicorn,
  see ``docs/server.md``), printing its URL and a ready-to-paste ``curl`` line. Every setting of
  ``server/settings.py`` is a flag; flags win over ``ASSISTANT_*`` environment variables.
* ``assistant chat [--url URL]`` is an interactive terminal chat, against a running server over
  HTTP, or in-process (the same app through Flask's test client) without ``--url``. Each reply
  shows its source, confidence and whether it hands off. ``/reset`` erases the conversation,
  ``/history`` prints it, ``/quit`` (or Ctrl-D) leaves.
* ``assistant replay --url URL --dialogs FILE --queries FILE`` sends real customer messages to a
  running server and prints the transcript and latency percentiles (``server/cli/replay.py``).
* ``assistant worker`` runs helpdesk channel jobs; ``assistant channels`` prints their counters and
  failures (``server/cli/worker.py``).
* ``assistant index rebuild --index-dir D --faq FILE`` rebuilds an FAQ index from a new FAQ file with
  the index's own retriever config (``assistant.retrieval.rebuild.rebuild_index``); restart the server after.

Exit codes: 0 ok, 2 on a configuration or data error (``error: <message>`` on stderr, no traceback),
1 from ``replay`` when a request did not answer 200.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import signal
import socket
import sys
import uuid
from typing import Any

from assistant.errors import ConfigError, report_errors
from server.cli import replay, worker
from server.cli.client import HttpClient
from server.settings import ENVIRONMENTS, Settings, env_var


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per setting; absent flags leave the setting to the environment / default.

    Values stay strings here: :func:`server.settings.load_settings` converts and validates them as it does
    the environment's, so a bad flag gets the same message as a bad variable.
    """
    group = parser.add_argument_group("settings", "each also read from its environment variable")
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} [env {env_var(f)}; default {f.default!r}]"
        if f.type == "bool":
            group.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        elif f.name == "env":
            group.add_argument(
                flag,
                dest=f.name,
                choices=list(ENVIRONMENTS),
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            group.add_argument(
                flag,
                dest=f.name,
                # the value goes to load_settings as a string; it converts and checks it like the
                # environment variable's value (one place for types and messages)
                default=argparse.SUPPRESS,
                help=help_text,
            )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(Settings)}
    return {k: v for k, v in vars(args).items() if k in names}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assistant", description="Customer-service assistant server.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    _add_settings_flags(serve)

    chat = sub.add_parser("chat", help="interactive terminal chat against a server or in-process")
    chat.add_argument(
        "--url",
        default="",
        help="base URL of a running server, e.g. http://127.0.0.1:8000; "
        "empty = in-process with the settings below",
    )
    chat.add_argument("--conversation-id", default="", help="conversation to continue (default: a new one)")
    _add_settings_flags(chat)

    replay_parser = sub.add_parser(
        "replay", help="send dialogs' customer turns / queries to a running server; transcript and latency"
    )
    replay.add_arguments(replay_parser)

    worker_parser = sub.add_parser(
        "worker", help="run helpdesk channel jobs (Chatwoot, Sunshine) from the queue"
    )
    worker_parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="worker threads (default: worker_threads of the channels setting)",
    )
    _add_settings_flags(worker_parser)
    status_parser = sub.add_parser(
        "channels", help="channel counters, dead letters and the newest failures (JSON)"
    )
    status_parser.add_argument("--limit", type=int, default=20, help="failure records to show (default: 20)")
    _add_settings_flags(status_parser)

    index = sub.add_parser("index", help="FAQ index maintenance")
    index_sub = index.add_subparsers(dest="index_command", required=True)
    rebuild = index_sub.add_parser("rebuild", help="rebuild an index from a new FAQ file, same config")
    rebuild.add_argument("--index-dir", required=True, help="the existing index directory (rewritten)")
    rebuild.add_argument("--faq", required=True, help="the FAQ JSONL file")
    return parser


@report_errors
def main(argv: list[str] | None = None) -> int:
    """Run the ``assistant`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "chat":
        return _chat(args)
    if args.command == "replay":
        return replay.run(args)
    if args.command == "worker":
        return worker.run_worker(_overrides(args), args.threads)
    if args.command == "channels":
        return worker.show_status(_overrides(args), args.limit)
    return _index_rebuild(args)


def _serve(args: argparse.Namespace) -> int:
    from werkzeug.serving import make_server, select_address_family

    from server import create_app

    # take the port first: a port in use fails at once, before the model is loaded or anything printed
    try:
        family = select_address_family(args.host, args.port)
        listener = socket.create_server((args.host, args.port), family=family)
    except OSError as e:
        raise ConfigError(
            f"cannot listen on {args.host}:{args.port} ({e.strerror}); stop what uses it or pick another --port"
        ) from e
    try:
        app = create_app(_overrides(args))
    except BaseException:
        listener.close()
        raise
    settings = app.extensions["assistant"].settings
    server = make_server(args.host, args.port, app, threaded=True, fd=listener.fileno())
    url = f"http://{args.host}:{args.port}"
    # double quotes: the shell expands $ASSISTANT_API_KEY when the line is pasted
    auth = ' -H "Authorization: Bearer $ASSISTANT_API_KEY"' if settings.api_key else ""
    body = json.dumps({"conversation_id": "demo-1", "text": "How do I reset my password?"})
    print(f"assistant server on {url} (env {settings.env}; readiness: {url}/readyz)", flush=True)
    print(
        f"try: curl -s {url}/v1/chat -H 'Content-Type: application/json'{auth} -d {shlex.quote(body)}",
        flush=True,
    )
    # SIGTERM (docker stop, systemd, timeout) exits through `finally`, so the embedded Redis stops cleanly
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        server.serve_forever()
    finally:
        server.server_close()
        listener.close()
        app.extensions["assistant"].close()
    return 0


class _InProcessClient:
    """The same interface through Flask's test client on an app built here."""

    def __init__(self, overrides: dict[str, Any]) -> None:
        from server import create_app

        self.app = create_app(overrides)
        self.client = self.app.test_client()

    def send(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        response = self.client.open(path, method=method, json=body)
        return response.status_code, response.get_json(silent=True)

    def close(self) -> None:
        self.app.extensions["assistant"].close()


def _chat(args: argparse.Namespace) -> int:
    overrides = _overrides(args)
    if args.url:
        client: Any = HttpClient(args.url, overrides.get("api_key", ""))
    else:
        client = _InProcessClient(overrides)
    conversation_id = args.conversation_id or f"cli-{uuid.uuid4().hex[:12]}"
    print(f"conversation {conversation_id}; /history, /reset, /quit", flush=True)
    try:
        while True:
            try:
                text = input("you> ").strip()
            except EOFError:
                print()
                return 0
            if not text:
                continue
            if text in ("/quit", "/exit"):
                return 0
            if text == "/reset":
                status, _ = client.send("DELETE", f"/v1/conversations/{conversation_id}")
                print("(conversation erased)" if status == 204 else "(nothing stored yet)")
                continue
            if text == "/history":
                status, body = client.send("GET", f"/v1/conversations/{conversation_id}")
                for turn in (body or {}).get("turns", []) if status == 200 else []:
                    print(f"  {turn['role']:>8}: {turn['text']}")
                continue
            status, body = client.send("POST", "/v1/chat", {"conversation_id": conversation_id, "text": text})
            if status != 200:
                error = (body or {}).get("error", {})
                print(f"[{status} {error.get('code', '')}] {error.get('message', body)}")
                continue
            for reply in body["replies"]:
                faq = f" faq_id={reply['faq_id']}" if reply.get("faq_id") else ""
                print(f"bot> {reply['text']}")
                print(
                    f"     [source={reply['source']}{faq} confidence={body['confidence']:.2f} "
                    f"handoff={'yes' if body['handoff'] else 'no'}]"
                )
    finally:
        if isinstance(client, _InProcessClient):
            client.close()


def _index_rebuild(args: argparse.Namespace) -> int:
    from assistant.retrieval.rebuild import rebuild_index

    rebuild_index(args.index_dir, args.faq)
    print(f"rebuilt {args.index_dir} from {args.faq}; restart the server to load it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
