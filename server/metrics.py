"""Prometheus metrics of the server, and ``GET /metrics`` (scope ``admin`` when keys are required).

=============================================  =========  ==========================================
metric                                         type       labels / meaning
=============================================  =========  ==========================================
``assistant_http_request_duration_seconds``    histogram  ``route`` (the URL rule, e.g.
                                                          ``/v1/conversations/<conversation_id>``;
                                                          ``<unmatched>`` for 404s), ``method``,
                                                          ``status``
``assistant_http_errors_total``                counter    ``code``: the JSON error body's code
``assistant_redis_errors_total``               counter    ``code``: ``redis_unavailable`` |
                                                          ``redis_error`` (requests answered 503)
``assistant_replies_total``                    counter    ``source``: faq | model | fallback (replies
                                                          computed, not replays of a ``message_id``)
``assistant_handoffs_total``                   counter    replies with ``handoff: true``; handoff
                                                          rate = ``rate(handoffs) / rate(replies)``
``assistant_retrieval_confidence``             histogram  the FAQ index's calibrated confidence of
                                                          its top hit, per message (not recorded for
                                                          a conversational retriever)
``assistant_reply_confidence``                 histogram  ``source``: the reply's confidence
``assistant_pipeline_latency_seconds``         histogram  retrieval + reply model, per message
``assistant_model_latency_seconds``            histogram  the reply model's ``generate`` call
``assistant_queue_depth``                      gauge      ``queue``: read at scrape time from the
                                                          callbacks given to
                                                          :func:`register_queue_depth`; the helpdesk
                                                          channels' queue is registered itself
=============================================  =========  ==========================================

Under gunicorn, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before the workers start
(``server/serving/gunicorn_conf.py`` and ``assistant serve --workers`` do): each worker then writes its samples to memory-mapped files there
and ``/metrics``, answered by any worker, adds up all of them (prometheus_client's multiprocess
mode; the config's ``child_exit`` hook calls :func:`mark_process_dead`). Without it, one process's
own counts are served.

The reply metrics are counted where every computed reply is stored (``server.turn.OpenTurn.store``
calls :func:`observe_reply`, for JSON and streamed answers alike); the reply model's time is measured
by wrapping the pipeline's generator in :class:`TimedGenerator` (a ``Generator`` itself, so streaming
works through it), so the pipeline knows nothing about Prometheus. This module does not log (``server/logs.py``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import redis
from flask import Blueprint, Flask, Response, g, has_request_context, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from assistant.generators.base import Generation, GenerationRequest, Generator, GeneratorWrapper, TextCallback
from server.runtime import Runtime

log = logging.getLogger(__name__)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_CONFIDENCE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))

REQUEST_LATENCY = Histogram(
    "assistant_http_request_duration_seconds",
    "Time from request to response, by route, method and status.",
    ["route", "method", "status"],
    buckets=_LATENCY_BUCKETS,
)
HTTP_ERRORS = Counter("assistant_http_errors_total", "Error responses by error code.", ["code"])
REDIS_ERRORS = Counter(
    "assistant_redis_errors_total", "Requests answered 503 because Redis failed, by code.", ["code"]
)
REPLIES = Counter("assistant_replies_total", "Replies computed by the pipeline, by source.", ["source"])
HANDOFFS = Counter("assistant_handoffs_total", "Replies that handed the conversation to a person.")
RETRIEVAL_CONFIDENCE = Histogram(
    "assistant_retrieval_confidence",
    "The FAQ index's calibrated confidence of its top hit, per message.",
    buckets=_CONFIDENCE_BUCKETS,
)
REPLY_CONFIDENCE = Histogram(
    "assistant_reply_confidence",
    "Confidence of the route taken, by source.",
    ["source"],
    buckets=_CONFIDENCE_BUCKETS,
)
PIPELINE_LATENCY = Histogram(
    "assistant_pipeline_latency_seconds",
    "Retrieval and reply model time per message.",
    buckets=_LATENCY_BUCKETS,
)
MODEL_LATENCY = Histogram(
    "assistant_model_latency_seconds", "Time of one reply-model generate call.", buckets=_LATENCY_BUCKETS
)
BATCH_SIZE = Histogram(
    "assistant_batch_size",
    "Requests per micro-batch, by batcher (generator, scope) and why the batch started (full, "
    "nobody_else, deadline).",
    ["batcher", "started"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)


# every known label value exported from the start at 0, so rate() and the dashboard see a series at once
for _code in ("redis_unavailable", "redis_error"):
    REDIS_ERRORS.labels(_code)
for _source in ("faq", "model", "fallback"):
    REPLIES.labels(_source)
    REPLY_CONFIDENCE.labels(_source)
for _batcher in ("generator", "scope"):  # the batchers of assistant.microbatching
    for _started in ("full", "nobody_else", "deadline"):
        BATCH_SIZE.labels(_batcher, _started)


class TimedGenerator(GeneratorWrapper):
    """A reply model whose ``generate`` and ``stream`` calls are timed into
    ``assistant_model_latency_seconds`` (and the request's ``timings.model_ms``); all else delegated."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        start = time.perf_counter()
        try:
            return self.inner.generate(requests)
        finally:
            _observe_model(time.perf_counter() - start)

    def stream(self, request: GenerationRequest, on_text: TextCallback) -> Generation:
        start = time.perf_counter()
        try:
            return self.inner.stream(request, on_text)
        finally:
            _observe_model(time.perf_counter() - start)


def _observe_model(seconds: float) -> None:
    MODEL_LATENCY.observe(seconds)
    _add_timing("model_ms", seconds)


def observe_reply(reply: Any, pipeline: Any, seconds: float) -> None:
    """Count one computed reply (JSON or streamed; not a replay): by source, handoff, its confidence,
    the retrieval confidence of its FAQ hits (when ``pipeline`` has an ``index``) and ``seconds`` of
    pipeline time. Called by ``server.turn.OpenTurn.store``."""
    PIPELINE_LATENCY.observe(seconds)
    _add_timing("pipeline_ms", seconds)
    REPLIES.labels(reply.source).inc()
    REPLY_CONFIDENCE.labels(reply.source).observe(reply.confidence)
    if reply.handoff:
        HANDOFFS.inc()
    index = getattr(pipeline, "index", None)
    conversational = getattr(
        pipeline, "conversational", None
    )  # its own confidence model: not recomputed here
    if index is not None and conversational is None and getattr(reply, "hits", None):
        RETRIEVAL_CONFIDENCE.observe(float(index.confidence(reply.hits)))


def _add_timing(name: str, seconds: float) -> None:
    """Add ``seconds`` (as milliseconds) to this request's ``g.timings[name]`` (read by the request log)."""
    if has_request_context():
        timings = g.setdefault("timings", {})
        timings[name] = round(timings.get(name, 0.0) + seconds * 1000, 2)


def register_queue_depth(app: Flask, queue: str, depth: Callable[[], int]) -> None:
    """Report ``depth()`` as ``assistant_queue_depth{queue=...}`` at every scrape (e.g. an RQ queue's
    ``len(queue)``, read from Redis, so every worker reports the same number)."""
    app.extensions.setdefault("assistant_queue_depth", {})[queue] = depth


class _QueueDepthCollector:
    def __init__(self, sources: dict[str, Callable[[], int]]) -> None:
        self.sources = sources

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("assistant_queue_depth", "Jobs waiting in a queue.", labels=["queue"])
        for queue, depth in sorted(self.sources.items()):
            try:
                family.add_metric([queue], float(depth()))
            except redis.RedisError as e:  # the other metrics still matter most while Redis is down
                log.warning("queue depth of %r not read: %s", queue, e)
        yield family


def register_channel_queues(app: Flask) -> None:
    """Report the helpdesk channels' Dramatiq queue (``server/channels/queue.py``) when it is set up:
    ``channels`` (jobs waiting), ``channels.delayed`` (retries and delayed jobs), ``channels.dead``
    (dead letters)."""
    ext = app.extensions.get("channels")
    queue = getattr(ext, "queue", None)
    if queue is None:
        return
    from server.channels.queue import QUEUE

    base = f"{queue.broker.namespace}:{QUEUE}"
    register_queue_depth(app, QUEUE, lambda: queue.client.llen(base))
    register_queue_depth(app, f"{QUEUE}.delayed", lambda: queue.client.llen(f"{base}.DQ"))
    register_queue_depth(app, f"{QUEUE}.dead", queue.dead_letters)


def exposition(app: Flask) -> bytes:
    """The Prometheus text exposition: every worker's samples in multiprocess mode, else this process's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    sources = app.extensions.get("assistant_queue_depth")
    if sources:
        queue_registry = CollectorRegistry()
        queue_registry.register(_QueueDepthCollector(sources))
        text += generate_latest(queue_registry)
    return text


def mark_process_dead(pid: int) -> None:
    """Multiprocess mode: drop a dead worker's live-gauge files (gunicorn ``child_exit`` hook)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)


bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """The Prometheus exposition (scope ``admin`` when API keys are required)."""
    from flask import current_app

    from server.api.auth import authorize

    authorize("admin")
    return Response(
        exposition(current_app), mimetype=CONTENT_TYPE_LATEST.split(";")[0], content_type=CONTENT_TYPE_LATEST
    )


def _start_timer() -> None:
    g.request_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.get("request_started")
    if started is not None:
        route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        REQUEST_LATENCY.labels(route, request.method, str(response.status_code)).observe(
            time.perf_counter() - started
        )
    code = g.get("error_code")
    if code:
        HTTP_ERRORS.labels(code).inc()
        if code.startswith("redis_"):
            REDIS_ERRORS.labels(code).inc()
    return response


def _observe_batch(batcher: str, size: int, started: str) -> None:
    BATCH_SIZE.labels(batcher, started).observe(size)


def init_app(app: Flask) -> None:
    """Time the runtime's reply model and every request, count its micro-batches, and register ``GET /metrics``."""
    rt: Runtime = app.extensions["assistant"]
    generator = getattr(rt.pipeline, "generator", None)
    if isinstance(generator, Generator) and not isinstance(generator, TimedGenerator):
        rt.pipeline.generator = TimedGenerator(generator)
    batching = getattr(rt.pipeline, "batching", None)
    if batching is not None:
        batching.on_batch = _observe_batch
    app.before_request(_start_timer)
    app.after_request(_observe)
    app.register_blueprint(bp)
    register_channel_queues(app)
