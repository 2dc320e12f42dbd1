"""The demo data the project ships (Parcelo, a fictional shop): FAQ, dev queries, support dialogs.

The files are package data (data card: ``README.md`` in this folder), found through
``importlib.resources``, so an installed wheel has them as a checkout does: the first-run demo of
``assistant serve`` (``server/demo.py``), ``assistant-train-lstm --preset demo`` and the tests read
them from here. This module only locates the files; ``assistant.data`` reads them, and
``data/build_demo_dialogs.py`` (in the repository, not installed) regenerates the dialogs.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from assistant.errors import DataError

#: the FAQ (60 entries), relative to the package folder.
FAQ = "faq/faq.jsonl"
#: labelled development queries (``faq_id`` null = out of scope), for calibrating the handoff threshold.
QUERIES = "faq/queries-dev.jsonl"
#: support dialogs by split.
DIALOGS = {split: f"dialogs/{split}.jsonl" for split in ("train", "valid", "test")}


def directory() -> Path:
    """The folder holding the demo files (``faq/``, ``dialogs/``, ``README.md``).

    Raises:
        DataError: the package is not installed as plain files (e.g. imported from a zip archive).
    """
    root = files(__name__)
    if not isinstance(root, Path):
        raise DataError(
            f"the demo data package {__name__} is not a folder on disk ({root!r}); install the project "
            "as files (pip install, not a zip import) to use the demo data"
        )
    return root


def path(name: str) -> Path:
    """The file ``name`` (e.g. :data:`FAQ`) of the demo data.

    Raises:
        DataError: no such file (a broken install or checkout), or see :func:`directory`.
    """
    file = directory() / name
    if not file.is_file():
        raise DataError(
            f"{file}: missing from the installed demo data; reinstall the project "
            "(or set ASSISTANT_MODEL_DIR / ASSISTANT_INDEX_DIR to your own model and index)"
        )
    return file
