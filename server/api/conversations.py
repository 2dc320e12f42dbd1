"""Blueprint ``conversations``: read (``GET``) and erase (``DELETE``) a stored conversation.

``GET /v1/conversations/<id>`` → ``{conversation_id, status, updated_at, ttl_seconds, turns: [...]}``
(404 if none is stored: never created, expired or erased). ``DELETE`` erases its history, state and
stored answers and answers 204 (404 if there was none).
"""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, jsonify

from server.api.auth import authorize, tenant_runtime
from server.api.schemas import conversation_id_problem
from server.errors import ApiError

bp = Blueprint("conversations", __name__, url_prefix="/v1/conversations")


def _checked(conversation_id: str) -> str:
    problem = conversation_id_problem(conversation_id)
    if problem:
        raise ApiError(422, "invalid_field", f"conversation id {conversation_id[:60]!r} {problem}")
    return conversation_id


@bp.get("/<conversation_id>")
def get_conversation(conversation_id: str):
    """The stored messages and state of a conversation (scope ``conversations:read``)."""
    authorize("conversations:read")
    conv = tenant_runtime().store.load(_checked(conversation_id))
    if conv is None:
        raise ApiError(
            404,
            "not_found",
            f"no conversation {conversation_id!r} is stored (never created, expired or erased)",
        )
    return jsonify(
        {
            "conversation_id": conv.conversation_id,
            "status": conv.status,
            "updated_at": conv.updated_at,
            "ttl_seconds": conv.ttl_seconds,
            "turns": [asdict(t) for t in conv.turns],
        }
    )


@bp.delete("/<conversation_id>")
def delete_conversation(conversation_id: str):
    """Erase a conversation: history, state, stored answers (scope ``conversations:erase``)."""
    authorize("conversations:erase")
    if not tenant_runtime().store.delete(_checked(conversation_id)):
        raise ApiError(404, "not_found", f"no conversation {conversation_id!r} is stored")
    return "", 204
