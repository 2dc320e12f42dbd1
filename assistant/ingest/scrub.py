"""Scrub personal data from support-log text before it is used for training or indexing.

Detected and replaced with a typed placeholder (``<EMAIL>``, ``<PHONE>``, ``<CARD>``, ``<IBAN>``,
``<URL>``, ``<IP>``):

* e-mail addresses;
* phone numbers, found by Google's ``phonenumbers`` library (``PhoneNumberMatcher``) for the
  configured default regions, plus any number written in international ``+`` form;
* payment card numbers (13–19 digits, spaces or dashes allowed) that pass the Luhn checksum;
* IBANs that pass the ISO 13616 mod-97 check;
* URLs (they carry tokens, order links and tracking ids) and IPv4 addresses.

Not detected: personal names, street addresses and free-text identifiers; those need a named-entity
model (e.g. Microsoft Presidio with a spaCy model), which cannot be fetched on an offline machine.
Order numbers are kept on purpose: they are not personal data on their own and replies mention them.

Why not scrubadub: on ``"mail me at john.doe@gmail.com"`` its e-mail detector swallowed ``"me at
john.doe"`` and left ``@gmail.com`` behind, and it missed a Luhn-valid card number and a URL, while
pulling in scikit-learn, Faker and TextBlob. The patterns here are few and each is tested.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import phonenumbers

from assistant.config import require
from assistant.data import Dialog

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)\]]")
_IPV4 = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")

#: placeholder per kind of personal data.
PLACEHOLDERS: dict[str, str] = {
    "email": "<EMAIL>",
    "url": "<URL>",
    "ip": "<IP>",
    "card": "<CARD>",
    "iban": "<IBAN>",
    "phone": "<PHONE>",
}


def luhn_valid(digits: str) -> bool:
    """Whether a digit string passes the Luhn checksum (ISO/IEC 7812-1), as payment cards do."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """Whether an IBAN (spaces allowed) passes the ISO 13616 mod-97 check."""
    s = iban.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


@dataclass(frozen=True)
class ScrubConfig:
    """What the personal-data scrubber replaces."""

    phone_regions: tuple[str, ...] = field(
        default=("US", "GB"),
        metadata={
            "help": "ISO 3166 regions whose national phone formats are recognised "
            "(international +NN numbers are recognised whatever the region)"
        },
    )
    scrub_urls: bool = field(
        default=True, metadata={"help": "replace URLs (they often carry tokens and ids)"}
    )

    def __post_init__(self) -> None:
        supported = phonenumbers.SUPPORTED_REGIONS
        for region in self.phone_regions:
            require(
                region in supported,
                f"phone_regions: {region!r} is not a region code phonenumbers knows (e.g. 'US', 'GB', 'DE')",
            )


class Scrubber:
    """Replaces personal data in text with typed placeholders; see the module docstring for what is found."""

    def __init__(self, config: ScrubConfig | None = None) -> None:
        self.config = config or ScrubConfig()

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """Find personal data in ``text``.

        Returns:
            non-overlapping ``(start, end, kind)`` character spans, sorted by start; where two
            detectors overlap the earlier-starting, then longer, span wins.
        """
        found: list[tuple[int, int, str]] = [(m.start(), m.end(), "email") for m in _EMAIL.finditer(text)]
        if self.config.scrub_urls:
            found += [(m.start(), m.end(), "url") for m in _URL.finditer(text)]
        found += [(m.start(), m.end(), "ip") for m in _IPV4.finditer(text)]
        found += [(m.start(), m.end(), "iban") for m in _IBAN.finditer(text) if iban_valid(m.group())]
        for m in _CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if luhn_valid(digits):
                found.append((m.start(), m.end(), "card"))
        for region in self.config.phone_regions:
            found += [(m.start, m.end, "phone") for m in phonenumbers.PhoneNumberMatcher(text, region)]
        found.sort(key=lambda s: (s[0], -(s[1] - s[0])))
        kept: list[tuple[int, int, str]] = []
        for span in found:
            if not kept or span[0] >= kept[-1][1]:
                kept.append(span)
        return kept

    def scrub(self, text: str) -> str:
        """Return ``text`` with every span from :meth:`spans` replaced by its placeholder."""
        out, last = [], 0
        for start, end, kind in self.spans(text):
            out.append(text[last:start])
            out.append(PLACEHOLDERS[kind])
            last = end
        out.append(text[last:])
        return "".join(out)

    def scrub_dialogs(self, dialogs: Sequence[Dialog]) -> list[Dialog]:
        """Scrub every turn of every dialog; ids and meta are kept."""
        return [
            replace(d, turns=tuple(replace(t, text=self.scrub(t.text)) for t in d.turns)) for d in dialogs
        ]
