"""End-to-end routing evaluation (``assistant-eval-routing``): mixed traffic through the reply pipeline.

    python -m finetune.eval_routing --model-dir models/lstm-star \\
        --faq FAQ1.jsonl [--faq FAQ2.jsonl] --queries Q1.jsonl [--queries Q2.jsonl] \\
        --dialogs DIALOGS.jsonl --out-dir runs/routing [--index-dir DIR] [--pipeline JSON]

Traffic (``finetune/routing_metrics.py`` defines the kinds and every figure): the ``--queries`` files
(``faq_id`` set: in-scope FAQ queries; ``null``: out of scope) and ``--oos`` files (every line out
of scope, whatever its ``faq_id``), each query in a new conversation; and every customer turn of the
``--dialogs`` files that an agent turn follows, with the dialog's earlier turns as history and that
agent turn as the reference.

The FAQ index is either ``--index-dir`` (a saved, calibrated index; all queries are evaluation
traffic) or built here from the ``--faq`` files (hybrid, fusion tuned and calibrated on the
*calibration part* of the queries, split half/half by ``faq_id`` and sha256 of the text as in
``assistant-eval-retrieval``; only the other part is evaluation traffic; without out-of-scope
calibration queries the project's generic set is added, with a warning).

Two configurations run side by side, each message through :meth:`Pipeline.respond` for real:

* ``before``: routing as it was before the in-domain check (no check, no small-talk or
  person-request rules; ``--index-dir-before`` may name the index as it was built then);
* ``after``: the pipeline as configured now: the model directory's in-domain check
  (``<model dir>/scope``), small talk, requests for a person.

Curves: the figures of ``after`` against the in-domain threshold and against the FAQ threshold,
computed from signals recorded once per message (FAQ confidence, in-domain probability, the
generator's reply and confidence) by :func:`simulate`, which mirrors the pipeline's routing; the
report gives how many messages the real ``after`` run routed differently from the simulation at the
chosen thresholds (0 expected). The operating point is the calibrated thresholds (chosen on
calibration data, never on this traffic). Candidate in-domain signals (the check's features, its
calibrated probability, the generator's length-normalised likelihood, and with
``--signal-classifier`` / ``--signal-baseline`` an out-of-scope classifier and the retrieval
baseline's vote share) are compared by AUROC on dialog turns vs out-of-scope messages.

Writes ``routing.json`` and ``routing.md`` to ``--out-dir``. It trains no reply model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assistant.config import dataclass_from_dict
from assistant.data import FaqEntry, Query, read_dialogs, read_faq, read_queries
from assistant.errors import ConfigError, report_errors
from assistant.generators.base import GenerationRequest, Generator
from assistant.pipeline import Pipeline, PipelineConfig
from assistant.retrieval.embeddings import encode
from assistant.retrieval.index import FaqIndex, RetrieverConfig
from assistant.routing.generic import with_generic_out_of_scope
from assistant.routing.scope import ScopeCheck, load_scope_check
from assistant.routing.smalltalk import asks_for_human, classify_smalltalk
from finetune.build_index import tune_fusion
from finetune.cli import add_threads_argument, apply_threads
from finetune.eval_retrieval import split_queries
from finetune.evaluate import machine_info
from finetune.routing_metrics import (
    Item,
    Outcome,
    headline_table,
    per_source,
    route_of,
    route_table,
    traffic_metrics,
)
from finetune.routing_report import render_markdown
from finetune.routing_signals import Signals, candidate_signals, context_of

#: thresholds of the curves (plus the calibrated one).
GRID = tuple(round(x, 2) for x in np.linspace(0.0, 1.0, 21))


# ------------------------------------------------------------------------------------------ traffic
def load_traffic(
    queries: Sequence[Path],
    oos: Sequence[Path],
    dialogs: Sequence[Path],
    max_dialogs: int | None,
) -> tuple[list[Item], dict[Path, list[Query]]]:
    """Evaluation items from the files (see the module docstring) and the query files' queries.

    Raises:
        DataError: a file is missing or malformed.
    """
    items: list[Item] = []
    parsed = {path: read_queries(path) for path in queries}
    for path in oos:
        items += [Item("oos", q.text, (), source_name(path)) for q in read_queries(path)]
    for path in dialogs:
        for dialog in read_dialogs(path)[:max_dialogs]:
            turns = dialog.turns
            for i, turn in enumerate(turns[:-1]):
                if turn.role == "customer" and turns[i + 1].role == "agent":
                    items.append(
                        Item(
                            "dialog", turn.text, tuple(turns[:i]), source_name(path), None, turns[i + 1].text
                        )
                    )
    return items, parsed


def source_name(path: Path) -> str:
    """How a traffic file is named in the report: ``<folder>/<file>`` (query sets share file names)."""
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def query_items(queries: Sequence[Query], source: str) -> list[Item]:
    return [Item("faq" if q.faq_id else "oos", q.text, (), source, q.faq_id) for q in queries]


# ---------------------------------------------------------------------------------------- the index
def build_index(
    faq_paths: Sequence[Path],
    calibration: Sequence[Query],
    progress: bool,
    reuse: FaqIndex | None = None,
) -> tuple[FaqIndex, bool]:
    """A hybrid index of the FAQ files, fusion tuned and calibrated on ``calibration``.

    ``reuse``: an index whose embeddings of identical texts are reused instead of re-encoded.

    Returns:
        ``(index, used_generic)``: whether the generic out-of-scope set had to be added.

    Raises:
        DataError / RetrievalError: bad files, duplicate ids across files, or a failed calibration.
    """
    entries: list[FaqEntry] = [e for path in faq_paths for e in read_faq(path)]
    index = FaqIndex.build(entries, RetrieverConfig(method="hybrid"), reuse=reuse, progress=progress)
    queries, used_generic = with_generic_out_of_scope(calibration)
    index, _ = tune_fusion(index, queries)
    index.calibrate(queries)
    return index, used_generic


# -------------------------------------------------------------------------------------- the signals
def compute_signals(
    items: Sequence[Item],
    index: FaqIndex | None,
    generator: Generator | None,
    scope: ScopeCheck | None,
    config: PipelineConfig,
) -> Signals:
    """Every routing input of every item (the generator runs on all of them, batched)."""
    rules = Pipeline(index, generator, config).rules
    texts = [i.text.strip() for i in items]
    n = len(items)
    faq_conf = np.full(n, np.nan)
    faq_top: list[FaqEntry | None] = [None] * n
    if index is not None:
        hit_lists = index.search_batch(texts, k=config.top_k)
        faq_conf = index.confidences(hit_lists)
        faq_top = [h[0].entry for h in hit_lists]
    gen_text, gen_conf = [""] * n, np.full(n, np.nan)
    if generator is not None:
        generations = generator.generate(
            [GenerationRequest(context=context_of(i, config.max_history_turns)) for i in items]
        )
        gen_text = [g.text for g in generations]
        gen_conf = np.array([g.confidence for g in generations])
    features = probability = embeddings = None
    if scope is not None:
        embeddings = encode(texts, scope.config.dense_model, scope.config.batch_size)
        features = scope.features_from_embeddings(embeddings)
        probability = scope.scores_from_features(features)
    return Signals(
        human=[asks_for_human(t) for t in texts],
        smalltalk=[classify_smalltalk(t) for t in texts],
        earlier_failures=[rules.earlier_failures(i.history) for i in items],
        faq_confidence=faq_conf,
        faq_top=faq_top,
        scope_features=features,
        scope_probability=probability,
        generation_text=gen_text,
        generation_confidence=gen_conf,
        embeddings=embeddings,
    )


def simulate(
    signals: Signals,
    config: PipelineConfig,
    faq_threshold: float | None,
    scope_threshold: float | None,
    handoff_replies: frozenset[str] = frozenset(),
) -> list[Outcome]:
    """The pipeline's routing (``assistant/pipeline.py``) applied to recorded signals.

    ``faq_threshold`` / ``scope_threshold`` ``None``: no FAQ index / no in-domain check. Small talk
    and person requests follow ``config`` (``smalltalk="off"``, ``human_handoff=False`` disable them).
    """
    from assistant.pipeline import _normalize

    out = []
    for i in range(len(signals.smalltalk)):
        if config.human_handoff and signals.human[i]:
            out.append(Outcome("handoff:human_requested", config.fallback_text, None, True))
            continue
        kind = signals.smalltalk[i] if config.smalltalk == "replies" else None
        if kind is not None:
            text = {"greeting": config.greeting_reply, "thanks": config.thanks_reply}.get(
                kind, config.goodbye_reply
            )
            out.append(Outcome("smalltalk", text, None, False))
            continue
        top = signals.faq_top[i]
        if faq_threshold is not None and top is not None and signals.faq_confidence[i] >= faq_threshold:
            if top.meta.get("placeholder_answer"):
                out.append(Outcome("faq_route", config.fallback_text, top.id, True))
            else:
                out.append(Outcome("faq", top.answer, top.id, False))
            continue
        if scope_threshold is not None and signals.scope_probability[i] < scope_threshold:
            out.append(Outcome("handoff:out_of_scope", config.fallback_text, None, True))
            continue
        text, conf = signals.generation_text[i], signals.generation_confidence[i]
        if not np.isnan(conf) and conf >= config.generator_min_confidence and text.strip():
            handoff = _normalize(text) in handoff_replies
            out.append(Outcome("model_handoff" if handoff else "model", text, None, handoff))
            continue
        failures = signals.earlier_failures[i] + 1
        if failures >= config.handoff_after_failures:
            reason = "unsure" if failures == 1 else "repeated_failure"
            out.append(Outcome(f"handoff:{reason}", config.fallback_text, None, True))
        else:
            out.append(Outcome("clarify", config.clarify_text, None, False))
    return out


def run_pipeline(pipeline: Pipeline, items: Sequence[Item]) -> tuple[list[Outcome], float]:
    """Every item through ``pipeline.respond`` → ``(outcomes, mean milliseconds per message)``."""
    outcomes = []
    start = time.perf_counter()
    for item in items:
        reply = pipeline.respond(list(item.history), item.text)
        outcomes.append(
            Outcome(
                route_of(reply.source, reply.handoff, reply.reason), reply.text, reply.faq_id, reply.handoff
            )
        )
    return outcomes, 1000 * (time.perf_counter() - start) / max(len(items), 1)


# -------------------------------------------------------------------------------------- the report
def curves(
    items: Sequence[Item],
    signals: Signals,
    config: PipelineConfig,
    faq_threshold: float | None,
    scope_threshold: float | None,
    handoff_replies: frozenset[str],
    smalltalk_ids: Sequence[str],
    extra_scope: Sequence[float] = (),
) -> dict[str, list[dict[str, Any]]]:
    """Headline figures against each threshold, the other one held at its operating value.

    ``extra_scope``: more in-domain thresholds to include (e.g. the balanced rule's, before its cap).
    """
    out: dict[str, list[dict[str, Any]]] = {}
    if scope_threshold is not None:
        out["scope_threshold"] = [
            {
                "threshold": t,
                **traffic_metrics(
                    items, simulate(signals, config, faq_threshold, t, handoff_replies), smalltalk_ids
                ),
            }
            for t in sorted({*GRID, round(scope_threshold, 4), *(round(x, 4) for x in extra_scope)})
        ]
    if faq_threshold is not None:
        out["faq_threshold"] = [
            {
                "threshold": t,
                **traffic_metrics(
                    items, simulate(signals, config, t, scope_threshold, handoff_replies), smalltalk_ids
                ),
            }
            for t in sorted({*GRID, round(faq_threshold, 4)})
        ]
    return out


# ------------------------------------------------------------------------------------------ the CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assistant-eval-routing",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model-dir", type=Path, default=None, help="reply model directory (any kind)")
    parser.add_argument(
        "--generator-option",
        action="append",
        default=[],
        help="KEY=VALUE for the model's loader (JSON value)",
    )
    parser.add_argument("--index-dir", type=Path, default=None, help="a saved, calibrated FAQ index")
    parser.add_argument(
        "--index-dir-before",
        type=Path,
        default=None,
        help="the index of the 'before' run (default: the same)",
    )
    parser.add_argument("--faq", type=Path, action="append", default=[], help="FAQ JSONL to index here")
    parser.add_argument(
        "--save-index", type=Path, default=None, help="with --faq: also save the index built here"
    )
    parser.add_argument(
        "--reuse-embeddings",
        type=Path,
        default=None,
        help="with --faq: a saved index whose embeddings of identical texts are reused (no re-encoding)",
    )
    parser.add_argument(
        "--queries", type=Path, action="append", default=[], help="queries JSONL (faq_id or null)"
    )
    parser.add_argument(
        "--oos", type=Path, action="append", default=[], help="messages JSONL, all out of scope"
    )
    parser.add_argument("--dialogs", type=Path, action="append", default=[], help="dialogs JSONL")
    parser.add_argument("--max-dialogs", type=int, default=None, help="at most this many dialogs per file")
    parser.add_argument(
        "--calibration-fraction", type=float, default=0.5, help="with --faq: share of queries for calibration"
    )
    parser.add_argument("--pipeline", default="", help="PipelineConfig fields as JSON (both runs)")
    parser.add_argument(
        "--smalltalk-faq-ids",
        nargs="*",
        default=["greeting", "thank_you", "goodbye"],
        help="FAQ entries that are small talk (a small-talk reply to their queries counts as correct)",
    )
    parser.add_argument(
        "--signal-classifier", action="store_true", help="also measure an out-of-scope classifier candidate"
    )
    parser.add_argument(
        "--signal-baseline", type=Path, default=None, help="a retrieval-baseline dir: measure its vote share"
    )
    parser.add_argument("--out-dir", type=Path, required=True, help="writes routing.json and routing.md")
    add_threads_argument(parser, "the models")
    return parser


def _generator_options(raw: Sequence[str]) -> dict[str, Any]:
    options = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ConfigError(f"--generator-option {item!r}: expected KEY=VALUE, e.g. beam_size=4")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation described by parsed ``args``; returns the report (also written to disk)."""
    from assistant.generators.loader import load_generator

    if bool(args.faq) == bool(args.index_dir):
        raise ConfigError(
            "give either --faq FILE(s) (index built here) or --index-dir DIR, not both or neither"
        )
    config = dataclass_from_dict(
        PipelineConfig, json.loads(args.pipeline) if args.pipeline else {}, "--pipeline"
    )
    if config.ground_with_generator or config.smalltalk == "model":
        raise ConfigError(
            "ground_with_generator and smalltalk 'model' are not simulated by this evaluation; leave them off"
        )
    items, parsed = load_traffic(args.queries, args.oos, args.dialogs, args.max_dialogs)
    used_generic = False
    if args.faq:
        calibration: list[Query] = []
        for path, queries in parsed.items():
            calib, evaluation = split_queries(queries, args.calibration_fraction)
            calibration += calib
            items += query_items(evaluation, source_name(path))
        reuse = FaqIndex.load(args.reuse_embeddings) if args.reuse_embeddings else None
        index, used_generic = build_index(args.faq, calibration, progress=True, reuse=reuse)
        if args.save_index:
            index.save(args.save_index)
        index_before = index
        description = (
            f"hybrid over {', '.join(f'`{p}`' for p in args.faq)}, calibrated on {len(calibration)} queries "
            f"(the calibration half of each query file{'; + the generic out-of-scope set' if used_generic else ''})"
        )
    else:
        index = FaqIndex.load(args.index_dir)
        index_before = FaqIndex.load(args.index_dir_before) if args.index_dir_before else index
        for path, queries in parsed.items():
            items += query_items(queries, source_name(path))
        description = f"`{args.index_dir}` (as saved)" + (
            f", before: `{args.index_dir_before}`" if args.index_dir_before else ""
        )
    if not items:
        raise ConfigError("no traffic: give --queries, --oos and/or --dialogs")
    generator = (
        load_generator(args.model_dir, **_generator_options(args.generator_option))
        if args.model_dir
        else None
    )
    scope = load_scope_check(args.model_dir) if args.model_dir else None
    baseline = load_generator(args.signal_baseline) if args.signal_baseline else None
    print(f"{len(items)} messages; computing signals ...", file=sys.stderr, flush=True)
    signals = compute_signals(items, index, generator, scope, config)
    smalltalk_ids = tuple(args.smalltalk_faq_ids)
    before_config = dataclasses.replace(config, smalltalk="off", human_handoff=False)
    runs = {
        "before": Pipeline(index_before, generator, before_config),
        "after": Pipeline(index, generator, config, scope=scope),
    }
    configurations = {}
    real_after: list[Outcome] = []
    for name, pipeline in runs.items():
        print(f"running {name} ...", file=sys.stderr, flush=True)
        outcomes, ms = run_pipeline(pipeline, items)
        if name == "after":
            real_after = outcomes
        taken = Counter(
            o.faq_id for i, o in zip(items, outcomes, strict=True) if i.kind == "dialog" and o.faq_id
        )
        configurations[name] = {
            "dialog_turns_taken_by_faq_entries": dict(taken.most_common(15)),
            "overall": traffic_metrics(items, outcomes, smalltalk_ids),
            "per_source": per_source(items, outcomes, smalltalk_ids),
            "routes": route_table(items, outcomes),
            "ms_per_message": ms,
            "settings": {
                "pipeline": dataclasses.asdict(pipeline.config),
                "faq_threshold": None if pipeline.index is None else pipeline.index.threshold,
                "scope_threshold": pipeline.scope_threshold,
            },
        }
    after = runs["after"]
    faq_threshold = None if index is None else index.threshold
    handoff_replies = frozenset(after._handoff_replies)
    simulated = simulate(signals, config, faq_threshold, after.scope_threshold, handoff_replies)
    mismatches = sum(s.route != r.route for s, r in zip(simulated, real_after, strict=True))
    traffic: dict[str, int] = {}
    for item in items:
        traffic[item.source] = traffic.get(item.source, 0) + 1
    report = {
        "model_dir": str(args.model_dir) if args.model_dir else None,
        "index": {
            "description": description,
            "calibration": index.calibration["report"] if index.calibration else None,
            "used_generic_out_of_scope": used_generic,
        },
        "scope": None if scope is None else scope.calibration["report"],
        "traffic": traffic,
        "configurations": configurations,
        "operating_point": {
            "faq_threshold": faq_threshold,
            "scope_threshold": after.scope_threshold,
            "note": "chosen on calibration data by each component's rule, not on this traffic",
        },
        "simulation_mismatches": mismatches,
        "curves": curves(
            items,
            signals,
            config,
            faq_threshold,
            after.scope_threshold,
            handoff_replies,
            smalltalk_ids,
            extra_scope=[scope.calibration["report"]["balanced_threshold"]]
            if scope is not None and "balanced_threshold" in scope.calibration["report"]
            else [],
        ),
        "signals": candidate_signals(
            items, signals, scope, args.signal_classifier, baseline, config.max_history_turns
        ),
        "machine": machine_info(),
        "argv": sys.argv[1:],
    }
    return report


@report_errors
def main(argv: list[str] | None = None) -> int:
    """Entry point; writes routing.json and routing.md, prints the headline table."""
    args = build_parser().parse_args(argv)
    apply_threads(args.threads)
    report = evaluate(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "routing.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    markdown = render_markdown(report)
    (args.out_dir / "routing.md").write_text(markdown + "\n", encoding="utf-8")
    print(headline_table({n: c["overall"] for n, c in report["configurations"].items()}))
    if report["index"]["used_generic_out_of_scope"]:
        print(
            "warning: the calibration queries had no out-of-scope example; the generic set was added",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
