"""Figures of the end-to-end routing evaluation: what happened to each message, per route and overall.

Each message of the evaluation traffic is one of three kinds:

* ``faq``: an FAQ query with its entry (``faq_id`` set): it should get that entry's answer (or, for an
  intent-style entry with a placeholder answer, the handoff routed by that entry; or, for an entry
  named in ``smalltalk_faq_ids``, a small-talk reply);
* ``oos``: an out-of-scope message (``faq_id: null``): it should be handed off;
* ``dialog``: a customer turn of a support dialog, with the turns before it as history and the
  agent's reference reply: the reply model's domain, it should be answered.

Each reply is classified into a *route* (:func:`route_of`): ``faq``, ``faq_route`` (a placeholder
entry's match, sent as a handoff with ``faq_id``), ``model``, ``model_handoff`` (a generated handover
macro), ``smalltalk``, ``clarify`` (a fallback without handoff), and ``handoff:<reason>``
(``out_of_scope``, ``unsure``, ``human_requested``, ``repeated_failure``).

Figures (:func:`traffic_metrics`):

* ``faq_answered_correctly``: share of ``faq`` queries answered as they should be (above);
* ``oos_handoff_recall``: share of ``oos`` messages whose reply hands off; ``oos_handoff_precision``:
  share of out-of-scope messages among all handed-off messages except ``faq_route`` ones (an
  intent's route is an answer, not a "don't know");
* ``oos_confident_wrong``: share of ``oos`` messages answered by an FAQ entry or the reply model
  without handoff (the failure this evaluation exists for); ``oos_smalltalk`` and ``oos_clarify``
  are the other non-handoffs;
* ``dialog_answer_rate``: share of ``dialog`` turns answered (FAQ, model or small talk, no handoff);
  ``dialog_token_f1``: mean token F1 of the reply against the reference over all dialog turns, a
  handoff or clarification counting 0 (ParlAI's normalisation, ``finetune/metrics.py``).

This module computes numbers from classified replies; it runs nothing (``finetune/eval_routing.py``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from finetune.metrics import token_f1

KINDS = ("faq", "oos", "dialog")


@dataclass(frozen=True)
class Item:
    """One evaluation message.

    Attributes:
        kind: ``faq``, ``oos`` or ``dialog`` (module docstring).
        text: the customer's message; history: the turns before it (``Turn`` objects, oldest first).
        gold_faq_id: the entry that answers it (``faq`` only).
        reference: the agent's reply in the dialog (``dialog`` only).
        source: the file it came from.
    """

    kind: str
    text: str
    history: tuple[Any, ...]
    source: str
    gold_faq_id: str | None = None
    reference: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What the pipeline (or the simulation of it) did with one message."""

    route: str
    text: str
    faq_id: str | None
    handoff: bool


def route_of(source: str, handoff: bool, reason: str | None) -> str:
    """The route label of a reply (see the module docstring)."""
    if source == "faq":
        return "faq"
    if source == "smalltalk":
        return "smalltalk"
    if source == "model":
        return "model_handoff" if handoff else "model"
    if reason == "faq_route":
        return "faq_route"
    return f"handoff:{reason or 'unsure'}" if handoff else "clarify"


def answered(outcome: Outcome) -> bool:
    """The customer got an answer: FAQ, model or small talk, without handoff."""
    return outcome.route in ("faq", "model", "smalltalk")


def faq_correct(item: Item, outcome: Outcome, smalltalk_faq_ids: Sequence[str]) -> bool:
    """An in-scope FAQ query got its entry (answer or route), or small talk for a small-talk entry."""
    if outcome.route in ("faq", "faq_route") and outcome.faq_id == item.gold_faq_id:
        return True
    return outcome.route == "smalltalk" and item.gold_faq_id in smalltalk_faq_ids


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def traffic_metrics(
    items: Sequence[Item], outcomes: Sequence[Outcome], smalltalk_faq_ids: Sequence[str] = ()
) -> dict[str, Any]:
    """The figures of the module docstring over ``items`` (one outcome per item)."""
    if len(items) != len(outcomes):
        raise ValueError(f"{len(items)} items but {len(outcomes)} outcomes")
    by_kind: dict[str, list[tuple[Item, Outcome]]] = {k: [] for k in KINDS}
    for item, outcome in zip(items, outcomes, strict=True):
        by_kind[item.kind].append((item, outcome))
    faq, oos, dialog = by_kind["faq"], by_kind["oos"], by_kind["dialog"]
    oos_handoffs = sum(o.handoff for _, o in oos)
    handoffs = sum(o.handoff and o.route != "faq_route" for _, o in zip(items, outcomes, strict=True))
    oos_handoffs_counted = sum(o.handoff and o.route != "faq_route" for _, o in oos)
    return {
        "messages": {k: len(v) for k, v in by_kind.items()},
        "faq_answered_correctly": _rate(sum(faq_correct(i, o, smalltalk_faq_ids) for i, o in faq), len(faq)),
        "oos_handoff_recall": _rate(oos_handoffs, len(oos)),
        "oos_handoff_precision": _rate(oos_handoffs_counted, handoffs),
        "oos_confident_wrong": _rate(sum(o.route in ("faq", "model") for _, o in oos), len(oos)),
        "oos_smalltalk": _rate(sum(o.route == "smalltalk" for _, o in oos), len(oos)),
        "oos_clarify": _rate(sum(o.route == "clarify" for _, o in oos), len(oos)),
        "dialog_answer_rate": _rate(sum(answered(o) for _, o in dialog), len(dialog)),
        "dialog_token_f1": _rate(
            sum(token_f1(o.text, i.reference or "") if answered(o) else 0.0 for i, o in dialog), len(dialog)
        )
        if dialog
        else None,
    }


def route_table(items: Sequence[Item], outcomes: Sequence[Outcome]) -> dict[str, dict[str, int]]:
    """route → {kind → count} (how each kind of traffic was routed)."""
    table: dict[str, Counter] = {}
    for item, outcome in zip(items, outcomes, strict=True):
        table.setdefault(outcome.route, Counter())[item.kind] += 1
    return {route: {k: counts.get(k, 0) for k in KINDS} for route, counts in sorted(table.items())}


def per_source(
    items: Sequence[Item], outcomes: Sequence[Outcome], smalltalk_faq_ids: Sequence[str] = ()
) -> dict[str, dict[str, Any]]:
    """:func:`traffic_metrics` of each traffic file separately."""
    sources = sorted({i.source for i in items})
    out = {}
    for source in sources:
        pairs = [(i, o) for i, o in zip(items, outcomes, strict=True) if i.source == source]
        out[source] = traffic_metrics([i for i, _ in pairs], [o for _, o in pairs], smalltalk_faq_ids)
    return out


def fmt(value: float | None, percent: bool = True) -> str:
    """A rate as ``12.3 %`` (or ``0.123``), ``–`` when undefined."""
    if value is None:
        return "–"
    return f"{100 * value:.1f} %" if percent else f"{value:.3f}"


HEADLINE = (
    ("faq_answered_correctly", "FAQ queries answered correctly"),
    ("oos_handoff_recall", "OOS handoff recall"),
    ("oos_handoff_precision", "OOS handoff precision"),
    ("oos_confident_wrong", "OOS confident wrong answers"),
    ("dialog_answer_rate", "dialog turns answered"),
    ("dialog_token_f1", "dialog token F1 (handoff = 0)"),
)


def headline_table(columns: dict[str, dict[str, Any]]) -> str:
    """A Markdown table: one row per headline figure, one column per configuration."""
    names = list(columns)
    lines = ["| figure | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key, label in HEADLINE:
        percent = key != "dialog_token_f1"
        lines.append(f"| {label} | " + " | ".join(fmt(columns[n].get(key), percent) for n in names) + " |")
    return "\n".join(lines)
