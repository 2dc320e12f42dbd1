"""Reply pipeline routing: confident FAQ hit → answer, else generator, else fallback with handoff."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from assistant.data import Dialog, FaqEntry, Query, Turn
from assistant.errors import ConfigError, DataError
from assistant.generators.base import Generation, GenerationRequest, Generator
from assistant.generators.baseline import RetrievalBaseline
from assistant.pipeline import DEFAULT_FALLBACK, Pipeline, PipelineConfig
from assistant.retrieval.index import FaqIndex, RetrieverConfig

ENTRIES = [
    FaqEntry(
        "pw",
        "How do I reset my password?",
        "Use 'Forgot password' on the sign-in page.",
        ("forgot my password", "password reset link", "can't log in, need a new password"),
    ),
    FaqEntry(
        "refund",
        "How do I get a refund?",
        "Refunds reach your card within 5 days.",
        ("I want my money back", "refund for a returned item"),
    ),
    FaqEntry(
        "ship",
        "Where is my order?",
        "Track it under Account > Orders.",
        ("track my parcel", "my package has not arrived"),
    ),
    FaqEntry(
        "declined",
        "Why was my card declined?",
        "[card declined]",
        ("payment declined", "card refused"),
        meta={"placeholder_answer": True},
    ),
]
CALIBRATION = [
    Query("reset password", "pw"),
    Query("password forgotten", "pw"),
    Query("money back", "refund"),
    Query("refund please", "refund"),
    Query("track order", "ship"),
    Query("parcel not arrived", "ship"),
    Query("card declined at checkout", "declined"),
    Query("tell me a joke", None),
    Query("weather in paris", None),
    Query("who won the match", None),
    Query("how do I bake bread", None),
    Query("can I get a dog", None),
]
HISTORY = (
    Turn("customer", "hi"),
    Turn("agent", "Hello! How can I help?"),
    Turn("customer", "a question"),
    Turn("agent", "Sure, go ahead."),
)


class FixedGenerator(Generator):
    """A generator with a fixed reply and confidence that records its requests."""

    name = "fixed"

    def __init__(self, text: str, confidence: float) -> None:
        self.text, self.confidence_value = text, confidence
        self.requests: list[GenerationRequest] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        self.requests.extend(requests)
        return [Generation(self.text, self.confidence_value) for _ in requests]


@pytest.fixture(scope="module")
def index() -> FaqIndex:
    idx = FaqIndex.build(ENTRIES, RetrieverConfig(method="bm25"))
    idx.calibrate(CALIBRATION)
    return idx


def test_confident_faq_hit_returns_the_answer_verbatim(index: FaqIndex) -> None:
    generator = FixedGenerator("generated", 0.99)
    reply = Pipeline(index, generator).respond(HISTORY, "I forgot my password")
    assert (reply.source, reply.faq_id, reply.handoff) == ("faq", "pw", False)
    assert reply.text == ENTRIES[0].answer and reply.confidence >= index.threshold
    assert reply.hits[0].faq_id == "pw" and len(reply.hits) == 4
    assert generator.requests == []


def test_unconfident_faq_goes_to_a_confident_generator_with_recent_history(index: FaqIndex) -> None:
    generator = FixedGenerator("Happy to help with that.", 0.8)
    config = PipelineConfig(max_history_turns=2)
    reply = Pipeline(index, generator, config).respond(HISTORY, "tell me a story")
    assert (reply.source, reply.text, reply.faq_id, reply.handoff) == (
        "model",
        "Happy to help with that.",
        None,
        False,
    )
    assert reply.confidence == 0.8
    (request,) = generator.requests
    assert (
        request.context == HISTORY[-2:] + (Turn("customer", "tell me a story"),) and request.grounding is None
    )


def test_neither_confident_hands_off_with_the_fallback_text(index: FaqIndex) -> None:
    generator = FixedGenerator("maybe this?", 0.2)
    reply = Pipeline(index, generator, PipelineConfig(max_history_turns=0)).respond(HISTORY, "tell me a joke")
    assert (reply.source, reply.text, reply.faq_id, reply.handoff) == (
        "fallback",
        DEFAULT_FALLBACK,
        None,
        True,
    )
    assert reply.confidence == pytest.approx(0.2)
    assert generator.requests[0].context == (Turn("customer", "tell me a joke"),)
    no_generator = Pipeline(index, None).respond([], "who won the football match")
    assert (
        no_generator.handoff
        and no_generator.source == "fallback"
        and no_generator.confidence < index.threshold
    )


def test_generator_only_pipeline(index: FaqIndex) -> None:
    reply = Pipeline(None, FixedGenerator("hello", 0.6)).respond([], "reset password")
    assert (reply.source, reply.hits, reply.handoff) == ("model", (), False)


def test_a_generated_handover_macro_sets_handoff() -> None:
    macro = "Thanks, I've passed that on. A member of our team will join this chat shortly."
    config = PipelineConfig(handoff_replies=(macro,))
    reply = Pipeline(
        None,
        FixedGenerator(
            "  thanks. I've passed that on  A member of our team will join this chat shortly!", 0.9
        ),
        config,
    ).respond([], "my parcel arrived broken")
    assert (reply.source, reply.handoff) == ("model", True)
    reply = Pipeline(None, FixedGenerator("Could I get your order number?", 0.9), config).respond(
        [], "where is my parcel"
    )
    assert (reply.source, reply.handoff) == ("model", False)
    with pytest.raises(ConfigError, match="handoff_replies must be non-empty strings"):
        PipelineConfig(handoff_replies=(" ",))


def test_grounded_generation_and_its_low_confidence_fallback_to_the_answer(index: FaqIndex) -> None:
    config = PipelineConfig(ground_with_generator=True, generator_min_confidence=0.5)
    confident = FixedGenerator("Click 'Forgot password' and check your mail.", 0.7)
    reply = Pipeline(index, confident, config).respond([], "I forgot my password")
    assert (reply.source, reply.faq_id, reply.text) == ("model", "pw", confident.text)
    assert confident.requests[0].grounding == ENTRIES[0]
    unsure = FixedGenerator("???", 0.1)
    reply = Pipeline(index, unsure, config).respond([], "I forgot my password")
    assert (reply.source, reply.faq_id, reply.text) == ("faq", "pw", ENTRIES[0].answer)


def test_placeholder_answer_is_never_sent_but_routes_a_handoff(index: FaqIndex) -> None:
    reply = Pipeline(index, FixedGenerator("x", 0.99)).respond([], "my card was declined")
    assert (reply.source, reply.faq_id, reply.handoff) == ("fallback", "declined", True)
    assert "[card declined]" not in reply.text


def test_bad_input_and_config_fail_clearly(index: FaqIndex) -> None:
    pipeline = Pipeline(index, None)
    with pytest.raises(DataError, match="non-empty string"):
        pipeline.respond([], "  ")
    with pytest.raises(DataError, match=r"history\[0\] must be a Turn"):
        pipeline.respond([("customer", "hi")], "refund")  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="needs an FAQ index, a generator, or both"):
        Pipeline(None, None)
    with pytest.raises(ConfigError, match="not calibrated"):
        Pipeline(FaqIndex.build(ENTRIES, RetrieverConfig(method="bm25")), None)
    with pytest.raises(ConfigError, match="ground_with_generator needs a generator"):
        Pipeline(index, None, PipelineConfig(ground_with_generator=True))
    with pytest.raises(ConfigError, match="top_k must be an integer >= 2"):
        PipelineConfig(top_k=1)


def test_pipeline_with_the_real_retrieval_baseline(index: FaqIndex) -> None:
    dialogs = [
        Dialog(
            "d1",
            (
                Turn("customer", "can I talk about my loyalty points balance"),
                Turn("agent", "Of course, your points are shown under Account > Rewards."),
            ),
        ),
        Dialog(
            "d2",
            (Turn("customer", "do you deliver on weekends"), Turn("agent", "We deliver Monday to Saturday.")),
        ),
    ]
    baseline = RetrievalBaseline.build(dialogs)
    pipeline = Pipeline(index, baseline, PipelineConfig(generator_min_confidence=0.3))
    reply = pipeline.respond([], "what is my loyalty points balance")
    assert (reply.source, reply.handoff) == ("model", False)
    assert reply.text == "Of course, your points are shown under Account > Rewards."
    assert pipeline.respond([], "I forgot my password").source == "faq"
    nothing = pipeline.respond([], "zebra quantum sonnet")  # no word known to the FAQ or the dialogs
    assert nothing.handoff and nothing.source == "fallback"
