"""The retrieval baseline reply model: answer with the agent reply that followed the most similar context.

It needs no training. Every agent turn of the training dialogs becomes one document, keyed by the
turns before it; at inference the conversation's context is the query. This is the classic
nearest-neighbour response baseline of dialog research (e.g. the IR baselines of Lowe et al., 2015,
"The Ubuntu Dialogue Corpus", and Ritter et al., 2011), built on BM25 (Robertson & Zaragoza, 2009) as
implemented by the ``bm25s`` library (Lù, 2024), Lucene variant, with PyStemmer's English Snowball
stemmer and bm25s's English stopword list.

Retrieval key of a context (for both the indexed documents and the queries): the texts of the last
``max_context_turns`` turns joined by spaces, then the latest customer text ``customer_weight - 1``
more times, so that message counts ``customer_weight`` times (repeated terms add up in bm25s). The
role markers of :func:`~assistant.model_input.format_context` are left out: in a bag of words they are a
term of every key, which only blurs scores (STAR valid token F1 0.543 without them, 0.540 with) and
hides the "no term matches" case.

The reply is chosen by a score-weighted vote of the ``top_k`` nearest documents: identical reply texts
pool their BM25 scores and the reply with the largest pooled score wins; ties go to the reply of the
better-ranked document. Measured on STAR valid (2,659 agent turns, see ``docs/results/eval.md``):
3 turns / weight 2 / top-10 vote gives token F1 0.543 and BLEU 43.9, against 0.487 / 38.7 for the plain
nearest neighbour of the same key (``top_k = 1``).

``confidence`` is the vote share: the pooled score of the chosen reply divided by the summed score of
all ``top_k`` neighbours, in [0, 1] (always 1.0 with ``top_k = 1``). On STAR valid it ranks correct
replies better than a BM25 score normalised by the query's self-score (AUC 0.82 against 0.65 for
predicting an exact reply). When no query term occurs in the index (all scores 0, e.g. an empty
context), the reply is the most frequent reply of the training data and ``confidence`` is 0.0.

The baseline ignores ``GenerationRequest.grounding``: it only retrieves replies seen in the training
dialogs (the pipeline answers confident FAQ hits itself). It defines no likelihood, so no perplexity.
It does not read dialog files (``finetune/build_baseline.py`` does).

Model directory layout (:meth:`RetrievalBaseline.save`)::

    assistant.json   {"kind": "retrieval-baseline", "format_version": 1, "config": BaselineConfig,
                      "files": {name: sha256}, "data": [{role, path, sha256, dialogs, examples}],
                      "default_reply": str, "versions": {python, bm25s, PyStemmer, numpy}, "created"}
    replies.jsonl    one {"reply", "dialog_id", "turn_index"} per indexed document, in index order
    bm25/            the bm25s index (``BM25.save``): score matrix (CSC arrays), vocabulary, parameters
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import Stemmer

from assistant import artifacts
from assistant.config import dataclass_from_dict, require
from assistant.data import Dialog, Turn
from assistant.errors import AssistantError, CheckpointError, ConfigError, ModelError
from assistant.generators.base import (
    MANIFEST,
    Generation,
    GenerationRequest,
    Generator,
    read_manifest_of_kind,
)
from assistant.model_input import Example, build_examples

KIND = "retrieval-baseline"
FORMAT_VERSION = 1
REPLIES_FILE = "replies.jsonl"
INDEX_DIR = "bm25"
#: bm25s's English stopword list, and the Snowball stemmer language of PyStemmer.
STOPWORDS = "en"
STEMMER_LANGUAGE = "english"
#: options :func:`load_retrieval_baseline` accepts (inference-time fields of :class:`BaselineConfig`).
LOAD_OPTIONS = ("top_k",)


@dataclass
class BaselineConfig:
    """Retrieval baseline settings (the defaults were chosen on STAR valid)."""

    max_context_turns: int = field(
        default=3,
        metadata={
            "help": "turns before the reply that form the retrieval key (most recent kept); 3 = customer, "
            "agent, customer: best on STAR valid (token F1 at top_k 1: 2 turns 0.474, 3: 0.481, "
            "4: 0.459)"
        },
    )
    customer_weight: int = field(
        default=2,
        metadata={
            "help": "how many times the latest customer message counts in the key (1 = no extra weight; "
            "2 best on STAR valid)"
        },
    )
    top_k: int = field(
        default=10,
        metadata={
            "help": "nearest training contexts whose replies vote, weighted by BM25 score (1 = plain "
            "nearest neighbour); 10 best on STAR valid; can be changed at load time"
        },
    )
    k1: float = field(default=1.5, metadata={"help": "BM25 term-frequency saturation k1 (bm25s default)"})
    b: float = field(default=0.75, metadata={"help": "BM25 document-length normalisation b, in [0, 1]"})

    def __post_init__(self) -> None:
        require(
            isinstance(self.max_context_turns, int) and self.max_context_turns >= 1,
            f"max_context_turns must be an integer >= 1, got {self.max_context_turns!r}",
        )
        require(
            isinstance(self.customer_weight, int) and self.customer_weight >= 1,
            f"customer_weight must be an integer >= 1, got {self.customer_weight!r}",
        )
        require(
            isinstance(self.top_k, int) and self.top_k >= 1,
            f"top_k must be an integer >= 1, got {self.top_k!r}",
        )
        require(isinstance(self.k1, (int, float)) and self.k1 > 0, f"k1 must be > 0, got {self.k1!r}")
        require(isinstance(self.b, (int, float)) and 0 <= self.b <= 1, f"b must be in [0, 1], got {self.b!r}")


@dataclass(frozen=True)
class IndexedReply:
    """One indexed document's reply and where it came from."""

    reply: str
    dialog_id: str
    turn_index: int


def retrieval_key(context: Sequence[Turn], config: BaselineConfig) -> str:
    """The text that is indexed for (and searched with) a context; see the module docstring.

    Only the last ``config.max_context_turns`` turns are used, without role markers; the latest
    customer turn among them is repeated ``customer_weight - 1`` extra times (none if the window holds
    no customer turn).
    """
    window = tuple(context)[-config.max_context_turns :]
    key = " ".join(t.text for t in window)
    customer = [t.text for t in window if t.role == "customer"]
    if customer and config.customer_weight > 1:
        key += (" " + customer[-1]) * (config.customer_weight - 1)
    return key


def _tokenize(texts: Sequence[str], stemmer: Stemmer.Stemmer) -> list[list[str]]:
    """bm25s tokenization: lowercase, words of 2+ word characters, English stopwords out, Snowball stems."""
    return bm25s.tokenize(
        list(texts), stopwords=STOPWORDS, stemmer=stemmer, return_ids=False, show_progress=False
    )


class RetrievalBaseline(Generator):
    """BM25 nearest-context reply retrieval with a score-weighted top-k vote (see the module docstring).

    Build with :meth:`build`, persist with :meth:`save`, reload with :func:`load_retrieval_baseline`.
    """

    name = KIND

    def __init__(
        self,
        retriever: bm25s.BM25,
        replies: Sequence[IndexedReply],
        config: BaselineConfig,
        default_reply: str,
        data: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Wrap an already built index; prefer :meth:`build` or :func:`load_retrieval_baseline`.

        Args:
            retriever: a bm25s index with one document per entry of ``replies``, in the same order.
            replies: the reply of each indexed document.
            config: the settings the index was built with.
            default_reply: answered (with confidence 0) when no query term is in the index.
            data: descriptions of the data files it was built from, recorded in the manifest.

        Raises:
            ModelError: the index and ``replies`` disagree in size, or there is nothing indexed.
        """
        n_docs = int(retriever.scores["num_docs"])
        if n_docs != len(replies) or not replies:
            raise ModelError(
                f"the BM25 index holds {n_docs} documents but {len(replies)} replies were given; "
                "they must be equal and non-zero"
            )
        self.retriever = retriever
        self.replies = tuple(replies)
        self.config = config
        self.default_reply = default_reply
        self.data = [dict(d) for d in data]
        self._stemmer = Stemmer.Stemmer(STEMMER_LANGUAGE)
        self._stemmer_lock = threading.Lock()  # a PyStemmer instance must not be used concurrently

    @classmethod
    def build(
        cls,
        dialogs: Sequence[Dialog],
        config: BaselineConfig | None = None,
        data: Sequence[dict[str, Any]] = (),
    ) -> RetrievalBaseline:
        """Index every agent turn of ``dialogs`` by its retrieval key.

        Args:
            dialogs: the training dialogs.
            config: settings; defaults to :class:`BaselineConfig()`.
            data: descriptions of the source files (``{"role", "path", "sha256", ...}``) for the manifest.

        Raises:
            ModelError: the dialogs hold no agent turn.
        """
        config = config or BaselineConfig()
        examples: list[Example] = build_examples(dialogs, config.max_context_turns)
        if not examples:
            raise ModelError(f"the {len(dialogs)} dialogs hold no agent turn; nothing to index")
        stemmer = Stemmer.Stemmer(STEMMER_LANGUAGE)
        retriever = bm25s.BM25(k1=config.k1, b=config.b, method="lucene")
        retriever.index(
            _tokenize([retrieval_key(e.context, config) for e in examples], stemmer), show_progress=False
        )
        replies = [IndexedReply(e.target, e.dialog_id, e.turn_index) for e in examples]
        # most frequent reply; most_common's sort is stable, so ties go to the first seen
        default_reply = Counter(r.reply for r in replies).most_common(1)[0][0]
        return cls(retriever, replies, config, default_reply, data)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Retrieve one reply per request (grounding is ignored; see the module docstring).

        Safe to call from several threads (the index is read-only; stemming is serialised).

        Returns:
            one :class:`Generation` per request: the winning training reply and its vote share.
        """
        if not requests:
            return []
        k = min(self.config.top_k, len(self.replies))
        with self._stemmer_lock:
            queries = _tokenize([retrieval_key(r.context, self.config) for r in requests], self._stemmer)
        documents, scores = self.retriever.retrieve(queries, k=k, show_progress=False, n_threads=0)
        # documents, scores: (n_requests, k), best first
        return [self._vote(doc_row, score_row) for doc_row, score_row in zip(documents, scores)]

    def _vote(self, doc_row: np.ndarray, score_row: np.ndarray) -> Generation:
        total = float(np.sum(score_row))
        if total <= 0.0:
            return Generation(text=self.default_reply, confidence=0.0)
        pooled: dict[str, float] = {}
        for doc, score in zip(doc_row.tolist(), score_row.tolist()):
            reply = self.replies[doc].reply
            pooled[reply] = pooled.get(reply, 0.0) + float(score)
        best = max(pooled, key=pooled.__getitem__)  # first inserted (better-ranked) wins ties
        return Generation(text=best, confidence=min(1.0, max(0.0, pooled[best] / total)))

    def save(self, directory: str | Path) -> Path:
        """Write the model directory (layout in the module docstring); the manifest is written last.

        Args:
            directory: created if missing; must not already hold another model's files.

        Returns:
            the directory.

        Raises:
            CheckpointError: ``directory`` exists and is not empty and not a retrieval-baseline directory.
        """
        directory = Path(directory)
        if directory.exists() and any(directory.iterdir()):
            kind = artifacts.manifest_kind(directory, MANIFEST)
            if kind != KIND:
                raise CheckpointError(
                    f"{directory}: exists and is not empty (manifest kind {kind!r}); "
                    f"give an empty or new directory, or a {KIND} directory to overwrite"
                )
            (directory / MANIFEST).unlink()
            shutil.rmtree(directory / INDEX_DIR, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)
        with artifacts.replacing(directory / REPLIES_FILE) as tmp, tmp.open("w", encoding="utf-8") as fh:
            for r in self.replies:
                fh.write(json.dumps(dataclasses.asdict(r), ensure_ascii=False) + "\n")
        self.retriever.save(str(directory / INDEX_DIR), show_progress=False)
        names = [REPLIES_FILE] + sorted(f"{INDEX_DIR}/{p.name}" for p in (directory / INDEX_DIR).iterdir())
        artifacts.write_manifest(
            directory,
            MANIFEST,
            kind=KIND,
            format_version=FORMAT_VERSION,
            body={
                "config": dataclasses.asdict(self.config),
                "data": self.data,
                "documents": len(self.replies),
                "default_reply": self.default_reply,
            },
            libraries=("bm25s", "PyStemmer", "numpy"),
            files=names,
        )
        return directory


def _read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = path / MANIFEST
    manifest = read_manifest_of_kind(path, KIND, FORMAT_VERSION)
    for key, kind in (("config", dict), ("files", dict), ("default_reply", str), ("documents", int)):
        if not isinstance(manifest.get(key), kind):
            raise CheckpointError(
                f"{manifest_path}: field {key!r} must be a {kind.__name__}, got {manifest.get(key)!r}"[:300]
            )
    if REPLIES_FILE not in manifest["files"]:
        raise CheckpointError(f"{manifest_path}: 'files' does not list {REPLIES_FILE}")
    artifacts.verify_files(path, manifest["files"], MANIFEST)
    return manifest


def _read_replies(file: Path) -> list[IndexedReply]:
    replies = []
    with file.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                obj = json.loads(line)
                replies.append(
                    IndexedReply(
                        reply=str(obj["reply"]),
                        dialog_id=str(obj["dialog_id"]),
                        turn_index=int(obj["turn_index"]),
                    )
                )
            except (ValueError, KeyError, TypeError) as e:
                raise CheckpointError(
                    f"{file}:{number}: expected {{reply, dialog_id, turn_index}} ({e})"
                ) from e
    return replies


def load_retrieval_baseline(path: Path, **options: Any) -> RetrievalBaseline:
    """Load and validate a directory written by :meth:`RetrievalBaseline.save`.

    Args:
        path: the model directory.
        **options: inference-time overrides; only ``top_k`` (int >= 1) is accepted.

    Raises:
        CheckpointError: the directory, manifest, a listed file (missing or sha256 mismatch), the config,
            the bm25s index or the replies are missing, malformed or disagree with each other.
        ConfigError: an unknown option or an invalid ``top_k``.
    """
    path = Path(path)
    unknown = sorted(set(options) - set(LOAD_OPTIONS))
    if unknown:
        raise ConfigError(
            f"{KIND} does not accept option(s) {unknown}; valid options are {list(LOAD_OPTIONS)}"
        )
    manifest = _read_manifest(path)
    try:
        config = dataclass_from_dict(BaselineConfig, manifest["config"], where=f"{path / MANIFEST}: config")
    except ConfigError as e:
        raise CheckpointError(str(e)) from e
    if options:
        config = dataclasses.replace(config, **options)  # __post_init__ validates (ConfigError)
    replies = _read_replies(path / REPLIES_FILE)
    if len(replies) != manifest["documents"]:
        raise CheckpointError(
            f"{path / REPLIES_FILE}: {len(replies)} replies, but the manifest records "
            f"{manifest['documents']} documents"
        )
    try:
        retriever = bm25s.BM25.load(str(path / INDEX_DIR), show_progress=False)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(
            f"{path / INDEX_DIR}: cannot load the bm25s index "
            f"(saved with {manifest.get('versions', {})}) ({type(e).__name__}: {e})"
        ) from e
    if (retriever.k1, retriever.b) != (config.k1, config.b):
        raise CheckpointError(
            f"{path / INDEX_DIR}: index built with k1={retriever.k1}, b={retriever.b} but the "
            f"manifest's config says k1={config.k1}, b={config.b}"
        )
    try:
        return RetrievalBaseline(
            retriever, replies, config, manifest["default_reply"], manifest.get("data", ())
        )
    except AssistantError as e:
        raise CheckpointError(f"{path}: {e}") from e
