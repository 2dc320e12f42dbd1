"""gunicorn settings for the conversation server.

    gunicorn -c python:server.serving.gunicorn_conf 'server.wsgi:app'

``python:`` loads this module by name, so it works from a checkout and from an installed package.
Command-line flags and ``GUNICORN_CMD_ARGS`` override what is set here (gunicorn's own rule), e.g.
``--bind 0.0.0.0:8000 --workers 4``.

* **Worker**: :class:`server.serving.worker.BufferingThreadWorker`, gthread's threads with each
  request read whole (head and body) by the worker's event loop before a thread serves it, and
  answered 408 and closed after ``request_read_timeout`` seconds: slow or stalled clients cost a
  socket, never a thread (``docs/server.md#serving-with-gunicorn``).
* **Sizes**: ``workers`` processes x ``threads`` request threads; each worker loads the model once.
  PyTorch threads per worker are the app's ``torch_threads`` setting (default 1), so keep
  ``workers x torch_threads`` at or below the cores.
* **Metrics**: ``PROMETHEUS_MULTIPROC_DIR`` is set to a fresh directory unless given, so that
  ``/metrics`` counts every worker; ``child_exit`` marks a dead worker's samples.
* **Embedded Redis held by the master**: without ``REDIS_URL`` the workers share the embedded Redis,
  which stops when its last user does; ``when_ready`` registers the master as a user until ``on_exit``,
  so workers recycled together (``--max-requests``) never leave it without one (it would stop and a
  new one start under their traffic).
* **Control socket off**: gunicorn >= 25 opens ``~/.gunicorn/gunicorn.ctl`` by default, one path for
  every gunicorn of the user; two servers on one machine would fight over it.

Extend it by importing it in your own config file (``from server.serving.gunicorn_conf import *``)
and adding server hooks or settings. It configures gunicorn only; the app's settings stay
``ASSISTANT_*`` variables (``server/settings.py``).
"""

from __future__ import annotations

import os
import tempfile

from server.serving.worker import BufferingThreadWorker

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
worker_class = "server.serving.worker.BufferingThreadWorker"
#: Seconds a client has to send one whole request (head and body); then 408 and the connection closes.
request_read_timeout = float(os.environ.get("GUNICORN_REQUEST_READ_TIMEOUT", "10"))
#: Most connections one worker holds (reading, in a thread, or kept alive); more wait in the backlog.
worker_connections = 1000
#: A worker silent this long is restarted (gthread notifies from its event loop, not per request).
timeout = 60
#: On SIGTERM / SIGHUP, requests in flight get this long to finish.
graceful_timeout = 30
#: Seconds an idle kept-alive connection stays open.
keepalive = 5
limit_request_line = 4094
limit_request_fields = 100
control_socket_disable = True

BufferingThreadWorker.request_read_timeout = request_read_timeout

# Prometheus multiprocess mode (server/metrics.py): every worker writes its samples to this directory
# and any worker's /metrics adds them all up. A fresh directory per start unless the environment names
# one (then it must be emptied between starts: samples of old pids would be added too).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="assistant-metrics-")


def child_exit(server, worker):
    """A worker exited: drop its live-gauge samples (prometheus_client multiprocess bookkeeping)."""
    from server.metrics import mark_process_dead

    mark_process_dead(worker.pid)


def when_ready(server):
    """The master registers as a user of the embedded Redis (when the app uses one) for its whole life.

    Settings are read as ``server.wsgi`` reads them; invalid ones are left for the workers to report.
    """
    from assistant.errors import ConfigError
    from server import instance_path
    from server.settings import load_settings
    from server.store.embedded import EmbeddedRedis

    try:
        settings = load_settings(defaults={"env": "production"})
    except ConfigError:  # every worker fails to boot with the same, clear message
        return
    if not settings.redis_url:
        server.assistant_embedded_redis = EmbeddedRedis(instance_path(settings) / "redis")
        server.assistant_embedded_redis.start()


def on_exit(server):
    """The master ends its registration: the embedded Redis stops with its last user."""
    embedded = getattr(server, "assistant_embedded_redis", None)
    if embedded is not None:
        embedded.stop()
