"""Test support for streamed replies: a slow streaming generator, a live server, and an SSE reader.

``SlowGenerator`` is a real :class:`~assistant.generators.base.Generator` whose replies are scripted and
stream word by word with a delay, so a test (or a browser) can see a reply arrive in pieces.
``live_server`` serves an app with Werkzeug on 127.0.0.1 in a thread. ``read_events`` parses an SSE body
with the ``sseclient-py`` library (not by string matching).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sseclient import SSEClient
from werkzeug.serving import make_server

from assistant.errors import ModelError
from assistant.generators.base import Generation, GenerationRequest, Generator, TextCallback

#: The demo agents' handover macro, also given to the pipeline as a handoff reply in these tests.
HANDOFF_REPLY = "Thanks, I've passed that on. A member of our team will join this chat shortly."


class SlowGenerator(Generator):
    """Replies ``"echo after N turns: <message>"``, or a scripted reply when the message contains one of
    ``scripts``' keys; :meth:`stream` passes the reply on word by word, sleeping ``delay`` seconds first.

    Attributes:
        requests: every request seen (tests check the context).
        fail_after: if set, :meth:`stream` raises ``ModelError`` after that many pieces.
        confidence: of every reply.
    """

    name = "slow"

    def __init__(
        self, delay: float = 0.05, confidence: float = 0.9, scripts: dict[str, str] | None = None
    ) -> None:
        self.delay = delay
        self.confidence = confidence
        self.scripts = scripts or {}
        self.fail_after: int | None = None
        self.requests: list[GenerationRequest] = []

    def reply(self, request: GenerationRequest) -> str:
        text = request.context[-1].text
        for key, scripted in self.scripts.items():
            if key in text.lower():
                return scripted
        return f"echo after {len(request.context)} turns: {text}"

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        self.requests.extend(requests)
        return [Generation(self.reply(r), self.confidence) for r in requests]

    def stream(self, request: GenerationRequest, on_text: TextCallback) -> Generation:
        self.requests.append(request)
        text = self.reply(request)
        words = text.split(" ")
        for i, word in enumerate(words):
            if self.fail_after is not None and i >= self.fail_after:
                raise ModelError("the slow test generator failed on purpose")
            time.sleep(self.delay)
            on_text(word if i == 0 else " " + word)
        return Generation(text, self.confidence)


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port, threaded Werkzeug) while the block runs; yields its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def read_events(chunks: Iterable[bytes]) -> list[tuple[str, str]]:
    """``(event, data)`` of every event in an SSE body, parsed by ``sseclient-py``."""
    return [(e.event, e.data) for e in SSEClient(chunks).events()]
