"""Redis for the offline commands (``assistant keys``, ``assistant export``): the server's own settings.

:func:`redis_client` connects to ``REDIS_URL`` (setting ``redis_url``) or, when it is empty, to the
embedded Redis of the instance folder: a running server's is reused, otherwise it is started for the
command and stopped after it (``server/store/embedded.py``). :func:`add_redis_flags` adds the
``--redis-url``, ``--redis-prefix`` and ``--instance-dir`` flags; every other setting comes from the
environment as for ``assistant serve``.

It runs no server and reads no conversation itself.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from flask import Flask

from assistant.errors import AssistantError
from server.runtime import client_from_settings
from server.settings import Settings, load_settings
from server.store.embedded import EmbeddedRedis


class RedisCommandError(AssistantError):
    """Redis failed during an offline command (``error: ...`` and exit code 2, no traceback)."""


def add_redis_flags(parser: argparse.ArgumentParser) -> None:
    """The flags naming the server's Redis (each falls back to its environment variable)."""
    parser.add_argument("--redis-url", default=argparse.SUPPRESS, help="Redis URL [env REDIS_URL]")
    parser.add_argument(
        "--redis-prefix", default=argparse.SUPPRESS, help="key prefix [env ASSISTANT_REDIS_PREFIX]"
    )
    parser.add_argument(
        "--instance-dir",
        default=argparse.SUPPRESS,
        help="instance folder of the embedded Redis when no Redis URL is set [env ASSISTANT_INSTANCE_DIR]",
    )


def settings_from(args: argparse.Namespace) -> Settings:
    """The server settings: environment, then the Redis flags given."""
    names = ("redis_url", "redis_prefix", "instance_dir")
    return load_settings({n: getattr(args, n) for n in names if hasattr(args, n)})


@contextmanager
def redis_client(settings: Settings) -> Iterator[redis.Redis]:
    """A Redis client on the server's Redis (see the module docstring); closed (and an embedded server
    started here stopped) on exit.

    Raises:
        EmbeddedRedisError: the embedded Redis cannot be started.
    """
    embedded = None
    url = settings.redis_url
    if not url:
        instance = (
            Path(settings.instance_dir) if settings.instance_dir else Path(Flask("server").instance_path)
        )
        embedded = EmbeddedRedis(instance.resolve() / "redis")
        url = embedded.start()
    client = client_from_settings(url, settings)
    try:
        yield client
    except redis.RedisError as e:
        raise RedisCommandError(f"Redis at {url} failed: {e}") from e
    finally:
        client.close()
        if hasattr(client, "connection_pool"):  # a RedisCluster has one pool per node, closed above
            client.connection_pool.disconnect()
        if embedded is not None:
            embedded.stop()
