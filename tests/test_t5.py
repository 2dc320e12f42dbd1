"""T5 model, LoRA adapters and T5 generator: a tiny config with a small tokenizer trained on the demo data
(CPU); one test checks the markers against the real t5-small tokenizer in ../shared/data."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from assistant.data import FaqEntry, Turn
from assistant.errors import CheckpointError, ConfigError, ModelError
from assistant.generators.base import GenerationRequest
from assistant.generators.loader import load_generator
from assistant.generators.t5.adapters import (
    LoraSettings,
    attach_lora,
    load_adapters,
    merge_adapter,
    save_adapter,
    trainable_parameters,
)
from assistant.generators.t5.model import (
    PRESETS,
    T5GenerationSettings,
    T5Generator,
    T5ModelConfig,
    build_model,
    load_base_model,
    load_tokenizer,
    resolve_model_config,
    write_manifest,
)
from tests.conftest import T5_SMALL_TOKENIZER

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tokenizer(t5_tokenizer_dir):
    return load_tokenizer(t5_tokenizer_dir)


def tiny_model(tokenizer, seed: int = 0):
    """The ``tiny`` preset with one embedding row per token (so generation stays within the tokenizer)."""
    config = dataclasses.replace(PRESETS["tiny"], vocab_size=len(tokenizer))
    return build_model(config.to_hf(), tokenizer, seed=seed).eval()


def randomize_adapter(model, name: str, seed: int) -> None:
    """LoRA B starts at zero (adapter = identity); give it values so the adapter changes outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n and f".{name}." in n:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def batch(tokenizer):
    enc = tokenizer(
        ["<customer> I lost my card <agent> Which card? <customer> the visa one", "<customer> hello"],
        padding=True,
        return_tensors="pt",
    )
    labels = tokenizer(
        ["I can block it for you.", "Hi, how can I help?"], padding=True, return_tensors="pt"
    ).input_ids
    return {
        "input_ids": enc.input_ids,
        "attention_mask": enc.attention_mask,
        "labels": labels.masked_fill(labels == 0, -100),
    }


def logits(model, b, **kw):
    with torch.no_grad():
        return model(**b, **kw).logits


REQUESTS = [
    GenerationRequest(context=(Turn("customer", "I want to check my balance"),)),
    GenerationRequest(
        context=(
            Turn("customer", "hi"),
            Turn("agent", "Hello, how can I help?"),
            Turn("customer", "book a table for two"),
        ),
        grounding=FaqEntry(id="f1", question="q", answer="We open at 9."),
    ),
    GenerationRequest(context=()),
]


def test_markers_are_single_tokens_and_input_is_cut_from_the_left(tokenizer, t5_tokenizer_dir):
    from transformers import AutoTokenizer

    ids = tokenizer("<customer> hi <agent> yes <faq> answer").input_ids
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens.count("<customer>") == tokens.count("<agent>") == tokens.count("<faq>") == 1
    assert len(tokenizer) == len(AutoTokenizer.from_pretrained(str(t5_tokenizer_dir))) + 3  # the 3 markers
    gen = T5Generator(tiny_model(tokenizer), tokenizer, T5GenerationSettings(max_source_len=8))
    enc = gen.encode([REQUESTS[1]])
    assert enc["input_ids"].shape == (1, 8)
    kept = tokenizer.decode(enc["input_ids"][0])
    assert "We open at 9." in kept and "hi" not in kept.split("<faq>")[0].split()
    last_turn = T5Generator(tiny_model(tokenizer), tokenizer, T5GenerationSettings(max_context_turns=1))
    kept = tokenizer.decode(last_turn.encode([REQUESTS[1]])["input_ids"][0])
    assert (
        kept.startswith("<customer> book a table") and "<agent>" not in kept and "<faq> We open at 9." in kept
    )


@pytest.mark.shared_data
def test_markers_fit_in_the_unused_rows_of_the_real_t5_vocabulary():
    tokenizer = load_tokenizer(T5_SMALL_TOKENIZER)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("<customer> hi <agent> yes <faq> answer").input_ids)
    assert tokens.count("<customer>") == tokens.count("<agent>") == tokens.count("<faq>") == 1
    assert len(tokenizer) == 32103  # 32,100 + 3 markers, within t5's 32,128 embedding rows
    assert len(tokenizer) <= PRESETS["star-small"].vocab_size


def test_lora_trainable_parameter_count_equals_count_from_config(tokenizer):
    cfg = PRESETS["tiny"]
    r = 4
    inner = cfg.num_heads * cfg.d_kv
    attention = r * (3 * (cfg.d_model + inner) + (inner + cfg.d_model))  # q, k, v, o
    feed_forward = r * ((cfg.d_model + cfg.d_ff) + (cfg.d_ff + cfg.d_model))  # wi, wo
    expected = cfg.num_layers * (attention + feed_forward) + cfg.num_decoder_layers * (
        2 * attention + feed_forward
    )
    model = attach_lora(tiny_model(tokenizer), LoraSettings(r=r), "bank")
    trainable, total = trainable_parameters(model)
    assert trainable == expected
    assert trainable == sum(
        p.numel() for n, p in model.named_parameters() if p.requires_grad and "lora_" in n
    )
    assert total == trainable + sum(p.numel() for p in tiny_model(tokenizer).parameters())
    attention_only = attach_lora(tiny_model(tokenizer), LoraSettings(r=r, target_modules=["q", "v"]), "bank")
    assert trainable_parameters(attention_only)[0] == (
        cfg.num_layers + 2 * cfg.num_decoder_layers
    ) * 2 * r * (cfg.d_model + inner)


def test_adapter_save_then_load_gives_identical_outputs(tokenizer, tmp_path):
    base = tiny_model(tokenizer)
    base.save_pretrained(tmp_path / "base")
    model = attach_lora(base, LoraSettings(r=4), "bank")
    randomize_adapter(model, "bank", seed=1)
    model.eval()
    b = batch(tokenizer)
    before = logits(model, b)
    save_adapter(model, tmp_path / "bank", "bank")
    saved = {p.name for p in (tmp_path / "bank").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= saved and "model.safetensors" not in saved
    # only adapter weights are in the file: far fewer bytes than the base model
    assert (tmp_path / "bank" / "adapter_model.safetensors").stat().st_size < (
        tmp_path / "base" / "model.safetensors"
    ).stat().st_size / 5
    fresh, _ = load_base_model(tmp_path / "base", tokenizer)
    assert not torch.equal(logits(fresh, b), before)
    loaded = load_adapters(fresh, {"bank": tmp_path / "bank"}).eval()
    assert torch.equal(logits(loaded, b), before)


def test_merged_and_unmerged_outputs_match(tokenizer):
    model = attach_lora(tiny_model(tokenizer), LoraSettings(r=4, alpha=8), "bank")
    randomize_adapter(model, "bank", seed=2)
    model.eval()
    b = batch(tokenizer)
    unmerged = logits(model, b)
    merged_model = merge_adapter(model, "bank")
    assert not hasattr(merged_model, "peft_config")
    assert torch.allclose(logits(merged_model, b), unmerged, atol=1e-5)
    assert not torch.allclose(logits(tiny_model(tokenizer), b), unmerged, atol=1e-3)


def test_two_adapters_on_one_base_give_each_its_own_outputs(tokenizer, tmp_path):
    base = tiny_model(tokenizer)
    base.save_pretrained(tmp_path / "base")
    for name, seed in (("bank", 3), ("hotel", 4)):
        single = attach_lora(tiny_model(tokenizer), LoraSettings(r=4), name)
        randomize_adapter(single, name, seed)
        save_adapter(single, tmp_path / name, name)
    alone = {}
    for name in ("bank", "hotel"):
        m, _ = load_base_model(tmp_path / "base", tokenizer)
        alone[name] = T5Generator(
            load_adapters(m, {name: tmp_path / name}),
            tokenizer,
            T5GenerationSettings(max_target_len=6),
            default_adapter=name,
        )
    plain = T5Generator(
        load_base_model(tmp_path / "base", tokenizer)[0], tokenizer, T5GenerationSettings(max_target_len=6)
    )
    m, _ = load_base_model(tmp_path / "base", tokenizer)
    both = T5Generator(
        load_adapters(m, {"bank": tmp_path / "bank", "hotel": tmp_path / "hotel"}),
        tokenizer,
        T5GenerationSettings(max_target_len=6),
        default_adapter="bank",
    )
    request = REQUESTS[0]
    mixed = both.generate([request, request, request], adapters=["bank", "hotel", None])  # one batch
    expected = [
        alone["bank"].generate([request])[0],
        alone["hotel"].generate([request])[0],
        plain.generate([request])[0],
    ]
    assert [g.text for g in mixed] == [g.text for g in expected]
    assert [g.confidence for g in mixed] == pytest.approx([g.confidence for g in expected], rel=1e-4)
    # a random tiny model may say the same words under two adapters; their probabilities still differ
    outputs = {(g.text, round(g.confidence, 4)) for g in mixed}
    assert len(outputs) == 3, f"each adapter (and the base) must give its own reply: {outputs}"
    # teacher-forced scores follow the selection too
    nll = [
        both.score([request], ["Your balance is 10 dollars."], adapters=[a])[0]
        for a in ("bank", "hotel", None)
    ]
    assert len(set(nll)) == 3
    with pytest.raises(ModelError, match="unknown adapters"):
        both.generate([request], adapters=["travel"])


def test_greedy_and_beam_are_batched_consistently_with_confidence_in_range(tokenizer):
    model = tiny_model(tokenizer)
    for beam in (1, 3):
        gen = T5Generator(
            model, tokenizer, T5GenerationSettings(max_target_len=7, beam_size=beam, generation_batch_size=2)
        )
        together = gen.generate(REQUESTS)
        one_by_one = [gen.generate([r])[0] for r in REQUESTS]
        assert [g.text for g in together] == [g.text for g in one_by_one]
        assert all(0.0 < g.confidence <= 1.0 for g in together)
        assert [g.confidence for g in together] == pytest.approx([g.confidence for g in one_by_one], rel=1e-3)
    total, count = gen.score(REQUESTS, ["ok", "We open at 9.", "Hello!"])
    assert count == len(tokenizer(["ok", "We open at 9.", "Hello!"]).input_ids[0]) + len(
        tokenizer("We open at 9.").input_ids
    ) + len(tokenizer("Hello!").input_ids)
    assert total > 0


def test_config_and_tokenizer_mismatch_errors(tokenizer, tmp_path):
    small = T5ModelConfig(
        d_model=32, d_ff=64, d_kv=8, num_layers=1, num_decoder_layers=1, num_heads=2, vocab_size=100
    ).to_hf()
    with pytest.raises(ModelError, match="vocab_size"):
        build_model(small, tokenizer)
    # a saved model whose embedding is smaller than the tokenizer: a checkpoint/tokenizer mismatch
    torch.manual_seed(0)
    from transformers import T5ForConditionalGeneration

    T5ForConditionalGeneration(small).save_pretrained(tmp_path / "small")
    with pytest.raises(CheckpointError, match=f"{len(tokenizer)} tokens"):
        load_base_model(tmp_path / "small", tokenizer)
    with pytest.raises(ConfigError, match="preset"):
        resolve_model_config("no-such-preset")


def test_local_directory_is_loaded_by_from_pretrained(tokenizer, tmp_path):
    model = tiny_model(tokenizer, seed=5)
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    loaded, loaded_tok = load_base_model(tmp_path / "m")  # path, not a hub id: same from_pretrained call
    assert len(loaded_tok) == len(tokenizer) and loaded_tok.truncation_side == "left"
    b = batch(tokenizer)
    assert torch.equal(logits(loaded.eval(), b), logits(model, b))


@pytest.mark.slow
def test_load_t5_generator_reads_the_manifest(tokenizer, tmp_path):
    base = tiny_model(tokenizer)
    base.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    write_manifest(tmp_path / "base", {"base_model": {"path": "."}, "tokenizer": ".", "adapters": []})
    model = attach_lora(tiny_model(tokenizer), LoraSettings(r=4), "bank")
    randomize_adapter(model, "bank", seed=6)
    out = tmp_path / "bank-model"
    save_adapter(model, out / "adapters" / "bank", "bank")
    tokenizer.save_pretrained(out)
    write_manifest(
        out,
        {
            "base_model": {"path": "../base"},
            "tokenizer": ".",
            "adapters": [{"name": "bank", "path": "adapters/bank"}],
            "generation": {"max_target_len": 5},
        },
    )
    adapted = load_generator(out)
    assert adapted.default_adapter == "bank" and adapted.settings.max_target_len == 5
    merged = load_generator(out, merge=True)
    plain = load_generator(out, adapter=None)
    base_only = load_generator(tmp_path / "base", max_target_len=5)
    texts = [g.generate(REQUESTS[:1])[0].text for g in (adapted, merged, plain, base_only)]
    assert texts[0] == texts[1] and texts[2] == texts[3] and texts[0] != texts[2]
    with pytest.raises(ModelError, match="not in"):
        load_generator(out, adapter="hotel")
    with pytest.raises(ConfigError, match="unknown options"):
        load_generator(out, beams=3)
    manifest = json.loads((out / "assistant.json").read_text())
    (out / "assistant.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format_version"):
        load_generator(out)


def test_invalid_settings_are_rejected():
    with pytest.raises(ConfigError, match="lora r"):
        LoraSettings(r=0)
    with pytest.raises(ConfigError, match="dropout"):
        LoraSettings(dropout=1.0)
    with pytest.raises(ConfigError, match="beam_size"):
        T5GenerationSettings(beam_size=0)
    with pytest.raises(ModelError, match="adapter name"):
        attach_lora(torch.nn.Linear(2, 2), LoraSettings(), "a")
