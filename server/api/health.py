"""Blueprint ``health``: ``/healthz`` (liveness), ``/readyz`` (model loaded, Redis answers).

``/readyz`` answers 200 ``{"status": "ready", "checks": {...}}`` or 503 ``{"status": "unavailable",
"checks": {...}, "error": {code, message, request_id}}`` naming the dependency that failed. Neither
needs the API key (load balancers call them), so neither says more than ok / not ok: no model or
index path, no Redis address or error text (those go to the log under the request id).
"""

from __future__ import annotations

import logging

import redis
from flask import Blueprint, jsonify

from server.errors import request_id
from server.runtime import runtime

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers HTTP and can recover by itself. A remote Redis is not checked
    (it may come back); the embedded Redis this process uses is: once its server process is gone,
    only restarting this process brings it back, so liveness fails (503) instead of claiming health
    while every request fails."""
    embedded = runtime().embedded
    if embedded is not None and not embedded.running():
        return jsonify(
            {
                "status": "unavailable",
                "error": {
                    "code": "embedded_redis_gone",
                    "message": "the embedded Redis of this process has stopped; restart the process",
                    "request_id": request_id(),
                },
            }
        ), 503
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Readiness: the reply pipeline is loaded and Redis answers PING."""
    rt = runtime()
    checks: dict[str, dict] = {}
    failed = []
    checks["model"] = {"ok": True}  # create_app fails rather than run without a pipeline
    try:
        rt.store.ping()
        checks["redis"] = {"ok": True}
    except redis.RedisError as e:
        log.warning("request %s: readiness: Redis unavailable: %s", request_id(), e)
        checks["redis"] = {"ok": False}
        failed.append("redis")
    if failed:
        return jsonify(
            {
                "status": "unavailable",
                "checks": checks,
                "error": {
                    "code": "not_ready",
                    "message": f"not ready: {', '.join(failed)} unavailable; see the server log "
                    f"(request {request_id()})",
                    "request_id": request_id(),
                },
            }
        ), 503
    return jsonify({"status": "ready", "checks": checks})
