"""The ``channels`` setting: parsed, checked, refused at start when incomplete or insecure."""

from __future__ import annotations

import json

import pytest

from assistant.errors import ConfigError
from server.channels.config import parse_channels
from server.settings import load_settings

BOT = {
    "name": "support",
    "base_url": "https://chat.example.com/",
    "account_id": 1,
    "inbox_ids": [3, 4],
    "webhook_secret": "s" * 24,
    "api_access_token": "token",
}
APP = {
    "app_id": "5ebee0975ac5304b664a12fa",
    "webhook_secret": "w" * 24,
    "key_id": "app_123",
    "key_secret": "k" * 24,
}


def setting(**top):
    return json.dumps({"chatwoot": [BOT], **top})


def test_a_full_configuration_is_parsed():
    cfg = parse_channels(
        json.dumps({"burst_window_seconds": 2, "chatwoot": [BOT], "sunshine": [APP]}), "production"
    )
    assert cfg.burst_window_seconds == 2.0 and cfg.enabled
    bot = cfg.chatwoot_for_inbox(4)
    assert bot.base_url == "https://chat.example.com" and bot.account_id == 1 and bot.typing is True
    assert cfg.sunshine[0].base_url == "https://api.smooch.io" and cfg.sunshine[0].name == "sunshine-0"
    assert cfg.bot("chatwoot", "support") is bot and cfg.bot("sunshine", "nope") is None
    assert cfg.runs_in_process("") and not cfg.runs_in_process("redis://r:6379/0")
    assert parse_channels("", "production").enabled is False


def test_a_file_can_hold_the_configuration(tmp_path):
    path = tmp_path / "channels.json"
    path.write_text(setting(), encoding="utf-8")
    assert parse_channels(f"@{path}", "production").chatwoot[0].name == "support"
    with pytest.raises(ConfigError, match="cannot read"):
        parse_channels(f"@{tmp_path / 'missing.json'}", "production")


BAD = [
    ("not JSON", "{", "not valid JSON"),
    ("no bots", json.dumps({"burst_window_seconds": 1}), "names no chatwoot bot and no sunshine app"),
    ("unknown key", setting(burst_windw_seconds=1), "unknown keys \\['burst_windw_seconds'\\]"),
    (
        "missing secret",
        json.dumps({"chatwoot": [{k: v for k, v in BOT.items() if k != "webhook_secret"}]}),
        "chatwoot\\[0\\].webhook_secret is missing",
    ),
    ("inbox ids", json.dumps({"chatwoot": [{**BOT, "inbox_ids": []}]}), "inbox_ids"),
    (
        "account id type",
        json.dumps({"chatwoot": [{**BOT, "account_id": "1"}]}),
        "account_id = '1' is invalid; expected an integer",
    ),
    ("bad url", json.dumps({"chatwoot": [{**BOT, "base_url": "chat.example.com"}]}), "an http\\(s\\) URL"),
    (
        "plain http",
        json.dumps({"chatwoot": [{**BOT, "base_url": "http://chat.example.com"}]}),
        "https:// URL outside development",
    ),
    (
        "short secret",
        json.dumps({"chatwoot": [{**BOT, "webhook_secret": "short"}]}),
        "shorter than 16 characters",
    ),
    (
        "inbox twice",
        json.dumps({"chatwoot": [BOT, {**BOT, "name": "b2", "inbox_ids": [4]}]}),
        "configured twice",
    ),
    ("worker mode", setting(worker="sometimes"), "one of \\['auto', 'in-process', 'external'\\]"),
    ("negative window", setting(burst_window_seconds=-1), "burst_window_seconds"),
    (
        "max wait below window",
        setting(burst_window_seconds=3, burst_max_wait_seconds=1),
        ">= burst_window_seconds",
    ),
    ("sunshine key secret", json.dumps({"sunshine": [{**APP, "key_secret": ""}]}), "key_secret is empty"),
]


@pytest.mark.parametrize("name,value,message", BAD, ids=[b[0] for b in BAD])
def test_bad_configuration_is_refused_naming_the_field(name, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_channels(value, "production")


def test_secrets_never_appear_in_errors():
    with pytest.raises(ConfigError) as info:
        parse_channels(json.dumps({"chatwoot": [{**BOT, "webhook_secret": 12345678901234567}]}), "production")
    assert "12345678901234567" not in str(info.value) and "<hidden>" in str(info.value)


def test_development_accepts_plain_http_and_short_secrets_loopback_everywhere():
    dev = json.dumps(
        {"chatwoot": [{**BOT, "base_url": "http://chatwoot.internal:3000", "webhook_secret": "dev"}]}
    )
    assert parse_channels(dev, "development").chatwoot[0].base_url == "http://chatwoot.internal:3000"
    loopback = json.dumps({"chatwoot": [{**BOT, "base_url": "http://127.0.0.1:3000"}]})
    assert parse_channels(loopback, "production").chatwoot[0].base_url == "http://127.0.0.1:3000"


def test_settings_refuse_a_bad_channels_value_at_start():
    with pytest.raises(ConfigError, match="ASSISTANT_CHANNELS"):
        load_settings(
            {"env": "testing"},
            environ={
                "ASSISTANT_CHANNELS": json.dumps({"chatwoot": [{**BOT, "base_url": "http://x.example"}]})
            },
        )
    assert load_settings({"env": "testing", "channels": setting()}, environ={}).channels
