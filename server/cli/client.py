"""A minimal JSON-over-HTTP client for a running assistant server (used by ``assistant chat`` and
``assistant replay``). Standard library only; it knows nothing of the endpoints' bodies.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from assistant.errors import AssistantError


class HttpClient:
    """``send(method, path, body) -> (status, json)`` over HTTP to a running server.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000``.
        api_key: sent as ``Authorization: Bearer <key>`` when non-empty.

    ``send`` raises ``AssistantError`` when the server cannot be reached or answers something that is
    not JSON (a proxy's HTML error page); HTTP error statuses with a JSON body are returned, not raised.
    """

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    def send(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, self._json(response.status, response.read())
        except urllib.error.HTTPError as e:
            return e.code, self._json(e.code, e.read())
        except urllib.error.URLError as e:
            raise AssistantError(
                f"cannot reach {self.base_url}: {e.reason} (is `assistant serve` running?)"
            ) from e

    def _json(self, status: int, raw: bytes) -> Any:
        if not raw:
            return None
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise AssistantError(
                f"{self.base_url} answered HTTP {status} with a body that is not JSON "
                f"(a proxy or another service?): {raw[:200]!r}"
            ) from e
