"""A gunicorn ``gthread`` worker that reads each request whole before a thread serves it.

gunicorn's ``gthread`` worker hands a connection to a request thread as soon as its first bytes
arrive; the thread then reads the rest of the head and the body with blocking reads and no deadline.
A client that sends part of a body and stalls holds that thread for as long as it likes: with one
slow client per thread every other request waits, and no slow connection is ever closed.

:class:`BufferingThreadWorker` keeps gthread's threads, keep-alive and shutdown, but reads a
request's head and body in the worker's event loop (non-blocking, like a buffering proxy) and gives
it to a thread only once it is complete (``server/serving/http_framing.py``). A client gets
:attr:`~BufferingThreadWorker.request_read_timeout` seconds to send a whole request; after that its
connection is answered 408 and closed. A slow client therefore costs a buffer and a socket, never a
thread. Bodies announced larger than :attr:`~BufferingThreadWorker.max_buffered_bytes` are handed
on unread (the application answers 413 without reading them). ``Expect: 100-continue`` is answered
as soon as the head is in.

With TLS or cleartext HTTP/2 configured in gunicorn it behaves exactly like ``gthread`` (it would
have to read encrypted or HTTP/2 bytes); terminate those at a proxy in front.

It depends on the internals of gunicorn's ``gthread`` worker (``TConn``, ``enqueue_req``,
``on_client_socket_readable``, ``murder_pending``) and is pinned to the gunicorn major version in
``pyproject.toml``. It does not answer requests (the Flask app does).
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from functools import partial

from gunicorn.workers.gthread import TConn, ThreadWorker

from server.serving.http_framing import request_state

_TIMEOUT_BODY = b'{"error": {"code": "request_timeout", "message": "the request was not received in time"}}'
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class BufferingThreadWorker(ThreadWorker):
    """``gthread``, but a thread gets a connection only with a whole request in hand (see the module doc).

    Attributes (class-level; ``server/serving/gunicorn_conf.py`` sets them from its settings):
        request_read_timeout: seconds a client has, from its first byte (or from the end of its
            previous request on a kept-alive connection), to send one whole request.
        max_buffered_bytes: the largest body buffered; a larger announced body is handed on unread.
    """

    request_read_timeout = 10.0
    max_buffered_bytes = 1 << 20

    def init_process(self) -> None:
        self._reading: dict[TConn, float] = {}
        super().init_process()

    @property
    def _buffering(self) -> bool:
        return not (self.cfg.is_ssl or self.cfg.http2_cleartext != "off")

    # -------------------------------------------------------- new data arrives
    def accept(self, listener) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self._start_reading(TConn(self.cfg, client_sock, client_addr, listener.getsockname()), b"")

    def on_client_socket_readable(self, conn: TConn, client) -> None:
        """A kept-alive connection starts its next request."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._start_reading(conn, b"")

    def enqueue_req(self, conn: TConn) -> None:
        if getattr(conn, "ready_request", None) is not None or not self._buffering:
            super().enqueue_req(conn)
            return
        # gthread read ahead into the next request of a kept-alive connection: finish reading it here
        self._start_reading(conn, conn.parser.unreader.take_buffered())

    def _start_reading(self, conn: TConn, buffered: bytes) -> None:
        if not self._buffering:
            super().enqueue_req(conn)
            return
        conn.buffered = bytearray(buffered)
        conn.continue_sent = False
        conn.sock.setblocking(False)
        self._reading[conn] = time.monotonic() + self.request_read_timeout
        if buffered and self._check_complete(conn):
            return
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: TConn, client) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self.poller.unregister(conn.sock)
            self._close(conn)
            return
        conn.buffered += data
        if self._check_complete(conn, registered=True):
            return

    def _check_complete(self, conn: TConn, registered: bool = False) -> bool:
        state = request_state(bytes(conn.buffered), self.max_buffered_bytes)
        if state.wants_continue and not conn.continue_sent:
            conn.continue_sent = True
            try:
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            except OSError:
                pass
        if not state.complete:
            return False
        if registered:
            self.poller.unregister(conn.sock)
        del self._reading[conn]
        conn.ready_request = bytes(conn.buffered)
        conn.buffered = None
        conn.data_ready = True  # gthread: do not wait for data again
        self.enqueue_req(conn)
        return True

    # ------------------------------------------------------ the request thread
    def handle(self, conn: TConn):
        request = getattr(conn, "ready_request", None)
        if request is not None:
            conn.ready_request = None
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(request)
        return super().handle(conn)

    # ------------------------------------------------------------ deadlines
    def murder_pending(self) -> None:
        """gthread's sweep, plus: answer 408 and close connections that did not send a whole request
        within ``request_read_timeout``."""
        super().murder_pending()
        now = time.monotonic()
        for conn, deadline in list(self._reading.items()):
            if deadline > now:
                continue
            del self._reading[conn]
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass
            try:
                conn.sock.send(_TIMEOUT_RESPONSE)
            except OSError:
                pass
            self.nr_conns -= 1
            _close_quietly(conn.sock)

    def _close(self, conn: TConn) -> None:
        self._reading.pop(conn, None)
        self.nr_conns -= 1
        _close_quietly(conn.sock)


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
