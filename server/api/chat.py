"""Blueprint ``chat``: ``POST /v1/chat``, the project's own chat endpoint.

Request ``{conversation_id, message_id?, text, metadata?}``; response ``{conversation_id, message_id,
replies: [{text, source, faq_id?}], confidence, handoff}``. A repeated ``message_id`` replays the
stored answer (header ``Idempotent-Replayed: true``). The turn itself is ``server/turn.py``.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from server.api.auth import require, tenant_runtime
from server.api.guards import parse_body
from server.api.schemas import ChatRequest
from server.turn import run_turn

bp = Blueprint("chat", __name__, url_prefix="/v1")
bp.before_request(require("chat"))


@bp.post("/chat")
def chat():
    """Answer one customer message in a conversation."""
    body = parse_body(ChatRequest)
    result = run_turn(tenant_runtime(), body.conversation_id, body.text, body.message_id)
    response = jsonify(result.to_json())
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response
