"""T5 reply decoding with CTranslate2: greedy or beam search on a converted model, token ids in and out.

:class:`CT2Decoder` loads a folder written by :mod:`assistant.generators.t5.ct2_convert` into a
``ctranslate2.Translator`` and maps :class:`~assistant.generators.t5.generator.T5GenerationSettings`
onto ``translate_batch`` options:

==========================  =====================================================================
T5GenerationSettings        ``translate_batch``
==========================  =====================================================================
``beam_size``               ``beam_size`` (1 = greedy), ``patience=1``: a batch item stops when
                            ``beam_size`` hypotheses are finished, Hugging Face's ``early_stopping=True``
``max_target_len``          ``max_decoding_length`` (tokens, end-of-sequence included, like
                            ``max_new_tokens``); ``min_decoding_length=0`` (transformers' default)
``length_penalty``          ``length_penalty``: beam scores ``sum log p / length ** length_penalty``,
                            the rule of transformers (not GNMT's); greedy search ignores it in both
``no_repeat_ngram_size``    ``no_repeat_ngram_size``
``generation_batch_size``   ``max_batch_size`` (CTranslate2 sorts a call's inputs by length first)
==========================  =====================================================================

Inputs are the tokenizer's ids (already cut to ``max_source_len``, end-of-sequence included), passed
as the converted vocabulary's token strings; replies come back as token strings, mapped back to ids
and decoded by the same tokenizer as the transformers path. ``confidence`` is ``exp(mean log p)`` of
the reply's tokens, end-of-sequence included, as in the transformers path: CTranslate2 returns
``sum log p / length ** length_penalty`` with ``length`` counting end-of-sequence, which is undone here.

Processes: the translator is dropped before a ``fork`` and loaded again on first use in each process
(its worker threads do not survive a fork), so a model loaded before gunicorn forks its workers works.

Limits: CTranslate2 returns an empty reply for an input that is only end-of-sequence (an empty
context); :meth:`CT2Decoder.generate` reports those rows as not decoded (``None``) so the caller
decodes them with transformers. This module does not convert models, merge adapters or tokenize
conversations (:class:`~assistant.generators.t5.generator.T5Generator` does).
"""

from __future__ import annotations

import json
import math
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from assistant.errors import CheckpointError, ConfigError
from assistant.generators.base import Generation

#: compute types offered (CTranslate2 quantizes the float32 conversion to int8 when loading).
COMPUTE_TYPES = ("float32", "int8")


class CT2Decoder:
    """A converted T5 model in a ``ctranslate2.Translator``.

    Args:
        folder: a converted model folder (``model.bin``, ``config.json``, ``shared_vocabulary.json``).
        tokenizer: the model's tokenizer (markers added); its first ``len(tokenizer)`` ids must equal the
            converted vocabulary's.
        compute_type: ``"float32"`` (same replies as transformers) or ``"int8"`` (weights quantized at
            load, faster, replies may differ).
        device: ``"cpu"`` or ``"cuda"``.
        threads: CTranslate2 intra-op threads (``>= 1``).

    Raises:
        ConfigError: an unknown compute type, one the device does not support, or threads < 1.
        CheckpointError: the folder cannot be loaded or its vocabulary does not match the tokenizer.
    """

    def __init__(
        self,
        folder: Path,
        tokenizer: PreTrainedTokenizerBase,
        compute_type: str = "float32",
        device: str = "cpu",
        threads: int = 1,
    ) -> None:
        import ctranslate2

        if compute_type not in COMPUTE_TYPES:
            raise ConfigError(f"compute_type must be one of {list(COMPUTE_TYPES)}, got {compute_type!r}")
        ct2_device = "cuda" if str(device).startswith("cuda") else str(device)
        if ct2_device not in ("cpu", "cuda"):
            raise ConfigError(f"the ct2 backend runs on device 'cpu' or 'cuda', got {device!r}")
        if ct2_device == "cuda" and ctranslate2.get_cuda_device_count() == 0:
            raise ConfigError("device 'cuda' for the ct2 backend, but ctranslate2 sees no CUDA device")
        supported = ctranslate2.get_supported_compute_types(ct2_device)
        if compute_type not in supported:
            raise ConfigError(
                f"compute_type {compute_type!r} is not supported by ctranslate2 on {ct2_device}; "
                f"supported: {sorted(supported)}"
            )
        if not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"ct2_threads must be an integer >= 1, got {threads!r}")
        folder = Path(folder)
        self._options = {
            "device": ct2_device,
            "compute_type": compute_type,
            "inter_threads": 1,
            "intra_threads": threads,
        }
        self.folder = folder
        self._lock = threading.Lock()
        self._loaded: Any = None
        try:
            vocab = json.loads((folder / "shared_vocabulary.json").read_text(encoding="utf-8"))
            self.translator  # noqa: B018 - load now, so that a bad folder fails at load time
        except (OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"cannot load the CTranslate2 model in {folder}: {e}") from e
        ref = weakref.ref(self)
        os.register_at_fork(before=lambda: (decoder := ref()) is not None and decoder.release())
        known = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        if vocab[: len(known)] != known:
            raise CheckpointError(
                f"{folder}: the converted vocabulary differs from the tokenizer's "
                f"(first difference at id {next(i for i, (a, b) in enumerate(zip(vocab, known)) if a != b)}"
                f" of {len(known)}); delete the folder to convert again"
            )
        self.vocab: list[str] = vocab
        self.ids = {token: i for i, token in reversed(list(enumerate(vocab)))}  # first occurrence wins
        self.tokenizer = tokenizer
        self.eos = tokenizer.eos_token_id
        self.compute_type = compute_type

    @property
    def translator(self) -> Any:
        """The ``ctranslate2.Translator``, loaded on first use in this process (see :meth:`release`)."""
        with self._lock:
            if self._loaded is None:
                import ctranslate2

                self._loaded = ctranslate2.Translator(str(self.folder), **self._options)
            return self._loaded

    def release(self) -> None:
        """Drop the translator (it is loaded again on next use). Called before every ``fork``: a
        translator's worker threads do not exist in a forked child, where it would hang on first use
        and at exit (``gunicorn --preload`` loads the model in the master, then forks)."""
        with self._lock:
            self._loaded = None

    def options(self, settings: Any) -> dict[str, Any]:
        """``translate_batch`` keyword arguments for :class:`T5GenerationSettings` (table in the module doc)."""
        return {
            "beam_size": settings.beam_size,
            "patience": 1.0,
            "length_penalty": settings.length_penalty if settings.beam_size > 1 else 1.0,
            "no_repeat_ngram_size": settings.no_repeat_ngram_size,
            "max_decoding_length": settings.max_target_len,
            "min_decoding_length": 0,
            "max_input_length": 0,
            "max_batch_size": settings.generation_batch_size,
            "return_scores": True,
            "return_end_token": True,
        }

    def generate(
        self,
        input_ids: Sequence[Sequence[int]],
        settings: Any,
        on_token: Callable[[list[int]], None] | None = None,
    ) -> list[Generation | None]:
        """Decode one reply per input.

        Args:
            input_ids: per request, the tokenizer's ids (no padding; end-of-sequence last).
            settings: a :class:`~assistant.generators.t5.generator.T5GenerationSettings`.
            on_token: greedy search of one input only: called after each step with the reply's ids so far.

        Returns:
            per input a :class:`Generation`, or ``None`` for an input CTranslate2 cannot decode (only
            end-of-sequence: see the module doc).
        """
        rows = [list(r) for r in input_ids]
        todo = [i for i, r in enumerate(rows) if any(t != self.eos for t in r)]
        out: list[Generation | None] = [None] * len(rows)
        if not todo:
            return out
        options = self.options(settings)
        if on_token is not None:
            generated: list[int] = []

            def callback(step: Any) -> bool:
                if step.token_id != self.eos:
                    generated.append(step.token_id)
                    on_token(list(generated))
                return False

            options["callback"] = callback
        source = [[self.vocab[t] for t in rows[i]] for i in todo]
        results = self.translator.translate_batch(source, **options)
        for i, result in zip(todo, results, strict=True):
            out[i] = self._generation(result.hypotheses[0], result.scores[0], options["length_penalty"])
        return out

    def _generation(self, tokens: list[str], score: float, alpha: float) -> Generation:
        ids = [self.ids[t] for t in tokens]
        length = len(ids)  # end-of-sequence included when the reply ended (return_end_token)
        if ids and ids[-1] == self.eos:
            ids = ids[:-1]
        text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        if length == 0:
            return Generation(text=text, confidence=0.0)
        mean_logp = score * length**alpha / length
        return Generation(text=text, confidence=math.exp(mean_logp))
