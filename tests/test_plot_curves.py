"""Loss curves from real tiny LSTM and T5 runs on the demo dialogs, each with a CPU-time budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from assistant.errors import ModelError
from finetune import train_lstm, train_t5
from finetune.plot_curves import main, plot, read_curve

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_data) -> tuple[Path, Path]:
    """A tiny T5 (8 steps, validated every 2) and a tiny LSTM (2 epochs), both under --max-cpu-minutes 5."""
    root = tmp_path_factory.mktemp("curves")
    train, valid = demo_data / "dialogs" / "train.jsonl", demo_data / "dialogs" / "valid.jsonl"
    data = ["--train", str(train), "--valid", str(valid), "--threads", "1", "--max-cpu-minutes", "5"]
    t5, lstm = root / "t5", root / "lstm"
    t5_flags = ["--init-from-config", "tiny", "--full-finetune", "--vocab-size", "200", "--batch-size", "8"]
    t5_flags += ["--max-steps", "8", "--eval-every", "2", "--max-source-len", "32", "--max-target-len", "12"]
    assert train_t5.main([*data, *t5_flags, "--output-dir", str(t5)]) == 0
    lstm_flags = ["--vocab-size", "120", "--emb-size", "32", "--hidden-size", "32", "--batch-size", "16"]
    lstm_flags += ["--epochs", "2", "--max-minutes", "0", "--no-scope-check", "--device", "cpu"]
    assert train_lstm.main([*data, *lstm_flags, "--output-dir", str(lstm)]) == 0
    return t5, lstm


def test_curves_follow_the_recorded_validations_on_the_cpu_clock(trained) -> None:
    t5_dir, lstm_dir = trained
    t5, lstm = read_curve(t5_dir, "T5"), read_curve(lstm_dir, "LSTM")
    t5_history = json.loads((t5_dir / "assistant.json").read_text())["training"]["valid_history"]
    assert [round(x, 6) for x in t5.valid_loss] == [round(h["valid_loss"], 6) for h in t5_history]
    assert len(t5.valid_loss) == 4 and t5.clock == "cpu" and lstm.clock == "cpu"
    assert lstm.epochs == [1.0, 2.0] and len(lstm.valid_loss) == 2
    for curve in (t5, lstm):
        assert all(b > a > 0 for a, b in zip(curve.minutes, curve.minutes[1:], strict=False)), curve
        assert curve.minutes[-1] < 5  # within the budget
    assert all(b > a for a, b in zip(t5.epochs, t5.epochs[1:], strict=False))


def test_the_figure_is_a_png(trained, tmp_path) -> None:
    out = plot(
        [read_curve(d, n) for d, n in zip(trained, ("T5", "LSTM"), strict=True)], tmp_path / "c.png", "t"
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5_000


def test_an_lstm_history_without_the_budget_clock_is_refused(trained, tmp_path, capsys) -> None:
    manifest = json.loads((trained[1] / "assistant.json").read_text())
    for record in manifest["training"]["history"]:
        del record["budget_used_s"]
    old = tmp_path / "old-lstm"
    old.mkdir()
    (old / "assistant.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"no budget_used_s .* retrain"):
        read_curve(old, "old")
    assert main([str(old), "--out", str(tmp_path / "x.png")]) == 2
    assert "no budget_used_s" in capsys.readouterr().err and not (tmp_path / "x.png").exists()


def test_names_must_match_the_directories(trained, tmp_path, capsys) -> None:
    assert main([str(trained[0]), "--names", "a", "b", "--out", str(tmp_path / "x.png")]) == 2
    assert "--names gives 2 labels for 1 model directories" in capsys.readouterr().err
