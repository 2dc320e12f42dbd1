"""``assistant serve --workers N``: the production server, gunicorn with N workers, in this process.

This process becomes the gunicorn master (gunicorn's ``BaseApplication``); each worker builds the app
itself (``server.wsgi``: model and index loaded once per worker, no ``--preload``, so nothing opened
before the fork is shared). The settings given as flags reach the workers as their ``ASSISTANT_*``
environment variables. Configuration, in order (later wins): the project's gunicorn settings
(``server/serving/gunicorn_conf.py``: the buffering worker, timeouts, request limits, metrics
directory), then :func:`options` below (from the flags).

* **Threads**: ``--threads`` request threads per worker (default 4) answer requests concurrently; PyTorch
  intra-op threads per worker (setting ``torch_threads``) default here to ``cores // workers`` (at
  least 1) unless given, so N workers never run more than the machine's cores of PyTorch threads.
* **Redis**: with no ``REDIS_URL`` the embedded Redis is started here, once, before the workers
  fork, and its ``unix://`` URL handed to them; it is stopped when the master exits.
* **Metrics**: ``PROMETHEUS_MULTIPROC_DIR`` is set to a fresh directory (``<instance>/prometheus``
  unless given) so ``/metrics`` adds up every worker; a dead worker's files are marked on exit.
* **Signals** (gunicorn's own): ``SIGHUP`` reloads gracefully — new workers load the code, the model
  and the index again (after ``assistant index rebuild``, say), then the old ones finish their
  requests and exit; ``SIGTERM`` stops gracefully — no new connections, requests in flight finish
  within ``--graceful-timeout`` seconds; ``SIGINT``/``SIGQUIT`` stop at once.

It does not decide replies or routes (``server.wsgi`` builds the same app as ``gunicorn server.wsgi:app``).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import shutil
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from server.settings import Settings, env_var
from server.store.embedded import EmbeddedRedis

#: The project's gunicorn settings module (worker class, timeouts, limits).
CONFIG_MODULE = "server.serving.gunicorn_conf"


def torch_threads_for(workers: int, cores: int | None = None) -> int:
    """PyTorch threads per worker so that ``workers`` of them use at most the machine's cores."""
    return max(1, (cores or os.cpu_count() or 1) // workers)


def options(host: str, port: int, workers: int, threads: int, graceful_timeout: int) -> dict[str, Any]:
    """The gunicorn settings of ``assistant serve --workers``."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "graceful_timeout": graceful_timeout,
        "timeout": max(60, graceful_timeout),
        "preload_app": False,
        "child_exit": _child_exit,
        # gunicorn >= 23's control socket defaults to one path per user: two servers would share it
        "control_socket_disable": True,
    }


def _child_exit(server: Any, worker: Any) -> None:
    from server.metrics import mark_process_dead

    mark_process_dead(worker.pid)


class WorkerServer(BaseApplication):
    """gunicorn's master with :func:`options`, serving ``server.wsgi:app`` in each worker."""

    def __init__(self, settings_: dict[str, Any]) -> None:
        self.settings_ = settings_
        super().__init__()

    def load_config(self) -> None:
        # what gunicorn's -c python:<module> does: every module variable that names a setting
        for name, value in vars(importlib.import_module(CONFIG_MODULE)).items():
            if name in self.cfg.settings:
                self.cfg.set(name, value)
        for key, value in self.settings_.items():
            if key in self.cfg.settings:  # settings an older gunicorn lacks are left out
                self.cfg.set(key, value)

    def load(self) -> Flask:
        from server.wsgi import app

        return app


def environment(settings: Settings, overrides: dict[str, Any]) -> dict[str, str]:
    """The ``ASSISTANT_*`` variables that give the workers the settings of the flags."""
    out = {}
    for f in dataclasses.fields(Settings):
        if f.name in overrides:
            value = getattr(settings, f.name)
            out[env_var(f)] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    out["ASSISTANT_ENV"] = settings.env
    return out


def serve(
    settings: Settings,
    overrides: dict[str, Any],
    host: str,
    port: int,
    workers: int,
    threads: int,
    graceful_timeout: int,
) -> int:
    """Run gunicorn until it stops (see the module docstring); gunicorn ends the process with its exit
    status (0 after a graceful stop).

    Args:
        settings: the validated settings of the flags and environment (checked before any fork).
        overrides: the settings given as flags (passed on to the workers' environment).
    """
    overrides = dict(overrides)
    if "torch_threads" not in overrides:
        overrides["torch_threads"] = torch_threads_for(workers)
        settings = dataclasses.replace(settings, torch_threads=overrides["torch_threads"])
    instance = Path(settings.instance_dir or Flask("server").instance_path).resolve()
    embedded = None
    if not settings.redis_url:
        embedded = EmbeddedRedis(instance / "redis")
        overrides["redis_url"] = embedded.start()
        settings = dataclasses.replace(settings, redis_url=overrides["redis_url"])
    metrics_dir = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or instance / "prometheus")
    shutil.rmtree(metrics_dir, ignore_errors=True)  # samples of an earlier run's pids would add up
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    os.environ.update(environment(settings, overrides))
    try:
        WorkerServer(options(host, port, workers, threads, graceful_timeout)).run()
    finally:
        if embedded is not None:
            embedded.stop()
    return 0
