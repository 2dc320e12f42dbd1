"""The from-scratch T5's trained vocabulary (``finetune/t5_vocab.py``) and length-bucketed batching
(``finetune/length_buckets.py``): ids survive ``save_pretrained``/``from_pretrained`` and match
SentencePiece's own, every example is batched exactly once per epoch, batches pad less than random ones."""

from __future__ import annotations

import pytest
import sentencepiece as spm
import torch
from transformers import AutoTokenizer

from assistant.generators.t5.model import PRESETS, build_model, load_tokenizer
from assistant.model_input import SPECIAL_MARKERS
from finetune.length_buckets import LengthBucketBatchSampler
from finetune.t5_vocab import (
    EXTRA_IDS,
    padded_vocab_size,
    t5_tokenizer_from_sentencepiece,
    train_sentencepiece,
    train_t5_tokenizer,
)
from tests.tiny_t5_tokenizer import demo_texts

TEXTS = [
    "<customer> Hi, I lost my card yesterday <agent> I can block it. What is your account number?",
    "My account number is 12345678 and my PIN is 9999.",
    "  leading and   repeated   spaces  ",
    "Ünïcödé: café, naïve — “quotes” and ½ and emoji 🙂",
    "<customer> hotel booking for 2 nights <faq> Check-in starts at 3 pm. <extra_id_0> x <extra_id_7>",
    "",
    "UPPER lower MiXeD 3.14 $5,000.00 e-mail@example.com",
]


@pytest.fixture(scope="module")
def texts(demo_data) -> list[str]:
    return demo_texts(demo_data)


def test_trained_vocabulary_round_trips_through_save_and_from_pretrained(texts, tmp_path):
    first = train_t5_tokenizer(texts, 300, tmp_path / "a", seed=0)
    # T5's layout: pad 0, eos 1, unk 2, sentinels after the pieces, markers after the sentinels
    assert (first.pad_token_id, first.eos_token_id, first.unk_token_id) == (0, 1, 2)
    pieces = len(first) - EXTRA_IDS - len(SPECIAL_MARKERS)
    assert 100 < pieces <= 300
    sentinels = first.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(EXTRA_IDS)])
    assert sorted(sentinels) == list(range(pieces, pieces + EXTRA_IDS))
    assert sorted(first.convert_tokens_to_ids(list(SPECIAL_MARKERS))) == list(
        range(pieces + EXTRA_IDS, len(first))
    )
    first.save_pretrained(tmp_path / "b")
    for again in (load_tokenizer(tmp_path / "b"), AutoTokenizer.from_pretrained(str(tmp_path / "b"))):
        assert len(again) == len(first)
        for text in TEXTS:
            assert again(text).input_ids == first(text).input_ids, text
            assert again.decode(again(text).input_ids) == first.decode(first(text).input_ids)
    ids = first(TEXTS[0]).input_ids
    assert ids[0] == first.convert_tokens_to_ids("<customer>") and ids[-1] == first.eos_token_id
    assert first.convert_tokens_to_ids("<agent>") in ids
    assert first(TEXTS[4]).input_ids.count(first.convert_tokens_to_ids("<extra_id_7>")) == 1
    # a model built on it has one embedding row per token, padded to a multiple of 64
    cfg = PRESETS["tiny"].to_hf()
    cfg.vocab_size = padded_vocab_size(first)
    assert build_model(cfg, first).get_input_embeddings().num_embeddings == cfg.vocab_size
    assert cfg.vocab_size % 64 == 0 and cfg.vocab_size - 64 < len(first) <= cfg.vocab_size


def test_tokenizer_ids_are_sentencepieces_own(texts):
    proto = train_sentencepiece(texts, 300, seed=0)
    processor = spm.SentencePieceProcessor()
    processor.LoadFromSerializedProto(proto)
    tok = t5_tokenizer_from_sentencepiece(proto)
    plain = [t for t in TEXTS if "<" not in t and "  " not in t and t] + texts[:200]
    for text in plain:
        assert tok(text, add_special_tokens=False).input_ids == processor.encode(text), text
    # the normaliser travelled: NFKC maps "½" like SentencePiece does
    assert tok("½", add_special_tokens=False).input_ids == processor.encode("½")


def test_vocabulary_training_is_deterministic_and_rejects_bad_input(texts, tmp_path):
    from assistant.errors import ConfigError

    assert train_sentencepiece(texts, 300, seed=0) == train_sentencepiece(texts, 300, seed=0)
    with pytest.raises(ConfigError, match="no text"):
        train_sentencepiece(["", "  "], 300)
    with pytest.raises(ConfigError, match="--vocab-size must be >= 16"):
        train_sentencepiece(texts, 8)


@pytest.mark.parametrize(("n", "batch_size", "pool"), [(103, 8, 3), (64, 8, 100), (5, 16, 2), (1, 1, 1)])
def test_bucketed_batches_cover_every_example_once_per_epoch(n, batch_size, pool):
    lengths = torch.randint(1, 60, (n,), generator=torch.Generator().manual_seed(n)).tolist()
    sampler = LengthBucketBatchSampler(lengths, batch_size, pool, seed=7)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(n)), f"epoch {epoch}: an example is missing or repeated"
        assert all(1 <= len(b) <= batch_size for b in batches)
        orders.append(flat)
        sampler.set_epoch(epoch)
        assert list(sampler) == batches, "the same (seed, epoch) must give the same batches"
    if n > 10:
        assert orders[0] != orders[1] != orders[2], "each epoch must be reshuffled"


def test_bucketed_batches_pad_less_than_random_ones():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 100, (2000,), generator=g).tolist()
    sampler = LengthBucketBatchSampler(lengths, 32, 50, seed=0)

    def padded(batches: list[list[int]]) -> int:
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    shuffled = torch.randperm(2000, generator=g).tolist()
    random_batches = [shuffled[i : i + 32] for i in range(0, 2000, 32)]
    assert padded(sampler.batches()) < 0.7 * padded(random_batches)
    # batch sizes in order are not sorted by length: the batch order is shuffled too
    first_lengths = [lengths[b[0]] for b in sampler.batches()]
    assert first_lengths != sorted(first_lengths)


def test_bucket_sampler_rejects_bad_settings():
    with pytest.raises(ValueError, match="at least one example"):
        LengthBucketBatchSampler([], 4, 2)
    with pytest.raises(ValueError, match="must be >= 1"):
        LengthBucketBatchSampler([3, 4], 0, 2)
