"""SentencePiece tokenizer: fixed special ids, role markers as single pieces, round trips, save/load, errors."""

from __future__ import annotations

import pytest

from assistant.errors import ConfigError, ModelError
from assistant.generators.lstm.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer, TokenizerConfig
from assistant.model_input import SPECIAL_MARKERS

CORPUS = [
    f"{greeting} my order number is {n} and it has not arrived"
    for n in range(40)
    for greeting in ("hello", "hi there")
] + [
    "could I get your name please",
    "your table is booked for tonight at seven",
    "thank you and goodbye",
    "the weather in London is sunny",
    "I would like a taxi to the airport",
]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train(CORPUS, TokenizerConfig(vocab_size=120))


def test_special_ids_are_fixed(tokenizer: Tokenizer) -> None:
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 1, 2, 3)
    assert [tokenizer.id_to_piece(i) for i in range(4, 4 + len(SPECIAL_MARKERS))] == list(SPECIAL_MARKERS)


def test_role_markers_are_single_pieces(tokenizer: Tokenizer) -> None:
    (ids,) = tokenizer.encode(["<customer> hello <agent> hi <faq> order"])
    pieces = [tokenizer.id_to_piece(i) for i in ids]
    for marker in SPECIAL_MARKERS:
        assert pieces.count(marker) == 1, pieces


def test_encode_decode_round_trip_in_batch(tokenizer: Tokenizer) -> None:
    texts = ["hello my order number is 12", "thank you and goodbye", ""]
    ids = tokenizer.encode(texts)
    assert len(ids) == 3 and ids[2] == []
    assert all(isinstance(i, int) for row in ids for i in row)
    assert tokenizer.decode(ids) == texts
    assert tokenizer.decode([[BOS_ID] + ids[1] + [EOS_ID, PAD_ID]]) == [texts[1]]  # control ids vanish


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_model_types_and_vocab_size(model_type: str) -> None:
    tok = Tokenizer.train(CORPUS, TokenizerConfig(model_type=model_type, vocab_size=90))
    assert 8 <= tok.vocab_size <= 90
    assert tok.decode(tok.encode(["hi there my order"])) == ["hi there my order"]


def test_vocab_size_is_an_upper_bound_on_a_tiny_corpus() -> None:
    tok = Tokenizer.train(["ab ab ab", "ba ba"], TokenizerConfig(vocab_size=5000))
    assert tok.vocab_size < 100


def test_save_load_round_trip(tokenizer: Tokenizer, tmp_path) -> None:
    tokenizer.save(tmp_path / "tokenizer.model")
    loaded = Tokenizer.load(tmp_path / "tokenizer.model")
    texts = ["<customer> my order 123 has not arrived", "goodbye"]
    assert loaded.encode(texts) == tokenizer.encode(texts)
    assert loaded.vocab_size == tokenizer.vocab_size


def test_errors(tokenizer: Tokenizer, tmp_path) -> None:
    with pytest.raises(ConfigError, match="model_type"):
        TokenizerConfig(model_type="wordpiece")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="vocab_size"):
        TokenizerConfig(vocab_size=5)
    with pytest.raises(ConfigError, match="no text"):
        Tokenizer.train(["", "  "], TokenizerConfig())
    with pytest.raises(ModelError, match="no such tokenizer file"):
        Tokenizer.load(tmp_path / "missing.model")
    (tmp_path / "bad.model").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a SentencePiece model"):
        Tokenizer.load(tmp_path / "bad.model")
    with pytest.raises(ModelError, match="outside the vocabulary"):
        tokenizer.decode([[tokenizer.vocab_size]])
