"""Server-sent events for ``POST /v1/chat`` with ``Accept: text/event-stream``: the reply as it is generated.

The same request body, API key or site key, validation, dedupe, per-conversation lock and single
atomic store as the JSON answer (``server/streaming.py`` runs the turn). The response is
``text/event-stream; charset=utf-8`` with ``Cache-Control: no-cache`` and ``X-Accel-Buffering: no``
(nginx would otherwise buffer it), framed as in the WHATWG HTML standard, section "Server-sent
events": each event is an ``event:`` line, one ``data:`` line of JSON and a blank line.

======== ============================================================ ==========================
event    data                                                         when
======== ============================================================ ==========================
start    ``{conversation_id, message_id}``                            the message is claimed and
                                                                      the conversation locked
chunk    ``{text}``: append to the reply                              while the reply is decoded
reset    ``{}``: drop the reply text shown so far                     a generated reply was not
                                                                      sent (low confidence); the
                                                                      reply sent follows
final    the ``/v1/chat`` JSON body, exactly                          the turn is stored
error    ``{code, message, request_id}``, as the JSON error body's    anything failed
======== ============================================================ ==========================

A comment line ``: keep-alive`` goes out after ``sse_keepalive_seconds`` without an event. Errors
before the stream starts (auth, validation, 409 busy or duplicate, Redis down) answer their HTTP status
with a body of one ``error`` event; after ``start`` the status is already 200 and the ``error`` event
is the last one. The chunks after the last ``reset``, concatenated, equal ``final.replies[0].text``.
A client that disconnects mid-stream leaves the whole turn stored (``server/streaming.py``).
"""

from __future__ import annotations

import json
import queue
from typing import Any

from flask import Response, current_app, request, stream_with_context

from assistant.streaming import Reset, TextChunk
from server.api.schemas import ChatRequest
from server.runtime import runtime
from server.streaming import Failed, Started, start_streamed_turn
from server.turn import TurnResult

MIMETYPE = "text/event-stream"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEEPALIVE = b": keep-alive\n\n"


def wants_event_stream() -> bool:
    """Whether the request prefers ``text/event-stream`` to ``application/json`` (its ``Accept`` header)."""
    return request.accept_mimetypes.best_match(["application/json", MIMETYPE]) == MIMETYPE


def frame(event: str, data: Any) -> bytes:
    """One SSE event: ``event: <name>``, ``data: <JSON>`` (one line: JSON escapes newlines), blank line."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def stream_chat(body: ChatRequest) -> Response:
    """Answer one message as an event stream (see the module docstring).

    Waits until the turn has started, so that errors before it (409, Redis down) propagate to the
    app's error handlers with their status; :func:`errors_as_events` turns those into an ``error`` event.
    """
    rt = runtime()
    events = start_streamed_turn(rt, body.conversation_id, body.text, body.message_id)
    first = events.get()
    if isinstance(first, Failed):
        raise first.error
    if not isinstance(first, Started):
        raise TypeError(f"a streamed turn must start with Started or Failed, got {first!r}")
    keepalive = rt.settings.sse_keepalive_seconds

    @stream_with_context
    def generate():
        yield frame("start", {"conversation_id": first.conversation_id, "message_id": first.message_id})
        while True:
            try:
                item = events.get(timeout=keepalive)
            except queue.Empty:
                yield KEEPALIVE
                continue
            if isinstance(item, TextChunk):
                yield frame("chunk", {"text": item.text})
            elif isinstance(item, Reset):
                yield frame("reset", {})
            elif isinstance(item, TurnResult):
                yield frame("final", item.to_json())
                return
            else:
                yield frame("error", _error_body(item.error))
                return

    response = Response(generate(), mimetype=MIMETYPE, headers=HEADERS)
    if first.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _error_body(error: BaseException) -> dict[str, Any]:
    """The ``error`` object the app's own error handlers give for ``error`` (logged by them, same codes)."""
    if not isinstance(error, Exception):
        error = RuntimeError(f"the turn stopped: {type(error).__name__}")
    response = current_app.make_response(current_app.handle_user_exception(error))
    return response.get_json()["error"]


def errors_as_events(response: Response) -> Response:
    """``after_request`` of the chat blueprint: a JSON error answering an event-stream request becomes
    one ``error`` event with the same status, code, message and request id."""
    if response.status_code < 400 or not response.is_json or not wants_event_stream():
        return response
    error = (response.get_json(silent=True) or {}).get("error")
    if not isinstance(error, dict):
        return response
    converted = Response(
        frame("error", error), status=response.status_code, mimetype=MIMETYPE, headers=HEADERS
    )
    for name in ("Allow", "Retry-After"):
        if name in response.headers:
            converted.headers[name] = response.headers[name]
    return converted
