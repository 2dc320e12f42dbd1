"""Fake helpdesk APIs for tests and benchmarks: small HTTP servers on 127.0.0.1 that record every request.

:class:`FakeChatwoot` answers the Chatwoot application API calls an agent bot makes (create message,
``toggle_status``, ``toggle_typing_status``) in Chatwoot's response shapes, checking the
``api_access_token`` header; :class:`FakeSunshine` answers the Sunshine Conversations v2 calls
(messages, ``passControl``, ``activity``), checking HTTP basic auth. Both record ``(method, path,
headers, body)`` of every request, hand out increasing message ids (a Chatwoot id sequence shared
with :meth:`FakeChatwoot.next_id`, which tests use for customer messages so ids interleave as in a
real installation), and take injected faults: an answer status for the next N matching requests,
holding an answer until released, or closing the connection without an answer.

Nothing here is imported by the product: these are the stand-ins for third-party services the tests
cannot run.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class Fault:
    """What to do with the next ``times`` requests whose path contains ``path_part``.

    ``status``: answer with it (no side effect); ``hold``: wait until the event is set (or ``hold_max``
    seconds) before answering normally; ``drop``: record the request, then close without answering.
    """

    path_part: str
    times: int
    status: int | None = None
    hold: threading.Event | None = None
    hold_max: float = 30.0
    drop: bool = False
    arrived: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        fake = self.server.fake
        fault = fake._take_fault(self.path)
        record = Recorded(
            "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time()
        )
        with fake.lock:
            fake.requests.append(record)
        if fault is not None:
            fault.arrived.set()
            if fault.drop:
                self.close_connection = True
                self.connection.close()
                return
            if fault.status is not None:
                self._send(fault.status, {"error": "injected fault"})
                return
            if fault.hold is not None:
                fault.hold.wait(fault.hold_max)
        status, answer = fake.answer(record)
        self._send(status, answer)

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client went away (e.g. a killed worker)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeHelpdesk


class FakeHelpdesk:
    """Base: a threaded HTTP server on 127.0.0.1 with request recording and fault injection."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHelpdesk:
        self._thread.start()
        return self

    def stop(self) -> None:
        for fault in self.faults:
            if fault.hold is not None:
                fault.hold.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fault(self, path_part: str, times: int = 1, **kwargs: Any) -> Fault:
        """Inject a :class:`Fault` for the next ``times`` requests whose path contains ``path_part``."""
        fault = Fault(path_part, times, **kwargs)
        with self.lock:
            self.faults.append(fault)
        return fault

    def _take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.path_part in path:
                    fault.times -= 1
                    return fault
        return None

    def calls(self, path_part: str = "") -> list[Recorded]:
        """The recorded requests whose path contains ``path_part``, in arrival order."""
        with self.lock:
            return [r for r in self.requests if path_part in r.path]

    def answer(self, record: Recorded) -> tuple[int, Any]:  # pragma: no cover - subclasses
        raise NotImplementedError


class FakeChatwoot(FakeHelpdesk):
    """Chatwoot's application API, as an agent bot sees it.

    Args:
        token: the ``api_access_token`` it accepts (others get 401 as Chatwoot answers).
        first_id: the first message id handed out.
    """

    PATH = re.compile(
        r"^/api/v1/accounts/(\d+)/conversations/(\d+)/(messages|toggle_status|toggle_typing_status)$"
    )

    def __init__(self, token: str, first_id: int = 1000) -> None:
        super().__init__()
        self.token = token
        self._ids = itertools.count(first_id)
        self.status: dict[int, str] = {}

    def next_id(self) -> int:
        """A new message id from the installation's one sequence (customer and bot messages alike)."""
        with self.lock:
            return next(self._ids)

    def posted(self, conversation: int | None = None) -> list[Recorded]:
        """Successful-looking message posts (to one conversation, or all)."""
        part = f"/conversations/{conversation}/messages" if conversation is not None else "/messages"
        return self.calls(part)

    def answer(self, record: Recorded) -> tuple[int, Any]:
        if record.headers.get("api_access_token") != self.token:
            return 401, {"error": "Invalid Access Token"}
        match = self.PATH.match(record.path)
        if not match:
            return 404, {"error": "Resource could not be found"}
        account, conversation, action = int(match[1]), int(match[2]), match[3]
        body = record.body if isinstance(record.body, dict) else {}
        if action == "messages":
            return 200, {
                "id": self.next_id(),
                "content": body.get("content"),
                "inbox_id": 3,
                "conversation_id": conversation,
                "message_type": 1,
                "content_type": "text",
                "content_attributes": {},
                "created_at": int(time.time()),
                "private": bool(body.get("private")),
                "source_id": None,
                "sender": {"id": 9, "name": "Assistant", "type": "agent_bot"},
                "account_id": account,
            }
        if action == "toggle_status":
            self.status[conversation] = body.get("status", "")
            return 200, {
                "meta": {},
                "payload": {
                    "success": True,
                    "current_status": body.get("status"),
                    "conversation_id": conversation,
                },
            }
        return 200, {}


class FakeSunshine(FakeHelpdesk):
    """Sunshine Conversations v2 (messages, passControl, activity) for one app.

    Args:
        key_id, key_secret: the basic-auth credentials it accepts.
    """

    PATH = re.compile(r"^/v2/apps/([^/]+)/conversations/([^/]+)/(messages|passControl|activity)$")

    def __init__(self, key_id: str, key_secret: str) -> None:
        super().__init__()
        import base64

        self.auth = "Basic " + base64.b64encode(f"{key_id}:{key_secret}".encode()).decode()

    def answer(self, record: Recorded) -> tuple[int, Any]:
        if record.headers.get("authorization") != self.auth:
            return 401, {"errors": [{"code": "unauthorized", "title": "Authorization header is missing"}]}
        match = self.PATH.match(record.path)
        if not match:
            return 404, {"errors": [{"code": "not_found", "title": "Not found"}]}
        if match[3] == "messages":
            body = record.body if isinstance(record.body, dict) else {}
            return 201, {
                "messages": [
                    {
                        "id": uuid.uuid4().hex[:24],
                        "received": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                        "author": body.get("author"),
                        "content": body.get("content"),
                    }
                ]
            }
        return 200, {}
