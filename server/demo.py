"""First-run demo assets: the demo FAQ index and demo LSTM, built once into the instance folder.

On a fresh machine with no model or index configured (``env`` development, ``demo`` on), the
server builds

* ``<instance>/models/demo-index``: the FAQ index of ``data/faq/faq.jsonl``, its confidence
  threshold calibrated on ``data/faq/queries-dev.jsonl`` plus the project's generic out-of-scope
  messages (``finetune.build_index``);
* ``<instance>/models/demo-lstm``: the LSTM reply model trained on ``data/dialogs`` with
  ``--preset demo`` (``finetune.train_lstm``; a few minutes on 2 CPU cores, progress shown), with its
  in-domain check calibrated against the generic out-of-scope messages;

and reuses them on every later start. Each is built into a ``.partial`` folder and renamed when
complete, under a file lock, so an interrupted or concurrent first run never leaves a half-built
asset that looks finished.

It does not train anything else and is never used in production (settings refuse it).
"""

from __future__ import annotations

import fcntl
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from assistant.errors import DataError, ModelError, RetrievalError
from assistant.generators.base import MANIFEST
from assistant.retrieval.store import INDEX_MANIFEST
from assistant.routing.generic import GENERIC_OOS_PATH

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_FAQ = REPO_ROOT / "data" / "faq" / "faq.jsonl"
DEMO_QUERIES = REPO_ROOT / "data" / "faq" / "queries-dev.jsonl"
DEMO_DIALOGS = REPO_ROOT / "data" / "dialogs"
#: The demo agents' handover macro (``data/demo_scripts.py``); the demo LSTM learns to say it, and the
#: pipeline flags it ``handoff`` (``PipelineConfig.handoff_replies``) unless the settings name others.
DEMO_HANDOFF_REPLIES = ("Thanks, I've passed that on. A member of our team will join this chat shortly.",)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _require_files(*paths: Path) -> None:
    for path in paths:
        if not path.is_file():
            raise DataError(
                f"{path}: missing; the demo assets are built from the repository's data/ folder "
                "(or set ASSISTANT_MODEL_DIR / ASSISTANT_INDEX_DIR)"
            )


def _build(
    target: Path,
    done: Callable[[Path], bool],
    run: Callable[[Path], int],
    what: str,
    error: type[Exception],
    progress: Callable[[str], None],
) -> Path:
    """Build ``target`` with ``run(partial_dir)`` unless ``done(target)``; rename when complete."""
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
            code = run(partial)
            if code != 0 or not done(partial):
                raise error(
                    f"building the {what} failed (exit code {code}); partial output left in {partial}"
                )
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
        DataError: the demo FAQ or query file is missing.
        RetrievalError: ``finetune.build_index`` failed.
    """
    _require_files(DEMO_FAQ, DEMO_QUERIES)

    def run(out: Path) -> int:
        from finetune import build_index

        return build_index.main(
            ["--faq", str(DEMO_FAQ), "--queries", str(DEMO_QUERIES), "--oos-queries", str(GENERIC_OOS_PATH)]
            + ["--out", str(out)]
        )

    def done(path: Path) -> bool:
        return (path / INDEX_MANIFEST).is_file()

    return _build(
        instance_dir / "models" / "demo-index", done, run, "demo FAQ index", RetrievalError, progress
    )


def ensure_demo_model(instance_dir: Path, progress: Callable[[str], None] = _stderr) -> Path:
    """The demo LSTM model directory, trained on first use (``--preset demo``, a few minutes on CPU).

    Raises:
        DataError: a demo dialog file is missing.
        ModelError: ``finetune.train_lstm`` failed.
    """
    train, valid = DEMO_DIALOGS / "train.jsonl", DEMO_DIALOGS / "valid.jsonl"
    _require_files(train, valid)

    def run(out: Path) -> int:
        from finetune import train_lstm

        return train_lstm.main(
            ["--train", str(train), "--valid", str(valid), "--output-dir", str(out), "--preset", "demo"]
        )

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
    calibrate_model_scope(model_dir, [DEMO_DIALOGS / "train.jsonl"], [DEMO_DIALOGS / "valid.jsonl"])


def ensure_demo_assets(instance_dir: Path, progress: Callable[[str], None] = _stderr) -> tuple[Path, Path]:
    """``(model_dir, index_dir)`` of the demo assets in ``instance_dir``, building what is missing."""
    index_dir = ensure_demo_index(instance_dir, progress)
    model_dir = ensure_demo_model(instance_dir, progress)
    ensure_demo_scope(model_dir, progress)
    return model_dir, index_dir
