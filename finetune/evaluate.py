"""Command line: evaluate one or more reply models on a dialogs file, side by side, and write a report.

    python -m finetune.evaluate models/baseline-star models/lstm-star \\
        --dialogs ../shared/data/dialogs/star/test.jsonl --names baseline lstm --out-dir runs/eval

Every agent turn of the dialogs is one example (context = all earlier turns; each model truncates the
context to what it was trained on). Options narrow the set (``--domain``, ``--limit``). Each model,
whatever its kind (LSTM, T5+LoRA, retrieval baseline; loaded with ``assistant.generators.loader.load_generator``),
generates a reply per example in batches, and is scored with ``finetune/metrics.py``: corpus BLEU
(sacrebleu, 13a), ROUGE-L F, token F1 (ParlAI), perplexity where the model defines a likelihood,
average reply length in words, and replies per second (wall clock of generation only).

Outputs: a Markdown table on stdout; with ``--out-dir``: ``report.json`` (per model: metrics, BLEU
signature, model dir, manifest kind, options; plus data, filters, date and machine), ``report.md``,
and ``samples.jsonl`` (the first few examples with every model's reply). This module does not train or
build models, and it does not evaluate FAQ retrieval (``finetune/eval_retrieval.py`` does).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from assistant.artifacts import file_sha256
from assistant.config import add_dataclass_arguments, dataclass_from_args, require
from assistant.data import Dialog, read_dialogs
from assistant.errors import ConfigError, DataError, ModelError, report_errors
from assistant.generators.base import GenerationRequest, Generator, read_manifest
from assistant.generators.loader import load_generator
from assistant.model_input import Example, build_examples, format_context
from finetune import metrics
from finetune.cli import add_threads_argument, apply_threads

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
SAMPLES_FILE = "samples.jsonl"


@dataclass
class EvalConfig:
    """Which examples to evaluate on and how to run the models."""

    domain: str | None = field(
        default=None,
        metadata={"help": "keep only dialogs whose meta.domains contains this domain (e.g. bank)"},
    )
    limit: int | None = field(
        default=None,
        metadata={
            "help": "evaluate only the first N examples (file order, after --domain); all when not given"
        },
    )
    batch_size: int = field(default=64, metadata={"help": "requests per generate() call"})
    max_context_turns: int = field(
        default=1000,
        metadata={
            "help": "history turns handed to each model (models truncate further to what they were trained on)"
        },
    )
    samples: int = field(
        default=20,
        metadata={
            "help": "how many examples (the first ones) to write with every model's reply to samples.jsonl"
        },
    )

    def __post_init__(self) -> None:
        require(self.domain is None or bool(self.domain.strip()), "domain must be a non-empty string")
        require(self.limit is None or self.limit >= 1, f"limit must be >= 1, got {self.limit}")
        require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        require(self.max_context_turns >= 1, f"max_context_turns must be >= 1, got {self.max_context_turns}")
        require(self.samples >= 0, f"samples must be >= 0, got {self.samples}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (flags of :class:`EvalConfig` included)."""
    parser = argparse.ArgumentParser(
        prog="assistant-eval",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate reply models of any kind (lstm, t5, retrieval-baseline) on every agent turn\n"
        "of a dialogs file. Reports corpus BLEU (sacrebleu, 13a), ROUGE-L F, token F1 (ParlAI),\n"
        "perplexity (models with a likelihood), average reply length (words) and replies/s\n"
        "(generation wall clock), one row per model in one Markdown table.",
        epilog="example:\n  python -m finetune.evaluate models/baseline-star models/lstm-star \\\n"
        "      --dialogs ../shared/data/dialogs/star/test.jsonl --names baseline lstm \\\n"
        "      --generator-option lstm:beam_size=5 --out-dir runs/eval-star",
    )
    parser.add_argument(
        "models",
        nargs="+",
        type=Path,
        metavar="MODEL_DIR",
        help="model directories (each with an assistant.json manifest)",
    )
    parser.add_argument("--dialogs", type=Path, required=True, help="dialogs JSONL file to evaluate on")
    parser.add_argument(
        "--names",
        nargs="+",
        metavar="NAME",
        help="labels for the models, in order (default: each directory's name)",
    )
    parser.add_argument(
        "--generator-option",
        action="append",
        default=[],
        metavar="[NAME:]KEY=VALUE",
        help="option passed to the model loader, e.g. beam_size=5 (all models) or "
        "lstm:beam_size=5 (only the model labelled lstm); VALUE is read as JSON "
        "when it parses (5, 0.5, true, null), else as a string; repeatable",
    )
    parser.add_argument(
        "--out-dir", type=Path, help=f"write {REPORT_JSON}, {REPORT_MD} and {SAMPLES_FILE} here (created)"
    )
    add_threads_argument(parser, "the neural models")
    add_dataclass_arguments(parser, EvalConfig)
    return parser


def parse_generator_options(raw: Sequence[str], labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Turn ``[NAME:]KEY=VALUE`` strings into loader options per model label.

    Raises:
        ConfigError: a malformed option, or a NAME that is not one of ``labels``.
    """
    options: dict[str, dict[str, Any]] = {label: {} for label in labels}
    for item in raw:
        target, sep, value_text = item.partition("=")
        if not sep or not target:
            raise ConfigError(f"--generator-option {item!r}: expected [NAME:]KEY=VALUE, e.g. beam_size=5")
        label, colon, key = target.rpartition(":")
        key = key.strip()
        if not key.isidentifier():
            raise ConfigError(f"--generator-option {item!r}: KEY {key!r} is not a valid option name")
        if colon and label not in options:
            raise ConfigError(
                f"--generator-option {item!r}: no model labelled {label!r}; labels are {list(labels)}"
            )
        try:
            value: Any = json.loads(value_text)
        except json.JSONDecodeError:
            value = value_text
        for name in [label] if colon else labels:
            options[name][key] = value
    return options


def _domains(dialog: Dialog, path: Path) -> list[Any]:
    """``meta.domains`` of a dialog (absent or null: none)."""
    value = dialog.meta.get("domains")
    if value is None:
        return []
    if not isinstance(value, list):
        raise DataError(f"{path}: dialog {dialog.id!r}: meta.domains must be a list of names, got {value!r}")
    return value


def select_examples(dialogs_path: Path, config: EvalConfig) -> list[Example]:
    """Read the dialogs, apply ``--domain``, build one example per agent turn, apply ``--limit``.

    Raises:
        DataError: a malformed dialogs file, or no example left after the filters.
    """
    dialogs = read_dialogs(dialogs_path)
    if config.domain is not None:
        domains = {dialog.id: _domains(dialog, dialogs_path) for dialog in dialogs}
        present = sorted({str(d) for names in domains.values() for d in names if d})
        dialogs = [d for d in dialogs if config.domain in domains[d.id]]
        if not dialogs:
            raise DataError(
                f"{dialogs_path}: no dialog has domain {config.domain!r} in meta.domains; "
                f"domains present: {present}"
            )
    examples = build_examples(dialogs, config.max_context_turns)
    if not examples:
        raise DataError(f"{dialogs_path}: the selected dialogs hold no agent turn to evaluate")
    return examples[: config.limit] if config.limit is not None else examples


def run_model(
    generator: Generator, examples: Sequence[Example], batch_size: int, label: str
) -> tuple[list[str], list[float], float, tuple[float, int] | None]:
    """Generate a reply per example (timed), and score the references if the model has a likelihood.

    Returns:
        ``(replies, confidences, generation_seconds, (total_nll, n_tokens) or None)``.

    Raises:
        ModelError: the generator returned a wrong number of replies, or failed.
    """
    requests = [GenerationRequest(context=e.context) for e in examples]
    replies: list[str] = []
    confidences: list[float] = []
    seconds = 0.0
    with tqdm(total=len(requests), desc=f"{label}: generate", unit="reply", file=sys.stderr) as bar:
        for start in range(0, len(requests), batch_size):
            batch = requests[start : start + batch_size]
            t0 = time.perf_counter()
            out = generator.generate(batch)
            seconds += time.perf_counter() - t0
            if len(out) != len(batch):
                raise ModelError(f"{label}: generate() returned {len(out)} replies for {len(batch)} requests")
            replies.extend(g.text for g in out)
            confidences.extend(g.confidence for g in out)
            bar.update(len(batch))
    likelihood = None
    if generator.supports_perplexity:
        total_nll, n_tokens = 0.0, 0
        with tqdm(total=len(requests), desc=f"{label}: score", unit="reply", file=sys.stderr) as bar:
            for start in range(0, len(requests), batch_size):
                nll, n = generator.score(
                    requests[start : start + batch_size],
                    [e.target for e in examples[start : start + batch_size]],
                )
                total_nll += nll
                n_tokens += n
                bar.update(min(batch_size, len(requests) - start))
        likelihood = (total_nll, n_tokens)
    return replies, confidences, seconds, likelihood


def score_replies(
    replies: Sequence[str], references: Sequence[str], seconds: float, likelihood: tuple[float, int] | None
) -> dict[str, Any]:
    """The metrics of one model (see the module docstring); BLEU on 0-100, ROUGE-L and F1 in [0, 1]."""
    bleu = metrics.corpus_bleu(replies, references)
    return {
        "bleu": bleu.score,
        "bleu_signature": bleu.signature,
        "rouge_l": metrics.mean_rouge_l(replies, references),
        "token_f1": metrics.mean_token_f1(replies, references),
        "perplexity": metrics.perplexity(*likelihood) if likelihood is not None else None,
        "avg_reply_words": metrics.mean_length_words(replies),
        "replies_per_second": len(replies) / seconds if seconds > 0 else None,
        "generation_seconds": seconds,
    }


def machine_info() -> dict[str, Any]:
    """Where the evaluation ran: OS, CPU, core count, Python, and torch's version and threads if loaded."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        info["cpu"] = platform.processor() or None
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    return info


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_markdown(report: dict[str, Any]) -> str:
    """One table, one row per model, plus the data, filters, BLEU signature and machine."""
    filters = report["filters"]
    lines = [
        f"Evaluation on `{report['dialogs']}`: {report['n_examples']} agent turns"
        + (f", domain `{filters['domain']}`" if filters["domain"] else "")
        + (f", first {filters['limit']}" if filters["limit"] else "")
        + f" (references average {report['reference_avg_words']:.1f} words).",
        "",
        "| model | kind | BLEU | ROUGE-L F | token F1 | perplexity | avg words | replies/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in report["models"]:
        s = m["metrics"]
        lines.append(
            f"| {m['name']} | {m['kind']} | {s['bleu']:.2f} | {s['rouge_l']:.3f} | {s['token_f1']:.3f} "
            f"| {_fmt(s['perplexity'], 2)} | {s['avg_reply_words']:.1f} "
            f"| {_fmt(s['replies_per_second'], 1)} |"
        )
    signatures = sorted({m["metrics"]["bleu_signature"] for m in report["models"]})
    machine = report["machine"]
    lines += [
        "",
        "BLEU: corpus BLEU (0-100), sacrebleu `" + "`, `".join(signatures) + "`. ROUGE-L F (rouge-score, "
        "stemmed) and token F1 (ParlAI normalisation) are averages over replies, in [0, 1]. replies/s: "
        "wall clock of generation only.",
        f"Date {report['date']}; machine: {machine.get('cpu') or machine['machine']}, "
        f"{machine['cpu_count']} cores, Python {machine['python']}"
        + (f", torch {machine['torch']} ({machine['torch_threads']} threads)" if "torch" in machine else "")
        + ".",
    ]
    return "\n".join(lines) + "\n"


def _labels(models: Sequence[Path], names: Sequence[str] | None) -> list[str]:
    if names is not None and len(names) != len(models):
        raise ConfigError(f"--names gives {len(names)} names for {len(models)} models; give one per model")
    labels = list(names) if names is not None else [Path(m).resolve().name for m in models]
    duplicates = sorted({x for x in labels if labels.count(x) > 1})
    if duplicates:
        raise ConfigError(f"model labels {duplicates} are used twice; give distinct --names")
    return labels


def evaluate(
    models: Sequence[Path],
    dialogs: Path,
    config: EvalConfig,
    names: Sequence[str] | None = None,
    generator_options: Sequence[str] = (),
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Evaluate every model on the selected examples.

    Returns:
        ``(report, samples)``: the JSON report and the first ``config.samples`` examples with replies.

    Raises:
        ConfigError: bad names or options, or a loader that rejects an option.
        DataError: a bad dialogs file or an empty selection.
        CheckpointError / ModelError: a model directory cannot be loaded or run.
    """
    labels = _labels(models, names)
    options = parse_generator_options(generator_options, labels)
    manifests = [read_manifest(m) for m in models]  # fail on a bad directory before any work
    examples = select_examples(dialogs, config)
    references = [e.target for e in examples]
    samples = [
        {
            "dialog_id": e.dialog_id,
            "turn_index": e.turn_index,
            "context": format_context(e.context),
            "reference": e.target,
            "replies": {},
        }
        for e in examples[: config.samples]
    ]
    results = []
    for model_dir, label, manifest in zip(models, labels, manifests):
        generator = load_generator(model_dir, **options[label])
        replies, confidences, seconds, likelihood = run_model(generator, examples, config.batch_size, label)
        for sample, text, confidence in zip(samples, replies, confidences):
            sample["replies"][label] = {"text": text, "confidence": confidence}
        results.append(
            {
                "name": label,
                "model_dir": str(Path(model_dir).resolve()),
                "kind": manifest["kind"],
                "generator": generator.name,
                "options": options[label],
                "metrics": score_replies(replies, references, seconds, likelihood),
                "mean_confidence": sum(confidences) / len(confidences),
            }
        )
    report = {
        "dialogs": str(dialogs),
        "dialogs_sha256": file_sha256(dialogs),
        "filters": {"domain": config.domain, "limit": config.limit},
        "config": asdict(config),
        "n_examples": len(examples),
        "reference_avg_words": metrics.mean_length_words(references),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "models": results,
    }
    return report, samples


def write_outputs(
    out_dir: Path, report: dict[str, Any], markdown: str, samples: list[dict[str, Any]]
) -> None:
    """Write ``report.json``, ``report.md`` and ``samples.jsonl`` (if any samples) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REPORT_JSON).write_text(
        json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (out_dir / REPORT_MD).write_text(markdown, encoding="utf-8")
    if samples:
        with (out_dir / SAMPLES_FILE).open("w", encoding="utf-8") as fh:
            for sample in samples:
                fh.write(json.dumps(sample, ensure_ascii=False) + "\n")


@report_errors
def main(argv: list[str] | None = None) -> int:
    """Run the evaluation; print the Markdown table. Returns 0, or 2 on a bad input (message on stderr)."""
    args = build_parser().parse_args(argv)
    config = dataclass_from_args(EvalConfig, args)
    apply_threads(args.threads)
    report, samples = evaluate(args.models, args.dialogs, config, args.names, args.generator_option)
    markdown = render_markdown(report)
    if args.out_dir is not None:
        write_outputs(args.out_dir, report, markdown, samples)
    print(markdown, end="")
    if args.out_dir is not None:
        print(f"wrote {args.out_dir / REPORT_JSON} and {args.out_dir / REPORT_MD}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
