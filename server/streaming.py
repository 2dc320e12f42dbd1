"""One chat turn with its reply streamed: the steps of ``server/turn.py`` in a thread of their own.

:func:`start_streamed_turn` runs :func:`~server.turn.open_turn` (claim, lock, history),
:func:`assistant.streaming.respond_streaming` and :meth:`~server.turn.OpenTurn.store` in a new thread
and hands what happens to the caller through a queue, in order:

1. :class:`Started` once the message is claimed and the conversation locked (or :class:`Failed`: 409,
   Redis down; nothing stored);
2. :class:`~assistant.streaming.TextChunk` and :class:`~assistant.streaming.Reset` events while the
   reply is computed (a replayed answer: its text as one chunk);
3. the :class:`~server.turn.TurnResult` after the whole turn was stored in one ``MULTI/EXEC``, or
   :class:`Failed` (nothing stored, the message id released for a retry).

Why a thread: the HTTP response can send keep-alive comments while the model computes, and the turn
does not depend on the client. **A client that disconnects mid-stream leaves the whole turn stored**:
the thread runs the turn to its end whether or not anyone reads the queue, exactly as a ``/v1/chat``
request whose client timed out; a retry with the same ``message_id`` replays the stored answer, and a
reloaded page sees the turn in the history. The turn lock is a redis-py thread-local lock, so it is
taken and released in this thread. This module knows no HTTP (``server/api/stream.py`` writes SSE).
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from assistant.streaming import Reset, TextChunk, respond_streaming
from server.runtime import Runtime
from server.turn import TurnResult, open_turn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Started:
    """The turn is under way: its ids, and whether it replays the stored answer of a repeated message id."""

    conversation_id: str
    message_id: str
    replayed: bool


@dataclass(frozen=True)
class Failed:
    """The turn failed with ``error``; nothing of it was stored."""

    error: BaseException


TurnEvent = Started | TextChunk | Reset | TurnResult | Failed


def start_streamed_turn(
    rt: Runtime, conversation_id: str, text: str, message_id: str | None = None
) -> queue.Queue[TurnEvent]:
    """Start one turn in a new (non-daemon) thread; its events arrive on the returned queue.

    Arguments as :func:`server.turn.run_turn`. The first event is :class:`Started` or :class:`Failed`;
    the last is a :class:`~server.turn.TurnResult` or :class:`Failed`. The thread finishes the turn
    even if nobody reads the queue.
    """
    events: queue.Queue[TurnEvent] = queue.Queue()

    def run() -> None:
        try:
            with open_turn(rt, conversation_id, text, message_id) as turn:
                events.put(Started(turn.conversation_id, turn.message_id, turn.replay is not None))
                if turn.replay is not None:
                    for item in turn.replay.replies:
                        events.put(TextChunk(item.text))
                    events.put(turn.replay)
                    return
                reply = respond_streaming(rt.pipeline, turn.history, text, events.put)
                events.put(turn.store(reply))
        except BaseException as e:  # noqa: BLE001 - every failure must reach the reader, which reports it
            events.put(Failed(e))

    threading.Thread(target=run, name=f"turn:{conversation_id}", daemon=False).start()
    return events
