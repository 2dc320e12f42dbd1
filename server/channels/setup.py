"""Set up the helpdesk channels of an app: the ``Channels`` extension, the channel blueprints, the
queue and (when configured) an in-process worker.

:func:`init_channels` is called by ``create_app``: it parses the ``channels`` setting, registers the
Chatwoot and Sunshine blueprints, builds the Dramatiq queue on the store's Redis and, when the
configuration says so (``worker``: ``auto`` with the embedded Redis, or ``in-process``), starts a
worker of ``worker_threads`` threads in this process, stopped by ``Runtime.close``. ``assistant
worker`` builds the same app with the in-process worker off and runs the worker itself. It is the
one module that knows every channel (a new channel registers here); the channels import
``common.py``, never this module, so the imports form no cycle.
"""

from __future__ import annotations

from flask import Flask

from assistant.errors import ConfigError
from server.channels import chatwoot, sunshine
from server.channels.common import Channels
from server.channels.config import parse_channels
from server.channels.jobs import TurnRunner
from server.channels.queue import ChannelQueue
from server.channels.state import ChannelState


def init_channels(app: Flask, *, in_process_worker: bool | None = None) -> Channels:
    """Register the channel blueprints and, when configured, the queue and worker.

    Args:
        app: an app whose ``Runtime`` is initialised.
        in_process_worker: start (``True``) or not (``False``) a worker in this process; ``None``
            follows the configuration (:meth:`ChannelsConfig.runs_in_process`).

    Raises:
        ConfigError: the ``channels`` setting is invalid (already checked when settings load).
    """
    rt = app.extensions["assistant"]
    settings = rt.settings
    cfg = parse_channels(settings.channels, settings.env)
    ext = Channels(cfg)
    app.extensions["channels"] = ext
    app.register_blueprint(chatwoot.bp)
    app.register_blueprint(sunshine.bp)
    if not cfg.enabled:
        return ext
    ext.state = ChannelState(rt.store)
    for bot in cfg.chatwoot:
        ext.adapters[("chatwoot", bot.name)] = chatwoot.ChatwootAdapter(bot, cfg.api_timeout_seconds)
    for sc_app in cfg.sunshine:
        ext.adapters[("sunshine", sc_app.name)] = sunshine.SunshineAdapter(sc_app, cfg.api_timeout_seconds)
    ext.runner = TurnRunner(rt, cfg, ext.state, ext.adapters)
    if not settings.redis_url and rt.embedded is None:
        raise ConfigError(
            "setting channels (ASSISTANT_CHANNELS): the job queue needs the store's Redis; set redis_url "
            "(REDIS_URL) when the app is given a ready store"
        )
    url = settings.redis_url or rt.embedded.url
    ext.queue = ChannelQueue(
        url,
        f"{settings.redis_prefix}-queue",
        cfg,
        ext.runner.run,
        socket_timeout=settings.redis_socket_timeout,
    )
    rt.on_close.insert(0, ext.close)  # before Redis (embedded) stops
    start = cfg.runs_in_process(settings.redis_url) if in_process_worker is None else in_process_worker
    if start:
        ext.queue.start_worker(cfg.worker_threads)
    return ext
