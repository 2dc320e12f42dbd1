"""LSTM training CLI: real training steps on tiny dialogs lower the loss; resume continues exactly."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from assistant import demo_data
from assistant.data import Turn
from assistant.generators.base import MANIFEST, GenerationRequest
from assistant.generators.loader import load_generator
from assistant.generators.lstm.checkpoint import load_checkpoint
from assistant.routing.scope import load_scope_check
from finetune.lstm_data import make_batches
from finetune.train_lstm import PRESETS, lr_factor, main

NAMES = ["Sam", "Alex", "Kim", "Lee", "Jo", "Max", "Ana", "Tom"]
CITIES = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo"]


def write_dialogs(path: Path, n: int, seed: int) -> Path:
    """Templated support dialogs (like STAR): the reply depends on the customer's words."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        name, city = rng.choice(NAMES), rng.choice(CITIES)
        turns = [
            ("customer", f"hi, I need a taxi to {city}"),
            ("agent", "Could I get your name, please?"),
            ("customer", f"my name is {name}"),
            ("agent", f"Thank you {name}, a taxi to {city} is booked."),
            ("customer", "thanks, bye"),
            ("agent", "Goodbye!"),
        ]
        lines.append(json.dumps({"id": f"d{seed}-{i}", "turns": [{"role": r, "text": t} for r, t in turns]}))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def dialogs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dialogs")
    return write_dialogs(root / "train.jsonl", 60, 0), write_dialogs(root / "valid.jsonl", 10, 1)


def tiny_args(dialogs: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    return [
        "--train",
        str(dialogs[0]),
        "--valid",
        str(dialogs[1]),
        "--output-dir",
        str(out),
        "--vocab-size",
        "120",
        "--emb-size",
        "32",
        "--hidden-size",
        "64",
        "--dropout",
        "0.0",
        "--batch-size",
        "16",
        "--warmup-steps",
        "5",
        "--lr",
        "0.01",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--max-source-len",
        "60",
        "--max-target-len",
        "40",
        "--decode-max-len",
        "40",
        *(extra if "--scope-check" in extra else (*extra, "--no-scope-check")),
    ]


def history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train-log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_training_lowers_the_loss_and_writes_a_loadable_model(dialogs, tmp_path: Path, capsys) -> None:
    out = tmp_path / "model"
    assert (
        main(
            tiny_args(
                dialogs, out, "--epochs", "10", "--batch-size", "8", "--patience", "10", "--scope-check"
            )
        )
        == 0
    )
    log = history(out)
    assert len(log) == 10
    assert log[-1]["valid_loss"] < 0.5 * log[0]["valid_loss"]
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["kind"] == "lstm"
    assert manifest["training"]["target_tokens_per_s"] > 0
    assert manifest["training"]["run"]["stop_reason"] == "epochs"
    assert [d["role"] for d in manifest["data"]] == ["train", "valid"]
    generator = load_generator(out)
    (reply,) = generator.generate([GenerationRequest((Turn("customer", "hi, I need a taxi to Rome"),))])
    assert reply.text == "Could I get your name, please?"
    captured = capsys.readouterr()
    assert "target tokens/s" in captured.out and "in-domain check: threshold" in captured.out
    assert "WARNING: no out-of-scope messages were given" in captured.err  # the generic set was used
    scope = load_scope_check(out)
    assert scope is not None and scope.calibration["report"]["generic_out_of_scope"] is True
    assert (
        scope.score("hi, I need a taxi to Oslo") >= scope.threshold > scope.score("who painted the mona lisa")
    )


@pytest.mark.parametrize("stop", [["--max-steps", "5"], ["--max-steps", "14"], ["--max-minutes", "0.0001"]])
def test_resume_continues_exactly(dialogs, tmp_path: Path, stop: list[str]) -> None:
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert main(tiny_args(dialogs, straight, "--epochs", "2")) == 0  # 12 batches per epoch
    # Stop mid-epoch 1, mid-epoch 2, or before any step (time budget); resuming with the same flags must
    # end with exactly the weights of the uninterrupted run.
    assert main(tiny_args(dialogs, interrupted, "--epochs", "2", *stop)) == 0
    reason = json.loads((interrupted / MANIFEST).read_text())["training"]["run"]["stop_reason"]
    assert reason == ("max steps" if stop[0] == "--max-steps" else "time budget")
    assert main(tiny_args(dialogs, interrupted, "--epochs", "2", "--resume")) == 0
    a = torch.load(straight / "last-state.pt", weights_only=True)
    b = torch.load(interrupted / "last-state.pt", weights_only=True)
    assert a["progress"]["step"] == b["progress"]["step"] == 24
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert history(interrupted)[-1]["valid_loss"] == pytest.approx(history(straight)[-1]["valid_loss"])
    best = load_checkpoint(interrupted).model.state_dict()
    assert all(torch.equal(best[k], a["model"][k]) for k in best)  # the last epoch was the best here


def test_resume_errors(dialogs, tmp_path: Path, capsys) -> None:
    assert main(tiny_args(dialogs, tmp_path / "none", "--resume")) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["--train", str(dialogs[0])]) == 2
    assert "--valid is required" in capsys.readouterr().err
    assert main(tiny_args(dialogs, tmp_path / "x", "--hidden-size", "63")) == 2
    assert "hidden_size must be even" in capsys.readouterr().err


def test_resume_refuses_other_model_settings(dialogs, tmp_path: Path, capsys) -> None:
    out = tmp_path / "model"
    assert main(tiny_args(dialogs, out, "--epochs", "1", "--max-train-examples", "16")) == 0
    assert main(tiny_args(dialogs, out, "--epochs", "1", "--emb-size", "48", "--resume")) == 2
    assert "emb_size" in capsys.readouterr().err


def test_bucketed_batches_cover_every_example_once_and_group_lengths() -> None:
    rng = random.Random(0)
    pairs = [([1] * rng.randint(1, 30), [1] * rng.randint(1, 30)) for _ in range(1000)]
    batches = make_batches(pairs, 32, 20, random.Random(1))
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert all(len(b) <= 32 for b in batches)
    spread = sum(max(len(pairs[i][1]) for i in b) - min(len(pairs[i][1]) for i in b) for b in batches) / len(
        batches
    )
    assert spread < 5  # targets within a batch have similar lengths (random batches: ~25)
    assert make_batches(pairs, 32, 20, random.Random(1)) == batches  # seeded
    assert make_batches(pairs, 32, 20, random.Random(2)) != batches


def test_presets_only_change_defaults() -> None:
    from finetune.train_lstm import parse_args

    args = parse_args(["--preset", "demo", "--emb-size", "64"])
    assert args.emb_size == 64 and args.hidden_size == PRESETS["demo"]["hidden_size"]
    assert args.train == demo_data.path(demo_data.DIALOGS["train"])  # the packaged demo data
    assert args.output_dir == Path("models/lstm-demo")  # under the working directory


def test_preset_training_is_what_the_cli_builds_and_train_lstm_runs_it(dialogs, tmp_path: Path) -> None:
    from assistant.errors import ConfigError
    from assistant.generators.lstm import Seq2SeqConfig
    from assistant.generators.lstm.tokenizer import TokenizerConfig
    from finetune.train_lstm import (
        LSTMTraining,
        TrainConfig,
        parse_args,
        preset_training,
        train_lstm,
        training_from_args,
    )

    typed = preset_training("demo", output_dir=tmp_path / "demo")
    assert typed == training_from_args(
        parse_args(["--preset", "demo", "--output-dir", str(tmp_path / "demo")])
    )
    assert typed.model.hidden_size == PRESETS["demo"]["hidden_size"] and typed.train_config.max_minutes == 3.0
    with pytest.raises(ConfigError, match="unknown LSTM preset 'nope'"):
        preset_training("nope")
    with pytest.raises(ConfigError, match="preset 'star' has no train data"):
        preset_training("star", output_dir=tmp_path)
    # the typed call the server's demo makes, on tiny settings
    run = LSTMTraining(
        dialogs[0],
        dialogs[1],
        tmp_path / "typed",
        train_config=TrainConfig(epochs=1, max_train_examples=16, device="cpu"),
        tokenizer=TokenizerConfig(vocab_size=120),
        model=Seq2SeqConfig(emb_size=16, hidden_size=32, max_source_len=60, max_target_len=40),
        threads=1,
        scope_check=False,  # the in-domain check after training: test_training_lowers_the_loss... (slow)
    )
    assert train_lstm(run) == tmp_path / "typed"
    assert load_checkpoint(tmp_path / "typed").manifest["training"]["run"]["stop_reason"] == "epochs"


def test_lr_schedule_warms_up_then_decays_by_steps_or_time() -> None:
    assert lr_factor(0, 0.0, 10, 110, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 0.0, 10, 110, 0.1) == pytest.approx(1.0)
    assert lr_factor(60, 0.0, 10, 110, 0.1) == pytest.approx(0.55)  # half the decay steps done
    assert lr_factor(110, 0.0, 10, 110, 0.1) == pytest.approx(0.1)
    assert lr_factor(20, 0.5, 10, 110, 0.1) == pytest.approx(0.55)  # half the time budget used
    assert lr_factor(20, 1.0, 10, 110, 0.1) == pytest.approx(0.1)


def test_resume_refuses_a_spent_time_budget(dialogs, tmp_path: Path, capsys) -> None:
    out = tmp_path / "model"
    assert main(tiny_args(dialogs, out, "--epochs", "1", "--max-minutes", "0.0001")) == 0
    assert main(tiny_args(dialogs, out, "--epochs", "1", "--max-minutes", "0.0001", "--resume")) == 2
    err = capsys.readouterr().err
    assert "raise it to continue" in err and "--max-minutes 0.0001" in err, err


def test_cpu_time_budget_stops_the_run_and_is_recorded(dialogs, tmp_path: Path, capsys) -> None:
    out = tmp_path / "model"
    cpu = ("--epochs", "1", "--max-minutes", "0", "--max-cpu-minutes", "0.0001")
    assert main(tiny_args(dialogs, out, *cpu)) == 0
    manifest = json.loads((out / "assistant.json").read_text(encoding="utf-8"))
    budget = manifest["training"]["budget"]
    assert budget["kind"] == "cpu" and budget["limit_minutes"] == 0.0001
    assert budget["used_minutes"] >= 0.0 and manifest["training"]["run"]["stop_reason"] == "time budget"
    assert manifest["training"]["run"]["budget"]["used_seconds"] >= 0.006
    assert main(tiny_args(dialogs, out, *cpu, "--resume")) == 2
    assert "--max-cpu-minutes 0.0001" in capsys.readouterr().err
    both = ("--epochs", "1", "--max-minutes", "1", "--max-cpu-minutes", "1")
    assert main(tiny_args(dialogs, tmp_path / "other", *both)) == 2
    assert "alternative budgets" in capsys.readouterr().err
