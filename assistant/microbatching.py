"""Micro-batching: model calls of concurrent requests (threads of one process) run as one batch.

A server process answers several requests at once in threads (gunicorn ``gthread``), and each reply
needs the reply model (and its in-domain check), which are much cheaper per request in a batch: the
demo LSTM decodes 16 greedy replies together in about 1.3x the time of one. :class:`MicroBatcher`
collects the single calls that threads make within a few milliseconds and runs them as one call of
the model's batch API:

* **Leader and followers, no thread of its own.** The first waiting caller finding the model idle
  becomes the *leader*: it waits for more calls (bounded, below), takes up to ``max_batch_size`` of
  them in arrival order, runs the batch in its own thread, hands every caller its own result, and
  wakes the next leader. Calls that arrive while a batch runs queue up and form the next batch
  (continuous batching). Nothing runs in the background, so there is nothing to stop or restart after
  ``fork`` (``gunicorn --preload``), and shutdown cannot hang on a thread.
* **Bounded wait, only for calls known to be coming.** A request announces itself for its whole
  reply (:meth:`MicroBatching.request`, which ``Pipeline.respond`` enters). The leader waits while
  some announced request has not reached this batcher yet (it is still searching the FAQ, say), at
  most ``max_wait`` seconds after the oldest queued call arrived, and stops as soon as the batch is
  full or no announced request can still come (one that took the FAQ route has left). So a lone
  request never waits, and no request waits longer than ``max_wait`` for others.
* **Per-request results and errors.** When a batch raises, each of its calls is run again alone, so
  the call whose own input fails gets its own exception and the others get their results (the work
  of a failed batch is done twice; a model that fails on no input costs nothing extra).
* **Shutdown.** :meth:`MicroBatching.close` fails the queued calls and every later one with
  :class:`BatcherClosed` (a :class:`~assistant.errors.ModelError`: the server answers 503); a batch
  already running finishes and its callers get their results.

:class:`BatchingGenerator` and :class:`BatchingScopeCheck` put a batcher in front of a
:class:`~assistant.generators.base.Generator`'s ``generate`` and a
:class:`~assistant.routing.scope.ScopeCheck`'s ``score``; :class:`MicroBatching` holds the pair
that one pipeline shares. Streamed replies (``Generator.stream``) are decoded alone, as before.

This module knows no HTTP and no Redis: it batches in any process that calls one pipeline from
several threads (the server's settings ``max_batch_size`` and ``batch_wait_ms`` configure it there).
The pattern is the dynamic batching of inference servers (NVIDIA Triton's ``max_queue_delay_microseconds``,
TorchServe's ``max_batch_delay``), here without a thread of its own.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from assistant.errors import ConfigError, ModelError
from assistant.generators.base import Generation, GenerationRequest, Generator, GeneratorWrapper, TextCallback

T = TypeVar("T")
R = TypeVar("R")


class BatcherClosed(ModelError):
    """The batcher was closed (the process is shutting down) before this call could run."""


class _Slot:
    """One queued call: its input, when it arrived, and (once done) its result or error."""

    __slots__ = ("arrived", "done", "error", "item", "result")

    def __init__(self, item: Any, arrived: float) -> None:
        self.item = item
        self.arrived = arrived
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class MicroBatching:
    """The batchers one pipeline shares, their lock, and the requests announced to them.

    Args:
        max_batch_size: most calls run as one batch (1 = every call runs alone, nothing waits).
        max_wait: seconds a leader waits at most, after the oldest queued call arrived, for announced
            requests still on their way (0 = never wait: batch only what queued while the model was busy).

    Raises:
        ConfigError: ``max_batch_size`` < 1 or ``max_wait`` < 0 or above 1 s.
    """

    def __init__(self, max_batch_size: int = 16, max_wait: float = 0.005) -> None:
        if not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be an integer >= 1, got {max_batch_size!r}")
        if not 0.0 <= max_wait <= 1.0:
            raise ConfigError(f"the batch wait must be in [0, 1] seconds, got {max_wait!r}")
        self.max_batch_size = max_batch_size
        self.max_wait = float(max_wait)
        self.lock = threading.Condition(threading.Lock())
        #: announced requests in progress → the names of the batchers each has reached
        self._announced: dict[object, set[str]] = {}
        self._local = threading.local()
        self._batchers: list[MicroBatcher] = []
        self.closed = False
        #: called after each batch ran, with the batcher's name, the batch size and why it started
        #: (``full``, ``nobody_else``, ``deadline``): the server's Prometheus metrics set it. Called under
        #: the lock, so it must be quick and must not call the batchers.
        self.on_batch: Callable[[str, int, str], None] | None = None

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """Announce that the calling thread is answering a request that may call the batchers.

        Leaders wait (bounded) for announced requests that have not reached them yet; leaving the
        block tells them this one will not come. Re-entering in the same thread is a no-op.
        """
        if getattr(self._local, "token", None) is not None:
            yield
            return
        token = object()
        with self.lock:
            self._announced[token] = set()
        self._local.token = token
        try:
            yield
        finally:
            self._local.token = None
            with self.lock:
                del self._announced[token]
                self.lock.notify_all()

    def batcher(self, name: str, run: Callable[[list[T]], Sequence[R]]) -> MicroBatcher[T, R]:
        """A new :class:`MicroBatcher` named ``name`` (unique here) running batches with ``run``."""
        with self.lock:
            if any(b.name == name for b in self._batchers):
                raise ConfigError(f"a batcher named {name!r} exists already")
            batcher = MicroBatcher(self, name, run)
            self._batchers.append(batcher)
            return batcher

    def generator(self, inner: Generator | None) -> Generator | None:
        """``inner`` with its single ``generate`` calls batched (``None`` stays ``None``)."""
        return None if inner is None else BatchingGenerator(inner, self)

    def scope(self, inner: Any) -> Any:
        """A :class:`~assistant.routing.scope.ScopeCheck` with its ``score`` calls batched (``None`` stays)."""
        return None if inner is None else BatchingScopeCheck(inner, self)

    def close(self) -> None:
        """Fail every queued and later call with :class:`BatcherClosed`; running batches finish."""
        with self.lock:
            self.closed = True
            for batcher in self._batchers:
                batcher._fail_queued()
            self.lock.notify_all()

    def _on_the_way(self, name: str) -> int:
        """Announced requests that have not reached batcher ``name`` yet (under the lock)."""
        return sum(1 for reached in self._announced.values() if name not in reached)

    def _arrive(self, name: str) -> None:
        """Record that the calling thread's request reached batcher ``name`` (under the lock)."""
        token = getattr(self._local, "token", None)
        if token is not None and token in self._announced:
            self._announced[token].add(name)


class MicroBatcher(Generic[T, R]):
    """Runs concurrent single calls ``submit(item)`` as batches ``run(items)`` (see the module docstring).

    Made by :meth:`MicroBatching.batcher`. Thread-safe.

    Args:
        group: the shared lock, announcements and limits.
        name: names it in errors and in the announcements.
        run: ``items -> results``, one result per item in order; may raise.
    """

    def __init__(self, group: MicroBatching, name: str, run: Callable[[list[T]], Sequence[R]]) -> None:
        self.group = group
        self.name = name
        self.run = run
        self._queue: list[_Slot] = []
        self._running = False
        #: sizes of the batches run so far (for tests and benchmarks; the last 10,000)
        self.batch_sizes: list[int] = []
        #: why each batch started: ``full``, ``nobody_else`` (no announced request can still come),
        #: ``deadline`` (the wait ran out) or ``closed``
        self.start_reasons: collections.Counter[str] = collections.Counter()

    def submit(self, item: T) -> R:
        """Run ``item`` in the next batch and return its own result.

        Raises:
            BatcherClosed: the group was closed before the call ran.
            Exception: whatever ``run([item])`` raises for this item alone.
        """
        lock = self.group.lock
        with lock:
            if self.group.closed:
                raise BatcherClosed(
                    f"the {self.name} batcher is closed (the server is shutting down); send the request again"
                )
            self.group._arrive(self.name)
            slot = _Slot(item, time.monotonic())
            self._queue.append(slot)
            lock.notify_all()
            while not slot.done:
                if not self._running and self._queue:
                    self._lead()
                else:
                    lock.wait()
        if slot.error is not None:
            raise slot.error
        return slot.result

    def passed_by(self) -> None:
        """The calling thread's announced request will not call :meth:`submit`: leaders stop waiting for it."""
        with self.group.lock:
            self.group._arrive(self.name)
            self.group.lock.notify_all()

    def _lead(self) -> None:
        """Collect a batch (bounded wait), run it outside the lock, deliver; called under the lock."""
        group, lock = self.group, self.group.lock
        self._running = True
        try:
            deadline = self._queue[0].arrived + group.max_wait
            while (
                len(self._queue) < group.max_batch_size
                and not group.closed
                and group._on_the_way(self.name) > 0
                and (remaining := deadline - time.monotonic()) > 0
            ):
                lock.wait(remaining)
            reason = self._reason()
            self.start_reasons[reason] += 1
            if not self._queue:  # closed while waiting: every queued call failed already
                return
            batch = self._queue[: group.max_batch_size]
            del self._queue[: len(batch)]
            lock.release()
            try:
                self._run(batch)
            finally:
                lock.acquire()
            self.batch_sizes.append(len(batch))
            del self.batch_sizes[:-10_000]
            if group.on_batch is not None:
                group.on_batch(self.name, len(batch), reason)
        finally:
            self._running = False
            lock.notify_all()

    def _reason(self) -> str:
        """Why the wait ended (under the lock)."""
        if self.group.closed:
            return "closed"
        if len(self._queue) >= self.group.max_batch_size:
            return "full"
        return "deadline" if self.group._on_the_way(self.name) > 0 else "nobody_else"

    def _run(self, batch: list[_Slot]) -> None:
        """Run ``batch`` and fill each slot; on an error, run each alone so it fails by itself."""
        try:
            try:
                results = list(self.run([s.item for s in batch]))
                if len(results) != len(batch):
                    raise ModelError(
                        f"the {self.name} batch returned {len(results)} results for {len(batch)} inputs"
                    )
            except Exception as error:  # noqa: BLE001 - handed to its caller, re-raised there
                if len(batch) == 1:
                    batch[0].error = error
                    batch[0].done = True
                else:
                    for slot in batch:
                        self._run([slot])
                return
            for slot, result in zip(batch, results, strict=True):
                slot.result = result
                slot.done = True
        finally:
            for slot in batch:  # an interrupt (BaseException) leaves no caller waiting
                if not slot.done:
                    slot.error = ModelError(f"the {self.name} batch was interrupted before this input ran")
                    slot.done = True

    def _fail_queued(self) -> None:
        """Fail every queued call with :class:`BatcherClosed` (under the lock)."""
        for slot in self._queue:
            slot.error = BatcherClosed(
                f"the {self.name} batcher was closed (the server is shutting down) before this request "
                "ran; send it again"
            )
            slot.done = True
        self._queue.clear()


class BatchingGenerator(GeneratorWrapper):
    """A :class:`Generator` whose single-request ``generate`` calls from concurrent threads run as one batch.

    ``generate`` with one request goes through the batcher; with several it calls the inner
    generator directly (the caller batches already). ``stream`` and ``score`` call it directly.
    Other attributes are the inner generator's.

    Args:
        inner: the generator; its ``generate`` must be thread-safe (the project's are: inference only).
        group: the :class:`MicroBatching` it shares with the pipeline.
    """

    def __init__(self, inner: Generator, group: MicroBatching) -> None:
        super().__init__(inner)
        self.batcher: MicroBatcher[GenerationRequest, Generation] = group.batcher("generator", inner.generate)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """One :class:`Generation` per request; a single request is batched with concurrent ones.

        Raises:
            ModelError: as the inner generator for this request; :class:`BatcherClosed` at shutdown.
        """
        if len(requests) != 1:
            return self.inner.generate(requests)
        return [self.batcher.submit(requests[0])]

    def stream(self, request: GenerationRequest, on_text: TextCallback) -> Generation:
        """The inner generator's stream, alone (a streamed reply is not batched); leaders stop waiting for it."""
        self.batcher.passed_by()
        return self.inner.stream(request, on_text)


class BatchingScopeCheck:
    """A :class:`~assistant.routing.scope.ScopeCheck` whose ``score`` calls from concurrent threads run as
    one ``scores`` batch (one encoder call). Other attributes (``threshold``, ``scores``...) are the inner one's.

    Args:
        inner: the in-domain check (thread-safe for scoring).
        group: the :class:`MicroBatching` it shares with the pipeline.
    """

    def __init__(self, inner: Any, group: MicroBatching) -> None:
        self.inner = inner
        self.batcher: MicroBatcher[Any, float] = group.batcher(
            "scope", lambda items: [float(s) for s in inner.scores(items)]
        )

    def score(self, item: Any) -> float:
        """The calibrated in-domain probability of one message or context (batched with concurrent calls).

        Raises:
            ModelError: as ``ScopeCheck.scores`` for this input; :class:`BatcherClosed` at shutdown.
        """
        return self.batcher.submit(item)

    def __getattr__(self, name: str) -> Any:
        if name in ("inner", "batcher"):
            raise AttributeError(name)
        return getattr(self.inner, name)
