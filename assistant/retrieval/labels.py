"""Knowledge-labelled dialogs (DSTC9–11 Track "knowledge-grounded" style): read, validate, split.

One JSON object a line, the canonical dialog format (``assistant/data.py``) plus labels::

    {"id": "d-17",
     "turns": [{"role": "customer", "text": "I booked the Hobsons House."},
               {"role": "agent", "text": "Lovely. Anything else?"},
               {"role": "customer", "text": "Do they have free parking?"},
               {"role": "agent", "text": "Yes, parking is free.", "knowledge": ["hotel-20-3"]}],
     "meta": {"target": true}}

Each line is one **instance**: the dialog up to the customer turn to be answered, then optionally
the reference agent reply. ``meta.target`` (required) says whether that customer turn needs
knowledge (DSTC's "knowledge-seeking turn"). The reference reply may carry ``knowledge``: the FAQ
ids it used (empty or absent when it used none, e.g. only review sentences, DSTC11's
``review_knowledge``, which is kept but not checked). ``knowledge`` only on a final agent turn, and
non-empty only when ``target`` is true. This is the format of ``../shared/data/grounded/dstc11-val``.

Every malformed line raises :class:`~assistant.errors.DataError` naming ``file:line`` and the field.
This module neither searches nor scores (``assistant/retrieval/conversational.py``,
``finetune/eval_retrieval.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.data import Dialog, Turn, dialog_to_json, iter_jsonl, parse_dialog
from assistant.errors import ConfigError, DataError


@dataclass(frozen=True)
class KnowledgeTurn:
    """One labelled customer turn of a dialog.

    Attributes:
        id: the instance's id.
        history: the turns before the customer's message, oldest first.
        text: the customer's message.
        target: the message needs knowledge (DSTC "knowledge-seeking turn").
        knowledge: FAQ ids the reference reply used (empty: none from the FAQ).
        reply: the reference agent reply, or ``None``.
        group: the conversation it comes from (instances that are prefixes of one dialog share it):
            its first turn's text. Splits keep a group together.
        where: ``"file:line"`` it was read from (``""`` when built in code).
    """

    id: str
    history: tuple[Turn, ...]
    text: str
    target: bool
    knowledge: tuple[str, ...] = ()
    reply: str | None = None
    group: str = ""
    where: str = ""

    @property
    def turns(self) -> tuple[Turn, ...]:
        """``history`` plus the customer's message."""
        return (*self.history, Turn("customer", self.text))


def parse_knowledge_turn(obj: dict[str, Any], where: str, faq_ids: set[str] | None = None) -> KnowledgeTurn:
    """Validate one labelled instance (see the module docstring).

    Args:
        obj: the decoded JSON object.
        where: ``"file:line"`` for messages.
        faq_ids: when given, every ``knowledge`` id must be one of them.

    Raises:
        DataError: naming ``where`` and the field: a dialog field (``turns[i].role`` …), ``meta.target``
            missing or not a boolean, ``knowledge`` not a list of ids, on a wrong turn, with
            ``target`` false, or naming an id not in ``faq_ids``; no customer turn to answer.
    """
    dialog = parse_dialog(obj, where)
    raw_turns = obj["turns"]
    meta = dialog.meta
    if "target" not in meta:
        raise DataError(
            f"{where}: field 'meta.target' is missing (true when the last customer turn needs knowledge)"
        )
    target = meta["target"]
    if not isinstance(target, bool):
        raise DataError(f"{where}: field 'meta.target' must be true or false, got {target!r}")
    turns = dialog.turns
    for i, t in enumerate(raw_turns[:-1]):
        if "knowledge" in t:
            raise DataError(
                f"{where}: field 'turns[{i}].knowledge' is only allowed on the final agent turn "
                f"(the reference reply), not on turn {i} of {len(raw_turns)}"
            )
    knowledge: tuple[str, ...] = ()
    reply = None
    if turns[-1].role == "agent":
        last = raw_turns[-1]
        ids = last.get("knowledge", [])
        field = f"turns[{len(raw_turns) - 1}].knowledge"
        if not isinstance(ids, list) or not all(isinstance(k, str) and k for k in ids):
            raise DataError(f"{where}: field '{field}' must be a list of FAQ ids (strings), got {ids!r}")
        if ids and not target:
            raise DataError(
                f"{where}: field '{field}' lists FAQ ids but 'meta.target' is false; a turn that used "
                "knowledge needed it (set meta.target true or drop the ids)"
            )
        if faq_ids is not None:
            for j, k in enumerate(ids):
                if k not in faq_ids:
                    raise DataError(
                        f"{where}: field '{field}[{j}]' is {k!r}, which is not an id of the FAQ file"
                    )
        knowledge = tuple(dict.fromkeys(ids))
        reply = turns[-1].text
        turns = turns[:-1]
    if not turns or turns[-1].role != "customer":
        raise DataError(
            f"{where}: field 'turns' must end with the customer turn to answer, optionally followed "
            "by the reference agent reply"
        )
    return KnowledgeTurn(
        id=dialog.id,
        history=tuple(turns[:-1]),
        text=turns[-1].text,
        target=target,
        knowledge=knowledge,
        reply=reply,
        group=turns[0].text,
        where=where,
    )


def read_knowledge_turns(path: str | Path, faq_ids: Sequence[str] | None = None) -> list[KnowledgeTurn]:
    """Read and validate a knowledge-labelled dialogs JSONL file.

    Args:
        path: the file.
        faq_ids: when given, every ``knowledge`` id must be one of them.

    Raises:
        DataError: a malformed line (``file:line: field ...``), a duplicate id, or an empty file.
    """
    known = set(faq_ids) if faq_ids is not None else None
    out: list[KnowledgeTurn] = []
    seen: dict[str, int] = {}
    for number, obj in iter_jsonl(path):
        where = f"{path}:{number}"
        turn = parse_knowledge_turn(obj, where, known)
        if turn.id in seen:
            raise DataError(
                f"{where}: field 'id' {turn.id!r} repeats line {seen[turn.id]}; ids must be unique"
            )
        seen[turn.id] = number
        out.append(turn)
    if not out:
        raise DataError(f"{path}: no dialogs (expected one JSON object per line)")
    return out


def knowledge_turn_to_json(turn: KnowledgeTurn) -> dict[str, Any]:
    """The JSON object of an instance (what :func:`parse_knowledge_turn` reads back; ``group`` and
    ``where`` are derived, not stored)."""
    turns = turn.turns + ((Turn("agent", turn.reply),) if turn.reply is not None else ())
    obj = dialog_to_json(Dialog(turn.id, turns, {"target": turn.target}))
    if turn.reply is not None:
        obj["turns"][-1]["knowledge"] = list(turn.knowledge)
    return obj


def fold_of(turn: KnowledgeTurn, n_folds: int) -> int:
    """The fold in ``range(n_folds)`` of an instance: ``sha256(group) mod n_folds``.

    Instances of one conversation fall in one fold; the split depends only on the texts, not on file
    order or a seed.

    Raises:
        ConfigError: ``n_folds`` < 2.
    """
    if n_folds < 2:
        raise ConfigError(f"n_folds must be >= 2, got {n_folds}")
    return int(hashlib.sha256(turn.group.encode("utf-8")).hexdigest()[:12], 16) % n_folds
