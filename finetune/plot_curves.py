"""Validation-loss curves of trained models against the compute they were given, as one PNG.

Reads the validation history of each model directory (LSTM or T5, from ``finetune.train_lstm`` /
``finetune.train_t5``) and plots validation loss (nats per target token of each model's own
vocabulary) against CPU minutes when every run had a CPU budget (``--max-cpu-minutes``: the budget's
clock is the process's CPU time), else against wall-clock minutes, and beside it against examples seen
in epochs of its training set.

    python -m finetune.plot_curves models/t5-star models/lstm-star --names T5 LSTM \\
        --out docs/img/t5-vs-lstm-loss.png

Needs matplotlib (``pip install -e '.[dev]'``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import ConfigError, ModelError, report_errors
from assistant.generators.base import read_manifest


@dataclass(frozen=True)
class Curve:
    """One model's validation losses.

    Attributes:
        name: legend label.
        clock: ``"cpu"`` when the run's time budget was CPU time, else ``"wall"``.
        minutes: minutes on that clock at each validation, ascending.
        epochs: examples seen at each validation, in epochs of the training set.
        valid_loss: validation loss at each point (nats per target token).
    """

    name: str
    clock: str
    minutes: list[float]
    epochs: list[float]
    valid_loss: list[float]


def read_curve(model_dir: str | Path, name: str) -> Curve:
    """The validation curve recorded in ``model_dir``: a T5's ``assistant.json`` (``valid_history``), an
    LSTM's epoch log ``train-log.jsonl`` (every epoch; its manifest's history stops at the best one).

    Raises:
        ModelError: no manifest, a kind without training history (the retrieval baseline), or a history
            without the clock readings (LSTM runs trained before ``budget_used_s`` was recorded).
    """
    manifest = read_manifest(model_dir)
    training = manifest.get("training") or {}
    if manifest["kind"] == "t5":
        return _t5_curve(manifest, training, name, model_dir)
    if manifest["kind"] == "lstm":
        return _lstm_curve(training, name, model_dir)
    raise ModelError(
        f"{model_dir}: a {manifest['kind']!r} model has no training curve; give LSTM or T5 models"
    )


def _t5_curve(manifest: dict, training: dict, name: str, model_dir: str | Path) -> Curve:
    history = training.get("valid_history") or []
    if not history:
        raise ModelError(f"{model_dir}: assistant.json has no training.valid_history")
    clock = "cpu" if (training.get("budget") or {}).get("kind", "").startswith("cpu") else "wall"
    n_train = (manifest.get("data") or {}).get("train_examples")
    if not n_train:
        raise ModelError(f"{model_dir}: assistant.json has no data.train_examples to count epochs with")
    return Curve(
        name=name,
        clock=clock,
        minutes=[h["cpu_s" if clock == "cpu" else "wall_s"] / 60 for h in history],
        epochs=[h["examples_seen"] / n_train for h in history],
        valid_loss=[h["valid_loss"] for h in history],
    )


def _lstm_curve(training: dict, name: str, model_dir: str | Path) -> Curve:
    # the manifest is written with the best checkpoint, so its history stops there; the epoch log
    # (train_lstm's LOG_FILE) has every validation, the ones after the best included
    log = Path(model_dir) / "train-log.jsonl"
    if log.is_file():
        history = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        history = training.get("history") or []
    if not history:
        raise ModelError(f"{model_dir}: assistant.json has no training.history")
    clock = (training.get("budget") or {}).get("kind", "wall")
    if clock == "cpu":
        missing = [h["epoch"] for h in history if "budget_used_s" not in h]
        if missing:
            raise ModelError(
                f"{model_dir}: epochs {missing} have no budget_used_s (trained before it was recorded); "
                "retrain with the current finetune.train_lstm to plot against CPU time"
            )
    return Curve(
        name=name,
        clock="cpu" if clock == "cpu" else "wall",
        minutes=[(h["budget_used_s"] if clock == "cpu" else h["elapsed_s"]) / 60 for h in history],
        epochs=[float(h["epoch"]) for h in history],
        valid_loss=[h["valid_loss"] for h in history],
    )


def plot(curves: list[Curve], out: str | Path, title: str) -> Path:
    """Write the two-panel figure (loss vs minutes, loss vs epochs) to ``out`` (PNG) and return its path.

    Raises:
        ConfigError: no curves.
    """
    if not curves:
        raise ConfigError("give at least one model directory")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter

    clock = "CPU" if all(c.clock == "cpu" for c in curves) else "wall-clock"
    fig, (by_time, by_epoch) = plt.subplots(1, 2, figsize=(11, 4.2 + 0.25 * len(curves)), sharey=True)
    for curve in curves:
        by_time.plot(curve.minutes, curve.valid_loss, marker="o", markersize=3, label=curve.name)
        by_epoch.plot(curve.epochs, curve.valid_loss, marker="o", markersize=3, label=curve.name)
    by_time.set_xlabel(f"{clock} minutes")
    by_epoch.set_xlabel("examples seen (epochs of the training set)")
    by_time.set_ylabel("validation loss (nats / target token)")
    for ax in (by_time, by_epoch):
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.2g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%.2g"))
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title)
    fig.legend(*by_time.get_legend_handles_labels(), loc="lower center", ncol=1, frameon=False)
    fig.tight_layout(rect=(0.0, 0.05 + 0.045 * len(curves), 1.0, 1.0))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@report_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dirs", nargs="+", help="LSTM or T5 model directories")
    parser.add_argument("--names", nargs="+", help="legend labels, one per directory (default: dir names)")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--title", default="Validation loss", help="figure title")
    args = parser.parse_args(argv)
    names = args.names or [Path(d).name for d in args.model_dirs]
    if len(names) != len(args.model_dirs):
        raise ConfigError(f"--names gives {len(names)} labels for {len(args.model_dirs)} model directories")
    curves = [read_curve(d, n) for d, n in zip(args.model_dirs, names, strict=True)]
    print(plot(curves, args.out, args.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
