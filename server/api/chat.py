"""Blueprint ``chat``: ``POST /v1/chat``, the project's own chat endpoint.

Request ``{conversation_id, message_id?, text, metadata?}``; response ``{conversation_id, message_id,
replies: [{text, source, faq_id?, entity?}], confidence, handoff}``. A repeated ``message_id`` replays the
stored answer (header ``Idempotent-Replayed: true``). The turn itself is ``server/turn.py``. With
``Accept: text/event-stream`` the same request streams the reply as server-sent events, and errors
come as an ``error`` event (``server/api/stream.py``).
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from server.api import stream
from server.api.guards import check_api_key, parse_body
from server.api.schemas import ChatRequest
from server.runtime import runtime
from server.turn import run_turn

bp = Blueprint("chat", __name__, url_prefix="/v1")
bp.before_request(check_api_key)
bp.after_request(stream.errors_as_events)


@bp.post("/chat")
def chat():
    """Answer one customer message in a conversation."""
    body = parse_body(ChatRequest)
    if stream.wants_event_stream():
        return stream.stream_chat(body)
    result = run_turn(runtime(), body.conversation_id, body.text, body.message_id)
    response = jsonify(result.to_json())
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response
