"""The conversation server's settings: one typed dataclass, layered defaults → environment → override.

Every setting is a field of :class:`Settings` with its help text, its environment variable
(``ASSISTANT_<NAME>``, except ``REDIS_URL``) and its validation; ``assistant serve --help`` is built
from the fields (``docs/server.md``'s table is written by hand from them). :func:`load_settings` builds the object in three
layers: the dataclass defaults (optionally replaced by a caller's ``defaults``, e.g. ``wsgi.py``
makes ``production`` the default environment), then the environment variables, then an override
dict (tests, CLI flags). A bad value raises :class:`~assistant.errors.ConfigError` naming the
variable, the bad value and what would be valid; an ``ASSISTANT_*`` variable that is no setting is
logged as a warning with the closest setting names. In ``production``, insecure defaults are refused
(no API key, no model or index directory).

This module reads the environment only when :func:`load_settings` is called; it starts nothing.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from assistant.errors import ConfigError

ENVIRONMENTS = ("development", "testing", "production")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _help(text: str, env: str | None = None) -> dict[str, str]:
    return {"help": text, **({"env": env} if env else {})}


@dataclass(frozen=True)
class Settings:
    """Conversation-server settings (see ``docs/server.md`` for the table)."""

    env: Literal["development", "testing", "production"] = field(
        default="development",
        metadata=_help(
            "Run mode. 'development' allows an empty API key and builds the demo model/index on first run; "
            "'production' refuses insecure defaults (an API key is required)."
        ),
    )
    api_key: str = field(
        default="",
        metadata=_help(
            "Shared secret clients send as 'Authorization: Bearer <key>' or 'X-API-Key'. Empty = no auth "
            "(development and testing only). At least 16 characters when set."
        ),
    )
    cors_origins: str = field(
        default="",
        metadata=_help(
            "Comma-separated browser origins allowed to call the API (CORS), e.g. https://shop.example.com; "
            "'*' = any origin (not in production). Empty = no CORS headers (same-origin or server-to-server)."
        ),
    )
    site_keys: str = field(
        default="",
        metadata=_help(
            'Public keys for the web widget, as JSON {"<key>": ["https://shop.example.com", ...]}: pages on those '
            "origins call POST /v1/chat and GET /v1/conversations/<id> with 'X-Site-Key: <key>' instead of the "
            "API key (server/site_keys.py has the limits). Their origins are CORS-allowed too. Empty = none."
        ),
    )
    sse_keepalive_seconds: float = field(
        default=15.0,
        metadata=_help("Seconds without an event on a streamed reply before a keep-alive comment is sent."),
    )
    model_dir: str = field(
        default="",
        metadata=_help(
            "Reply-model directory (with assistant.json) loaded once per process. Empty = none (FAQ answers "
            "and fallback only), or the demo LSTM when 'demo' is on."
        ),
    )
    index_dir: str = field(
        default="",
        metadata=_help(
            "FAQ index directory (by assistant-build-index) loaded once per process. Empty = none, or "
            "the demo index when 'demo' is on."
        ),
    )
    pipeline: str = field(
        default="",
        metadata=_help(
            "Reply routing as a JSON object of assistant.pipeline.PipelineConfig fields, e.g. "
            '\'{"generator_min_confidence": 0.4, "fallback_text": "..."}\'. Empty = its defaults.'
        ),
    )
    generator_options: str = field(
        default="",
        metadata=_help(
            "Options for loading the reply model, as a JSON object passed to its loader, e.g. "
            '\'{"beam_size": 4, "length_penalty": 1.0}\' (lstm, t5) or \'{"adapter": "bank"}\' (t5). '
            "Empty = the model directory's saved defaults."
        ),
    )
    channels: str = field(
        default="",
        metadata=_help(
            "Helpdesk channels (Chatwoot Agent Bots, Sunshine Conversations apps) as a JSON object, or "
            "@path of a JSON file; see docs/integrations/. Empty = none (their webhooks answer 404)."
        ),
    )
    demo: bool = field(
        default=True,
        metadata=_help(
            "When neither model_dir nor index_dir is set, build (first run) or reuse the demo FAQ index and "
            "demo LSTM in <instance_dir>/models. Development only: production requires model_dir/index_dir."
        ),
    )
    instance_dir: str = field(
        default="",
        metadata=_help(
            "Instance folder for the embedded Redis data and demo models. Empty = Flask's instance path "
            "(<repo>/instance)."
        ),
    )
    redis_url: str = field(
        default="",
        metadata=_help(
            "Redis server URL (redis://, rediss://, unix://; redis+cluster://host:port,... for a Redis Cluster). "
            "Empty = start an embedded Redis in "
            "<instance_dir>/redis with append-only persistence.",
            env="REDIS_URL",
        ),
    )
    redis_prefix: str = field(
        default="assistant",
        metadata=_help("Prefix of every Redis key this server writes (letters, digits, '_', '-', '.')."),
    )
    redis_socket_timeout: float = field(
        default=2.0, metadata=_help("Seconds a Redis command may take before it fails (then retried).")
    )
    redis_connect_timeout: float = field(
        default=2.0, metadata=_help("Seconds to open a Redis connection before it fails (then retried).")
    )
    redis_retries: int = field(
        default=3,
        metadata=_help(
            "Retries of a Redis command after a connection error or timeout, with exponential backoff."
        ),
    )
    redis_backoff_base: float = field(
        default=0.05,
        metadata=_help("Seconds of the first backoff between Redis retries (doubles each retry)."),
    )
    redis_backoff_cap: float = field(
        default=1.0, metadata=_help("Longest backoff between Redis retries, in seconds.")
    )
    redis_max_connections: int = field(
        default=50, metadata=_help("Size of the Redis connection pool of one process.")
    )
    history_max_turns: int = field(
        default=20,
        metadata=_help(
            "Messages kept per conversation (customer and agent each count one); older ones are trimmed."
        ),
    )
    history_ttl_seconds: int = field(
        default=86400,
        metadata=_help(
            "A conversation expires this many seconds after its last message (refreshed on each write)."
        ),
    )
    dedupe_ttl_seconds: int = field(
        default=86400,
        metadata=_help(
            "How long an answered message_id is remembered; a retry within it replays the stored answer."
        ),
    )
    lock_timeout_seconds: float = field(
        default=30.0,
        metadata=_help("A conversation's turn lock expires after this many seconds even if its holder died."),
    )
    lock_wait_seconds: float = field(
        default=5.0,
        metadata=_help(
            "How long a message waits for an earlier message of the same conversation before answering 409."
        ),
    )
    torch_threads: int = field(
        default=1,
        metadata=_help(
            "PyTorch intra-op threads per server process (torch.set_num_threads) when a model is loaded. "
            "1 suits one request at a time per worker: one query on 2 shared cores encoded in 18 ms with "
            "1 thread against 130 ms with 2. 0 = leave PyTorch's default (all cores)."
        ),
    )
    max_batch_size: int = field(
        default=16,
        metadata=_help(
            "Micro-batching: most concurrent requests of one server process whose reply model (and in-domain "
            "check) run as one batch (assistant/microbatching.py). 1 = off: every request runs alone."
        ),
    )
    batch_wait_ms: float = field(
        default=5.0,
        metadata=_help(
            "Micro-batching: milliseconds a batch waits at most for requests of the same process that are "
            "still on their way to the model (a lone request never waits). 0 = batch only requests that "
            "queued while the model was busy."
        ),
    )
    max_text_chars: int = field(
        default=2000, metadata=_help("Longest message text accepted, in characters (longer: 413).")
    )
    max_body_bytes: int = field(
        default=65536,
        metadata=_help("Largest request body accepted, in bytes (Flask MAX_CONTENT_LENGTH; larger: 413)."),
    )

    # production serving (server/api/auth.py, limits.py, server/logs.py, server/store/scrubbing.py)
    rate_limit_per_key: str = field(
        default="1200/minute",
        metadata=_help(
            "Requests one API key (or, without keys, one client address) may make, over all endpoints, "
            "as a flask-limiter rate string ('1200/minute', '20/second;1000/hour'); counted in Redis, so "
            "shared by every worker. Empty = no limit. Over it: 429 with Retry-After."
        ),
    )
    rate_limit_per_conversation: str = field(
        default="60/minute",
        metadata=_help(
            "Messages one conversation may receive (/v1/chat and the Rasa webhook together), as a rate "
            "string like rate_limit_per_key. Empty = no limit. Over it: 429 with Retry-After."
        ),
    )
    log_format: Literal["text", "json"] = field(
        default="text",
        metadata=_help(
            "'json' = one JSON object per log line with request_id, route, status, duration_ms, "
            "conversation_id, tenant (for log shippers); 'text' = plain lines. Applied by 'assistant "
            "serve' and server.wsgi (gunicorn)."
        ),
    )
    log_message_text: bool = field(
        default=False,
        metadata=_help(
            "Log each message's and reply's text in the request log line, scrubbed of personal data "
            "(assistant.ingest.scrub). Off = texts never reach the logs."
        ),
    )
    scrub_history: bool = field(
        default=False,
        metadata=_help(
            "Scrub personal data (e-mails, phones, cards, IBANs, URLs, IPs) from messages before they are "
            "stored in the conversation history; the reply model then sees the scrubbed history too."
        ),
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every value; raise ``ConfigError`` naming the variable, value and valid values."""
        _check(self.env in ENVIRONMENTS, "env", self.env, f"one of {list(ENVIRONMENTS)}")
        _check(
            not self.api_key or len(self.api_key) >= 16,
            "api_key",
            "<hidden>",
            "empty or at least 16 characters",
        )
        if self.env == "production":
            _check(
                bool(self.api_key),
                "api_key",
                "",
                "a secret of at least 16 characters (required when env is 'production'; "
                "set ASSISTANT_ENV=development to run without one)",
            )
            _check(
                bool(self.model_dir or self.index_dir),
                "model_dir",
                self.model_dir,
                "a model directory (or set ASSISTANT_INDEX_DIR): production never builds demo models",
            )
        if self.pipeline:
            try:
                parsed = json.loads(self.pipeline)
            except json.JSONDecodeError as e:
                raise ConfigError(
                    f"setting {_display_name('pipeline')} is not valid JSON ({e.msg} at column "
                    f"{e.colno}); expected an object of PipelineConfig fields"
                ) from e
            _check(
                isinstance(parsed, dict), "pipeline", self.pipeline, "a JSON object of PipelineConfig fields"
            )
            self.pipeline_config()  # unknown fields and bad values are refused at start, not at first use
        if self.generator_options:
            try:
                options = json.loads(self.generator_options)
            except json.JSONDecodeError as e:
                raise ConfigError(
                    f"setting {_display_name('generator_options')} is not valid JSON ({e.msg} at column "
                    f"{e.colno}); expected an object of reply-model loader options"
                ) from e
            _check(
                isinstance(options, dict),
                "generator_options",
                self.generator_options,
                "a JSON object of reply-model loader options",
            )
        if self.channels:
            from server.channels.config import parse_channels

            parse_channels(self.channels, self.env)  # refused at start, not at the first delivery
        for origin in self.allowed_origins:
            _check(
                origin == "*" or bool(re.fullmatch(r"https?://[^/\s]+", origin)),
                "cors_origins",
                origin,
                "'*' or comma-separated origins like https://shop.example.com (scheme and host, no path)",
            )
        _check(
            self.env != "production" or "*" not in self.allowed_origins,
            "cors_origins",
            "*",
            "explicit origins in production",
        )
        _check(self.sse_keepalive_seconds > 0, "sse_keepalive_seconds", self.sse_keepalive_seconds, "> 0")
        _check(
            bool(re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.redis_prefix)),
            "redis_prefix",
            self.redis_prefix,
            "1-64 characters of letters, digits, '_', '-', '.'",
        )
        _check(
            not self.redis_url
            or self.redis_url.split("://", 1)[0] in ("redis", "rediss", "unix", "redis+cluster"),
            "redis_url",
            self.redis_url,
            "a redis://, rediss:// or unix:// URL, redis+cluster://host:port[,host:port] for a Redis Cluster, "
            "or empty for the embedded Redis",
        )
        for name in ("redis_socket_timeout", "redis_connect_timeout", "lock_timeout_seconds"):
            _check(getattr(self, name) > 0, name, getattr(self, name), "a number of seconds > 0")
        for name in ("redis_backoff_base", "redis_backoff_cap", "lock_wait_seconds"):
            _check(getattr(self, name) >= 0, name, getattr(self, name), "a number of seconds >= 0")
        _check(self.redis_retries >= 0, "redis_retries", self.redis_retries, "an integer >= 0")
        _check(
            self.redis_max_connections >= 1,
            "redis_max_connections",
            self.redis_max_connections,
            "an integer >= 1",
        )
        _check(
            self.history_max_turns >= 2,
            "history_max_turns",
            self.history_max_turns,
            "an integer >= 2 (one turn stores a customer and an agent message)",
        )
        for name in ("history_ttl_seconds", "dedupe_ttl_seconds"):
            _check(getattr(self, name) >= 1, name, getattr(self, name), "an integer number of seconds >= 1")
        _check(
            self.torch_threads >= 0,
            "torch_threads",
            self.torch_threads,
            "an integer >= 0 (0 = PyTorch's default)",
        )
        _check(self.max_batch_size >= 1, "max_batch_size", self.max_batch_size, "an integer >= 1 (1 = off)")
        _check(
            0 <= self.batch_wait_ms <= 1000,
            "batch_wait_ms",
            self.batch_wait_ms,
            "a number of milliseconds in [0, 1000]",
        )
        _check(
            1 <= self.max_text_chars <= 100_000,
            "max_text_chars",
            self.max_text_chars,
            "an integer in [1, 100000]",
        )
        _check(self.max_body_bytes >= 1024, "max_body_bytes", self.max_body_bytes, "an integer >= 1024")
        _check(
            self.max_body_bytes >= 4 * self.max_text_chars,
            "max_body_bytes",
            self.max_body_bytes,
            f"at least 4 x max_text_chars = {4 * self.max_text_chars} so a longest UTF-8 text fits",
        )

        _check(self.log_format in ("text", "json"), "log_format", self.log_format, "'text' or 'json'")
        for name in ("rate_limit_per_key", "rate_limit_per_conversation"):
            _check(_rate_ok(getattr(self, name)), name, getattr(self, name), "empty or e.g. '60/minute'")

    @functools.cached_property
    def allowed_origins(self) -> tuple[str, ...]:
        """The ``cors_origins`` setting as a tuple, plus every site key's origins (empty: CORS off)."""
        origins = tuple(o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip())
        # site_keys is parsed here, so validate() refuses a bad value at start
        extra = {o for key_origins in self.site_key_origins.values() for o in key_origins}
        return origins + tuple(sorted(extra - set(origins)))

    @functools.cached_property
    def site_key_origins(self) -> dict[str, tuple[str, ...]]:
        """The ``site_keys`` setting parsed: public key → its origins (``server/site_keys.py``)."""
        from server.site_keys import parse_site_keys

        try:
            return parse_site_keys(self.site_keys)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"setting {_display_name('site_keys')}: {e}") from e

    def pipeline_config(self) -> Any:
        """The ``assistant.pipeline.PipelineConfig`` named by the ``pipeline`` setting (defaults if empty).

        Raises:
            ConfigError: an unknown field or a value PipelineConfig rejects (message names the variable).
        """
        from assistant.config import dataclass_from_dict
        from assistant.pipeline import PipelineConfig

        data = json.loads(self.pipeline) if self.pipeline else {}
        where = f"setting {_display_name('pipeline')}"
        try:
            return dataclass_from_dict(PipelineConfig, data, where)
        except ConfigError as e:
            if str(e).startswith(where):
                raise
            raise ConfigError(f"{where}: {e}") from e

    def generator_loader_options(self) -> dict[str, Any]:
        """The ``generator_options`` setting as keyword arguments for ``load_generator`` (empty if unset)."""
        return json.loads(self.generator_options) if self.generator_options else {}


def _rate_ok(value: str) -> bool:
    """Whether ``value`` is empty or a rate string ``limits.parse_many`` reads (``'60/minute'``)."""
    if not value:
        return True
    from limits import parse_many

    try:
        return bool(parse_many(value))
    except ValueError:
        return False


def env_var(f: dataclasses.Field) -> str:
    """The environment variable of a settings field (``ASSISTANT_<NAME>``, or its own ``env``)."""
    return f.metadata.get("env") or f"ASSISTANT_{f.name.upper()}"


def _display_name(name: str) -> str:
    for f in dataclasses.fields(Settings):
        if f.name == name:
            return f"{name} ({env_var(f)})"
    return name


def _check(ok: bool, name: str, value: Any, valid: str) -> None:
    if not ok:
        raise ConfigError(f"setting {_display_name(name)} = {value!r} is invalid; expected {valid}")


def _coerce(f: dataclasses.Field, raw: Any, source: str) -> Any:
    """Turn a raw value (a string from the environment, or any value from a dict) into the field's type."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    where = f"{source} {env_var(f) if source == 'environment variable' else f.name}"
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(
            f"{where} = {raw!r} is not a boolean; expected one of 1/0, true/false, yes/no, on/off"
        )
    if kind == "int":
        if isinstance(raw, bool):
            raise ConfigError(f"{where} = {raw!r} is not an integer")
        try:
            return int(str(raw).strip()) if not isinstance(raw, int) else raw
        except ValueError as e:
            raise ConfigError(f"{where} = {raw!r} is not an integer; expected e.g. 20") from e
    if kind == "float":
        if isinstance(raw, bool):
            raise ConfigError(f"{where} = {raw!r} is not a number")
        try:
            return float(raw)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where} = {raw!r} is not a number (seconds)") from e
    if not isinstance(raw, str):
        raise ConfigError(f"{where} = {raw!r} must be a string")
    return raw.strip()


def _warn_unknown_variables(environ: Mapping[str, str], known: set[str]) -> None:
    """Log a warning for each ``ASSISTANT_*`` variable that is no setting (a typo is otherwise silent)."""
    for name in sorted(n for n in environ if n.startswith("ASSISTANT_") and n not in known):
        suffixes = {k.removeprefix("ASSISTANT_"): k for k in known}
        close = [suffixes[m] for m in difflib.get_close_matches(name[10:], sorted(suffixes), n=2, cutoff=0.6)]
        hint = f"; did you mean {' or '.join(close)}?" if close else "; see docs/server.md#settings"
        logging.getLogger(__name__).warning("unknown environment variable %s is ignored%s", name, hint)


def load_settings(
    override: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Settings:
    """Build :class:`Settings` from defaults, then environment variables, then ``override``.

    Args:
        override: field name → value (tests, CLI flags); wins over the environment. Unknown names
            are rejected.
        environ: the environment to read (default ``os.environ``).
        defaults: field name → value replacing the dataclass default (e.g. ``{"env": "production"}``
            for the gunicorn entry point); the environment still wins over it.

    Raises:
        ConfigError: an unknown setting name, a value of the wrong type, or a value out of range;
            the message names the variable and what would be valid.
    """
    environ = os.environ if environ is None else environ
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}
    for layer, source in ((defaults or {}, "default"), (override or {}, "setting")):
        unknown = sorted(set(layer) - set(fields))
        if unknown:
            raise ConfigError(f"unknown settings {unknown}; valid settings are {sorted(fields)}")
    for name, value in (defaults or {}).items():
        values[name] = _coerce(fields[name], value, "default")
    for name, f in fields.items():
        if env_var(f) in environ:
            values[name] = _coerce(f, environ[env_var(f)], "environment variable")
    _warn_unknown_variables(environ, {env_var(f) for f in fields.values()})
    for name, value in (override or {}).items():
        values[name] = _coerce(fields[name], value, "setting")
    return Settings(**values)
