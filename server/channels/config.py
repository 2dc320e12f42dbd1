"""Helpdesk channel configuration: the ``channels`` setting (``ASSISTANT_CHANNELS``) parsed and checked.

The setting is one JSON object (or ``@/path/to/file.json``, read at start) with the queue and retry
parameters shared by every channel and a list of Chatwoot bots and of Sunshine Conversations apps::

    {"burst_window_seconds": 1.5,
     "chatwoot": [{"name": "support", "base_url": "https://chat.example.com", "account_id": 1,
                   "inbox_ids": [3, 4], "webhook_secret": "...", "api_access_token": "..."}],
     "sunshine": [{"name": "zendesk", "app_id": "5ebee0975ac5304b664a12fa",
                   "base_url": "https://example.zendesk.com/sc", "webhook_secret": "...",
                   "key_id": "app_...", "key_secret": "...", "switchboard_integration": "bot"}]}

Several bots and apps can point at one server: a Chatwoot delivery is matched to the bot whose secret
signed it and must come from one of that bot's inboxes; a Sunshine delivery to the app whose webhook
secret it carries and whose ``app.id`` it names. Every problem raises
:class:`~assistant.errors.ConfigError` naming the field, the bad value (secrets hidden) and what would
be valid; outside ``development`` plain ``http://`` to a non-loopback host and secrets shorter than 16
characters are refused.

It reads no environment and starts nothing (``server/channels/queue.py`` does).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from assistant.errors import ConfigError

WORKER_MODES = ("auto", "in-process", "external")
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MIN_SECRET = 16


@dataclass(frozen=True)
class ChatwootBot:
    """One Chatwoot Agent Bot (Settings → Integrations → Bots, or the platform API).

    Attributes:
        name: a label for logs and failure records (letters, digits, ``_.-``).
        base_url: the Chatwoot installation, e.g. ``https://app.chatwoot.com`` (no trailing path).
        account_id: the account the bot's inboxes belong to (the number in ``/app/accounts/<id>/``).
        inbox_ids: the inboxes connected to this bot; deliveries from other inboxes are refused (403).
        webhook_secret: the bot's secret, which signs each delivery (``X-Chatwoot-Signature``).
        api_access_token: the bot's access token, sent as ``api_access_token`` on API calls.
        typing: switch the typing indicator on while a reply is computed.
    """

    name: str
    base_url: str
    account_id: int
    inbox_ids: tuple[int, ...]
    webhook_secret: str = field(repr=False)
    api_access_token: str = field(repr=False)
    typing: bool = True


@dataclass(frozen=True)
class SunshineApp:
    """One Sunshine Conversations app (Zendesk: Admin Center → Apps and integrations → Conversations API).

    Attributes:
        name: a label for logs and failure records.
        app_id: the app's id (``app.id`` of every delivery; ``{appId}`` of API paths).
        base_url: API host, ``https://api.smooch.io`` or ``https://<subdomain>.zendesk.com/sc``.
        webhook_secret: the webhook's shared secret, sent by Sunshine as ``X-API-Key``.
        key_id, key_secret: an API key of the app (HTTP basic auth on API calls).
        switchboard_integration: the name or id of this bot's switchboard integration; when set,
            a message whose conversation names another active integration is left to it.
        typing: send ``typing:start`` / ``typing:stop`` activities while a reply is computed.
    """

    name: str
    app_id: str
    base_url: str
    webhook_secret: str = field(repr=False)
    key_id: str = field(repr=False)
    key_secret: str = field(repr=False)
    switchboard_integration: str = ""
    typing: bool = True


@dataclass(frozen=True)
class ChannelsConfig:
    """Channel-wide parameters and the configured bots/apps.

    Attributes:
        worker: ``in-process`` runs queue workers as threads of the server process; ``external``
            leaves jobs to ``assistant worker`` processes; ``auto`` = in-process with the embedded
            Redis (no ``REDIS_URL``: nothing else could reach the queue), external otherwise.
        worker_threads: threads of the in-process worker, and the default of ``assistant worker``.
        burst_window_seconds: a customer message is answered only after this many seconds without
            a newer one in the conversation; messages within the window form one turn.
        burst_max_wait_seconds: a burst is answered at the latest this long after its first message.
        timestamp_tolerance_seconds: a Chatwoot delivery whose ``X-Chatwoot-Timestamp`` differs from
            the server clock by more is refused (replay protection).
        api_timeout_seconds: connect and read timeout of each helpdesk API call.
        api_attempts: tries of a turn (model and helpdesk calls) before it is left to humans.
        api_backoff_seconds: delay before the second try; doubles each try (with jitter).
        turn_lock_seconds: a conversation's channel lock expires after this long if its worker died.
        queue_heartbeat_seconds: a worker silent this long is dead; its unfinished jobs run again.
        queue_poll_ms: longest idle wait of a worker between looks at the queue (pick-up latency).
        chatwoot: the Chatwoot bots. sunshine: the Sunshine Conversations apps.
    """

    worker: str = "auto"
    worker_threads: int = 2
    burst_window_seconds: float = 1.5
    burst_max_wait_seconds: float = 6.0
    timestamp_tolerance_seconds: int = 300
    api_timeout_seconds: float = 10.0
    api_attempts: int = 4
    api_backoff_seconds: float = 1.0
    turn_lock_seconds: float = 60.0
    queue_heartbeat_seconds: float = 15.0
    queue_poll_ms: int = 100
    chatwoot: tuple[ChatwootBot, ...] = ()
    sunshine: tuple[SunshineApp, ...] = ()

    @property
    def enabled(self) -> bool:
        """Whether any bot or app is configured."""
        return bool(self.chatwoot or self.sunshine)

    def runs_in_process(self, redis_url: str) -> bool:
        """Whether the server process runs the queue worker (see :attr:`worker`)."""
        if self.worker == "auto":
            return not redis_url
        return self.worker == "in-process"

    def chatwoot_for_inbox(self, inbox_id: int) -> ChatwootBot | None:
        """The bot connected to ``inbox_id``, if any."""
        for bot in self.chatwoot:
            if inbox_id in bot.inbox_ids:
                return bot
        return None

    def bot(self, channel: str, name: str) -> ChatwootBot | SunshineApp | None:
        """The bot (``chatwoot``) or app (``sunshine``) called ``name``."""
        for item in self.chatwoot if channel == "chatwoot" else self.sunshine:
            if item.name == name:
                return item
        return None


def _where(path: str) -> str:
    return f"setting channels (ASSISTANT_CHANNELS): {path}"


def _fail(path: str, value: Any, valid: str) -> ConfigError:
    shown = "<hidden>" if "secret" in path or "token" in path else repr(value)
    return ConfigError(f"{_where(path)} = {shown} is invalid; expected {valid}")


def _take(obj: dict[str, Any], key: str, path: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = obj.pop(key, default)
    if value is default and default is not _REQUIRED:
        return value
    if value is _REQUIRED:
        raise ConfigError(f"{_where(path + key)} is missing")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) and kind is not bool:
        raise _fail(path + key, value, _KIND_NAMES.get(kind, str(kind)))
    if not isinstance(value, kind):
        raise _fail(path + key, value, _KIND_NAMES.get(kind, str(kind)))
    return value


_REQUIRED = object()
_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list"}


def _no_extra(obj: dict[str, Any], path: str, cls: type) -> None:
    if obj:
        known = sorted(f.name for f in dataclasses.fields(cls))
        raise ConfigError(f"{_where(path)} has unknown keys {sorted(obj)}; valid keys are {known}")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(url: str, path: str, strict: bool) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise _fail(path, url, "an http(s) URL such as https://chat.example.com")
    if strict and parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise _fail(path, url, "an https:// URL outside development (plain http only to a loopback host)")
    return url.rstrip("/")


def _check_secret(value: str, path: str, strict: bool) -> str:
    if not value.strip():
        raise ConfigError(f"{_where(path)} is empty; copy it from the helpdesk's bot/webhook settings")
    if strict and len(value) < _MIN_SECRET:
        raise ConfigError(
            f"{_where(path)} is shorter than {_MIN_SECRET} characters; outside development use the "
            "secret the helpdesk generated"
        )
    return value


def _name(obj: dict[str, Any], path: str, default: str) -> str:
    name = _take(obj, "name", path, str, default)
    if not _NAME_RE.fullmatch(name):
        raise _fail(path + "name", name, "1-64 letters, digits, '_', '.', '-'")
    return name


def _chatwoot(obj: Any, i: int, strict: bool) -> ChatwootBot:
    path = f"chatwoot[{i}]."
    if not isinstance(obj, dict):
        raise _fail(path[:-1], obj, "an object with base_url, account_id, inbox_ids, secrets")
    obj = dict(obj)
    name = _name(obj, path, f"chatwoot-{i}")
    base_url = _check_url(_take(obj, "base_url", path, str, _REQUIRED), path + "base_url", strict)
    account_id = _take(obj, "account_id", path, int, _REQUIRED)
    inboxes = _take(obj, "inbox_ids", path, list, _REQUIRED)
    if not inboxes or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in inboxes):
        raise _fail(path + "inbox_ids", inboxes, "a non-empty list of inbox ids (positive integers)")
    secret = _check_secret(
        _take(obj, "webhook_secret", path, str, _REQUIRED), path + "webhook_secret", strict
    )
    token = _take(obj, "api_access_token", path, str, _REQUIRED)
    if not token.strip():
        raise ConfigError(f"{_where(path + 'api_access_token')} is empty; copy the bot's access token")
    typing = _take(obj, "typing", path, bool, True)
    _no_extra(obj, path[:-1], ChatwootBot)
    if account_id <= 0:
        raise _fail(path + "account_id", account_id, "a positive integer")
    return ChatwootBot(name, base_url, account_id, tuple(inboxes), secret, token, typing)


def _sunshine(obj: Any, i: int, strict: bool) -> SunshineApp:
    path = f"sunshine[{i}]."
    if not isinstance(obj, dict):
        raise _fail(path[:-1], obj, "an object with app_id, webhook_secret, key_id, key_secret")
    obj = dict(obj)
    name = _name(obj, path, f"sunshine-{i}")
    app_id = _take(obj, "app_id", path, str, _REQUIRED)
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", app_id):
        raise _fail(path + "app_id", app_id, "the app id (letters, digits, '_', '-')")
    base_url = _check_url(
        _take(obj, "base_url", path, str, "https://api.smooch.io"), path + "base_url", strict
    )
    secret = _check_secret(
        _take(obj, "webhook_secret", path, str, _REQUIRED), path + "webhook_secret", strict
    )
    key_id = _take(obj, "key_id", path, str, _REQUIRED)
    key_secret = _check_secret(_take(obj, "key_secret", path, str, _REQUIRED), path + "key_secret", strict)
    if not key_id.strip():
        raise ConfigError(f"{_where(path + 'key_id')} is empty; create an API key for the app")
    integration = _take(obj, "switchboard_integration", path, str, "")
    typing = _take(obj, "typing", path, bool, True)
    _no_extra(obj, path[:-1], SunshineApp)
    return SunshineApp(name, app_id, base_url, secret, key_id, key_secret, integration, typing)


def _read(text: str) -> Any:
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{_where('@file')}: cannot read {path}: {e.strerror}") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"{_where('')} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
        ) from e


def parse_channels(text: str, env: str) -> ChannelsConfig:
    """Parse and check the ``channels`` setting.

    Args:
        text: the setting's value: empty (no channels), a JSON object, or ``@file`` holding one.
        env: ``development`` accepts http:// base URLs and short secrets; other environments refuse them.

    Returns:
        the checked :class:`ChannelsConfig` (no bots when ``text`` is empty).

    Raises:
        ConfigError: unreadable file, bad JSON, unknown key, missing or bad field (named), an inbox or
            app id configured twice, or an insecure value outside development.
    """
    if not text.strip():
        return ChannelsConfig()
    data = _read(text.strip())
    if not isinstance(data, dict):
        raise _fail("", data, "a JSON object")
    strict = env != "development"
    obj = dict(data)
    worker = _take(obj, "worker", "", str, "auto")
    if worker not in WORKER_MODES:
        raise _fail("worker", worker, f"one of {list(WORKER_MODES)}")
    numbers: dict[str, Any] = {}
    for f in dataclasses.fields(ChannelsConfig):
        if f.name in ("worker", "chatwoot", "sunshine"):
            continue
        kind = int if f.type in ("int", int) else float
        numbers[f.name] = _take(obj, f.name, "", kind, f.default)
    cw = _take(obj, "chatwoot", "", list, [])
    sc = _take(obj, "sunshine", "", list, [])
    _no_extra(obj, "top level", ChannelsConfig)
    for name in ("worker_threads", "api_attempts", "queue_poll_ms", "timestamp_tolerance_seconds"):
        if numbers[name] < 1:
            raise _fail(name, numbers[name], "an integer >= 1")
    for name in ("burst_window_seconds", "api_backoff_seconds"):
        if numbers[name] < 0:
            raise _fail(name, numbers[name], "a number of seconds >= 0")
    for name in ("api_timeout_seconds", "turn_lock_seconds", "queue_heartbeat_seconds"):
        if numbers[name] <= 0:
            raise _fail(name, numbers[name], "a number of seconds > 0")
    if numbers["burst_max_wait_seconds"] < numbers["burst_window_seconds"]:
        raise _fail("burst_max_wait_seconds", numbers["burst_max_wait_seconds"], ">= burst_window_seconds")
    bots = tuple(_chatwoot(o, i, strict) for i, o in enumerate(cw))
    apps = tuple(_sunshine(o, i, strict) for i, o in enumerate(sc))
    if not bots and not apps:
        raise ConfigError(f"{_where('')} names no chatwoot bot and no sunshine app; set at least one")
    _check_unique([b.name for b in bots], "chatwoot[].name")
    _check_unique([a.name for a in apps], "sunshine[].name")
    _check_unique([i for b in bots for i in b.inbox_ids], "chatwoot[].inbox_ids (an inbox has one bot)")
    _check_unique([a.app_id for a in apps], "sunshine[].app_id")
    return ChannelsConfig(worker=worker, chatwoot=bots, sunshine=apps, **numbers)


def _check_unique(values: list[Any], path: str) -> None:
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise ConfigError(f"{_where(path)}: {v!r} is configured twice")
        seen.add(v)
