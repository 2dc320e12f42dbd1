"""WSGI entry point for production servers: ``gunicorn -c python:server.serving.gunicorn_conf 'server.wsgi:app'``.

Builds the app once per process (once in the master with ``--preload``) with ``production`` as the
default environment (an API key and a model/index directory are then required; ``ASSISTANT_ENV``
still overrides). Without ``REDIS_URL`` all workers share one embedded Redis, which outlives any one
of them and stops with the last (see ``docs/server.md``). Logging is set up by
``server.logs.configure_logging``.
"""

from server import create_app
from server.logs import configure_logging

app = create_app(defaults={"env": "production"})
configure_logging(app.extensions["assistant"].settings)  # JSON or text lines (setting log_format)
