"""Rebuild a saved FAQ index from a changed FAQ file, keeping its configuration and calibration data.

A module of its own because it uses both the index (``index.py``) and the conversational retrieval
built on it (``conversational.py``): kept in either, it would make the two import each other.
"""

from __future__ import annotations

from pathlib import Path

from assistant.data import Query
from assistant.retrieval.conversational import recalibrate
from assistant.retrieval.index import FaqIndex


def rebuild_index(index_dir: str | Path, faq_path: str | Path, *, progress: bool = False) -> FaqIndex:
    """Rebuild a saved index from a changed FAQ file: same config, same calibration queries; saved in place.

    Embeddings of unchanged texts are reused; only new texts are encoded. No model is trained.
    Calibration queries whose ``faq_id`` is no longer in the FAQ are now out of scope (their entry
    is gone), counted in the report as ``relabelled_out_of_scope``. An index calibrated on dialogs
    (``conversation``) is calibrated again on its stored dialogs with its stored settings
    (``assistant/retrieval/conversational.py``: ``recalibrate``).

    Returns:
        the new index (also saved to ``index_dir``), for a server to swap in.

    Raises:
        DataError: the FAQ file is malformed. RetrievalError: the old index cannot be loaded, or
        calibration fails on the new FAQ.
    """
    directory = FaqIndex.resolve_dir(index_dir)
    old = FaqIndex.load(directory)
    new = FaqIndex.from_faq_file(faq_path, old.config, reuse=old, progress=progress)
    if old._calibration_queries:
        ids = {e.id for e in new.entries}
        queries = [
            q if q.faq_id is None or q.faq_id in ids else Query(q.text, None)
            for q in old._calibration_queries
        ]
        report = new.calibrate(queries)
        report["relabelled_out_of_scope"] = sum(
            q.faq_id is not None and q.faq_id not in ids for q in old._calibration_queries
        )
    if old.conversation is not None:
        recalibrate(new, old.conversation, old.calibration_dialogs)
    new.save(directory)
    return new
