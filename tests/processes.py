"""A real gunicorn serving ``server.wsgi:app`` on a loopback port, for tests and ``bench/fault_run.py``.

:class:`Gunicorn` starts it with ``gunicorn -c python:server.serving.gunicorn_conf`` (plus flags), in
its own session, with this checkout first on ``PYTHONPATH``; waits for ``/healthz``; and at the end
stops it by its PID (SIGTERM, then SIGKILL of its process group after a bound), so no test leaves a
server behind. Everything it prints goes to a log file the test can read.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

from server.store.redis_process import free_loopback_port

ROOT = Path(__file__).resolve().parent.parent


class Gunicorn:
    """``gunicorn -c python:server.serving.gunicorn_conf server.wsgi:app`` on 127.0.0.1.

    Args:
        env: ``ASSISTANT_*`` settings (the environment of the test process is the base).
        args: extra gunicorn flags, e.g. ``["--workers", "2", "--preload"]``.
        log_file: where gunicorn's output goes.
        start_timeout: seconds to wait for ``/healthz``.
    """

    def __init__(
        self, env: dict[str, str], args: list[str], log_file: Path, start_timeout: float = 120
    ) -> None:
        self.port = free_loopback_port()
        self.env = {
            **os.environ,
            **env,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        self.args = args
        self.log_file = log_file
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None

    def start(self) -> Self:
        """Start it and wait until ``/healthz`` answers 200.

        Raises:
            RuntimeError: it exited or did not answer in time (the message has its log).
        """
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:server.serving.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{self.port}",
            *self.args,
            "server.wsgi:app",
        ]
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=log, cwd=ROOT, start_new_session=True
            )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log()}")
            try:
                if self.request("GET", "/healthz", timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gunicorn did not answer within {self.start_timeout} s:\n{self.log()}")
            time.sleep(0.2)

    def request(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        headers: dict | None = None,
        timeout: float = 30,
    ) -> tuple[int, dict | list | None]:
        """One HTTP request on a new connection; returns ``(status, parsed JSON body or None)``."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            all_headers = {"Content-Type": "application/json", **(headers or {})}
            connection.request(method, path, body=data, headers=all_headers)
            response = connection.getresponse()
            raw = response.read()
            try:
                return response.status, json.loads(raw) if raw else None
            except ValueError:
                return response.status, None
        finally:
            connection.close()

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the master."""
        os.kill(self.pid, signum)

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def worker_pids(self) -> list[int]:
        """PIDs of the master's current worker processes (Linux ``/proc``)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL the whole process group; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            return None

    def log(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace") if self.log_file.exists() else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
