"""Read and validate the canonical JSONL formats (dialogs, FAQ entries, query sets), and write them.

Formats (one JSON object per line, UTF-8; see ``docs/data.md``):

* dialogs: ``{"id": str, "turns": [{"role": "customer"|"agent", "text": str}, ...], "meta": {...}}``
* FAQ entries: ``{"id": str, "question": str, "answer": str, "examples": [str, ...], "meta": {...}}``
* query sets: ``{"text": str, "faq_id": str | null}`` (``null`` = out of scope)

A malformed line raises :class:`~assistant.errors.DataError` naming the file, the 1-based line
number, the field and what was expected; nothing is skipped silently. Blank lines are allowed.

How a dialog becomes model input (markers, examples, :func:`~assistant.model_input.format_context`)
is ``assistant/model_input.py``. This module does not scrub personal data (``assistant/ingest/scrub.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from assistant.errors import DataError

Role = Literal["customer", "agent"]
ROLES: tuple[str, ...] = ("customer", "agent")


@dataclass(frozen=True)
class Turn:
    """One message of a dialog.

    Attributes:
        role: ``"customer"`` or ``"agent"``.
        text: the message text, non-empty after stripping.
    """

    role: str
    text: str


@dataclass(frozen=True)
class Dialog:
    """One support conversation, turns in time order."""

    id: str
    turns: tuple[Turn, ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class FaqEntry:
    """One FAQ knowledge-base entry.

    Attributes:
        id: unique within its file.
        question: the canonical question.
        answer: the answer text (a placeholder such as ``"[card arrival]"`` in intent-style sets,
            flagged by ``meta["placeholder_answer"]``).
        examples: other ways customers ask it; may be empty.
    """

    id: str
    question: str
    answer: str
    examples: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Query:
    """One evaluation query: its text and the FAQ id that answers it (``None`` = out of scope)."""

    text: str
    faq_id: str | None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file.

    Raises:
        DataError: the file is missing, not UTF-8, a line is not JSON, or not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected a JSON Lines file)")
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{number}: not valid JSON ({e.msg} at column {e.colno})") from e
                if not isinstance(obj, dict):
                    raise DataError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
                yield number, obj
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from e


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if key not in obj else f"{type(value).__name__} {value!r}"[:80]
        raise DataError(f"{where}: field '{key}' must be a non-empty string, got {got}")
    return value.strip()


def _meta(obj: dict[str, Any], where: str) -> dict[str, Any]:
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise DataError(f"{where}: field 'meta' must be an object, got {type(meta).__name__}")
    return meta


def parse_dialog(obj: dict[str, Any], where: str) -> Dialog:
    """Validate one dialog object.

    Args:
        obj: the decoded JSON object.
        where: ``"file:line"`` for messages.

    Raises:
        DataError: a field is missing or of the wrong type, or a role is not customer/agent.
    """
    dialog_id = _text(obj, "id", where)
    turns_raw = obj.get("turns")
    if not isinstance(turns_raw, list) or not turns_raw:
        raise DataError(f"{where}: field 'turns' must be a non-empty list of {{role, text}} objects")
    turns = []
    for i, t in enumerate(turns_raw):
        tw = f"{where}: turns[{i}]"
        if not isinstance(t, dict):
            raise DataError(f"{tw}: expected an object with 'role' and 'text', got {type(t).__name__}")
        role = t.get("role")
        if role not in ROLES:
            raise DataError(f"{tw}: field 'role' must be one of {list(ROLES)}, got {role!r}")
        turns.append(Turn(role=role, text=_text(t, "text", tw)))
    return Dialog(id=dialog_id, turns=tuple(turns), meta=_meta(obj, where))


def parse_faq_entry(obj: dict[str, Any], where: str) -> FaqEntry:
    """Validate one FAQ entry object.

    Raises:
        DataError: a field is missing or of the wrong type.
    """
    examples = obj.get("examples", [])
    if not isinstance(examples, list) or not all(isinstance(x, str) for x in examples):
        raise DataError(f"{where}: field 'examples' must be a list of strings")
    return FaqEntry(
        id=_text(obj, "id", where),
        question=_text(obj, "question", where),
        answer=_text(obj, "answer", where),
        examples=tuple(x.strip() for x in examples if x.strip()),
        meta=_meta(obj, where),
    )


def read_dialogs(path: str | Path) -> list[Dialog]:
    """Read and validate a dialogs JSONL file.

    Raises:
        DataError: malformed line (file, line, field named), duplicate dialog id, or an empty file.
    """
    dialogs: list[Dialog] = []
    seen: dict[str, int] = {}
    for number, obj in iter_jsonl(path):
        where = f"{path}:{number}"
        dialog = parse_dialog(obj, where)
        if dialog.id in seen:
            raise DataError(f"{where}: duplicate dialog id {dialog.id!r} (first on line {seen[dialog.id]})")
        seen[dialog.id] = number
        dialogs.append(dialog)
    if not dialogs:
        raise DataError(f"{path}: no dialogs (expected one JSON object per line)")
    return dialogs


def read_faq(path: str | Path) -> list[FaqEntry]:
    """Read and validate an FAQ JSONL file.

    Raises:
        DataError: malformed line, duplicate FAQ id, or an empty file.
    """
    entries: list[FaqEntry] = []
    seen: dict[str, int] = {}
    for number, obj in iter_jsonl(path):
        where = f"{path}:{number}"
        entry = parse_faq_entry(obj, where)
        if entry.id in seen:
            raise DataError(f"{where}: duplicate FAQ id {entry.id!r} (first on line {seen[entry.id]})")
        seen[entry.id] = number
        entries.append(entry)
    if not entries:
        raise DataError(f"{path}: no FAQ entries (expected one JSON object per line)")
    return entries


def read_queries(path: str | Path, faq_ids: Sequence[str] | None = None) -> list[Query]:
    """Read and validate a query-set JSONL file.

    Args:
        path: the file.
        faq_ids: when given, every non-null ``faq_id`` must be one of them.

    Raises:
        DataError: malformed line, an unknown ``faq_id``, or an empty file.
    """
    known = set(faq_ids) if faq_ids is not None else None
    queries: list[Query] = []
    for number, obj in iter_jsonl(path):
        where = f"{path}:{number}"
        if "faq_id" not in obj:
            raise DataError(f"{where}: field 'faq_id' is missing (a FAQ id, or null for out of scope)")
        faq_id = obj["faq_id"]
        if faq_id is not None and (not isinstance(faq_id, str) or not faq_id):
            raise DataError(f"{where}: field 'faq_id' must be a non-empty string or null, got {faq_id!r}")
        if known is not None and faq_id is not None and faq_id not in known:
            raise DataError(f"{where}: faq_id {faq_id!r} is not an id of the FAQ file")
        queries.append(Query(text=_text(obj, "text", where), faq_id=faq_id))
    if not queries:
        raise DataError(f"{path}: no queries (expected one JSON object per line)")
    return queries


def dialog_to_json(dialog: Dialog) -> dict[str, Any]:
    """The canonical JSON object of a dialog (what :func:`parse_dialog` reads back)."""
    return {
        "id": dialog.id,
        "turns": [{"role": t.role, "text": t.text} for t in dialog.turns],
        "meta": dialog.meta,
    }


def faq_entry_to_json(entry: FaqEntry) -> dict[str, Any]:
    """The canonical JSON object of an FAQ entry (what :func:`parse_faq_entry` reads back)."""
    return {
        "id": entry.id,
        "question": entry.question,
        "answer": entry.answer,
        "examples": list(entry.examples),
        "meta": entry.meta,
    }


def query_to_json(query: Query) -> dict[str, Any]:
    """The canonical JSON object of a query (what :func:`read_queries` reads back)."""
    return {"text": query.text, "faq_id": query.faq_id}


def write_jsonl(path: str | Path, objects: Sequence[dict[str, Any]]) -> None:
    """Write objects as JSON Lines (UTF-8, non-ASCII kept), replacing the file atomically.

    The file is written beside its destination and renamed into place, so a failure leaves any
    earlier file whole.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for obj in objects:
            fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
    tmp.replace(path)
