"""The per-process state of the server: settings, the Redis dialog store and the reply pipeline.

:class:`Runtime` is a Flask extension (``init_app``) stored in ``app.extensions["assistant"]``. It
connects to ``REDIS_URL`` or starts the embedded Redis, and loads the model directory and the FAQ
index once per process (or, in development with nothing configured, the demo assets built by
``server/demo.py``). Tests inject a ready pipeline and/or store instead.

It does not answer requests (the blueprints and ``server/turn.py`` do).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import redis
from flask import Flask, current_app

from assistant.data import Turn
from assistant.pipeline import Reply
from server.settings import Settings
from server.store.embedded import EmbeddedRedis
from server.store.history import DialogStore, connect
from server.torch_threads import set_torch_threads

log = logging.getLogger(__name__)


class ReplyPipeline(Protocol):
    """What the server needs of ``assistant.pipeline.Pipeline``."""

    def respond(self, history: list[Turn], text: str) -> Reply: ...


def load_pipeline(
    model_dir: str | Path | None,
    index_dir: str | Path | None,
    config: Any = None,
    generator_options: dict[str, Any] | None = None,
    batching: Any = None,
) -> ReplyPipeline:
    """Load the FAQ index and the reply model named by the settings into an ``assistant`` Pipeline.

    Args:
        model_dir: a model directory with ``assistant.json`` (any kind), or ``None``; its in-domain
            check (``scope/``) is loaded with it when present.
        index_dir: an FAQ index directory written by ``assistant-build-index``, or ``None``.
        config: an ``assistant.pipeline.PipelineConfig`` (defaults if ``None``).
        generator_options: keyword options for the model's loader (e.g. ``beam_size``, ``adapter``).
        batching: an ``assistant.microbatching.MicroBatching`` for concurrent requests, or ``None``.

    Raises:
        ConfigError: neither is given.
        CheckpointError / RetrievalError: a directory cannot be loaded (message names it).
    """
    from assistant.errors import ConfigError
    from assistant.generators.loader import load_generator
    from assistant.pipeline import Pipeline
    from assistant.retrieval.index import FaqIndex
    from assistant.routing.scope import load_scope_check

    if not model_dir and not index_dir:
        raise ConfigError(
            "no reply model and no FAQ index configured: set ASSISTANT_MODEL_DIR and/or "
            "ASSISTANT_INDEX_DIR (or ASSISTANT_ENV=development with ASSISTANT_DEMO=1)"
        )
    index = FaqIndex.load(index_dir) if index_dir else None
    generator = load_generator(model_dir, **(generator_options or {})) if model_dir else None
    scope = load_scope_check(model_dir) if model_dir else None  # None (with a warning) for older models
    log.info("loaded FAQ index %s and reply model %s", index_dir or "-", model_dir or "-")
    return Pipeline(index, generator, config, scope=scope, batching=batching)


class Runtime:
    """Flask extension holding one process's settings, dialog store and reply pipeline.

    Attributes:
        settings: the validated settings.
        store: the :class:`DialogStore`.
        pipeline: the reply pipeline (``create_app`` raises if it cannot be loaded, so it is always set).
        embedded: the embedded Redis this process uses, or ``None`` with ``REDIS_URL``.
        model_info: what was loaded (for operators and tests; ``/readyz`` does not show paths).
    """

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.store: DialogStore | None = None
        self.pipeline: ReplyPipeline | None = None
        self.embedded: EmbeddedRedis | None = None
        self.model_info: dict[str, Any] = {}
        #: called first by :meth:`close` (e.g. the channels' queue worker, before Redis stops)
        self.on_close: list[Callable[[], None]] = []

    def init_app(
        self,
        app: Flask,
        settings: Settings,
        *,
        pipeline: ReplyPipeline | None = None,
        store: DialogStore | None = None,
    ) -> None:
        """Connect the store and load the pipeline (unless given), then register on ``app``.

        Raises:
            ConfigError, EmbeddedRedisError, CheckpointError, RetrievalError: with a clear message.
        """
        self.settings = settings
        self.store = store if store is not None else self._connect_store(app, settings)
        if pipeline is not None:
            self.pipeline = pipeline
            self.model_info = {"model_dir": None, "index_dir": None, "injected": type(pipeline).__name__}
        else:
            model_dir, index_dir = settings.model_dir, settings.index_dir
            pipeline_config = settings.pipeline_config()
            if not model_dir and not index_dir and settings.env == "development" and settings.demo:
                from server.demo import DEMO_HANDOFF_REPLIES, ensure_demo_assets

                model_dir, index_dir = (str(p) for p in ensure_demo_assets(Path(app.instance_path)))
                if not pipeline_config.handoff_replies:
                    pipeline_config = dataclasses.replace(
                        pipeline_config, handoff_replies=DEMO_HANDOFF_REPLIES
                    )
            set_torch_threads(settings.torch_threads)  # also after a fork (gunicorn --preload)
            self.pipeline = load_pipeline(
                model_dir or None,
                index_dir or None,
                pipeline_config,
                settings.generator_loader_options(),
                batching=micro_batching(settings),
            )
            self.model_info = {"model_dir": model_dir or None, "index_dir": index_dir or None}
        batching = getattr(self.pipeline, "batching", None)
        if batching is not None:  # fail requests still queued for the model with a clear 503 at close
            self.on_close.append(batching.close)
        app.extensions["assistant"] = self

    def _connect_store(self, app: Flask, settings: Settings) -> DialogStore:
        url = settings.redis_url
        if not url:
            self.embedded = EmbeddedRedis(Path(app.instance_path) / "redis")
            url = self.embedded.start()
            log.info("embedded Redis at %s (data in %s)", url, self.embedded.directory)
        client = client_from_settings(url, settings)
        return store_from_settings(client, settings)

    def close(self) -> None:
        """Run the ``on_close`` hooks, close the Redis pool, stop the embedded Redis if this process started it."""
        while self.on_close:
            self.on_close.pop(0)()
        if self.store is not None:
            self.store.client.close()
            if hasattr(self.store.client, "connection_pool"):  # a RedisCluster has one pool per node
                self.store.client.connection_pool.disconnect()
        if self.embedded is not None:
            self.embedded.stop()


def client_from_settings(url: str, settings: Settings, *, max_connections: int | None = None) -> redis.Redis:
    """A Redis client for ``url`` with the settings' timeouts, retry backoff and pool size
    (``max_connections`` overrides ``redis_max_connections``, e.g. for a small CLI pool)."""
    return connect(
        url,
        socket_timeout=settings.redis_socket_timeout,
        connect_timeout=settings.redis_connect_timeout,
        retries=settings.redis_retries,
        backoff_base=settings.redis_backoff_base,
        backoff_cap=settings.redis_backoff_cap,
        max_connections=max_connections or settings.redis_max_connections,
    )


def micro_batching(settings: Settings) -> Any:
    """The ``assistant.microbatching.MicroBatching`` of the settings ``max_batch_size`` and
    ``batch_wait_ms``, or ``None`` when ``max_batch_size`` is 1 (off)."""
    from assistant.microbatching import MicroBatching

    if settings.max_batch_size <= 1:
        return None
    return MicroBatching(settings.max_batch_size, settings.batch_wait_ms / 1000)


def store_from_settings(client: redis.Redis, settings: Settings) -> DialogStore:
    """The :class:`DialogStore` on ``client`` with the settings' prefix, history bounds, TTLs and lock times."""
    return DialogStore(
        client,
        prefix=settings.redis_prefix,
        max_turns=settings.history_max_turns,
        ttl_seconds=settings.history_ttl_seconds,
        dedupe_ttl_seconds=settings.dedupe_ttl_seconds,
        lock_timeout=settings.lock_timeout_seconds,
        lock_wait=settings.lock_wait_seconds,
    )


def runtime() -> Runtime:
    """The :class:`Runtime` of the current app."""
    return current_app.extensions["assistant"]
