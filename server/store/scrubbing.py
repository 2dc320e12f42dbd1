"""What of a message is stored: the text as sent, or (setting ``scrub_history``) scrubbed of personal data.

With ``scrub_history`` on, e-mails, phone numbers, card numbers, IBANs, URLs and IP addresses are
replaced with placeholders (``<EMAIL>``, ...) by the project's scrubber (``assistant.ingest.scrub``)
before a customer message or a reply is stored, so the history, its export (``assistant export``)
and the reply model's context of later turns hold none of them. The answer kept for a
``message_id`` retry is stored scrubbed too: a retry is recognised by its scrubbed text, and gets
the replies as stored — identical to the first answer unless that reply itself contained personal
data, which the retry then sees as placeholders. Nothing unscrubbed is written to Redis.

It does not talk to Redis (``history.py``) and does not decide what is personal data (``scrub.py``).
"""

from __future__ import annotations

import functools

from assistant.ingest.scrub import Scrubber
from server.settings import Settings


@functools.cache
def _scrubber() -> Scrubber:
    return Scrubber()


def history_text(settings: Settings, text: str) -> str:
    """``text`` as it is stored in the history: scrubbed when ``settings.scrub_history`` is on."""
    return _scrubber().scrub(text) if settings.scrub_history else text
