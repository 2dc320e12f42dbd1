"""Tests for assistant/ingest/scrub.py: each kind of personal data is replaced; look-alikes are kept."""

from __future__ import annotations

import pytest

from assistant.data import Dialog, Turn
from assistant.errors import ConfigError
from assistant.ingest.scrub import Scrubber, ScrubConfig, iban_valid, luhn_valid


@pytest.fixture(scope="module")
def scrubber() -> Scrubber:
    return Scrubber()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at john.doe@gmail.com please", "mail me at <EMAIL> please"),
        ("call +1 415 555 0132 or (415) 555-0199.", "call <PHONE> or <PHONE>."),
        ("UK: 020 7946 0018", "UK: <PHONE>"),
        ("card 4111 1111 1111 1111 expired", "card <CARD> expired"),
        ("card 4111-1111-1111-1111", "card <CARD>"),
        ("IBAN GB82 WEST 1234 5698 7654 32 thanks", "IBAN <IBAN> thanks"),
        ("see https://track.example.com/a?token=abc123.", "see <URL>."),
        ("from 192.168.10.24 today", "from <IP> today"),
    ],
)
def test_personal_data_is_replaced(scrubber, text, expected):
    assert scrubber.scrub(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order PC-100234 arrived on 2024-05-01 at 10:30",
        "card 4111 1111 1111 1112 (fails Luhn)",
        "version 1.2.3 of the app, 15 items, 3 days",
        "GB00 WEST 1234 5698 7654 32",
    ],
)
def test_look_alikes_are_kept(scrubber, text):
    assert scrubber.scrub(text) == text


def test_checksums():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid("DE88 3704 0044 0532 0130 00")


def test_urls_can_be_kept_and_regions_are_validated():
    assert (
        Scrubber(ScrubConfig(scrub_urls=False)).scrub("go to https://example.com/x")
        == "go to https://example.com/x"
    )
    with pytest.raises(ConfigError, match="'XX' is not a region code"):
        ScrubConfig(phone_regions=("XX",))


def test_scrub_dialogs_keeps_ids_and_roles(scrubber):
    dialog = Dialog(id="d1", turns=(Turn("customer", "I'm a@b.co"), Turn("agent", "Thanks")), meta={"k": 1})
    (out,) = scrubber.scrub_dialogs([dialog])
    assert out.id == "d1" and out.meta == {"k": 1}
    assert out.turns == (Turn("customer", "I'm <EMAIL>"), Turn("agent", "Thanks"))
