"""The queued job of a channel: answer a conversation's pending customer messages as one turn and post
the reply through the helpdesk's API, exactly once, or leave the conversation to humans.

One job is queued per accepted message, ``burst_window_seconds`` later (``{channel, bot,
conversation_id, seq}``). Under the conversation's channel lock a job

1. resumes the conversation's unfinished turn record if there is one (a retry, or a job whose
   worker died); otherwise
2. takes the pending messages, but only if its own message is the newest of them (a newer message
   has its own, later job: that is the burst window) or the oldest has waited
   ``burst_max_wait_seconds``; it drops them silently if a human owns the conversation;
3. writes the turn record (turn id from the newest helpdesk message id, text = the messages joined
   by newlines), switches typing on, and runs :func:`server.turn.run_turn` — the same pipeline and
   history as ``/v1/chat``; a rerun of the same turn id replays the stored answer;
4. posts the reply, or hands off (``adapter.hand_off``: Chatwoot ``toggle_status open``, Sunshine
   ``passControl``) and posts the handoff reply. Every side effect is a *step* of the turn record
   (``sending`` before, ``done:<result>`` after): a done step is skipped on rerun, a message post
   found ``sending`` is never repeated — its fate is unknown, so the conversation goes to humans;
5. on failure, retries with exponential backoff (``api_attempts`` tries; a busy lock or a message
   still being answered elsewhere waits without using a try); after the last try, or at once when
   the helpdesk refuses (4xx) or a post's outcome is unknown, hands the conversation to humans,
   logs the failure with its ids, counts it and appends it to ``P:channels:failures``.

It knows no payload shapes (adapters in ``chatwoot.py`` / ``sunshine.py``) and no queue library
(``queue.py`` calls :meth:`TurnRunner.run`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable
from typing import Any, Protocol

import dramatiq
import redis

from server.api.schemas import is_valid_id
from server.channels.config import ChannelsConfig
from server.channels.http import HelpdeskError, NotDelivered, Rejected, Uncertain
from server.channels.state import ChannelState, Pending
from server.errors import ApiError
from server.runtime import Runtime
from server.turn import run_turn

log = logging.getLogger(__name__)

#: Wait before re-trying a job whose conversation is locked by another job (ms).
LOCK_BUSY_DELAY_MS = 1000
#: A turn whose job stopped (worker killed) more often than ``api_attempts`` + this is given up.
EXTRA_RUNS = 10


class Adapter(Protocol):
    """What the job needs of a helpdesk (implemented in ``chatwoot.py`` and ``sunshine.py``).

    Attributes:
        channel: ``"chatwoot"`` or ``"sunshine"``. name: the bot's / app's configured name.
        typing_enabled: whether to send typing indicators.
        handoff_before_reply: hand off before posting the handoff reply (else after).
        handoff_repeatable: repeating ``hand_off`` is harmless (Chatwoot's status toggle is; Sunshine's
            ``passControl`` to ``next`` is not).
    """

    channel: str
    name: str
    typing_enabled: bool
    handoff_before_reply: bool
    handoff_repeatable: bool

    def typing(self, target: dict[str, Any], on: bool) -> None: ...

    def post(self, target: dict[str, Any], text: str) -> str: ...

    def hand_off(self, target: dict[str, Any], reason: str) -> None: ...

    def handoff_order(self, last_order: float, posted_ids: list[str]) -> float: ...


def turn_id_for(channel: str, message_id: str) -> str:
    """The dialog-store message id of a turn ending with helpdesk message ``message_id``."""
    prefix = "cw" if channel == "chatwoot" else "sc"
    candidate = f"{prefix}-m{message_id}"
    if is_valid_id(candidate):
        return candidate
    return f"{prefix}-h{hashlib.sha256(message_id.encode()).hexdigest()[:32]}"


class TurnRunner:
    """Runs channel jobs against one process's runtime (store + pipeline).

    Args:
        rt: the app's :class:`~server.runtime.Runtime`.
        cfg: the channel configuration.
        state: the channel state on the same Redis.
        adapters: ``(channel, name)`` → adapter.
    """

    def __init__(
        self,
        rt: Runtime,
        cfg: ChannelsConfig,
        state: ChannelState,
        adapters: dict[tuple[str, str], Adapter],
    ) -> None:
        self.rt = rt
        self.cfg = cfg
        self.state = state
        self.adapters = adapters

    # ------------------------------------------------------------------ entry
    def run(self, message: dict[str, Any]) -> None:
        """Process one queued job (see the module docstring).

        Raises:
            dramatiq.Retry: run again later (lock busy, message in flight, a failed try left).
            redis.RedisError: Redis failed; Dramatiq retries the job with backoff.
        """
        channel, name = message["channel"], message["bot"]
        conversation_id, seq = message["conversation_id"], int(message["seq"])
        adapter = self.adapters.get((channel, name))
        if adapter is None:
            log.error(
                "channel job for unknown %s bot %r (conversation %s): the configuration changed; "
                "its messages stay pending",
                channel,
                name,
                conversation_id,
            )
            self.state.count("unknown_bot_jobs")
            return
        lock = self.state.lock(conversation_id, self.cfg.turn_lock_seconds)
        if not lock.acquire():
            raise dramatiq.Retry("conversation busy", delay=LOCK_BUSY_DELAY_MS + random.randint(0, 500))
        try:
            while True:
                turn = self.state.load_turn(conversation_id)
                if turn is None:
                    turn = self._next_turn(adapter, conversation_id, seq)
                    if turn is None:
                        return
                self._execute(adapter, conversation_id, turn)
        finally:
            try:
                lock.release()
            except redis.exceptions.LockError:
                log.warning("conversation %s: the channel turn outlived its lock", conversation_id)
            except redis.RedisError:
                pass  # expires by itself after turn_lock_seconds

    # ------------------------------------------------------------ selection
    def _next_turn(self, adapter: Adapter, conversation_id: str, seq: int) -> dict[str, str] | None:
        items = self.state.pending(conversation_id)
        if not items:
            return None
        newest = items[-1].seq
        overdue = self.state.now() - items[0].at >= self.cfg.burst_max_wait_seconds
        if seq < newest and not overdue:
            return None  # the job of the newest message answers the burst
        seqs = [p.seq for p in items]
        if self.state.owner(conversation_id) == "human":
            self.state.drop(conversation_id, seqs)
            self.state.count("silenced", len(items))
            log.info(
                "%s conversation %s: %d message(s) left to the human who owns it",
                adapter.channel,
                conversation_id,
                len(items),
            )
            return None
        return self.state.start_turn(conversation_id, self._record(adapter, items))

    @staticmethod
    def _record(adapter: Adapter, items: list[Pending]) -> dict[str, str]:
        last = items[-1]
        return {
            "turn_id": turn_id_for(adapter.channel, last.message_id),
            "text": "\n".join(p.text for p in items),
            "seqs": json.dumps([p.seq for p in items]),
            "message_ids": json.dumps([p.message_id for p in items]),
            "target": json.dumps(last.target),
            "last_order": repr(max(p.order for p in items)),
            "attempts": "0",
            "runs": "0",
        }

    # ------------------------------------------------------------ execution
    def _execute(self, adapter: Adapter, conversation_id: str, turn: dict[str, str]) -> None:
        seqs = json.loads(turn["seqs"])
        runs = self.state.bump_turn(conversation_id, "runs")
        if runs > self.cfg.api_attempts + EXTRA_RUNS:
            self._give_up(adapter, conversation_id, turn, "the turn's job stopped too often", "runs")
            return
        try:
            self._steps(adapter, conversation_id, turn)
        except ApiError as e:
            if e.status != 409 or e.code == "message_id_reused":
                self._give_up(adapter, conversation_id, turn, f"{e.code}: {e.message}", "store")
                return
            # the turn id is being answered elsewhere (e.g. a killed worker's claim not yet expired)
            raise dramatiq.Retry(e.message, delay=LOCK_BUSY_DELAY_MS) from e
        except (Uncertain, Rejected) as e:
            self._give_up(adapter, conversation_id, turn, str(e), type(e).__name__)
            return
        except (dramatiq.Retry, redis.RedisError):
            raise
        except Exception as e:
            attempts = self.state.bump_turn(conversation_id, "attempts")
            turn["attempts"] = str(attempts)
            if attempts >= self.cfg.api_attempts:
                self._give_up(adapter, conversation_id, turn, f"{type(e).__name__}: {e}", "attempts")
                return
            delay = self.cfg.api_backoff_seconds * 2 ** (attempts - 1) * random.uniform(1.0, 1.5)
            self.state.count("retries")
            log.warning(
                "%s bot %s conversation %s turn %s: try %d of %d failed (%s: %s); retrying in %.1f s",
                adapter.channel,
                adapter.name,
                conversation_id,
                turn["turn_id"],
                attempts,
                self.cfg.api_attempts,
                type(e).__name__,
                e,
                delay,
            )
            raise dramatiq.Retry(str(e), delay=int(min(delay, 60.0) * 1000)) from e
        self.state.finish_turn(conversation_id, seqs)

    def _steps(self, adapter: Adapter, conversation_id: str, turn: dict[str, str]) -> None:
        target = json.loads(turn["target"])
        if adapter.typing_enabled and "typing" not in turn:
            turn["typing"] = "on"
            self.state.set_turn(conversation_id, "typing", "on")
            self._best_effort(lambda: adapter.typing(target, True), adapter, conversation_id, "typing on")
        result = run_turn(self.rt, conversation_id, turn["text"], turn["turn_id"])
        if "handing_off" not in turn and self.state.owner(conversation_id) == "human":
            self.state.count("silenced")
            log.info(
                "%s conversation %s: a human took over while the reply was computed; not posting",
                adapter.channel,
                conversation_id,
            )
            return
        last_order = float(turn["last_order"])
        posted_before = sum(1 for k, v in turn.items() if k.startswith("step:reply") and v.startswith("done"))
        posted: list[str] = []
        if result.handoff:
            turn["handing_off"] = "1"
            self.state.set_turn(conversation_id, "handing_off", "1")
            self.state.observe(conversation_id, last_order, "human", force=True)
            hand_off = lambda: adapter.hand_off(target, "the assistant handed over")
            if adapter.handoff_before_reply:
                self._step(conversation_id, turn, "handoff", hand_off, once=not adapter.handoff_repeatable)
            for i, reply in enumerate(result.replies):
                posted.append(self._post(adapter, conversation_id, turn, i, target, reply.text))
            if not adapter.handoff_before_reply:
                self._step(conversation_id, turn, "handoff", hand_off, once=not adapter.handoff_repeatable)
            self.state.observe(conversation_id, adapter.handoff_order(last_order, posted), "human", mark=True)
            if "counted" not in turn:
                self.state.count("handoffs")
        else:
            for i, reply in enumerate(result.replies):
                posted.append(self._post(adapter, conversation_id, turn, i, target, reply.text))
        if adapter.typing_enabled:
            self._best_effort(lambda: adapter.typing(target, False), adapter, conversation_id, "typing off")
        if "counted" not in turn:
            self.state.set_turn(conversation_id, "counted", "1")
            self.state.count("turns")
            self.state.count("replies_posted", len(posted) - posted_before)

    def _post(
        self, adapter: Adapter, conversation_id: str, turn: dict[str, str], i: int, target: dict, text: str
    ) -> str:
        return self._step(conversation_id, turn, f"reply:{i}", lambda: adapter.post(target, text), once=True)

    def _step(
        self, conversation_id: str, turn: dict[str, str], name: str, fn: Callable[[], Any], *, once: bool
    ) -> str:
        """Run a side effect once per turn: skipped when done; never repeated after an unknown outcome
        when ``once``; the marker is cleared when the helpdesk certainly did not act."""
        key = f"step:{name}"
        value = turn.get(key, "")
        if value.startswith("done"):
            return value[5:]
        if value == "sending" and once:
            raise Uncertain(
                f"{name} was being sent when an earlier run of this turn stopped; not repeating it"
            )
        turn[key] = "sending"
        self.state.set_turn(conversation_id, key, "sending")
        try:
            result = fn()
        except (NotDelivered, Rejected):
            turn[key] = "failed"
            self.state.set_turn(conversation_id, key, "failed")
            raise
        done = f"done:{'' if result is None else result}"
        turn[key] = done
        self.state.set_turn(conversation_id, key, done)
        return done[5:]

    @staticmethod
    def _best_effort(fn: Callable[[], None], adapter: Adapter, conversation_id: str, what: str) -> None:
        try:
            fn()
        except HelpdeskError as e:
            log.info("%s conversation %s: %s failed (ignored): %s", adapter.channel, conversation_id, what, e)

    # --------------------------------------------------------------- failure
    def _give_up(
        self, adapter: Adapter, conversation_id: str, turn: dict[str, str], error: str, stage: str
    ) -> None:
        """Leave the conversation to humans, make the failure visible, and close the turn."""
        target = json.loads(turn["target"])
        handoff_step = turn.get("step:handoff", "")
        handed_over = handoff_step.startswith("done")
        hand_off_error = ""
        if not handed_over and (adapter.handoff_repeatable or handoff_step in ("", "failed")):
            try:
                adapter.hand_off(target, "the assistant failed to answer")
                handed_over = True
            except HelpdeskError as e:
                hand_off_error = str(e)
        self.state.observe(conversation_id, float(turn["last_order"]), "human", force=True)
        self.state.mark_store_status(conversation_id, "handoff")
        record = {
            "channel": adapter.channel,
            "bot": adapter.name,
            "conversation_id": conversation_id,
            "turn_id": turn["turn_id"],
            "helpdesk": target,
            "message_ids": json.loads(turn.get("message_ids", "[]")),
            "stage": stage,
            "error": error,
            "attempts": int(turn.get("attempts", "0")),
            "handed_over": handed_over,
            "hand_off_error": hand_off_error,
        }
        self.state.record_failure(record)
        log.error(
            "%s bot %s conversation %s turn %s failed (%s: %s); %s",
            adapter.channel,
            adapter.name,
            conversation_id,
            turn["turn_id"],
            stage,
            error,
            "handed to humans" if handed_over else f"could not hand over either: {hand_off_error}",
        )
        self.state.finish_turn(conversation_id, json.loads(turn["seqs"]))
