"""First-run demo assets: the demo FAQ index and demo LSTM, built once into the instance folder.

On a fresh machine with no model or index configured (``env`` development, ``demo`` on), the
server builds, from the demo data installed with the package (:mod:`assistant.demo_data`),

* ``<instance>/models/demo-index``: the FAQ index of ``faq/faq.jsonl``, its confidence threshold
  calibrated on ``faq/queries-dev.jsonl`` plus the project's generic out-of-scope messages
  (:func:`finetune.build_index.build_index`);
* ``<instance>/models/demo-lstm``: the LSTM reply model trained on ``dialogs/`` with the ``demo``
  preset (:func:`finetune.train_lstm.train_lstm`; a few minutes on 2 CPU cores, progress shown), with
  its in-domain check calibrated against the generic out-of-scope messages;

and reuses them on every later start. Each is built into a ``.partial`` folder and renamed when
complete, under a file lock, so an interrupted or concurrent first run never leaves a half-built
asset that looks finished. The demo is the one place the server uses ``finetune`` (its typed build and
training functions); nothing in ``finetune`` imports the server.

It does not train anything else and is never used in production (settings refuse it).
"""

from __future__ import annotations

import fcntl
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from assistant import demo_data
from assistant.errors import AssistantError, ModelError, RetrievalError
from assistant.generators.base import MANIFEST
from assistant.retrieval.store import INDEX_MANIFEST
from assistant.routing.generic import GENERIC_OOS_PATH

#: The demo agents' handover macro (the repository's ``data/demo_scripts.py``); the demo LSTM learns to say it, and the
#: pipeline flags it ``handoff`` (``PipelineConfig.handoff_replies``) unless the settings name others.
DEMO_HANDOFF_REPLIES = ("Thanks, I've passed that on. A member of our team will join this chat shortly.",)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _build(
    target: Path,
    done: Callable[[Path], bool],
    run: Callable[[Path], object],
    what: str,
    error: type[Exception],
    progress: Callable[[str], None],
) -> Path:
    """Build ``target`` with ``run(partial_dir)`` unless ``done(target)``; rename when complete.

    Raises:
        ``error``: ``run`` raised an :class:`AssistantError`, or finished without ``done(partial_dir)``;
            the partial output is left for inspection and rebuilt on the next start.
    """
    if done(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent first run waits, then reuses our result
        try:
            if done(target):
                return target
            partial = target.with_name(target.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            progress(f"building the {what} in {target} (first run only) ...")
            try:
                run(partial)
            except AssistantError as e:
                raise error(f"building the {what} failed: {e}; partial output left in {partial}") from e
            if not done(partial):
                raise error(f"building the {what} finished without a complete result in {partial}")
            if target.exists():
                shutil.rmtree(target)
            partial.rename(target)
            progress(f"{what} ready: {target}")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def ensure_demo_index(instance_dir: Path, progress: Callable[[str], None] = _stderr) -> Path:
    """The demo FAQ index directory, built on first use.

    Raises:
        DataError: the packaged demo FAQ or query file is missing.
        RetrievalError: building the index failed.
    """
    faq, queries = demo_data.path(demo_data.FAQ), demo_data.path(demo_data.QUERIES)

    def run(out: Path) -> None:
        from assistant.retrieval.config import RetrieverConfig
        from finetune.build_index import build_index

        build_index(
            faq,
            out,
            RetrieverConfig(),
            queries=queries,
            oos_queries=[GENERIC_OOS_PATH],
            progress=True,
            log=progress,
        )

    def done(path: Path) -> bool:
        return (path / INDEX_MANIFEST).is_file()

    return _build(
        instance_dir / "models" / "demo-index", done, run, "demo FAQ index", RetrievalError, progress
    )


def ensure_demo_model(instance_dir: Path, progress: Callable[[str], None] = _stderr) -> Path:
    """The demo LSTM model directory, trained on first use (the ``demo`` preset, a few minutes on CPU).

    Raises:
        DataError: a packaged demo dialog file is missing.
        ModelError: training failed.
    """
    for split in ("train", "valid"):
        demo_data.path(demo_data.DIALOGS[split])  # a broken install fails here, not mid-build

    def run(out: Path) -> None:
        from finetune.train_lstm import preset_training, train_lstm

        train_lstm(preset_training("demo", output_dir=out))

    def done(path: Path) -> bool:
        return (path / MANIFEST).is_file()

    return _build(
        instance_dir / "models" / "demo-lstm", done, run, "demo LSTM reply model", ModelError, progress
    )


def ensure_demo_scope(model_dir: Path, progress: Callable[[str], None] = _stderr) -> None:
    """Calibrate the demo model's in-domain check if it has none (a demo model trained before the check
    existed; new ones get it from the trainer). About half a minute on CPU.

    Raises:
        DataError / ModelError: the demo dialogs are missing, or the check cannot be built.
    """
    from assistant.routing.scope import has_scope_check
    from finetune.calibrate_scope import calibrate_model_scope

    if has_scope_check(model_dir):
        return
    progress(f"calibrating the demo model's in-domain check in {model_dir} ...")
    train, valid = (demo_data.path(demo_data.DIALOGS[split]) for split in ("train", "valid"))
    calibrate_model_scope(model_dir, [train], [valid])


def ensure_demo_assets(instance_dir: Path, progress: Callable[[str], None] = _stderr) -> tuple[Path, Path]:
    """``(model_dir, index_dir)`` of the demo assets in ``instance_dir``, building what is missing."""
    index_dir = ensure_demo_index(instance_dir, progress)
    model_dir = ensure_demo_model(instance_dir, progress)
    ensure_demo_scope(model_dir, progress)
    return model_dir, index_dir
