"""The two WSGI apps that ``bench/server_overhead.py`` serves with gunicorn, side by side.

* :func:`make_ours`: the project's server (``server.create_app``: API key check, rate limits counted
  in Redis, metrics, request log, dedupe claim, conversation lock, history read, one-script commit)
  with a reply pipeline whose generator takes a constant time (``BENCH_GENERATOR_MS``) and does no
  work, and no FAQ index or in-domain check.
* :func:`make_bare`: a bare Flask route ``POST /v1/chat`` that checks the same API key, parses the
  same body, calls the same constant-time generator and stores the turn with ONE Redis pipeline of
  the same shape (read the history; push the customer message and the reply, trim, expire; set the
  state; keep the answer under the message id), then answers the same JSON.

Settings come from the environment (``ASSISTANT_*``, ``REDIS_URL``), as for ``server.wsgi``. Nothing
here is used outside the benchmark.
"""

from __future__ import annotations

import hmac
import json
import os
import time
import uuid
from collections.abc import Sequence

import redis
from flask import Flask, jsonify, request

from assistant.generators.base import Generation, GenerationRequest, Generator
from assistant.pipeline import Pipeline, PipelineConfig

REPLY = "Thanks, I have checked your order: it left our warehouse today."


class ConstantTimeGenerator(Generator):
    """Replies :data:`REPLY` to every request after sleeping ``seconds`` (no CPU work)."""

    name = "constant-time"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        if self.seconds:
            time.sleep(self.seconds)
        return [Generation(REPLY, 0.9) for _ in requests]


def _generator() -> ConstantTimeGenerator:
    return ConstantTimeGenerator(float(os.environ.get("BENCH_GENERATOR_MS", "0")) / 1000)


def make_ours() -> Flask:
    """``server.create_app`` (settings from the environment) with the constant-time generator only."""
    from server import create_app
    from server.logs import configure_logging

    pipeline = Pipeline(None, _generator(), PipelineConfig(smalltalk="off", generator_min_confidence=0.0))
    app = create_app(pipeline=pipeline)
    configure_logging(app.extensions["assistant"].settings)
    return app


def make_bare() -> Flask:
    """A bare Flask route doing what one turn must: key check, body, generator, one Redis pipeline."""
    app = Flask(__name__)
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    key = os.environ.get("ASSISTANT_API_KEY", "").encode()
    prefix = os.environ.get("ASSISTANT_REDIS_PREFIX", "bare")
    max_turns = int(os.environ.get("ASSISTANT_HISTORY_MAX_TURNS", "20"))
    ttl = int(os.environ.get("ASSISTANT_HISTORY_TTL_SECONDS", "86400"))
    generator = _generator()

    @app.post("/v1/chat")
    def chat():
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(given, key):
            return jsonify({"error": {"code": "unauthorized"}}), 401
        body = request.get_json()
        conversation, text = body["conversation_id"], body["text"]
        message_id = body.get("message_id") or uuid.uuid4().hex
        reply = generator.generate([])  # the constant time; no history is needed for it
        now = time.time()
        turns = [
            {"role": "customer", "text": text, "message_id": message_id, "at": now},
            {"role": "agent", "text": REPLY, "message_id": message_id, "at": now, "source": "model"},
        ]
        answer = {"replies": [{"text": REPLY, "source": "model"}], "confidence": 0.9, "handoff": False}
        base = f"{prefix}:{{conv:{conversation}}}"
        pipe = client.pipeline(transaction=True)
        pipe.lrange(f"{base}:history", 0, -1)
        pipe.rpush(f"{base}:history", *(json.dumps(t) for t in turns))
        pipe.ltrim(f"{base}:history", -max_turns, -1)
        pipe.expire(f"{base}:history", ttl)
        pipe.hset(f"{base}:state", mapping={"status": "bot", "updated_at": now})
        pipe.expire(f"{base}:state", ttl)
        pipe.set(f"{base}:dedupe:{message_id}", json.dumps(answer), ex=ttl)
        pipe.execute()
        del reply
        return jsonify(
            {
                "conversation_id": conversation,
                "message_id": message_id,
                "replies": answer["replies"],
                "confidence": 0.9,
                "handoff": False,
            }
        )

    @app.get("/readyz")
    def ready():
        return jsonify({"status": "ready"})

    return app
