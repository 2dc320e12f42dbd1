"""The project's generic out-of-scope customer messages: calibration data for teams that have none.

``generic_oos.jsonl`` (beside this module, shipped with the package) holds 236 messages written for
this project, in the query format with ``faq_id: null``: general knowledge, arithmetic and unit
conversions, device and smart-home commands, recipes, sports, health, money and law questions,
other companies' products and services (streaming, social networks, phone carriers, airlines),
programming, household, travel advice, language questions. It leaves out greetings, thanks and
goodbyes (small talk is answered, not handed off: ``assistant/routing/smalltalk.py``) and the tasks
customer-service bots commonly do handle (bookings, rides, bank cards, appointments, weather
forecasts), so that a team whose service does them is not told they are out of scope. No text is
taken from a public data set.

The FAQ index (``finetune/build_index.py``) and the in-domain check (``finetune/calibrate_scope.py``)
use these messages when the team's calibration data has no out-of-scope example, and say so loudly.
They are generic: a team's own out-of-scope traffic calibrates better. This module only reads the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from assistant.data import Query, read_queries

#: the shipped file of generic out-of-scope messages.
GENERIC_OOS_PATH = Path(__file__).resolve().with_name("generic_oos.jsonl")


def generic_out_of_scope() -> list[Query]:
    """The shipped generic out-of-scope messages (every ``faq_id`` is ``None``).

    Raises:
        DataError: the file is missing or malformed (a broken installation).
    """
    return read_queries(GENERIC_OOS_PATH)


def with_generic_out_of_scope(queries: Sequence[Query]) -> tuple[list[Query], bool]:
    """``queries``, plus the generic out-of-scope messages when they hold no ``faq_id: null`` one.

    Returns:
        ``(queries, added)``: ``added`` tells whether the generic set was added (callers warn then).
    """
    if any(q.faq_id is None for q in queries):
        return list(queries), False
    return [*queries, *generic_out_of_scope()], True
