"""HTTP error responses: every failure becomes JSON ``{"error": {"code", "message"}}`` with its status.

=====================================  ======  ==========================
cause                                  status  code
=====================================  ======  ==========================
body not JSON / not an object          400     ``invalid_json``
missing or wrong API key               401     ``unauthorized``
unknown conversation, unknown route    404     ``not_found``
method not allowed                     405     ``method_not_allowed``
duplicate in flight, id reused, busy   409     ``duplicate_in_flight`` / ``message_id_reused`` /
                                               ``conversation_busy``
body over ``max_body_bytes``           413     ``body_too_large``
text over ``max_text_chars``           413     ``text_too_long``
Content-Type not application/json      415     ``unsupported_media_type``
field missing / wrong type / pattern   422     ``invalid_field`` (message names the field)
Redis unreachable or timing out        503     ``redis_unavailable``
any other Redis failure                503     ``redis_error``
the reply model or index fails         503     ``model_unavailable``
anything else                          500     ``internal_error`` (logged with traceback)
=====================================  ======  ==========================

Every error body also carries the request id (``error.request_id``, the ``X-Request-ID`` header):
the details of a 5xx (exception text, Redis addresses, file paths) go to the server log under that
id, never to the client. No endpoint answers 200 after a failure. This module maps exceptions to responses; it does not
decide when to raise them.
"""

from __future__ import annotations

import logging
import uuid

import pydantic
import redis
from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from assistant.errors import AssistantError, ModelError, RetrievalError
from server.api.schemas import ID_RULE, TextTooLong

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_field",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An error with its HTTP status, machine-readable code and human message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> tuple[Response, int]:
    """The JSON error body ``{"error": {code, message, request_id}}`` and status."""
    return jsonify({"error": {"code": code, "message": message, "request_id": request_id()}}), status


_REQUEST_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def request_id() -> str:
    """This request's id: the client's ``X-Request-ID`` when it is 1-64 characters of ``[A-Za-z0-9._-]``,
    else a new uuid4 hex. Logged with every error and returned in the ``X-Request-ID`` header."""
    if "request_id" not in g:
        given = request.headers.get("X-Request-ID", "")
        ok = 0 < len(given) <= 64 and set(given) <= _REQUEST_ID_CHARS
        g.request_id = given if ok else uuid.uuid4().hex
    return g.request_id


def _add_request_id_header(response: Response) -> Response:
    response.headers["X-Request-ID"] = request_id()
    return response


def validation_error(exc: pydantic.ValidationError) -> ApiError:
    """Turn a pydantic error into 413 (text too long) or 422 naming every bad field and why."""
    problems = []
    for err in exc.errors(include_url=False):
        cause = (err.get("ctx") or {}).get("error")
        field = ".".join(str(p) for p in err["loc"]) or "body"
        if isinstance(cause, TextTooLong):
            return ApiError(413, "text_too_long", f"field '{field}' {cause}")
        message = str(cause) if isinstance(cause, ValueError) else err["msg"]
        if err["type"] == "missing":
            message = "is required"
        elif err["type"] == "extra_forbidden":
            message = "is not a known field"
        elif err["type"] == "string_pattern_mismatch":
            message = f"must be {ID_RULE} (got {err['input']!r:.60})"
        problems.append(f"field '{field}' {message}")
    return ApiError(422, "invalid_field", "; ".join(problems))


def register_error_handlers(app: Flask) -> None:
    """Install the JSON error handlers and the ``X-Request-ID`` response header on ``app``."""
    app.after_request(_add_request_id_header)

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message)

    @app.errorhandler(pydantic.ValidationError)
    def _validation(exc: pydantic.ValidationError):
        err = validation_error(exc)
        return error_response(err.status, err.code, err.message)

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    def _redis_down(exc: redis.RedisError):
        log.warning("request %s: Redis unavailable: %s", request_id(), exc)
        return error_response(
            503,
            "redis_unavailable",
            "the conversation store (Redis) is unavailable; nothing was stored, retry later",
        )

    @app.errorhandler(redis.RedisError)
    def _redis_error(exc: redis.RedisError):
        log.error("request %s: Redis error", request_id(), exc_info=exc)
        return error_response(
            503,
            "redis_error",
            f"the conversation store (Redis) failed; see the server log (request {request_id()})",
        )

    @app.errorhandler(ModelError)
    @app.errorhandler(RetrievalError)
    def _model_error(exc: AssistantError):
        log.error("request %s: reply model failed", request_id(), exc_info=exc)
        return error_response(
            503, "model_unavailable", f"the reply model failed; see the server log (request {request_id()})"
        )

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"the request body is larger than {limit} bytes (setting max_body_bytes)"
        elif status == 404:
            message = "no such endpoint; see docs/server.md for the API"
        elif status == 405:
            allowed = ", ".join(sorted(getattr(exc, "valid_methods", None) or []))
            message = f"method not allowed here; allowed: {allowed}"
        return error_response(status, code, message)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.error("request %s: unhandled error", request_id(), exc_info=exc)
        return error_response(
            500, "internal_error", f"internal error; see the server log (request {request_id()})"
        )
