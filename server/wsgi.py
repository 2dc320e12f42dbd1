"""WSGI entry point for production servers: ``gunicorn 'server.wsgi:app'``.

Builds the app once per process with ``production`` as the default environment (an API key and a
model/index directory are then required; ``ASSISTANT_ENV`` still overrides). With several gunicorn
workers, set ``REDIS_URL`` to a Redis server, or pass ``--preload`` so the master process starts the
embedded Redis once and the workers share it (see ``docs/server.md``). Without either, the first
worker starts the embedded Redis and the others reuse it (a file lock prevents two servers on one
AOF), but it stops when that worker exits. Logging is set up by ``server.logs.configure_logging``.
"""

from server import create_app
from server.logs import configure_logging

app = create_app(defaults={"env": "production"})
configure_logging(app.extensions["assistant"].settings)  # JSON or text lines (setting log_format)
