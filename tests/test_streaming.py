"""Streaming generation: LSTM (greedy and beam), T5, the default, decoding's final prefixes, the pipeline.

Real tiny models built from configs (random weights sharpened so replies differ in length).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from assistant.data import Turn
from assistant.generators.base import Generation, GenerationRequest, Generator, TextPieces
from assistant.generators.decoding import DecodingConfig, beam_search, greedy_search
from assistant.generators.lstm import Seq2SeqConfig, Seq2SeqModel, reorder_state
from assistant.generators.lstm.generator import LSTMGenerator
from assistant.generators.lstm.tokenizer import Tokenizer, TokenizerConfig
from assistant.pipeline import Pipeline, PipelineConfig
from assistant.streaming import Reset, TextChunk, respond_streaming

CORPUS = [f"my order {n} has not arrived, can you check it" for n in range(30)] + [
    "could I get your name please",
    "thank you and goodbye",
    "your refund was sent today",
]
REQUESTS = [
    GenerationRequest((Turn("customer", "hello, my order 12 has not arrived"),)),
    GenerationRequest((Turn("agent", "could I get your name please"), Turn("customer", "Sam"))),
    GenerationRequest((Turn("customer", "thank you"),)),
]


def sharp_model(vocab: int, pad: int, seed: int) -> Seq2SeqModel:
    torch.manual_seed(seed)
    model = Seq2SeqModel(Seq2SeqConfig(emb_size=16, hidden_size=32, dropout=0.0), vocab, pad).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(5.0)
    return model


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train(CORPUS, TokenizerConfig(vocab_size=100))


@pytest.mark.parametrize("beam_size", [1, 3])
def test_lstm_stream_equals_generate_and_pieces_add_up(tokenizer, beam_size):
    for seed in range(4):
        model = sharp_model(tokenizer.vocab_size, tokenizer.pad_id, seed)
        generator = LSTMGenerator(model, tokenizer, DecodingConfig(beam_size=beam_size, max_len=12))
        expected = generator.generate(REQUESTS)
        for request, want in zip(REQUESTS, expected, strict=True):
            pieces: list[str] = []
            got = generator.stream(request, pieces.append)
            assert got.text == want.text  # (generate() batches with padding: confidence equal to float noise)
            assert got.confidence == pytest.approx(want.confidence, rel=1e-5)
            assert "".join(pieces) == got.text and all(pieces)
            if beam_size == 1 and len(tokenizer.encode([got.text])[0]) > 2:
                assert len(pieces) > 1  # greedy passes text on while decoding, not at the end


def test_decoding_on_step_reports_final_prefixes_only():
    """Every reported prefix starts the returned reply and grows monotonically, greedy and beam."""
    for seed in range(5):
        model = sharp_model(40, 0, seed)
        src = torch.randint(4, 40, (3, 7))
        lengths = torch.tensor([7, 3, 5])
        for search, beam in ((greedy_search, 1), (beam_search, 4)):
            calls: list[list[list[int]]] = []
            config = DecodingConfig(beam_size=beam, max_len=10, length_penalty=0.6)
            args = (model.step,) if search is greedy_search else (model.step, reorder_state)
            with torch.no_grad():
                out = search(*args, model.encode(src, lengths), 3, 2, 3, config, "cpu", calls.append)
            assert calls
            for item in range(3):
                prefixes = [c[item] for c in calls]
                for earlier, later in itertools.pairwise(prefixes):
                    assert later[: len(earlier)] == earlier
                assert all(out.tokens[item][: len(p)] == p for p in prefixes)
            if search is greedy_search:
                assert [c[i] for c, i in ((calls[-1], 0), (calls[-1], 1), (calls[-1], 2))] == out.tokens


def test_text_pieces_hold_back_incomplete_characters_and_rewrites():
    pieces: list[str] = []
    text = TextPieces(pieces.append)
    for decoded in ["Hel", "Hello", "Hello \ufffd", "Hello é", "Hello é.", "Hello, é."]:
        text.update(decoded)
    assert pieces == ["Hel", "lo", " ", "é", "."]  # U+FFFD held back; the rewrite "Hello," not passed on
    text.finish("Hello é. Bye")
    assert "".join(pieces) == "Hello é. Bye"


def test_default_stream_passes_the_whole_reply_once():
    class Fixed(Generator):
        def generate(self, requests):
            return [Generation("a whole reply", 0.7) for _ in requests]

    pieces: list[str] = []
    assert Fixed().stream(REQUESTS[0], pieces.append) == Generation("a whole reply", 0.7)
    assert pieces == ["a whole reply"]


@pytest.mark.slow
def test_t5_stream_equals_generate(tmp_path, t5_tokenizer_dir):
    import dataclasses

    from assistant.generators.t5.model import (
        PRESETS,
        T5GenerationSettings,
        T5Generator,
        build_model,
        load_tokenizer,
    )

    tokenizer = load_tokenizer(t5_tokenizer_dir)  # trained on the demo data (tests/tiny_t5_tokenizer.py)
    config = dataclasses.replace(PRESETS["tiny"], vocab_size=len(tokenizer))  # every row a real token
    model = build_model(config.to_hf(), tokenizer, seed=0).eval()
    for beams in (1, 2):
        generator = T5Generator(model, tokenizer, T5GenerationSettings(max_target_len=12, beam_size=beams))
        for request in REQUESTS:
            pieces: list[str] = []
            got = generator.stream(request, pieces.append)
            assert got.text == generator.generate([request])[0].text
            assert got.confidence == pytest.approx(generator.generate([request])[0].confidence, rel=1e-5)
            assert "".join(pieces) == got.text
            if beams == 2:
                assert len(pieces) <= 1  # transformers streams no beam search: the reply at the end


class Scripted(Generator):
    """Streams a fixed reply in three pieces with a fixed confidence."""

    def __init__(self, text: str, confidence: float) -> None:
        self.text, self.confidence = text, confidence

    def generate(self, requests):
        return [Generation(self.text, self.confidence) for _ in requests]

    def stream(self, request, on_text):
        for word in self.text.split(" "):
            on_text(word if self.text.startswith(word) else " " + word)
        return Generation(self.text, self.confidence)


def stream_events(pipeline, text):
    events: list = []
    reply = respond_streaming(pipeline, [], text, events.append)
    return reply, events


def test_pipeline_stream_gives_the_same_reply_as_respond(demo_faq_index):
    for confidence in (0.9, 0.2):  # accepted, then rejected (handoff with the fallback text)
        pipeline = Pipeline(demo_faq_index, Scripted("penguins are birds that swim", confidence))
        for text in ("How do I cancel my order?", "tell me about penguins"):
            reply, events = stream_events(pipeline, text)
            assert reply == pipeline.respond([], text)
            shown = ""
            for event in events:
                shown = "" if isinstance(event, Reset) else shown + event.text
            assert shown == reply.text
            if reply.source == "model":
                assert [e.text for e in events] == ["penguins", " are", " birds", " that", " swim"]
            elif reply.source == "fallback":  # the generated text was shown, then withdrawn
                assert [type(e) for e in events] == [TextChunk] * 5 + [Reset, TextChunk]
            else:
                assert events == [TextChunk(reply.text)]  # an FAQ answer: one chunk


def test_grounded_generation_that_loses_is_reset_to_the_faq_answer(demo_faq_index):
    config = PipelineConfig(ground_with_generator=True)
    pipeline = Pipeline(demo_faq_index, Scripted("low confidence words", 0.1), config)
    reply, events = stream_events(pipeline, "How do I cancel my order?")
    assert reply.source == "faq" and isinstance(events[3], Reset) and events[4:] == [TextChunk(reply.text)]


def test_a_pipeline_without_a_generator_streams_its_reply_in_one_chunk(demo_faq_index):
    class Plain:
        def respond(self, history, text):
            return Pipeline(demo_faq_index, None).respond(history, text)

    reply, events = stream_events(Plain(), "tell me about penguins")
    assert reply.source == "fallback" and events == [TextChunk(reply.text)]
