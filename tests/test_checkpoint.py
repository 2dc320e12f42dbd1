"""LSTM checkpoint directory: round trip (same outputs after reload), manifest contents, validation errors."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from assistant.artifacts import file_sha256
from assistant.data import FaqEntry, Turn
from assistant.errors import CheckpointError, ConfigError
from assistant.generators.base import MANIFEST, GenerationRequest
from assistant.generators.decoding import DecodingConfig
from assistant.generators.loader import load_generator
from assistant.generators.lstm import Seq2SeqConfig, Seq2SeqModel
from assistant.generators.lstm.checkpoint import load_checkpoint, save_checkpoint
from assistant.generators.lstm.generator import LSTMGenerator, load_lstm_generator
from assistant.generators.lstm.tokenizer import Tokenizer, TokenizerConfig

CORPUS = [f"my order {n} has not arrived, can you check it" for n in range(30)] + [
    "could I get your name please",
    "thank you and goodbye",
    "your refund was sent today",
]
REQUESTS = [
    GenerationRequest((Turn("customer", "hello, my order 12 has not arrived"),)),
    GenerationRequest((Turn("agent", "could I get your name please"), Turn("customer", "Sam"))),
    GenerationRequest((), grounding=FaqEntry("f1", "refund?", "your refund was sent today")),
]


@dataclass
class Original:
    """The model as trained (before any save), its tokenizer, and the directory it was saved to."""

    model: Seq2SeqModel
    tokenizer: Tokenizer
    directory: Path


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Original:
    torch.manual_seed(0)
    tokenizer = Tokenizer.train(CORPUS, TokenizerConfig(vocab_size=100))
    model = Seq2SeqModel(
        Seq2SeqConfig(emb_size=16, hidden_size=32, max_source_len=16, max_target_len=10),
        tokenizer.vocab_size,
        tokenizer.pad_id,
    )
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(5.0)
    directory = tmp_path_factory.mktemp("ckpt") / "model"
    save_checkpoint(
        directory,
        model,
        tokenizer,
        TokenizerConfig(vocab_size=100),
        DecodingConfig(max_len=10),
        data=[{"role": "train", "path": "x.jsonl", "sha256": "0" * 64, "examples": 3}],
        training={"target_tokens_per_s": 123.0},
    )
    return Original(model.eval(), tokenizer, directory)


@pytest.fixture(scope="module")
def saved(original: Original) -> Path:
    return original.directory


def copy_of(saved: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "copy"))


def test_round_trip_gives_the_same_outputs(original: Original) -> None:
    checkpoint = load_checkpoint(original.directory)
    src = torch.randint(4, original.tokenizer.vocab_size, (2, 6))
    tgt = torch.randint(4, original.tokenizer.vocab_size, (2, 4))
    lengths = torch.tensor([6, 4])
    with torch.no_grad():
        before = original.model(src, lengths, tgt)  # (2, 4, V) logits of the model as trained
        assert torch.equal(checkpoint.model(src, lengths, tgt), before)
    as_trained = LSTMGenerator(original.model, original.tokenizer, DecodingConfig(max_len=10))
    generator = load_generator(original.directory, beam_size=2)  # dispatch through the manifest's kind
    assert isinstance(generator, LSTMGenerator) and generator.decoding.beam_size == 2
    greedy = load_lstm_generator(original.directory).generate(REQUESTS)
    assert greedy == as_trained.generate(REQUESTS)
    assert len(greedy) == 3 and all(0.0 <= g.confidence <= 1.0 for g in greedy)
    assert generator.score(REQUESTS, ["a", "b", "c"]) == as_trained.score(REQUESTS, ["a", "b", "c"])


def test_generator_is_batch_invariant(saved: Path) -> None:
    generator = load_lstm_generator(saved, beam_size=3, batch_size=2)
    batched = generator.generate(REQUESTS)
    singles = [generator.generate([r])[0] for r in REQUESTS]
    assert [g.text for g in batched] == [g.text for g in singles]
    assert [g.confidence for g in batched] == pytest.approx([g.confidence for g in singles], abs=1e-5)


def test_score_counts_eos_and_matches_perplexity_definition(saved: Path) -> None:
    generator = load_lstm_generator(saved)
    tokens = generator.tokenizer.encode(["thank you and goodbye"])[0]
    total, count = generator.score(REQUESTS[:1], ["thank you and goodbye"])
    assert count == len(tokens) + 1 and total > 0


def test_manifest_contents(saved: Path) -> None:
    manifest = json.loads((saved / MANIFEST).read_text())
    assert manifest["kind"] == "lstm" and manifest["format_version"] == 1
    assert set(manifest["files"]) == {"model.safetensors", "config.json", "tokenizer.model"}
    assert manifest["files"]["tokenizer.model"] == file_sha256(saved / "tokenizer.model")
    assert set(manifest["versions"]) == {"python", "torch", "sentencepiece"}
    assert manifest["training"]["target_tokens_per_s"] == 123.0
    assert manifest["configs"]["seq2seq"]["hidden_size"] == 32


def test_vocab_size_mismatch_is_named(saved: Path, tmp_path: Path) -> None:
    directory = copy_of(saved, tmp_path)
    other = Tokenizer.train(
        CORPUS + ["completely different words appear here now"], TokenizerConfig(vocab_size=60)
    )
    other.save(directory / "tokenizer.model")
    config = json.loads((directory / "config.json").read_text())
    config["vocab_size"] = other.vocab_size  # config agrees with the new tokenizer; the weights do not
    (directory / "config.json").write_text(json.dumps(config))
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["files"].update({n: file_sha256(directory / n) for n in ("tokenizer.model", "config.json")})
    (directory / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="vocabulary size mismatch"):
        load_checkpoint(directory)


def test_weights_that_do_not_fit_the_config_are_named(saved: Path, tmp_path: Path) -> None:
    directory = copy_of(saved, tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config["seq2seq"]["hidden_size"] = 48  # the stored weights were trained with 32
    (directory / "config.json").write_text(json.dumps(config))
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["files"]["config.json"] = file_sha256(directory / "config.json")
    (directory / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="weights do not fit the configured model .*size mismatch"):
        load_checkpoint(directory)


def test_changed_file_missing_file_and_unknown_version(saved: Path, tmp_path: Path) -> None:
    directory = copy_of(saved, tmp_path)
    with (directory / "model.safetensors").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(directory)
    (directory / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        load_checkpoint(directory)
    manifest = json.loads((saved / MANIFEST).read_text())
    (directory / MANIFEST).write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_checkpoint(directory)
    with pytest.raises(CheckpointError, match="no assistant.json"):
        load_checkpoint(tmp_path)


def test_save_refuses_a_mismatched_tokenizer(tmp_path: Path) -> None:
    tokenizer = Tokenizer.train(CORPUS, TokenizerConfig(vocab_size=100))
    model = Seq2SeqModel(Seq2SeqConfig(emb_size=8, hidden_size=8), tokenizer.vocab_size + 1, 0)
    with pytest.raises(CheckpointError, match="must match"):
        save_checkpoint(tmp_path, model, tokenizer, TokenizerConfig(), DecodingConfig())


def test_unknown_generator_option(saved: Path) -> None:
    with pytest.raises(ConfigError, match="beam_width"):
        load_lstm_generator(saved, beam_width=3)
    with pytest.raises(ConfigError, match="beam_size"):
        load_lstm_generator(saved, beam_size=0)


def test_generator_keeps_only_the_trained_context_turns(saved: Path) -> None:
    generator = load_lstm_generator(saved)
    assert generator.model.config.max_context_turns == 3
    recent = (
        Turn("customer", "my order 7"),
        Turn("agent", "could I get your name please"),
        Turn("customer", "Sam"),
    )
    older = (Turn("customer", "hello"), Turn("agent", "thank you and goodbye"))
    long, short = generator.generate([GenerationRequest(older + recent), GenerationRequest(recent)])
    assert long == short
    assert generator.score([GenerationRequest(older + recent)], ["ok"]) == generator.score(
        [GenerationRequest(recent)], ["ok"]
    )
