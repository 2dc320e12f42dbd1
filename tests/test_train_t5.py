"""The T5 accelerate training loop: real steps on a tiny model and a few demo dialogs (CPU), with a small
tokenizer trained on the demo data (``t5_tokenizer_dir``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from assistant.data import read_dialogs
from assistant.generators.base import GenerationRequest
from assistant.generators.loader import load_generator
from assistant.generators.t5.adapters import LoraSettings, attach_lora
from assistant.generators.t5.model import PRESETS, T5GenerationSettings, build_model, load_tokenizer
from finetune.t5_data import TrainConfig, filter_domains, make_collator, tokenize_examples
from finetune.train_t5 import main, train

torch.set_num_threads(1)

#: the demo domain the domain-filter tests hold out (like a STAR domain such as "bank").
DOMAIN = "payments"


@pytest.fixture(scope="module")
def dialogs_files(tmp_path_factory, demo_data) -> tuple[Path, Path]:
    """12 training (9 of other domains, 3 payments) and 4 validation demo dialogs from the valid split."""
    lines = (demo_data / "dialogs" / "valid.jsonl").read_text(encoding="utf-8").splitlines()
    held = [x for x in lines if DOMAIN in json.loads(x)["meta"]["domains"]]
    other = [x for x in lines if DOMAIN not in json.loads(x)["meta"]["domains"]]
    d = tmp_path_factory.mktemp("dialogs")
    (d / "train.jsonl").write_text("\n".join(other[:9] + held[:3]) + "\n", encoding="utf-8")
    (d / "valid.jsonl").write_text("\n".join(other[9:12] + held[3:4]) + "\n", encoding="utf-8")
    return d / "train.jsonl", d / "valid.jsonl"


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, t5_tokenizer_dir) -> Path:
    """A tiny T5 saved with save_pretrained (the local-directory path a hub id would take)."""
    tok = load_tokenizer(t5_tokenizer_dir)
    d = tmp_path_factory.mktemp("base")
    build_model(PRESETS["tiny"].to_hf(), tok, seed=0).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def common_flags(train_file: Path, valid_file: Path, out: Path) -> list[str]:
    return [
        "--train",
        str(train_file),
        "--valid",
        str(valid_file),
        "--output-dir",
        str(out),
        "--batch-size",
        "4",
        "--max-source-len",
        "32",
        "--max-target-len",
        "12",
        "--threads",
        "1",
        "--warmup-steps",
        "1",
        "--seed",
        "3",
    ]


def test_only_adapter_weights_change_in_a_training_step(dialogs_files, t5_tokenizer_dir):
    tok = load_tokenizer(t5_tokenizer_dir)
    model = attach_lora(build_model(PRESETS["tiny"].to_hf(), tok), LoraSettings(r=4), "bank")
    examples = tokenize_examples(
        read_dialogs(dialogs_files[0]), tok, T5GenerationSettings(max_source_len=32, max_context_turns=3)
    )
    batch = make_collator(tok)(examples[:4])
    assert (batch["labels"] == -100).any() and not (batch["labels"] == tok.pad_token_id).any()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    model(**batch).loss.backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "the step must change the adapter"
    assert all("lora_" in n for n in changed), f"non-adapter weights changed: {sorted(changed)[:3]}"
    assert any("lora_B" in n for n in changed)


@pytest.mark.slow
def test_lora_run_writes_an_adapter_model_dir_that_loads(dialogs_files, base_dir, tmp_path):
    out = tmp_path / "lora"
    code = main(
        [
            *common_flags(*dialogs_files, out),
            "--model",
            str(base_dir),
            "--adapter-name",
            "star",
            "--max-steps",
            "3",
            "--eval-every",
            "2",
            "--lora-r",
            "2",
            "--lora-target-modules",
            "q",
            "v",
        ]
    )
    assert code == 0
    manifest = json.loads((out / "assistant.json").read_text())
    assert manifest["kind"] == "t5" and manifest["adapters"] == [{"name": "star", "path": "adapters/star"}]
    assert (out / manifest["base_model"]["path"]).resolve() == base_dir.resolve()
    assert manifest["training"]["steps"] == 3 and manifest["training"]["train_seconds"] > 0
    assert manifest["parameters"]["trainable"] < manifest["parameters"]["total"] / 10
    assert not (out / "model.safetensors").exists(), "a LoRA run must not save the base weights"
    gen = load_generator(out)
    assert gen.default_adapter == "star"
    assert len(gen.generate([GenerationRequest(context=())])) == 1


@pytest.mark.slow
@pytest.mark.parametrize("batching", ["plain", "bucketed+trained-vocab"])
def test_interrupted_run_resumes_to_the_same_state(dialogs_files, tmp_path, t5_tokenizer_dir, batching):
    # plain shuffled batches with a given tokenizer; or length-bucketed batches (pools of 2 batches) with a
    # vocabulary trained by the run itself (a resume must load that vocabulary, not train another)
    vocab = (
        ["--tokenizer", str(t5_tokenizer_dir), "--bucket-pool", "0"]
        if batching == "plain"
        else ["--vocab-size", "200", "--bucket-pool", "2"]
    )
    flags = [
        "--init-from-config",
        "tiny",
        *vocab,
        "--full-finetune",
        "--max-steps",
        "12",
        "--eval-every",
        "5",
        "--checkpoint-every",
        "2",
        "--grad-accum",
        "2",
    ]
    straight = tmp_path / "straight"
    assert main([*common_flags(*dialogs_files, straight), *flags]) == 0
    from assistant.config import dataclass_from_args
    from finetune.train_t5 import build_parser

    resumed = tmp_path / "resumed"
    args = build_parser().parse_args([*common_flags(*dialogs_files, resumed), *flags])
    cfg = dataclass_from_args(TrainConfig, args)
    gen = dataclass_from_args(T5GenerationSettings, args)
    lora = dataclass_from_args(LoraSettings, args, prefix="lora-")
    train(cfg, gen, lora, interrupt_after_steps=4)  # "crashes" after step 4's checkpoint
    interrupted = load_file(str(resumed / "checkpoint" / "model.safetensors"))
    assert main([*common_flags(*dialogs_files, resumed), *flags, "--resume"]) == 0
    a = load_file(str(straight / "checkpoint" / "model.safetensors"))
    b = load_file(str(resumed / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    assert not all(torch.equal(a[k], interrupted[k]) for k in a), "the resume must have trained further"
    ma = json.loads((straight / "assistant.json").read_text())["training"]
    mb = json.loads((resumed / "assistant.json").read_text())["training"]
    assert (ma["steps"], ma["best_valid_loss"]) == (mb["steps"], mb["best_valid_loss"])
    assert [h["valid_loss"] for h in ma["valid_history"]] == [h["valid_loss"] for h in mb["valid_history"]]
    assert ma["epochs_completed"] >= 1, "the interrupted step and the resume must span an epoch boundary"
    assert (straight / "tokenizer.json").read_bytes() == (resumed / "tokenizer.json").read_bytes()


def test_bad_flags_exit_2_with_a_clear_message(dialogs_files, tmp_path, capsys, t5_tokenizer_dir):
    out = tmp_path / "x"
    scratch = [*common_flags(*dialogs_files, out), "--init-from-config", "tiny", "--full-finetune"]
    assert main([*scratch, "--vocab-size", "8"]) == 2
    assert "--vocab-size must be >= 16, got 8" in capsys.readouterr().err
    assert main([*scratch, "--max-cpu-minutes", "0"]) == 2
    assert "--max-cpu-minutes must be > 0, got 0" in capsys.readouterr().err
    assert main([*scratch, "--bucket-pool", "-1"]) == 2
    assert "--bucket-pool must be >= 0, got -1" in capsys.readouterr().err
    assert (
        main(
            [
                *common_flags(*dialogs_files, out),
                "--init-from-config",
                "tiny",
                "--tokenizer",
                str(t5_tokenizer_dir),
            ]
        )
        == 2
    )
    assert "--full-finetune" in capsys.readouterr().err
    cfg_file = tmp_path / "small.json"
    cfg_file.write_text(
        json.dumps(
            {
                "d_model": 16,
                "d_ff": 32,
                "d_kv": 4,
                "num_layers": 1,
                "num_decoder_layers": 1,
                "num_heads": 4,
                "vocab_size": 500,
            }
        )
    )
    assert (
        main(
            [
                *common_flags(*dialogs_files, out),
                "--init-from-config",
                str(cfg_file),
                "--full-finetune",
                "--tokenizer",
                str(t5_tokenizer_dir),
                "--max-steps",
                "1",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "vocab_size" in err and str(len(load_tokenizer(t5_tokenizer_dir))) in err
    assert main([*common_flags(*dialogs_files, out), "--model", str(tmp_path / "missing"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--resume: no " in err and "checkpoint to resume from" in err, err
    assert (
        main([*common_flags(*dialogs_files, out), "--model", str(tmp_path / "missing"), "--max-steps", "1"])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(tmp_path / "missing") in err, err


def test_domain_filter(dialogs_files):
    dialogs = read_dialogs(dialogs_files[0])
    domains = {d.id: set(d.meta["domains"]) for d in dialogs}
    without = filter_domains(dialogs, None, [DOMAIN], "f")
    assert without and all(DOMAIN not in domains[d.id] for d in without)
    only = filter_domains(dialogs, [DOMAIN], None, "f")
    assert len(only) == 3 and all(DOMAIN in domains[d.id] for d in only)
    assert len(only) + len(without) == len(dialogs)
    from assistant.errors import DataError

    with pytest.raises(DataError, match="no dialog left"):
        filter_domains(dialogs, ["no-such-domain"], None, "f")


def test_fp16_without_cuda_is_refused(dialogs_files, base_dir, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: fp16 is allowed here")
    flags = common_flags(*dialogs_files, tmp_path / "fp16")
    assert main([*flags, "--model", str(base_dir), "--mixed-precision", "fp16", "--max-steps", "1"]) == 2
    assert "fp16 needs a CUDA GPU" in capsys.readouterr().err


@pytest.mark.gpu
def test_bf16_lora_run_on_cuda_records_peak_memory(dialogs_files, base_dir, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    out = tmp_path / "gpu"
    flags = common_flags(*dialogs_files, out)
    assert main([*flags, "--model", str(base_dir), "--mixed-precision", "bf16", "--max-steps", "2"]) == 0
    training = json.loads((out / "assistant.json").read_text())["training"]
    assert training["device"].startswith("cuda") and training["peak_gpu_memory_gib"] > 0


def test_budget_schedule_without_a_budget_is_transformers_schedule():
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    from finetune.train_t5 import BudgetSchedule

    for kind, reference in (
        ("linear", get_linear_schedule_with_warmup),
        ("cosine", get_cosine_schedule_with_warmup),
    ):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        theirs = reference(optimizer, num_warmup_steps=5, num_training_steps=30).lr_lambdas[0]
        ours = BudgetSchedule(kind, warmup=5, total=30)
        assert [round(ours(s), 12) for s in range(31)] == [round(theirs(s), 12) for s in range(31)], kind
    half_spent = BudgetSchedule("linear", warmup=5, total=30)
    half_spent.budget_fraction = 0.5
    assert half_spent(2) == 0.4 and half_spent(6) == 0.5 and half_spent(25) == pytest.approx(0.2)


@pytest.mark.slow
def test_a_run_stopped_by_its_cpu_budget_ends_with_the_rate_annealed(
    dialogs_files, tmp_path, t5_tokenizer_dir
):
    out = tmp_path / "budget"
    flags = [
        "--init-from-config",
        "tiny",
        "--tokenizer",
        str(t5_tokenizer_dir),
        "--full-finetune",
        "--lr",
        "0.01",
    ]
    flags += ["--max-steps", "1000000", "--eval-every", "100000", "--max-cpu-minutes", "0.1"]
    assert main([*common_flags(*dialogs_files, out), *flags]) == 0
    training = json.loads((out / "assistant.json").read_text())["training"]
    assert training["stopped"] == "time budget (cpu)" and 10 < training["steps"] < 1_000_000
    scheduler = torch.load(out / "checkpoint" / "scheduler.bin", weights_only=False)
    assert scheduler["lr_lambdas"][0]["budget_fraction"] == 1.0
    # one step before the end the fraction was just under 1: the last rate is a sliver of the peak
    assert scheduler["_last_lr"][0] < 0.01 * 0.05, scheduler["_last_lr"]
