"""Finish cleanups that failed because Redis was unreachable, in the background, once it answers again.

When a chat turn fails while Redis is down, its leftovers (a ``pending`` claim, a queue place, maybe
the conversation's lock) cannot be removed right away. Left alone they would block the client's
retry and the conversation until they expire (``lock_timeout + lock_wait`` seconds). The
:class:`Janitor` keeps each such cleanup and retries it, oldest first, until it succeeds or its
deadline passes (after which Redis has expired the leftovers by itself). The cleanup must be
idempotent (``DialogStore.abandon`` is): it may run while a copy of it queued in Redis runs too.

One daemon thread per process, started when there is work and ending when there is none; after a
``fork`` the child starts its own. It does not decide what to clean (``server/store/history.py``
does) and never blocks a request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

import redis

log = logging.getLogger(__name__)

T = TypeVar("T")


class Janitor(Generic[T]):
    """Retry ``cleanup(item)`` in a background thread until it succeeds or the item's deadline passes.

    Args:
        cleanup: an idempotent function; raising ``redis.ConnectionError``/``redis.TimeoutError``
            means "Redis unreachable, try again later"; any other exception drops the item (logged).
        retry_interval: seconds between tries while Redis is unreachable.
        max_items: the most cleanups kept; beyond it the oldest is dropped (logged), since a Redis
            outage under heavy traffic must not grow memory without bound.
    """

    def __init__(self, cleanup: Callable[[T], None], *, retry_interval: float = 0.5, max_items: int = 10_000):
        self.cleanup = cleanup
        self.retry_interval = retry_interval
        self.max_items = max_items
        self._items: deque[tuple[float, T]] = deque()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._idle = threading.Event()
        self._idle.set()

    def submit(self, item: T, deadline: float) -> None:
        """Retry ``cleanup(item)`` until it succeeds or ``time.monotonic()`` passes ``deadline``."""
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's thread did not come along
                self._pid, self._thread = os.getpid(), None
            if len(self._items) >= self.max_items:
                log.warning("janitor: %d cleanups pending, dropping the oldest", len(self._items))
                self._items.popleft()
            self._items.append((deadline, item))
            self._idle.clear()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="redis-janitor", daemon=True)
                self._thread.start()

    def pending(self) -> int:
        """How many cleanups are waiting."""
        with self._lock:
            return len(self._items)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no cleanup is pending (tests, shutdown); ``False`` if ``timeout`` passed first."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                while self._items and self._items[0][0] < now:
                    self._items.popleft()  # past its deadline: Redis has expired the leftovers
                if not self._items:
                    self._thread = None
                    self._idle.set()
                    return
                item = self._items[0][1]
            try:
                self.cleanup(item)
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(self.retry_interval)
                continue
            except Exception:
                log.exception("janitor: cleanup of %r failed; dropped", item)
            with self._lock:
                if self._items and self._items[0][1] is item:
                    self._items.popleft()
