"""Micro-batching (assistant/microbatching.py): batched replies equal one-at-a-time replies, a failing
request fails alone, the wait is bounded, shutdown releases waiting callers; the server's settings.

Real tiny LSTM models (random weights sharpened so replies differ) decoded by real threads; batches
are forced by announcing every request first, so a test cannot pass without a batch being formed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import torch

from assistant.data import Turn
from assistant.errors import ConfigError
from assistant.generators.base import GenerationRequest
from assistant.generators.decoding import DecodingConfig
from assistant.generators.lstm import Seq2SeqConfig, Seq2SeqModel
from assistant.generators.lstm.generator import LSTMGenerator
from assistant.generators.lstm.tokenizer import Tokenizer, TokenizerConfig
from assistant.microbatching import BatcherClosed, BatchingGenerator, MicroBatching
from assistant.pipeline import Pipeline, PipelineConfig

CORPUS = [f"my order {n} has not arrived, can you check it" for n in range(30)] + [
    "could I get your name please",
    "thank you and goodbye",
    "your refund was sent today",
    "the parcel was delivered to the wrong address yesterday",
]
TEXTS = [
    "hello, my order 12 has not arrived",
    "thank you",
    "could I get a refund for the parcel that was delivered to the wrong address",
    "where is it",
    "my order 7",
    "goodbye and thanks for the refund",
    "can you check the address",
    "it has not arrived yet, my name is Sam",
    "order 3 was sent today",
    "hello",
]
REQUESTS = [GenerationRequest((Turn("customer", t),)) for t in TEXTS] + [
    GenerationRequest((Turn("agent", "could I get your name please"), Turn("customer", "Sam"))),
]
HANG = 60  # seconds before a test that waits on threads gives up (a hang, not a timing check)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train(CORPUS, TokenizerConfig(vocab_size=100))


def lstm(tokenizer: Tokenizer, beam_size: int, seed: int = 0) -> LSTMGenerator:
    torch.manual_seed(seed)
    model = Seq2SeqModel(
        Seq2SeqConfig(emb_size=16, hidden_size=32, dropout=0.0), tokenizer.vocab_size, tokenizer.pad_id
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(5.0)
    return LSTMGenerator(model, tokenizer, DecodingConfig(beam_size=beam_size, max_len=12))


def in_threads(calls: list[Callable[[], Any]], group: MicroBatching | None = None) -> list[Any]:
    """Run each call in its own thread, announced to ``group`` (all announced before any call runs);
    each result is the call's return value or the exception it raised."""
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i: int) -> None:
        with group.request() if group is not None else _nothing():
            barrier.wait()
            try:
                results[i] = calls[i]()
            except Exception as e:  # noqa: BLE001 - the test compares it
                results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG)
        assert not t.is_alive(), "a batched call never returned"
    return results


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize("beam_size", [1, 3])
def test_batched_replies_equal_one_at_a_time(tokenizer, beam_size):
    inner = lstm(tokenizer, beam_size)
    alone = [inner.generate([r])[0] for r in REQUESTS]
    assert len({g.text for g in alone}) > 3  # replies differ: a mix-up between requests would show
    group = MicroBatching(max_batch_size=32, max_wait=1.0)
    batched = BatchingGenerator(inner, group)
    got = in_threads([lambda r=r: batched.generate([r])[0] for r in REQUESTS], group)
    assert batched.batcher.batch_sizes == [len(REQUESTS)]  # one batch of every request
    for want, have in zip(alone, got, strict=True):
        assert have.text == want.text
        # padding in a batch changes float32 sums in the last bits only
        assert have.confidence == pytest.approx(want.confidence, rel=1e-5)


def test_batches_are_cut_at_max_batch_size(tokenizer):
    inner = lstm(tokenizer, 1)
    group = MicroBatching(max_batch_size=4, max_wait=1.0)
    batched = BatchingGenerator(inner, group)
    alone = [inner.generate([r])[0].text for r in REQUESTS]
    got = in_threads([lambda r=r: batched.generate([r])[0].text for r in REQUESTS], group)
    assert got == alone
    assert sum(batched.batcher.batch_sizes) == len(REQUESTS)
    assert max(batched.batcher.batch_sizes) == 4 and len(batched.batcher.batch_sizes) >= 3


def test_each_batch_is_reported_with_its_size_and_start_reason(tokenizer):
    group = MicroBatching(max_batch_size=4, max_wait=1.0)
    reported: list[tuple[str, int, str]] = []
    group.on_batch = lambda name, size, started: reported.append((name, size, started))
    batched = BatchingGenerator(lstm(tokenizer, 1), group)
    in_threads([lambda r=r: batched.generate([r])[0].text for r in REQUESTS], group)
    assert [size for _, size, _ in reported] == batched.batcher.batch_sizes
    assert {name for name, _, _ in reported} == {"generator"}
    assert ("generator", 4, "full") in reported  # every request was announced first: the first batch fills
    assert {started for _, _, started in reported} <= {"full", "nobody_else", "deadline"}


def test_a_failing_request_fails_alone_with_its_own_error(tokenizer):
    inner = lstm(tokenizer, 1)
    bad = GenerationRequest(("not a turn",))  # type: ignore[arg-type]  # fails in input formatting
    with pytest.raises(AttributeError) as alone_error:
        inner.generate([bad])
    requests = [*REQUESTS[:5], bad, *REQUESTS[5:]]
    group = MicroBatching(max_batch_size=32, max_wait=1.0)
    batched = BatchingGenerator(inner, group)
    got = in_threads([lambda r=r: batched.generate([r])[0] for r in requests], group)
    assert batched.batcher.batch_sizes == [len(requests)]  # they met in one batch
    assert isinstance(got[5], AttributeError) and str(got[5]) == str(alone_error.value)
    others = [g for i, g in enumerate(got) if i != 5]
    assert [g.text for g in others] == [inner.generate([r])[0].text for r in REQUESTS]


def test_a_lone_request_does_not_wait_for_a_batch(tokenizer):
    """With the longest wait allowed and room for 16, a request alone starts at once: nobody else is
    announced, so the batch starts for that reason, not at the wait's deadline."""
    inner = lstm(tokenizer, 1)
    group = MicroBatching(max_batch_size=16, max_wait=1.0)
    batched = BatchingGenerator(inner, group)
    for request in REQUESTS[:3]:
        with group.request():
            assert batched.generate([request])[0].text == inner.generate([request])[0].text
    assert batched.batcher.batch_sizes == [1, 1, 1]
    assert batched.batcher.start_reasons == {"nobody_else": 3}


def test_the_wait_for_an_announced_request_is_bounded(tokenizer):
    """A request announced but not arriving (still searching the FAQ, say) delays a batch at most
    ``max_wait``: the other request is answered while it is still on its way."""
    inner = lstm(tokenizer, 1)
    group = MicroBatching(max_batch_size=16, max_wait=0.05)
    batched = BatchingGenerator(inner, group)
    answered = threading.Event()
    late: list[Any] = []

    def slow_request() -> None:  # announced first, calls the model only after the other is answered
        with group.request():
            announced.set()
            answered.wait(HANG)
            late.append(batched.generate([REQUESTS[1]])[0].text)

    announced = threading.Event()
    other = threading.Thread(target=slow_request)
    other.start()
    assert announced.wait(HANG)
    with group.request():
        text = batched.generate([REQUESTS[0]])[0].text
    answered.set()
    other.join(HANG)
    assert text == inner.generate([REQUESTS[0]])[0].text
    assert late == [inner.generate([REQUESTS[1]])[0].text]
    assert batched.batcher.start_reasons == {"deadline": 1, "nobody_else": 1}


def test_a_request_that_leaves_without_the_model_ends_the_wait():
    """Announced requests answered without the model (FAQ route) leave: the waiting batch starts then."""
    group = MicroBatching(max_batch_size=16, max_wait=1.0)
    leave = threading.Event()
    batcher = group.batcher("double", lambda items: [2 * x for x in items])

    def faq_request() -> None:
        with group.request():
            leave.wait(HANG)

    other = threading.Thread(target=faq_request)
    other.start()
    result: list[int] = []

    def waiting_request() -> None:
        with group.request():
            result.append(batcher.submit(21))

    waiter = threading.Thread(target=waiting_request)
    waiter.start()
    deadline = time.monotonic() + HANG
    while not batcher._running and time.monotonic() < deadline:  # it leads, waiting for the other
        time.sleep(0.001)
    leave.set()
    other.join(HANG)
    waiter.join(HANG)
    assert result == [42]
    assert batcher.start_reasons["nobody_else"] == 1


def test_close_releases_queued_callers_with_a_clear_error():
    group = MicroBatching(max_batch_size=16, max_wait=0.0)
    release = threading.Event()
    started = threading.Event()

    def run(items: list[int]) -> list[int]:
        started.set()
        release.wait(HANG)
        return [x + 1 for x in items]

    batcher = group.batcher("plus-one", run)
    results: dict[int, Any] = {}

    def call(x: int) -> None:
        try:
            results[x] = batcher.submit(x)
        except BatcherClosed as e:
            results[x] = e

    first = threading.Thread(target=call, args=(1,))
    first.start()
    assert started.wait(HANG)  # the first batch is running and blocks the model
    queued = [threading.Thread(target=call, args=(x,)) for x in (2, 3)]
    for t in queued:
        t.start()
    deadline = time.monotonic() + HANG
    while len(batcher._queue) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    group.close()
    for t in queued:
        t.join(HANG)
        assert not t.is_alive(), "close() left a queued caller waiting"
    for x in (2, 3):
        assert isinstance(results[x], BatcherClosed)
        assert "closed (the server is shutting down)" in str(results[x]) and "send it again" in str(
            results[x]
        )
    release.set()
    first.join(HANG)
    assert results[1] == 2  # the running batch finished
    with pytest.raises(BatcherClosed, match="plus-one batcher is closed"):
        batcher.submit(4)


def test_a_wrong_number_of_results_fails_each_call_clearly():
    group = MicroBatching(max_batch_size=4, max_wait=0.0)
    batcher = group.batcher("broken", lambda items: [])
    with pytest.raises(Exception, match="broken batch returned 0 results for 1 inputs"):
        batcher.submit(1)


def test_invalid_limits_are_refused():
    with pytest.raises(ConfigError, match="max_batch_size must be an integer >= 1, got 0"):
        MicroBatching(max_batch_size=0)
    with pytest.raises(ConfigError, match=r"batch wait must be in \[0, 1\] seconds, got 5"):
        MicroBatching(max_wait=5)


def test_pipeline_replies_batched_equal_unbatched(tokenizer):
    inner = lstm(tokenizer, 1)
    config = PipelineConfig(generator_min_confidence=0.0, smalltalk="off")
    plain = Pipeline(None, inner, config)
    group = MicroBatching(max_batch_size=16, max_wait=1.0)
    batched = Pipeline(None, inner, config, batching=group)
    texts = TEXTS[:8]
    want = [plain.respond([], t) for t in texts]
    results: list[Any] = [None] * len(texts)
    barrier = threading.Barrier(len(texts))

    def run(i: int) -> None:
        barrier.wait()
        results[i] = batched.respond([], texts[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG)
    assert [(r.text, r.source) for r in results] == [(w.text, w.source) for w in want]
    sizes = batched.generator.batcher.batch_sizes
    assert sum(sizes) == len(texts) and max(sizes) > 1  # respond() announces itself: batches form


def test_server_settings_wire_the_batcher(make_app, tokenizer):
    from server.runtime import micro_batching
    from server.settings import load_settings

    settings = load_settings({"env": "testing", "max_batch_size": 8, "batch_wait_ms": 2.5}, environ={})
    group = micro_batching(settings)
    assert (group.max_batch_size, group.max_wait) == (8, 0.0025)
    assert micro_batching(load_settings({"env": "testing", "max_batch_size": 1}, environ={})) is None
    with pytest.raises(ConfigError, match="ASSISTANT_MAX_BATCH_SIZE"):
        load_settings({"env": "testing", "max_batch_size": 0}, environ={})
    with pytest.raises(ConfigError, match="ASSISTANT_BATCH_WAIT_MS"):
        load_settings({"env": "testing", "batch_wait_ms": -1}, environ={})

    pipeline = Pipeline(None, lstm(tokenizer, 1), PipelineConfig(), batching=MicroBatching(4, 0.001))
    app = make_app(use_pipeline=pipeline)
    rt = app.extensions["assistant"]
    assert pipeline.batching.close in rt.on_close  # Runtime.close() releases queued requests
    pipeline.batching.close()
    response = app.test_client().post("/v1/chat", json={"conversation_id": "c1", "text": "where is it"})
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "model_unavailable"


def test_batch_sizes_are_exported_as_a_prometheus_histogram(make_app, tokenizer):
    from prometheus_client.parser import text_string_to_metric_families

    def batch_samples(client) -> dict[tuple[str, str, str], float]:
        text = client.get("/metrics").get_data(as_text=True)
        return {
            (s.name, s.labels.get("batcher", ""), s.labels.get("started", "")): s.value
            for family in text_string_to_metric_families(text)
            if family.name == "assistant_batch_size"
            for s in family.samples
        }

    pipeline = Pipeline(None, lstm(tokenizer, 1), PipelineConfig(), batching=MicroBatching(4, 0.001))
    client = make_app(use_pipeline=pipeline).test_client()
    before = batch_samples(client)
    for i in range(3):  # one at a time: each is a batch of 1 that started because nobody else was coming
        response = client.post("/v1/chat", json={"conversation_id": f"b{i}", "text": "where is my order"})
        assert response.status_code == 200
    after = batch_samples(client)
    key = ("assistant_batch_size_count", "generator", "nobody_else")
    assert after[key] - before.get(key, 0.0) == 3
    key = ("assistant_batch_size_sum", "generator", "nobody_else")
    assert after[key] - before.get(key, 0.0) == 3


@pytest.mark.slow
def test_in_domain_check_scores_batched_equal_one_at_a_time():
    """The real MiniLM in-domain check: concurrent ``score`` calls run as one ``scores`` batch and give
    each message its own probability (equal to scoring it alone within float32 batch noise)."""
    from assistant.routing.scope import ScopeCheck, ScopeConfig

    in_domain = ["where is my parcel", "my package has not arrived yet", "I want to return my headphones"]
    check = ScopeCheck.build(in_domain + ["can I get a refund for the broken charger"], ScopeConfig(top_k=2))
    check.calibrate(in_domain, ["who painted the mona lisa", "set an alarm for 7am"])
    messages = [*in_domain, "how do I bake sourdough bread", "refund for my order please", "hello there"]
    alone = [check.score(m) for m in messages]
    group = MicroBatching(max_batch_size=16, max_wait=1.0)
    batched = group.scope(check)
    assert batched.threshold == check.threshold  # the rest is the inner check's
    got = in_threads([lambda m=m: batched.score(m) for m in messages], group)
    assert batched.batcher.batch_sizes == [len(messages)]
    assert got == pytest.approx(alone, rel=1e-4, abs=1e-6)
    assert len({round(p, 3) for p in got}) > 2  # the messages differ, so a mix-up would show
