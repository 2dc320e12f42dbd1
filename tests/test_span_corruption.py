"""T5's span-corruption objective (``finetune/span_corruption.py``): the noise mask's counts and
alternation, the sentinel layout of inputs and targets (Raffel et al., 2020, section 3.1.4), per-epoch
re-corruption, and a short real pre-training run followed by a fine-tuning run on its output."""

from __future__ import annotations

import json

import pytest
import torch

from finetune.span_corruption import (
    SpanCorruptionDataset,
    corrupt,
    random_spans_noise_mask,
    sentinel_token_ids,
)
from finetune.train_t5 import main

torch.set_num_threads(1)

SENTINELS = [1000 + i for i in range(100)]  # stand-ins for <extra_id_0>, <extra_id_1>, ...
EOS = 1


def runs(mask: list[bool]) -> list[tuple[bool, int]]:
    """(is_noise, length) of each maximal run of equal mask values."""
    out: list[tuple[bool, int]] = []
    for m in mask:
        if out and out[-1][0] == m:
            out[-1] = (m, out[-1][1] + 1)
        else:
            out.append((m, 1))
    return out


@pytest.mark.parametrize("length", [2, 3, 7, 20, 64, 200, 513])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_mask_has_t5_counts_and_alternates_keep_then_noise(length, seed):
    mask = random_spans_noise_mask(length, torch.Generator().manual_seed(seed)).tolist()
    n_noise = min(max(round(length * 0.15), 1), length - 1)
    n_spans = min(max(round(n_noise / 3.0), 1), n_noise, length - n_noise)
    assert len(mask) == length and sum(mask) == n_noise
    r = runs(mask)
    assert [m for m, _ in r] == [False, True] * n_spans, "keep, noise, keep, noise, ... ending with noise"
    again = random_spans_noise_mask(length, torch.Generator().manual_seed(seed)).tolist()
    assert again == mask


def test_mean_span_length_and_density_over_many_draws():
    g = torch.Generator().manual_seed(0)
    spans, noise = [], 0
    for _ in range(200):
        mask = random_spans_noise_mask(200, g).tolist()
        noise += sum(mask)
        spans += [n for m, n in runs(mask) if m]
    assert noise / (200 * 200) == pytest.approx(0.15)
    assert sum(spans) / len(spans) == pytest.approx(3.0)
    assert max(spans) > 3 and min(spans) == 1, "span lengths must vary"


def test_corrupted_example_has_the_sentinel_layout_of_the_t5_paper():
    # tokens A..G = 10..16, noise on C D and on G: the module docstring's example
    ids = [10, 11, 12, 13, 14, 15, 16]
    mask = torch.tensor([False, False, True, True, False, False, True])
    inputs, labels = corrupt(ids, mask, SENTINELS, EOS)
    assert inputs == [10, 11, 1000, 14, 15, 1001, EOS]
    assert labels == [1000, 12, 13, 1001, 16, EOS]


@pytest.mark.parametrize("seed", [0, 5, 11])
def test_inputs_and_targets_rebuild_the_text_with_sentinels_in_increasing_order(seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 900, (90,), generator=g).tolist()
    mask = random_spans_noise_mask(len(ids), g)
    inputs, labels = corrupt(ids, mask, SENTINELS, EOS)
    assert inputs[-1] == EOS and labels[-1] == EOS
    in_sentinels = [t for t in inputs if t in SENTINELS]
    k = len(runs(mask.tolist())) // 2
    assert in_sentinels == SENTINELS[:k], "one sentinel per span, <extra_id_0> first, in order"
    assert [t for t in labels if t in SENTINELS] == SENTINELS[:k]
    assert labels[0] == SENTINELS[0]
    # each sentinel of the input stands for the tokens after the same sentinel in the target
    spans: dict[int, list[int]] = {}
    for t in labels[:-1]:
        if t in SENTINELS:
            current = spans.setdefault(t, [])
        else:
            current.append(t)
    rebuilt = [x for t in inputs[:-1] for x in (spans[t] if t in SENTINELS else [t])]
    assert rebuilt == ids
    assert len(labels) - 1 - k == int(mask.sum())


def test_dataset_recorrupts_each_epoch_and_repeats_an_epoch_exactly():
    chunks = [list(range(100 + i, 160 + i)) for i in range(4)]
    ds = SpanCorruptionDataset(chunks, SENTINELS, EOS, seed=3)
    first = [ds[i] for i in range(4)]
    ds.set_epoch(1)
    second = [ds[i] for i in range(4)]
    assert first != second
    ds.set_epoch(0)
    assert [ds[i] for i in range(4)] == first
    assert all(e["attention_mask"] == [1] * len(e["input_ids"]) for e in first)


def test_too_short_or_too_many_spans_are_refused():
    with pytest.raises(ValueError, match="at least 2 tokens"):
        random_spans_noise_mask(1, torch.Generator())
    with pytest.raises(ValueError, match="more noise spans than the 1 sentinel"):
        corrupt([5, 6, 7, 8], torch.tensor([False, True, False, True]), SENTINELS[:1], EOS)


def test_tokenizer_without_sentinels_is_refused(t5_tokenizer_dir):
    from assistant.errors import DataError
    from assistant.generators.t5.model import load_tokenizer

    with pytest.raises(DataError, match="sentinel"):
        sentinel_token_ids(load_tokenizer(t5_tokenizer_dir))


@pytest.mark.slow
def test_span_corruption_pretraining_then_reply_finetuning(demo_data, tmp_path):
    dialogs = demo_data / "dialogs"
    common = ["--valid", str(dialogs / "valid.jsonl"), "--batch-size", "4", "--threads", "1", "--seed", "1"]
    common += ["--max-source-len", "32", "--max-target-len", "12", "--warmup-steps", "1", "--eval-every", "4"]
    raw = tmp_path / "raw.txt"  # "raw support text": one document per line
    lines = [json.loads(x) for x in (dialogs / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    raw.write_text("\n".join(" ".join(t["text"] for t in d["turns"]) for d in lines) + "\n", encoding="utf-8")
    base = tmp_path / "base"
    flags = [
        "--objective",
        "span-corruption",
        "--init-from-config",
        "tiny",
        "--vocab-size",
        "300",
        "--max-steps",
        "8",
    ]
    assert main([*common, *flags, "--full-finetune", "--train", str(raw), "--output-dir", str(base)]) == 0
    first_loss = None
    manifest = json.loads((base / "assistant.json").read_text())
    history = manifest["training"]["valid_history"]
    first_loss = history[0]["valid_loss"]
    assert manifest["train_config"]["objective"] == "span-corruption"
    assert manifest["data"]["train_documents"] == len(lines) and manifest["data"]["train_examples"] >= len(
        lines
    )
    assert (base / "model.safetensors").is_file() and (base / "tokenizer.json").is_file()
    tuned = tmp_path / "tuned"
    reply = [
        "--model",
        str(base),
        "--full-finetune",
        "--train",
        str(dialogs / "train.jsonl"),
        "--max-steps",
        "4",
    ]
    assert main([*common, *reply, "--output-dir", str(tuned)]) == 0
    m2 = json.loads((tuned / "assistant.json").read_text())
    assert m2["train_config"]["objective"] == "reply" and m2["training"]["steps"] == 4
    assert (tuned / "tokenizer.json").read_bytes() == (base / "tokenizer.json").read_bytes()
    assert first_loss is not None and first_loss > 0
