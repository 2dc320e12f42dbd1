"""Where an HTTP/1.1 request ends in a byte buffer: just enough parsing to know when a request is whole.

:func:`request_state` reads the head for ``Content-Length`` / ``Transfer-Encoding: chunked`` and
``Expect: 100-continue`` and walks chunked framing (RFC 9112 sections 6-7). It validates nothing
else: whatever it cannot understand is reported ``complete``, so the real parser (gunicorn's) sees
it and answers 400/413/431 as it always does.

It does not parse requests for the application and does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The longest request head waited for; a longer one is handed on (gunicorn refuses it).
MAX_HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class RequestState:
    """How far a buffer holds one request.

    Attributes:
        complete: the whole request (head and body) is in the buffer, or it never will be parseable
            or bufferable (malformed, or larger than the caller's limit): hand it on either way.
        wants_continue: the head is complete, asks ``Expect: 100-continue`` and the body is missing.
    """

    complete: bool
    wants_continue: bool = False


_MORE = RequestState(False)
_DONE = RequestState(True)


def request_state(buffer: bytes, max_body_bytes: int) -> RequestState:
    """Whether ``buffer`` (bytes received on a connection, from the start of a request) is a whole request.

    Args:
        buffer: the bytes so far.
        max_body_bytes: bodies announced or found larger than this are reported complete at once
            (the application refuses them with 413 without reading them).
    """
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return _DONE if len(buffer) > MAX_HEAD_BYTES else _MORE
    length, chunked, expect = None, False, False
    for line in buffer[:head_end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            if not value.isdigit():
                return _DONE
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = value.endswith(b"chunked")
        elif name == b"expect":
            expect = value == b"100-continue"
    body = buffer[head_end + 4 :]
    if chunked:
        done = _chunked_complete(body, max_body_bytes)
    elif length is None:
        done = True  # no body
    else:
        done = length > max_body_bytes or len(body) >= length
    if done:
        return _DONE
    return RequestState(False, wants_continue=expect and not body)


def _chunked_complete(body: bytes, max_body_bytes: int) -> bool:
    """Whether ``body`` holds a whole chunked body (last chunk and trailer section), or cannot be one."""
    position, total = 0, 0
    while True:
        line_end = body.find(b"\r\n", position)
        if line_end < 0:
            return len(body) - position > 1024  # a chunk-size line this long is not one
        size_text = body[position:line_end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return True  # malformed: gunicorn answers 400
        if size == 0:
            rest = body[line_end + 2 :]
            return rest.startswith(b"\r\n") or b"\r\n\r\n" in rest  # no trailers, or trailers ended
        total += size
        if total > max_body_bytes:
            return True
        position = line_end + 2 + size + 2
        if position > len(body):
            return False
