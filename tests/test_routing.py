"""Conversation routing without the in-domain check: small talk, requests for a person, repeated failure."""

from __future__ import annotations

import logging

import pytest

from assistant.data import Turn
from assistant.errors import ConfigError
from assistant.pipeline import DEFAULT_CLARIFY, DEFAULT_FALLBACK, Pipeline, PipelineConfig
from assistant.routing.generic import GENERIC_OOS_PATH, generic_out_of_scope, with_generic_out_of_scope
from assistant.routing.scope import load_scope_check
from assistant.routing.smalltalk import asks_for_human, classify_smalltalk
from tests.test_pipeline import FixedGenerator


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("hi", "greeting"),
        ("Hello there!", "greeting"),
        ("good morning, how are you?", "greeting"),
        ("thanks!", "thanks"),
        ("Ok great, thank you so much", "thanks"),
        ("cheers, bye", "goodbye"),
        ("Great, that's all I needed. Bye!", "goodbye"),
        ("no that's all for now", "goodbye"),
        ("hi, where is my parcel?", None),  # a question after the greeting: routed as usual
        ("thanks, but the refund never arrived", None),
        ("ok", None),  # filler alone answers the agent's question; not small talk
        ("no", None),
        ("bye the way, can I pay by card?", None),
    ],
)
def test_smalltalk_is_recognised_only_when_the_whole_message_is_small_talk(text, kind):
    assert classify_smalltalk(text) == kind


@pytest.mark.parametrize(
    ("text", "asks"),
    [
        ("can I talk to a human?", True),
        ("agent please", True),
        ("Transfer me to a representative", True),
        ("I need to speak with a real live agent", True),
        ("let me speak to customer service", True),
        ("talk to you later", False),
        ("the agent said my refund was sent", False),
        ("I spoke to someone yesterday about it", False),
        ("is my travel agent booking confirmed", False),
    ],
)
def test_a_request_for_a_person_is_recognised(text, asks):
    assert asks_for_human(text) is asks


def test_small_talk_is_answered_not_handed_off_nor_matched_to_the_faq(reply_pipeline, echo_generator):
    for text, expected in [
        ("hi", PipelineConfig().greeting_reply),
        ("thank you!", PipelineConfig().thanks_reply),
        ("thanks, bye", PipelineConfig().goodbye_reply),
    ]:
        reply = reply_pipeline.respond([], text)
        assert (reply.source, reply.text, reply.handoff, reply.faq_id) == ("smalltalk", expected, False, None)
    assert reply.reason == "goodbye" and echo_generator.requests == []
    custom = Pipeline(
        reply_pipeline.index, echo_generator, PipelineConfig(greeting_reply="Hi! Parcelo support here.")
    )
    assert custom.respond([], "hello").text == "Hi! Parcelo support here."
    off = Pipeline(reply_pipeline.index, echo_generator, PipelineConfig(smalltalk="off"))
    assert off.respond([], "hello").source != "smalltalk"
    as_model = Pipeline(reply_pipeline.index, echo_generator, PipelineConfig(smalltalk="model"))
    reply = as_model.respond([], "hello")
    assert (reply.source, reply.text, reply.handoff) == ("model", "echo after 1 turns: hello", False)


def test_a_customer_who_asks_for_a_human_is_handed_off(reply_pipeline, echo_generator):
    history = [Turn("customer", "where is my order"), Turn("agent", "Track it under Account > Orders.")]
    reply = reply_pipeline.respond(history, "this isn't helping, can I talk to a real person?")
    assert (reply.source, reply.handoff, reply.reason) == ("fallback", True, "human_requested")
    assert reply.text == DEFAULT_FALLBACK and echo_generator.requests == []
    # even when the FAQ would have matched the rest of the message
    assert reply_pipeline.respond([], "I want to speak to a human about my refund").handoff
    no_rule = Pipeline(reply_pipeline.index, echo_generator, PipelineConfig(human_handoff=False))
    assert not no_rule.respond([], "can I talk to a human?").handoff  # the echo model answers instead


def test_repeated_failure_in_one_conversation_hands_off(demo_faq_index):
    unsure = FixedGenerator("maybe?", 0.1)
    pipeline = Pipeline(demo_faq_index, unsure, PipelineConfig(handoff_after_failures=2))
    first = pipeline.respond([], "my blender makes a weird noise")
    assert (first.source, first.text, first.handoff, first.reason) == (
        "fallback",
        DEFAULT_CLARIFY,
        False,
        "clarify",
    )
    history = [Turn("customer", "my blender makes a weird noise"), Turn("agent", first.text)]
    second = pipeline.respond(history, "it's the one I bought last week")
    assert (second.text, second.handoff, second.reason) == (DEFAULT_FALLBACK, True, "repeated_failure")
    # a confident answer in between does not reset the count: two failures in one conversation hand off
    history += [Turn("customer", "thanks!"), Turn("agent", "You're welcome!")]
    assert pipeline.respond(history, "still broken").handoff
    # the default hands off at the first failure
    default = Pipeline(demo_faq_index, unsure).respond([], "my blender makes a weird noise")
    assert (default.handoff, default.reason) == (True, "unsure")


def test_routing_settings_are_validated():
    with pytest.raises(ConfigError, match="smalltalk must be one of"):
        PipelineConfig(smalltalk="chat")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="handoff_after_failures must be an integer >= 1"):
        PipelineConfig(handoff_after_failures=0)
    with pytest.raises(ConfigError, match="scope_threshold must be None or in"):
        PipelineConfig(scope_threshold=1.5)
    with pytest.raises(ConfigError, match="thanks_reply must be a non-empty string"):
        PipelineConfig(thanks_reply=" ")


def test_the_generic_out_of_scope_set_is_shipped_and_added_only_when_needed():
    generic = generic_out_of_scope()
    assert GENERIC_OOS_PATH.is_file() and 150 <= len(generic) <= 300
    assert all(q.faq_id is None for q in generic)
    assert len({q.text.lower() for q in generic}) == len(generic)  # no duplicates
    assert not [q.text for q in generic if classify_smalltalk(q.text)]  # small talk is not out of scope
    from assistant.data import Query

    in_scope = [Query("reset password", "pw")]
    queries, added = with_generic_out_of_scope(in_scope)
    assert added and len(queries) == 1 + len(generic)
    own = [*in_scope, Query("do you sell cars", None)]
    assert with_generic_out_of_scope(own) == (own, False)


def test_a_model_directory_without_an_in_domain_check_still_loads_with_a_warning(
    tmp_path, demo_data, caplog, demo_faq_index
):
    """A model directory written before the check existed (no scope/) serves, uncalibrated, and says so."""
    from finetune.build_baseline import main as build_baseline
    from server.runtime import load_pipeline

    model_dir = tmp_path / "old-baseline"
    assert (
        build_baseline(["--train", str(demo_data / "dialogs" / "train.jsonl"), "--out", str(model_dir)]) == 0
    )
    assert not (model_dir / "scope").exists()
    with caplog.at_level(logging.WARNING, logger="assistant.routing.scope"):
        assert load_scope_check(model_dir) is None
        pipeline = load_pipeline(model_dir, None)
    assert pipeline.scope is None and pipeline.scope_threshold is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("has no in-domain check" in w for w in warnings)
    assert "assistant-calibrate-scope --model-dir" in warnings[0]
    reply = pipeline.respond([], "I'd like to return my headphones")
    assert reply.source in ("model", "fallback")  # it still answers (or hands off as before)
