"""The CTranslate2 backend of the T5 generator against the transformers path, on tiny models (CPU).

A tiny T5 trained for a few dozen steps on the demo dialogs (so replies vary and end with
end-of-sequence) is saved as a model directory, then loaded with ``backend="transformers"`` and with
the default ``backend="ct2"`` (converted at load time into ``<model dir>/ct2``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from assistant.data import read_dialogs
from assistant.errors import CheckpointError, ConfigError
from assistant.generators.base import GenerationRequest
from assistant.generators.loader import load_generator
from assistant.generators.t5.adapters import LoraSettings, attach_lora, save_adapter
from assistant.generators.t5.ct2_convert import SOURCE_FILE
from assistant.generators.t5.model import (
    PRESETS,
    T5GenerationSettings,
    T5Generator,
    build_model,
    encode_targets,
    load_tokenizer,
    write_manifest,
)
from finetune.convert_ct2 import main as convert_main

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tokenizer(t5_tokenizer_dir):
    return load_tokenizer(t5_tokenizer_dir)


def demo_examples(demo_data: Path, split: str) -> list[tuple[GenerationRequest, str]]:
    """(context before an agent turn, that agent turn's text) for every agent turn of a demo split."""
    examples = []
    for dialog in read_dialogs(demo_data / "dialogs" / f"{split}.jsonl"):
        for i, turn in enumerate(dialog.turns):
            if turn.role == "agent" and i > 0:
                examples.append((GenerationRequest(context=tuple(dialog.turns[:i])), turn.text))
    return examples


def train_tiny(tokenizer, demo_data: Path, steps: int, seed: int = 0):
    """The ``tiny`` preset trained ``steps`` AdamW steps (batch 16) on the demo train dialogs."""
    config = dataclasses.replace(PRESETS["tiny"], vocab_size=len(tokenizer), dropout_rate=0.0)
    model = build_model(config.to_hf(), tokenizer, seed=seed)
    settings = T5GenerationSettings(max_source_len=48, max_target_len=16)
    encoder = T5Generator(model, tokenizer, settings)
    examples = demo_examples(demo_data, "train")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        picks = torch.randint(len(examples), (16,), generator=gen).tolist()
        batch = encoder.encode([examples[i][0] for i in picks])
        ids = encode_targets(tokenizer, [examples[i][1] for i in picks], settings.max_target_len)
        labels = torch.full((len(ids), max(map(len, ids))), -100, dtype=torch.long)
        for row, target in enumerate(ids):
            labels[row, : len(target)] = torch.tensor(target)
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def save_model_dir(model, tokenizer, out: Path, generation: dict | None = None) -> Path:
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_manifest(
        out,
        {
            "base_model": {"path": "."},
            "tokenizer": ".",
            "adapters": [],
            "generation": generation or {"max_target_len": 16, "max_source_len": 48},
        },
    )
    return out


@pytest.fixture(scope="module")
def trained_dir(tokenizer, demo_data, tmp_path_factory) -> Path:
    return save_model_dir(train_tiny(tokenizer, demo_data, steps=60), tokenizer, tmp_path_factory.mktemp("m"))


@pytest.fixture(scope="module")
def requests_(demo_data) -> list[GenerationRequest]:
    """Demo valid contexts, plus an empty context (CTranslate2 cannot decode it: transformers does)."""
    return [r for r, _ in demo_examples(demo_data, "valid")[:24]] + [GenerationRequest(context=())]


def cache_folders(model_dir: Path) -> list[Path]:
    return sorted(p for p in (model_dir / "ct2").iterdir() if p.is_dir() and not p.name.startswith("."))


def test_ct2_greedy_replies_equal_transformers_float32(trained_dir, requests_):
    reference = load_generator(trained_dir, backend="transformers")
    fast = load_generator(trained_dir)  # the default backend
    assert fast.fast is not None and reference.fast is None and "ct2:float32" in fast.name
    expected = reference.generate(requests_)
    got = fast.generate(requests_)
    assert [g.text for g in got] == [g.text for g in expected]
    assert len({g.text for g in expected}) >= 3, "the trained tiny model should give varied replies"
    assert sum(len(g.text.split()) < 16 for g in expected) >= 3, "some replies should end with eos"
    assert [g.confidence for g in got] == pytest.approx([g.confidence for g in expected], rel=1e-3)
    one_by_one = [fast.generate([r])[0] for r in requests_[:6]]
    assert [g.text for g in one_by_one] == [g.text for g in expected[:6]]
    # no-repeat n-gram blocking maps onto CTranslate2's option
    blocked_ref = load_generator(trained_dir, backend="transformers", no_repeat_ngram_size=2)
    blocked = load_generator(trained_dir, no_repeat_ngram_size=2)
    assert [g.text for g in blocked.generate(requests_)] == [g.text for g in blocked_ref.generate(requests_)]


def test_ct2_stream_pieces_add_up_to_the_reply(trained_dir, requests_):
    fast = load_generator(trained_dir)
    for request in requests_[:4]:
        pieces: list[str] = []
        generation = fast.stream(request, pieces.append)
        assert generation == fast.generate([request])[0]
        assert "".join(pieces) == generation.text and len(pieces) >= 2


def test_int8_compute_type_loads_and_replies(trained_dir, requests_):
    int8 = load_generator(trained_dir, compute_type="int8")
    assert "ct2:int8" in int8.name
    replies = int8.generate(requests_[:5])
    assert len(replies) == 5 and all(0.0 < g.confidence <= 1.0 for g in replies)


@pytest.mark.slow
def test_conversion_cache_is_reused_then_redone_when_the_model_changes(
    tokenizer, demo_data, tmp_path, requests_, capsys
):
    model_dir = save_model_dir(train_tiny(tokenizer, demo_data, steps=5, seed=1), tokenizer, tmp_path / "m")
    assert convert_main([str(model_dir)]) == 0 and "(converted)" in capsys.readouterr().out
    first = load_generator(model_dir)
    [folder] = cache_folders(model_dir)
    stamp = (folder / SOURCE_FILE).stat().st_mtime_ns
    again = load_generator(model_dir)
    assert cache_folders(model_dir) == [folder] and (folder / SOURCE_FILE).stat().st_mtime_ns == stamp
    assert convert_main([str(model_dir)]) == 0 and "(already current)" in capsys.readouterr().out
    assert [g.text for g in again.generate(requests_[:8])] == [g.text for g in first.generate(requests_[:8])]
    # retrained weights in the same directory: a new key, converted again, the old folder removed
    save_model_dir(train_tiny(tokenizer, demo_data, steps=40, seed=2), tokenizer, model_dir)
    changed = load_generator(model_dir)
    [new_folder] = cache_folders(model_dir)
    assert new_folder != folder
    reference = load_generator(model_dir, backend="transformers")
    assert [g.text for g in changed.generate(requests_[:8])] == [
        g.text for g in reference.generate(requests_[:8])
    ]
    assert json.loads((new_folder / SOURCE_FILE).read_text())["model_dir"] == str(model_dir.resolve())
    # a cache elsewhere (read-only model directories): same conversion, written there
    elsewhere = load_generator(model_dir, ct2_cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 1 and elsewhere.fast is not None


def randomize_adapter(model, name: str, seed: int) -> None:
    """LoRA B starts at zero (adapter = identity); give it values so the adapter changes outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n and f".{name}." in n:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)


@pytest.mark.slow
def test_adapter_is_merged_before_conversion_and_other_adapters_keep_transformers(
    trained_dir, tokenizer, tmp_path, requests_
):
    with_adapter = attach_lora(
        load_generator(trained_dir, backend="transformers").model, LoraSettings(r=4), "bank"
    )
    randomize_adapter(with_adapter, "bank", seed=3)
    out = tmp_path / "bank-model"
    save_adapter(with_adapter, out / "adapters" / "bank", "bank")
    tokenizer.save_pretrained(out)
    write_manifest(
        out,
        {
            "base_model": {"path": str(trained_dir)},
            "tokenizer": ".",
            "adapters": [{"name": "bank", "path": "adapters/bank"}],
            "generation": {"max_target_len": 16, "max_source_len": 48},
        },
    )
    reference = load_generator(out, backend="transformers")  # peft, adapter unmerged
    fast = load_generator(out)
    assert fast.default_adapter == "bank" and "+lora:bank" in fast.name
    expected = reference.generate(requests_)
    assert [g.text for g in fast.generate(requests_)] == [g.text for g in expected]
    base_texts = [g.text for g in load_generator(trained_dir, backend="transformers").generate(requests_)]
    assert base_texts != [g.text for g in expected], "the adapter must change the replies"
    # a request naming another adapter (here: none = the base) takes the transformers path
    routed = fast.generate(requests_, adapters=[None] * len(requests_))
    assert [g.text for g in routed] == base_texts
    mixed = fast.generate(requests_[:2], adapters=["bank", None])
    assert [g.text for g in mixed] == [expected[0].text, base_texts[1]]
    # merge=True serves the same merged weights
    merged = load_generator(out, merge=True)
    assert [g.text for g in merged.generate(requests_)] == [g.text for g in expected]


def test_bad_backend_settings_give_clear_errors(trained_dir, tmp_path):
    with pytest.raises(ConfigError, match="backend must be one of"):
        load_generator(trained_dir, backend="onnx")
    with pytest.raises(ConfigError, match="compute_type must be one of"):
        load_generator(trained_dir, compute_type="int4")
    with pytest.raises(ConfigError, match="apply to backend 'ct2' only"):
        load_generator(trained_dir, backend="transformers", compute_type="int8")
    with pytest.raises(ConfigError, match="ct2_threads"):
        load_generator(trained_dir, ct2_threads=0)
    with pytest.raises(ConfigError, match="device 'cpu' or 'cuda'"):
        load_generator(trained_dir, device="mps")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(CheckpointError, match="ct2_cache_dir"):
        load_generator(trained_dir, ct2_cache_dir=tmp_path / "a-file" / "cache")


FORK_SCRIPT = """
import os, sys
from assistant.generators.base import GenerationRequest
from assistant.data import Turn
from assistant.generators.loader import load_generator

generator = load_generator(sys.argv[1])
request = GenerationRequest(context=(Turn("customer", "I lost my card"),))
before = generator.generate([request])[0].text
pid = os.fork()
if pid == 0:  # like a gunicorn worker forked after --preload: replies, then exits normally
    sys.exit(0 if generator.generate([request])[0].text == before else 3)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status), "parent", generator.generate([request])[0].text == before)
"""


@pytest.mark.slow
def test_a_process_forked_after_loading_replies_and_exits(trained_dir, tmp_path):
    import os
    import subprocess
    import sys

    load_generator(trained_dir)  # the conversion exists: the script only loads
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, str(trained_dir)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("child 0 parent True"), done.stdout
