"""The supervisor of the embedded Redis: runs ``redis-server`` until no server process uses it any more.

Started by ``server/store/embedded.py`` as ``python -I supervisor.py DIR SOCKET -- redis-server ...``
(by file path, importing only the standard library, so it starts in milliseconds). It forks itself
into the background (the starter exits once the server answers, so the supervisor belongs to no
server process), then:

* starts ``redis-server`` as its child with ``PR_SET_PDEATHSIG`` = ``SIGTERM``: if the supervisor is
  killed, the server shuts down cleanly instead of being orphaned;
* writes ``DIR/server.json`` (``pid``, ``supervisor``, ``socket``) once ``PING`` is answered;
* every 0.2 s takes ``DIR/start.lock`` (without waiting) and tries ``DIR/users.lock`` exclusively:
  when that succeeds no server process holds its shared lock (all stopped, or were killed), so it
  shuts the server down (``SIGTERM``: the AOF is fsynced), removes ``server.json`` and exits;
* on ``SIGTERM`` (sent by the last server process stopping) does the same at once.

It does not choose the server's settings (``RedisProcess.command`` does) and serves no requests.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

#: Seconds between two checks for remaining users.
POLL_SECONDS = 0.2


def _die_with_parent() -> None:
    """In the forked server process: get ``SIGTERM`` when the supervisor dies (Linux ``prctl``)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _pings(socket_path: str) -> bool:
    """Whether a Redis server answers ``PING`` on the unix socket (a loading server does not)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(socket_path)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _stop(server: subprocess.Popen) -> None:
    """Graceful shutdown (``SIGTERM``: redis-server fsyncs the AOF and exits); kill after 10 s."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


def _unused(directory: Path) -> bool:
    """Hold ``start.lock`` and ``users.lock`` exclusively if nobody uses the server; never waits."""
    start_lock = os.open(directory / "start.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(start_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(start_lock)  # a server process is starting or stopping: look again later
        return False
    users = os.open(directory / "users.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(users)
        os.close(start_lock)
        return False
    # keep both descriptors (and locks) open until this process exits: nobody registers meanwhile
    return True


def supervise(directory: Path, socket_path: str, command: list[str], ready_fd: int) -> int:
    """Run the server; write ``b"1"`` to ``ready_fd`` once it answers (``b"0"`` if it cannot start)."""
    stop = False

    def on_term(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the server's terminal is for the server
    if os.path.exists(socket_path):
        os.unlink(socket_path)  # left by a killed server (the starter checked that nothing answers)
    server = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 (the supervisor has one thread)
    )
    state_file = directory / "server.json"
    try:
        deadline = time.monotonic() + 30
        while not _pings(socket_path):
            if server.poll() is not None or time.monotonic() > deadline or stop:
                print(f"error: redis-server did not start (exit code {server.poll()})", file=sys.stderr)
                os.write(ready_fd, b"0")
                return 1
            time.sleep(0.02)
        state = {"pid": server.pid, "supervisor": os.getpid(), "socket": socket_path}
        state_file.write_text(json.dumps(state), encoding="utf-8")
        os.write(ready_fd, b"1")
        os.close(ready_fd)
        while not stop and server.poll() is None:
            time.sleep(POLL_SECONDS)
            if not stop and _unused(directory):
                break
        if server.poll() is not None:
            print(f"redis-server exited by itself with code {server.returncode}", file=sys.stderr)
    finally:
        _stop(server)
        state_file.unlink(missing_ok=True)
        if os.path.dirname(socket_path) != str(directory):  # a short socket folder in /tmp
            with contextlib.suppress(OSError):
                os.unlink(socket_path)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(socket_path))
    return 0


def main(argv: list[str]) -> int:
    """``supervisor.py DIR SOCKET -- COMMAND...``: fork the supervisor, wait until the server answers."""
    if len(argv) < 4 or argv[2] != "--":
        print("usage: supervisor.py DIR SOCKET -- redis-server ARGS...", file=sys.stderr)
        return 2
    directory, socket_path, command = Path(argv[0]).resolve(), argv[1], argv[3:]
    ready_r, ready_w = os.pipe()
    if os.fork() > 0:
        os.close(ready_w)
        return 0 if os.read(ready_r, 1) == b"1" else 1
    os.close(ready_r)
    code = 1
    try:
        code = supervise(directory, socket_path, command, ready_w)
    except BaseException as e:  # noqa: BLE001 (everything goes to the supervisor's log)
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
    finally:
        os._exit(code)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
