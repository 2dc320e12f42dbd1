"""Convert other sources of support data into the canonical formats of ``assistant/data.py``.

Sources:

* **FAQ CSV** (:func:`import_faq_csv`): one row per question/answer pair, column names configurable;
  optional id and example-questions columns (examples separated by ``|``).
* **Twitter customer support CSV** (:func:`import_twitter_csv`): the columns of the public
  "Customer Support on Twitter" data set (``tweet_id, author_id, inbound, created_at, text,
  response_tweet_id, in_response_to_tweet_id``). A dialog starts at a customer tweet that answers
  nothing and follows the reply chain; where a tweet has several replies the first listed is
  followed. Leading ``@handle`` mentions are removed (they address accounts, they are not content).
* **Chatwoot conversation exports** (:func:`import_chatwoot`): JSON files as returned by Chatwoot's
  ``GET /api/v1/accounts/{account}/conversations/{id}/messages`` (``{"payload": [message, ...]}``),
  a JSON list of messages, or JSON Lines of messages. Messages are grouped by ``conversation_id`` and
  ordered by ``created_at``; ``incoming`` (0) is the customer, ``outgoing`` (1) the agent; private
  notes, activity (2) and template (3) messages are not dialog turns.

In every importer consecutive messages of the same role are joined into one turn, since the reply
models learn one agent turn per customer turn. Nothing is dropped silently: every row or message not
imported is counted by reason in the returned :class:`ImportReport`. Personal data is not scrubbed
here; the CLI (``finetune/import_data.py``) runs ``assistant/ingest/scrub.py`` over the result.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.data import Dialog, FaqEntry, Turn, iter_jsonl
from assistant.errors import DataError

_LEADING_MENTIONS = re.compile(r"^(?:@\w+\s*)+")
_CHATWOOT_TYPES = {0: "incoming", 1: "outgoing", 2: "activity", 3: "template"}


@dataclass
class ImportReport:
    """What an import produced and what it left out.

    Attributes:
        imported: how many dialogs or FAQ entries were produced.
        skipped: reason → how many source rows/messages/threads were not imported for it.
    """

    imported: int = 0
    skipped: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        """One line for a CLI: ``imported N; skipped: reason=n, ...``."""
        skipped = ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items())) or "none"
        return f"imported {self.imported}; skipped: {skipped}"


def _merge_turns(turns: Iterable[Turn]) -> tuple[Turn, ...]:
    merged: list[Turn] = []
    for turn in turns:
        if merged and merged[-1].role == turn.role:
            merged[-1] = Turn(turn.role, f"{merged[-1].text}\n{turn.text}")
        else:
            merged.append(turn)
    return tuple(merged)


def _open_csv(path: Path, required: Sequence[str]) -> tuple[csv.DictReader, Any]:
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected a CSV file with a header row)")
    fh = path.open(encoding="utf-8", newline="")
    reader = csv.DictReader(fh)
    columns = reader.fieldnames or []
    missing = [c for c in required if c not in columns]
    if missing:
        fh.close()
        raise DataError(f"{path}: missing column(s) {missing}; the header has {columns}")
    return reader, fh


def import_faq_csv(
    path: str | Path,
    question_column: str = "question",
    answer_column: str = "answer",
    id_column: str | None = None,
    examples_column: str | None = None,
    examples_separator: str = "|",
) -> tuple[list[FaqEntry], ImportReport]:
    """Read FAQ entries from a CSV of question/answer pairs.

    Rows with an empty question or answer are skipped and counted. Without ``id_column`` ids are
    ``faq-0001``, ``faq-0002``, ... in row order.

    Raises:
        DataError: missing file or column, or a duplicate id (row numbers named).
    """
    path = Path(path)
    required = [question_column, answer_column] + [c for c in (id_column, examples_column) if c]
    reader, fh = _open_csv(path, required)
    report, entries, seen = ImportReport(), [], {}
    with fh:
        for row_number, row in enumerate(reader, start=2):
            question, answer = (row[question_column] or "").strip(), (row[answer_column] or "").strip()
            if not question or not answer:
                report.skipped["empty question or answer"] += 1
                continue
            faq_id = (row[id_column] or "").strip() if id_column else f"faq-{len(entries) + 1:04d}"
            if not faq_id:
                raise DataError(
                    f"{path}:{row_number}: column '{id_column}' is empty (every entry needs an id)"
                )
            if faq_id in seen:
                raise DataError(f"{path}:{row_number}: duplicate id {faq_id!r} (first on row {seen[faq_id]})")
            seen[faq_id] = row_number
            examples = ()
            if examples_column:
                examples = tuple(
                    x.strip() for x in (row[examples_column] or "").split(examples_separator) if x.strip()
                )
            entries.append(
                FaqEntry(
                    id=faq_id, question=question, answer=answer, examples=examples, meta={"source": path.name}
                )
            )
    report.imported = len(entries)
    return entries, report


def import_twitter_csv(
    path: str | Path, company: str | None = None, min_turns: int = 2
) -> tuple[list[Dialog], ImportReport]:
    """Rebuild customer-support dialogs from the Twitter customer support CSV.

    Args:
        path: the CSV (``twcs.csv`` columns).
        company: keep only threads answered by this ``author_id`` (e.g. ``"AppleSupport"``).
        min_turns: threads with fewer merged turns (or no agent turn) are skipped and counted.

    Raises:
        DataError: missing file or column, or an ``inbound`` value that is not True/False.
    """
    path = Path(path)
    columns = ["tweet_id", "author_id", "inbound", "text", "response_tweet_id", "in_response_to_tweet_id"]
    reader, fh = _open_csv(path, columns)
    tweets: dict[str, dict[str, str]] = {}
    with fh:
        for row_number, row in enumerate(reader, start=2):
            if row["inbound"] not in ("True", "False"):
                raise DataError(
                    f"{path}:{row_number}: column 'inbound' must be True or False, got {row['inbound']!r}"
                )
            tweets[row["tweet_id"]] = row
    report, dialogs = ImportReport(), []
    for tweet_id, row in tweets.items():
        if row["inbound"] != "True" or row["in_response_to_tweet_id"]:
            continue
        turns, agents, current = [], set(), row
        while current is not None:
            role = "customer" if current["inbound"] == "True" else "agent"
            if role == "agent":
                agents.add(current["author_id"])
            text = _LEADING_MENTIONS.sub("", current["text"] or "").strip()
            if text:
                turns.append(Turn(role, text))
            replies = [r for r in (current["response_tweet_id"] or "").split(",") if r]
            current = tweets.get(replies[0]) if replies else None
            if replies and current is None:
                report.skipped["reply tweet missing from file (thread cut there)"] += 1
        merged = _merge_turns(turns)
        if len(merged) < min_turns or not agents:
            report.skipped[f"thread with fewer than {min_turns} turns or no agent reply"] += 1
        elif company is not None and company not in agents:
            report.skipped["answered by another company"] += 1
        else:
            dialogs.append(
                Dialog(
                    id=f"tw-{tweet_id}", turns=merged, meta={"source": "twitter", "company": sorted(agents)}
                )
            )
    report.imported = len(dialogs)
    return dialogs, report


def _chatwoot_messages(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        return [obj for _, obj in iter_jsonl(path)]
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected a Chatwoot messages JSON or JSONL export)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e
    if isinstance(data, dict) and isinstance(data.get("payload"), list):
        return data["payload"]
    if isinstance(data, list):
        return data
    raise DataError(f'{path}: expected {{"payload": [messages]}} or a JSON list of messages')


def import_chatwoot(paths: Sequence[str | Path], min_turns: int = 2) -> tuple[list[Dialog], ImportReport]:
    """Rebuild dialogs from Chatwoot message exports (see the module docstring for the formats).

    Raises:
        DataError: unreadable file, or a message without ``conversation_id`` or with an unknown
            ``message_type`` (file and message index named).
    """
    by_conversation: dict[str, list[tuple[Any, int, Turn]]] = defaultdict(list)
    report = ImportReport()
    for p in paths:
        path = Path(p)
        for index, message in enumerate(_chatwoot_messages(path)):
            where = f"{path}: message {index}"
            if not isinstance(message, dict) or "conversation_id" not in message:
                raise DataError(f"{where}: expected a message object with 'conversation_id'")
            kind = message.get("message_type")
            kind = _CHATWOOT_TYPES.get(kind, kind)
            if kind not in _CHATWOOT_TYPES.values():
                raise DataError(
                    f"{where}: 'message_type' must be 0-3 or incoming/outgoing/activity/template, "
                    f"got {message.get('message_type')!r}"
                )
            content = (message.get("content") or "").strip()
            if message.get("private"):
                report.skipped["private note"] += 1
            elif kind in ("activity", "template"):
                report.skipped[f"{kind} message"] += 1
            elif not content:
                report.skipped["empty message (attachment only)"] += 1
            else:
                role = "customer" if kind == "incoming" else "agent"
                by_conversation[str(message["conversation_id"])].append(
                    (message.get("created_at") or 0, index, Turn(role, content))
                )
    dialogs = []
    for conversation_id, items in sorted(by_conversation.items()):
        merged = _merge_turns(t for _, _, t in sorted(items, key=lambda x: (x[0], x[1])))
        if len(merged) < min_turns or not any(t.role == "agent" for t in merged):
            report.skipped[f"conversation with fewer than {min_turns} turns or no agent reply"] += 1
            continue
        dialogs.append(Dialog(id=f"chatwoot-{conversation_id}", turns=merged, meta={"source": "chatwoot"}))
    report.imported = len(dialogs)
    return dialogs, report
