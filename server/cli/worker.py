"""``assistant worker`` runs helpdesk channel jobs; ``assistant channels`` shows their counters and failures.

* ``assistant worker [--threads N] [settings flags]`` builds the same app as ``assistant serve``
  (settings, Redis, reply pipeline, channels) without serving HTTP and without the in-process
  worker, then consumes the ``channels`` queue with ``N`` threads (default: the ``worker_threads``
  of the channels setting) until SIGTERM or Ctrl-C, finishing the jobs in progress. Run as many as
  you like, on any machine that reaches the same Redis (``REDIS_URL``); with the embedded Redis, on
  the same machine and instance folder as the server. Set ``"worker": "external"`` in the channels
  setting (the default with ``REDIS_URL``) so the web server leaves jobs to them.
* ``assistant channels [--limit N] [settings flags]`` prints JSON: the channel counters (queued,
  duplicates, turns, replies_posted, handoffs, silenced, retries, failed_turns, ...), how many jobs
  the queue gave up on (dead letters), and the newest failure records (ids, stage, error, whether
  the conversation was handed to humans). It loads no model.

Exit codes: 0 ok, 2 configuration error or no channel configured.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from server.channels.queue import QUEUE


def run_worker(overrides: dict[str, Any], threads: int) -> int:
    """Run a channel worker process until SIGTERM/SIGINT; returns the exit code."""
    from server import create_app

    app = create_app(overrides, start_channel_worker=False)
    rt = app.extensions["assistant"]
    ext = app.extensions["channels"]
    if not ext.cfg.enabled:
        rt.close()
        print("error: no channel is configured (setting channels / ASSISTANT_CHANNELS)", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    count = threads or ext.cfg.worker_threads
    ext.queue.start_worker(count)
    where = rt.settings.redis_url or f"embedded Redis {rt.embedded.url}"
    print(f"assistant worker: {count} threads on queue {QUEUE!r} ({where}); Ctrl-C to stop", flush=True)
    try:
        stop.wait()
    finally:
        rt.close()  # stops the worker (waits for running jobs) before Redis connections close
    return 0


def _default_instance_path() -> Path:
    """The instance folder ``create_app`` uses when ``instance_dir`` is empty: Flask's instance path of the
    ``server`` package (``<repo>/instance`` in a checkout, ``<venv>/var/server-instance`` for an installed
    wheel), found without building the app (no model is loaded)."""
    from flask import Flask

    return Path(Flask("server").instance_path)


def show_status(overrides: dict[str, Any], limit: int) -> int:
    """Print channel counters, dead letters and the newest failures as JSON; returns the exit code."""
    from server.channels.state import ChannelState
    from server.runtime import client_from_settings, store_from_settings
    from server.settings import load_settings
    from server.store.embedded import EmbeddedRedis

    settings = load_settings(overrides)
    url = settings.redis_url
    embedded = None
    if not url:
        instance = Path(settings.instance_dir) if settings.instance_dir else _default_instance_path()
        embedded = EmbeddedRedis(instance / "redis")
        url = embedded.start()
    client = client_from_settings(url, settings, max_connections=2)
    try:
        store = store_from_settings(client, settings)
        state = ChannelState(store)
        report = {
            "counters": state.counters(),
            "dead_letters": int(client.zcard(f"{settings.redis_prefix}-queue:{QUEUE}.XQ")),
            "failures": state.failures(limit),
        }
    finally:
        client.close()
        if embedded is not None:
            embedded.stop()
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0
