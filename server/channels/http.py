"""Calls to helpdesk APIs, with every outcome classified for the retry policy.

A call either returns the decoded JSON body of a 2xx answer or raises one of:

* :class:`NotDelivered` — the helpdesk certainly did not act: the connection was refused or timed
  out before the request was sent, or it answered 429 or 5xx. Safe to retry.
* :class:`Uncertain` — the request may have been acted on: the connection broke or timed out after
  the request was sent. A message post that ends like this is never repeated (the reply might be
  there already); the turn is left to humans instead.
* :class:`Rejected` — a 4xx other than 429 (bad token, unknown conversation): retrying cannot help.

A 5xx is taken as "not acted on" (Chatwoot and Sunshine write a message in one database
transaction before answering), which is the only assumption here about the servers. Secrets never
appear in exception messages. It knows no payload shapes (``chatwoot.py`` and ``sunshine.py`` do).
"""

from __future__ import annotations

import threading
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError

_local = threading.local()


class HelpdeskError(Exception):
    """A helpdesk API call failed; ``status`` is the HTTP status when there was an answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotDelivered(HelpdeskError):
    """The helpdesk did not act on the request (retry is safe)."""


class Uncertain(HelpdeskError):
    """The request may or may not have been acted on."""


class Rejected(HelpdeskError):
    """The helpdesk refused the request (4xx other than 429); retrying will not help."""


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


def call(
    method: str,
    url: str,
    *,
    body: dict[str, Any] | None,
    timeout: float,
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
) -> Any:
    """Send one JSON request and return the decoded JSON answer (``None`` for an empty body).

    Args:
        method: ``POST`` etc. url: the full URL. body: the JSON body (``None``: none).
        timeout: seconds for connecting and for reading the answer.
        headers: extra headers (e.g. ``api_access_token``). auth: HTTP basic credentials.

    Raises:
        NotDelivered, Uncertain, Rejected: see the module docstring.
    """
    where = f"{method} {url}"
    try:
        response = _session().request(
            method, url, json=body, headers=headers, auth=auth, timeout=(timeout, timeout)
        )
    except requests.ConnectTimeout as e:
        raise NotDelivered(f"{where}: connection timed out after {timeout} s") from e
    except requests.ConnectionError as e:
        if _never_connected(e):
            raise NotDelivered(f"{where}: cannot connect ({type(e).__name__})") from e
        raise Uncertain(f"{where}: the connection broke after the request was sent") from e
    except requests.Timeout as e:
        raise Uncertain(f"{where}: no answer within {timeout} s after the request was sent") from e
    except requests.RequestException as e:
        raise NotDelivered(f"{where}: request not sent ({type(e).__name__})") from e
    status = response.status_code
    if status == 429 or status >= 500:
        raise NotDelivered(f"{where}: answered {status}", status)
    if status >= 400:
        raise Rejected(f"{where}: answered {status}: {response.text[:200]}", status)
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _never_connected(error: requests.ConnectionError) -> bool:
    """Whether the connection failed before any byte of the request was sent (refused, DNS)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, NewConnectionError):
            return True
        reason = getattr(cause, "reason", None)
        if isinstance(reason, NewConnectionError):
            return True
        cause = cause.__context__ or cause.__cause__
    return False
