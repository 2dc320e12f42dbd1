"""Blueprint ``health``: ``/healthz`` (liveness, touches nothing), ``/readyz`` (model loaded, Redis answers).

``/readyz`` answers 200 ``{"status": "ready", "checks": {...}}`` or 503 ``{"status": "unavailable",
"checks": {...}, "error": {code, message}}`` naming the dependency that failed. Neither needs the
API key (load balancers call them).
"""

from __future__ import annotations

import logging
from pathlib import Path

import redis
from flask import Blueprint, jsonify

from server.errors import request_id
from server.runtime import runtime

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers HTTP. No dependency is checked."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Readiness: the reply pipeline is loaded and Redis answers PING."""
    rt = runtime()
    checks: dict[str, dict] = {}
    failed = []
    # create_app fails rather than run without a pipeline; directories by name only: this endpoint
    # needs no key, so it shows no server paths
    info = {k: Path(v).name if k.endswith("_dir") and v else v for k, v in rt.model_info.items()}
    checks["model"] = {"ok": True, **info}
    try:
        rt.store.ping()
        checks["redis"] = {"ok": True}
    except redis.RedisError as e:  # the details (addresses, socket paths) go to the log, not the body
        log.warning("request %s: readiness: Redis does not answer: %s", request_id(), e)
        checks["redis"] = {"ok": False, "error": type(e).__name__}
        failed.append("redis")
    if failed:
        return jsonify(
            {
                "status": "unavailable",
                "checks": checks,
                "error": {"code": "not_ready", "message": f"not ready: {', '.join(failed)} unavailable"},
            }
        ), 503
    return jsonify({"status": "ready", "checks": checks})
