"""The channel job queue: Dramatiq on the same Redis, one actor, in-process or separate workers.

Why Dramatiq (over RQ and Celery): its Redis broker delays a message by milliseconds without a
separate scheduler process (the burst window is 1.5 s; RQ's scheduler polls once a second), acks a
message only after it ran and re-queues the messages of a worker that stopped heart-beating (the
timeout is a setting: a SIGKILLed worker's job runs again seconds later; RQ waits for the job's
timeout plus 60 s), retries with exponential backoff and keeps dead messages in a dead-letter set,
and its ``Worker`` is a plain object of threads that starts and stops inside any process (no fork,
so PyTorch is never forked; no signal handlers, so it runs in a thread of the web server). Celery
brings a much larger runtime for none of these.

Keys: Dramatiq's, under the namespace ``<redis_prefix>-queue`` (its own naming, outside the
conversations' hash-tag slots: the queue needs a single Redis, not a Cluster). One queue,
``channels``, carries one actor, ``channel_turn``, whose message is
``{channel, bot, conversation_id, seq}``; what it does is ``server/channels/jobs.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries, ShutdownNotifications, TimeLimit

from server.channels.config import ChannelsConfig

log = logging.getLogger(__name__)

QUEUE = "channels"
ACTOR = "channel_turn"
#: Dramatiq's own retry cap; the turn's ``api_attempts`` decides first (jobs.py), this only stops a
#: message that keeps failing for reasons the job cannot see.
MAX_DRAMATIQ_RETRIES = 100


def maintenance_chance(cfg: ChannelsConfig) -> int:
    """Dramatiq's odds (per million Redis commands) of re-queueing dead workers' messages: tuned so
    that an idle worker (two consumers polling every ``queue_poll_ms``) does it about twice per
    heartbeat timeout."""
    commands_per_second = 2 * 1000 / cfg.queue_poll_ms
    per_timeout = commands_per_second * cfg.queue_heartbeat_seconds / 2
    return int(min(1_000_000, max(1000, 1_000_000 / max(per_timeout, 1))))


class ChannelQueue:
    """A Dramatiq broker on ``redis_url`` with the ``channel_turn`` actor bound to ``job``.

    Args:
        redis_url: the Redis of the dialog store (``redis://``, ``rediss://``, ``unix://``).
        namespace: Dramatiq's key namespace.
        cfg: the channel configuration (timeouts, backoff, heartbeat, polling).
        job: called with the message dict ``{channel, bot, conversation_id, seq}`` in a worker
            thread; it raises ``dramatiq.Retry`` (or anything) to be run again later.
        socket_timeout: seconds a Redis command of the broker may take.
    """

    def __init__(
        self,
        redis_url: str,
        namespace: str,
        cfg: ChannelsConfig,
        job: Callable[[dict[str, Any]], None],
        *,
        socket_timeout: float = 5.0,
    ) -> None:
        self.cfg = cfg
        # No command retry here: Dramatiq's scripts are not idempotent, and a failed enqueue is
        # reported to the webhook caller (which makes the helpdesk retry) instead.
        self.client = redis.Redis.from_url(
            redis_url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )
        min_backoff = max(1, int(cfg.api_backoff_seconds * 1000))
        self.broker = RedisBroker(
            client=self.client,
            namespace=namespace,
            heartbeat_timeout=int(cfg.queue_heartbeat_seconds * 1000),
            maintenance_chance=maintenance_chance(cfg),
            middleware=[
                TimeLimit(time_limit=int(cfg.turn_lock_seconds * 1000), interval=500),
                ShutdownNotifications(),
                Retries(max_retries=MAX_DRAMATIQ_RETRIES, min_backoff=min_backoff, max_backoff=60_000),
            ],
        )

        def channel_turn(message: dict[str, Any]) -> None:
            job(message)

        self.actor = dramatiq.actor(channel_turn, broker=self.broker, actor_name=ACTOR, queue_name=QUEUE)
        self.worker: dramatiq.Worker | None = None

    def enqueue(self, message: dict[str, Any], delay_seconds: float) -> None:
        """Queue a job, run no earlier than ``delay_seconds`` from now.

        Raises:
            redis.RedisError: the queue's Redis is unreachable (nothing queued).
        """
        delay = int(delay_seconds * 1000)
        self.actor.send_with_options(args=(message,), delay=delay if delay > 0 else None)

    def start_worker(self, threads: int) -> dramatiq.Worker:
        """Start a worker with ``threads`` threads in this process (returns at once)."""
        if self.worker is None:
            self.worker = dramatiq.Worker(
                self.broker, worker_threads=threads, worker_timeout=self.cfg.queue_poll_ms
            )
            self.worker.start()
            log.info("channel worker started: %d threads on queue %r", threads, QUEUE)
        return self.worker

    def stop(self, timeout_seconds: float = 10.0) -> None:
        """Stop the worker (waiting up to ``timeout_seconds`` for running jobs) and close the broker."""
        if self.worker is not None:
            self.worker.stop(timeout=int(timeout_seconds * 1000))
            self.worker = None
        self.broker.close()
        self.client.close()

    def dead_letters(self) -> int:
        """How many messages Dramatiq gave up on (its dead-letter set of the ``channels`` queue)."""
        return int(self.client.zcard(f"{self.broker.namespace}:{QUEUE}.XQ"))
