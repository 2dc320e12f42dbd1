"""Blueprint ``rasa``: Rasa's REST input channel, so existing Rasa web widgets and clients work unchanged.

``POST /webhooks/rest/webhook`` takes ``{sender, message, metadata?}`` and answers a list of bot
messages ``[{recipient_id, text}]``; ``GET /webhooks/rest/`` answers ``{"status": "ok"}`` (Rasa's
channel health check). ``sender`` is the conversation id. Rasa messages carry no message id, so a
retried POST is a new turn. Errors use the project's JSON error body.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from server.api.guards import check_api_key, parse_body
from server.api.schemas import RasaRequest
from server.runtime import runtime
from server.turn import run_turn

bp = Blueprint("rasa", __name__, url_prefix="/webhooks/rest")


@bp.get("/")
def health():
    """Rasa's channel health check."""
    return jsonify({"status": "ok"})


@bp.post("/webhook")
def webhook():
    """Answer a Rasa REST channel message."""
    check_api_key()
    body = parse_body(RasaRequest)
    result = run_turn(runtime(), body.sender, body.message)
    return jsonify([{"recipient_id": body.sender, "text": r.text} for r in result.replies])
