"""Request logs: one line per request with its id, route, status, timings, conversation and tenant.

:func:`init_app` logs every request on the ``server.access`` logger after its response is built::

    POST /v1/chat 200 41.2ms  (+ extra fields: request_id, pid, method, route, status, duration_ms,
                              conversation_id, tenant, key_id, error_code, timings, text?, reply?)

``timings`` holds the milliseconds spent in the reply pipeline and the reply model
(``server/metrics.py`` measures them). The request id is the ``X-Request-ID`` of the response and
of error bodies (``server.errors.request_id``); :class:`RequestContextFilter` adds it to every
other record logged while a request is handled, so a 5xx's traceback and its access line share it.

Message texts are never logged unless the ``log_message_text`` setting is on; then the customer's
text and the replies are logged scrubbed of personal data (``assistant.ingest.scrub``). API keys
are never logged (only their ids; a refused well-formed key's id too, to see a revoked key still in use).

:func:`configure_logging` sets up the root logger for a server process (``assistant serve``,
``server.wsgi``): ``log_format=json`` writes one JSON object per line (python-json-logger), ``text``
plain lines. ``create_app`` does not call it, so tests and embedding applications keep their own
logging.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from flask import Flask, Response, g, has_request_context, request
from pythonjsonlogger.json import JsonFormatter

from assistant.ingest.scrub import Scrubber
from server.api.guards import peek_json_body
from server.api.schemas import conversation_id_problem
from server.errors import request_id
from server.settings import Settings

access_log = logging.getLogger("server.access")


class RequestContextFilter(logging.Filter):
    """Adds ``request_id`` to every record logged inside a request (``None`` outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id() if has_request_context() else None
        return True


def configure_logging(settings: Settings, stream: Any = None) -> None:
    """Send the root logger's INFO and above to ``stream`` (stderr) as JSON or text lines.

    Replaces the root logger's handlers (a server process owns its logging).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    handler.addFilter(RequestContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def _conversation_id() -> str | None:
    if request.view_args and "conversation_id" in request.view_args:
        value = request.view_args["conversation_id"]
        return value if conversation_id_problem(value) is None else None
    body = peek_json_body()
    if isinstance(body, dict):
        value = body.get("conversation_id", body.get("sender"))
        return value if isinstance(value, str) and conversation_id_problem(value) is None else None
    return None


def _texts(response: Response, scrubber: Scrubber) -> dict[str, Any]:
    body = peek_json_body()
    fields: dict[str, Any] = {}
    if isinstance(body, dict):
        text = body.get("text", body.get("message"))
        if isinstance(text, str):
            fields["text"] = scrubber.scrub(text)
    if response.is_json and response.status_code == 200:
        answer = response.get_json(silent=True)
        replies = answer.get("replies") if isinstance(answer, dict) else answer
        if isinstance(replies, list):
            fields["reply"] = [
                scrubber.scrub(r["text"]) for r in replies if isinstance(r, dict) and "text" in r
            ]
    return fields


def init_app(app: Flask) -> None:
    """Log one ``server.access`` line per request (see the module docstring)."""
    settings: Settings = app.extensions["assistant"].settings
    scrubber = Scrubber() if settings.log_message_text else None

    @app.after_request
    def _log_request(response: Response) -> Response:
        started = g.get("request_started")
        duration_ms = round((time.perf_counter() - started) * 1000, 2) if started is not None else None
        principal = g.get("principal")
        route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        fields: dict[str, Any] = {
            "request_id": request_id(),
            "pid": os.getpid(),  # which worker answered
            "method": request.method,
            "route": route,
            "status": response.status_code,
            "duration_ms": duration_ms,
            "conversation_id": _conversation_id(),
            "tenant": principal.tenant if principal else None,
            "key_id": principal.key_id if principal else g.get("rejected_key_id"),
            "error_code": g.get("error_code"),
            "timings": g.get("timings", {}),
        }
        if scrubber is not None:
            fields.update(_texts(response, scrubber))
        access_log.info(
            "%s %s %s %sms", request.method, route, response.status_code, duration_ms, extra=fields
        )
        return response
