"""Request helpers shared by the blueprints: parse and validate a JSON body, check the API key, CORS.

It does not define endpoints.
"""

from __future__ import annotations

from typing import Any, TypeVar

from flask import Response, request
from pydantic import BaseModel
from werkzeug.exceptions import HTTPException

from server.api.auth import current_principal
from server.errors import ApiError
from server.runtime import runtime

M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M]) -> M:
    """Validate the request's JSON body against ``model``.

    Raises:
        ApiError: 415 if the Content-Type is not ``application/json``; 400 if the body is not JSON or
            not a JSON object; 413 (raised by Werkzeug) if it exceeds ``max_body_bytes``.
        pydantic.ValidationError: a field is missing or invalid (422; 413 for an over-long text).
    """
    if request.mimetype != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type must be application/json, got {request.mimetype or 'none'!r}",
        )
    data = request.get_json(silent=True)
    if data is None:
        request.get_data()  # raises 413 for an oversized body before we blame its syntax
        raise ApiError(400, "invalid_json", "the request body is not valid JSON")
    if not isinstance(data, dict):
        raise ApiError(
            400, "invalid_json", f"the request body must be a JSON object, got {type(data).__name__}"
        )
    settings = runtime().settings
    return model.model_validate(data, context={"max_text_chars": settings.max_text_chars})


def peek_json_body() -> Any:
    """The request's JSON body if it is one and within ``max_body_bytes``, else ``None`` (never raises;
    for hooks that only look, e.g. the rate limit's conversation id and the request log)."""
    if not request.is_json:
        return None
    try:
        return request.get_json(silent=True)
    except HTTPException:  # 413: too large to read; the view answers it
        return None


def check_api_key() -> None:
    """Require a valid API key when keys are required (see ``server/api/auth.py``); no scope check.

    Raises:
        ApiError: 401 when the key is missing, wrong, unknown or revoked.
    """
    if request.method != "OPTIONS":  # CORS preflights carry no credentials
        current_principal()


def add_cors_headers(response: Response) -> Response:
    """Let the configured browser origins (setting ``cors_origins``) call the API, preflights included."""
    origins = runtime().settings.allowed_origins
    origin = request.headers.get("Origin")
    if not origins or not origin:
        return response
    if "*" in origins:
        response.headers["Access-Control-Allow-Origin"] = "*"
    elif origin.rstrip("/") in origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.vary.add("Origin")
    else:
        return response
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = (
            "Content-Type, Authorization, X-API-Key, X-Site-Key, X-Request-ID"
        )
        response.headers["Access-Control-Max-Age"] = "600"
    response.headers["Access-Control-Expose-Headers"] = "Idempotent-Replayed, X-Request-ID"
    return response
