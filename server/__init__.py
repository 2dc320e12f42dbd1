"""The conversation server: a Flask app with Redis dialog history in front of the assistant pipeline.

``create_app(config=None)`` builds the app: settings from defaults → environment (``ASSISTANT_*``,
``REDIS_URL``) → ``config`` (validated; a bad value raises ``ConfigError`` naming it), Redis
(``REDIS_URL`` or an embedded server in the instance folder), the reply pipeline (model directory
and FAQ index, loaded once per process), one Blueprint per concern (chat, rasa, conversations,
health, helpdesk channels) and JSON error handlers. See ``docs/server.md``.

This package is the HTTP layer only: replies come from ``assistant.pipeline``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from server.api.guards import add_cors_headers
from server.errors import register_error_handlers
from server.runtime import ReplyPipeline, Runtime
from server.settings import Settings, load_settings
from server.store.history import DialogStore

__all__ = ["Settings", "create_app", "load_settings"]


def create_app(
    config: Mapping[str, Any] | Settings | None = None,
    *,
    pipeline: ReplyPipeline | None = None,
    store: DialogStore | None = None,
    defaults: Mapping[str, Any] | None = None,
    start_channel_worker: bool | None = None,
) -> Flask:
    """Build the conversation server's Flask app.

    Args:
        config: setting name → value overriding the environment (tests, CLI flags), or a ready
            :class:`Settings` (used as is, the environment is not read).
        pipeline: a ready reply pipeline (``respond(history, text) -> Reply``); default: load the
            model/index named by the settings, or the demo assets in development.
        store: a ready :class:`DialogStore`; default: connect to ``REDIS_URL`` or the embedded Redis.
        defaults: replace dataclass defaults below the environment (``wsgi.py`` passes
            ``{"env": "production"}``).
        start_channel_worker: run the helpdesk channels' queue worker in this process (``True``),
            never (``False``, ``assistant worker`` runs its own), or as the ``channels`` setting says.

    Raises:
        ConfigError: a setting is invalid (the message names it and the valid values), or no
            model/index is configured outside development.
        EmbeddedRedisError, CheckpointError, RetrievalError: Redis or a model cannot be started/loaded.
    """
    settings = config if isinstance(config, Settings) else load_settings(config, defaults=defaults)
    app = Flask(__name__, static_folder=None, instance_path=str(instance_path(settings)))
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, TESTING=settings.env == "testing")
    app.json.sort_keys = False
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    if settings.env == "development" and not settings.api_key:
        logging.getLogger(__name__).warning(
            "development mode: no API key is required (set ASSISTANT_API_KEY)"
        )

    register_error_handlers(app)
    Runtime().init_app(app, settings, pipeline=pipeline, store=store)

    from server.api import chat, conversations, health, rasa, widget

    for module in (chat, rasa, conversations, health, widget):
        app.register_blueprint(module.bp)
    from server.channels.setup import init_channels

    init_channels(app, in_process_worker=start_channel_worker)
    app.after_request(add_cors_headers)
    _init_production(app)
    return app


def instance_path(settings: Settings) -> Path:
    """The instance folder of an app made by :func:`create_app` with ``settings``: ``instance_dir``, or
    Flask's default for this package (``instance/`` beside it in a checkout)."""
    if settings.instance_dir:
        return Path(settings.instance_dir).resolve()
    return Path(Flask(__name__, static_folder=None).instance_path)


def _init_production(app: Flask) -> None:
    """Tenant keys, rate limits, metrics, the OpenAPI document and request logs (docs/server.md)."""
    from server import logs, metrics
    from server.api import auth, limits, openapi

    metrics.init_app(app)  # first: its timer starts before any other hook may refuse the request
    logs.init_app(app)
    auth.init_app(app)
    limits.init_app(app)
    openapi.init_app(app)
