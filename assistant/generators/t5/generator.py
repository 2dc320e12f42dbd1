"""Reply generation with a T5 model: input encoding, greedy / beam search, confidence, likelihood.

:class:`T5Generator` implements the project's :class:`~assistant.generators.base.Generator` interface on a
``T5ForConditionalGeneration``, optionally a ``PeftModel`` holding several LoRA adapters, one chosen per
request (peft's mixed-batch ``adapter_names``). Inputs are the shared
:func:`~assistant.model_input.format_context` text, the last ``max_context_turns`` turns, cut from the left to
``max_source_len`` tokens. Decoding is ``transformers``' ``generate`` (greedy or beam search), or, when a
:class:`~assistant.generators.t5.ct2_decode.CT2Decoder` is given (``fast``: the default adapter merged and
converted to CTranslate2), CTranslate2 for every request that uses the default adapter; requests that name
another adapter (``generate(..., adapters=[...])``), teacher-forced ``score`` and inputs CTranslate2 cannot
decode keep the transformers path.

It does not load models or read model directories (``assistant/generators/t5/model.py``: ``load_t5_generator``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase, TextStreamer

from assistant.config import require
from assistant.errors import ModelError
from assistant.generators.base import Generation, GenerationRequest, Generator, TextCallback, TextPieces
from assistant.generators.t5.adapters import BASE_ADAPTER
from assistant.generators.t5.ct2_decode import CT2Decoder
from assistant.model_input import format_context


@dataclass
class T5GenerationSettings:
    """How replies are generated and inputs truncated."""

    max_context_turns: int = field(
        default=6, metadata={"help": "most recent turns of history in the input (training and serving alike)"}
    )
    max_source_len: int = field(
        default=128, metadata={"help": "input tokens kept (cut from the left: oldest turns go first)"}
    )
    max_target_len: int = field(default=48, metadata={"help": "most tokens generated / trained per reply"})
    beam_size: int = field(
        default=1, metadata={"help": "1 = greedy decoding; >1 = beam search with that many beams"}
    )
    length_penalty: float = field(
        default=1.0,
        metadata={
            "help": "beam search: score / length**length_penalty, Hugging Face's rule (>1 favours longer replies); "
            "not the LSTM's GNMT alpha"
        },
    )
    no_repeat_ngram_size: int = field(
        default=0, metadata={"help": "forbid repeating n-grams of this size (0 = off)"}
    )
    generation_batch_size: int = field(default=32, metadata={"help": "requests per generate() call"})

    def __post_init__(self) -> None:
        for name in (
            "max_context_turns",
            "max_source_len",
            "max_target_len",
            "beam_size",
            "generation_batch_size",
        ):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        require(
            self.no_repeat_ngram_size >= 0,
            f"no_repeat_ngram_size must be >= 0, got {self.no_repeat_ngram_size}",
        )


def encode_targets(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_len: int) -> list[list[int]]:
    """Token ids of reply texts, cut from the right to ``max_len`` tokens ending with end-of-sequence.

    (The tokenizer itself truncates from the left, which suits inputs, not replies.)
    """
    eos = tokenizer.eos_token_id
    rows = tokenizer(list(texts), add_special_tokens=False).input_ids
    return [row[: max_len - 1] + [eos] for row in rows]


class T5Generator(Generator):
    """Reply generation with a T5 model, optionally with several LoRA adapters chosen per request.

    Args:
        model: a ``T5ForConditionalGeneration`` or a ``PeftModel`` holding adapters.
        tokenizer: its tokenizer (markers added, see :func:`load_tokenizer`).
        settings: decoding and truncation settings.
        default_adapter: adapter used when a request names none; ``None`` = the base model alone.
        device: torch device string.
        fast: the same model with ``default_adapter`` merged, in CTranslate2; serves the requests that use
            ``default_adapter`` (see the module doc). ``None``: transformers serves every request.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        settings: T5GenerationSettings | None = None,
        default_adapter: str | None = None,
        device: str = "cpu",
        name: str = "t5",
        fast: CT2Decoder | None = None,
    ) -> None:
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.tokenizer.truncation_side = "left"
        self.settings = settings or T5GenerationSettings()
        self.device = device
        self.adapters: tuple[str, ...] = tuple(getattr(model, "peft_config", {}) or ())
        if default_adapter is not None and default_adapter not in self.adapters:
            raise ModelError(
                f"default adapter {default_adapter!r} is not loaded; loaded: {list(self.adapters)}"
            )
        self.default_adapter = default_adapter
        self.name = name
        self.fast = fast

    @property
    def supports_perplexity(self) -> bool:
        return True

    def _adapter_names(self, n: int, adapters: Sequence[str | None] | None) -> list[str] | None:
        if not self.adapters:
            if adapters is not None and any(a is not None for a in adapters):
                raise ModelError(
                    f"adapters {sorted({a for a in adapters if a})} requested but this model has "
                    "none loaded (or they were merged)"
                )
            return None
        names = list(adapters) if adapters is not None else [self.default_adapter] * n
        if len(names) != n:
            raise ModelError(f"got {len(names)} adapter names for {n} requests")
        unknown = sorted({a for a in names if a is not None and a not in self.adapters})
        if unknown:
            raise ModelError(
                f"unknown adapters {unknown}; loaded: {list(self.adapters)} (or None = base model)"
            )
        return [BASE_ADAPTER if a is None else a for a in names]

    def encode(self, requests: Sequence[GenerationRequest]) -> dict[str, torch.Tensor]:
        """Tokenize requests: ``input_ids`` and ``attention_mask`` of shape ``(batch, src_len)``.

        The last ``max_context_turns`` turns are kept, then the text is cut from the left to
        ``max_source_len`` tokens.
        """
        enc = self.tokenizer(
            self._texts(requests),
            truncation=True,
            max_length=self.settings.max_source_len,
            padding=True,
            return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def _texts(self, requests: Sequence[GenerationRequest]) -> list[str]:
        n = self.settings.max_context_turns
        return [format_context(r.context[-n:], r.grounding.answer if r.grounding else None) for r in requests]

    def _input_ids(self, requests: Sequence[GenerationRequest]) -> list[list[int]]:
        """Token ids per request as :meth:`encode` makes them, without padding (for CTranslate2)."""
        return self.tokenizer(
            self._texts(requests), truncation=True, max_length=self.settings.max_source_len
        ).input_ids

    def _served_fast(self, adapters: Sequence[str | None] | None) -> bool:
        """Whether CTranslate2 serves these requests: it holds the default adapter merged, nothing else."""
        return self.fast is not None and (
            adapters is None or all(a == self.default_adapter for a in adapters)
        )

    def _generation_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``generate`` (passed as kwargs, so that peft sees ``num_beams``)."""
        s = self.settings
        kwargs: dict[str, Any] = {
            "max_new_tokens": s.max_target_len,
            "num_beams": s.beam_size,
            "do_sample": False,
            "output_scores": True,
            "return_dict_in_generate": True,
        }
        if s.beam_size > 1:
            kwargs.update(length_penalty=s.length_penalty, early_stopping=True)
        if s.no_repeat_ngram_size:
            kwargs["no_repeat_ngram_size"] = s.no_repeat_ngram_size
        return kwargs

    @torch.no_grad()
    def generate(
        self, requests: Sequence[GenerationRequest], adapters: Sequence[str | None] | None = None
    ) -> list[Generation]:
        """Generate one reply per request, greedy (beam_size 1) or beam search, in batches.

        Args:
            requests: the conversations.
            adapters: optional per-request adapter name (``None`` = base model alone); by default every
                request uses ``default_adapter``. Mixed adapters run in one batch (peft ``adapter_names``)
                on the transformers path; with a CTranslate2 model (``fast``), a call whose requests all
                use ``default_adapter`` runs there.

        Returns:
            one :class:`Generation` per request; ``confidence = exp(mean log p)`` of the generated tokens
            (end-of-sequence included), from ``compute_transition_scores``.

        Raises:
            ModelError: an unknown adapter name, or the count of names differs from the requests.
        """
        names = self._adapter_names(len(requests), adapters)
        if self._served_fast(adapters):
            fast = self.fast.generate(self._input_ids(requests), self.settings)
            missing = [i for i, g in enumerate(fast) if g is None]  # inputs CTranslate2 cannot decode
            if missing:
                rest = self._generate_torch(
                    [requests[i] for i in missing], self._adapter_names(len(missing), None)
                )
                for i, g in zip(missing, rest, strict=True):
                    fast[i] = g
            return fast  # type: ignore[return-value]
        return self._generate_torch(requests, names)

    def _generate_torch(
        self, requests: Sequence[GenerationRequest], names: list[str] | None
    ) -> list[Generation]:
        results: list[Generation] = []
        bs = self.settings.generation_batch_size
        for start in range(0, len(requests), bs):
            batch = self.encode(requests[start : start + bs])
            extra = {"adapter_names": names[start : start + bs]} if names is not None else {}
            out = self.model.generate(**batch, **self._generation_kwargs(), **extra)
            results.extend(self._decode(out))
        return results

    @torch.no_grad()
    def stream(self, request: GenerationRequest, on_text: TextCallback) -> Generation:
        """Generate one reply with the default adapter, passing its text to ``on_text`` word by word.

        Greedy decoding streams through CTranslate2's step callback (``fast``) or transformers'
        ``TextStreamer``; beam search (``beam_size > 1``) is not streamed, so its reply is passed on whole at
        the end. The result equals ``generate([request])[0]``.

        Raises:
            ModelError: as :meth:`generate`.
        """
        if self.settings.beam_size > 1:
            return super().stream(request, on_text)
        if self.fast is not None:
            pieces = TextPieces(on_text)

            def on_token(ids: list[int]) -> None:
                pieces.update(self.tokenizer.decode(ids, skip_special_tokens=True).strip())

            fast = self.fast.generate(self._input_ids([request]), self.settings, on_token=on_token)[0]
            if fast is not None:
                pieces.finish(fast.text)
                return fast
        names = self._adapter_names(1, None)
        extra = {"adapter_names": names} if names is not None else {}
        pieces = TextPieces(on_text)
        streamer = _CallbackStreamer(self.tokenizer, pieces)
        out = self.model.generate(
            **self.encode([request]), **self._generation_kwargs(), **extra, streamer=streamer
        )
        generation = self._decode(out)[0]
        pieces.finish(generation.text)
        return generation

    def _decode(self, out: Any) -> list[Generation]:
        base = self.model.base_model.model if hasattr(self.model, "peft_config") else self.model
        beams = self.settings.beam_size > 1
        scores = base.compute_transition_scores(
            out.sequences, out.scores, out.beam_indices if beams else None, normalize_logits=not beams
        )  # (B, T)
        gen = out.sequences[:, 1:]  # (B, T): drop the decoder start token
        eos = self.tokenizer.eos_token_id
        is_eos = (gen == eos).int()
        before_eos = (is_eos.cumsum(dim=1) - is_eos) == 0  # (B, T): up to and including the first eos
        mask = before_eos[:, : scores.shape[1]] & torch.isfinite(scores)
        if beams:
            mask &= out.beam_indices[:, : scores.shape[1]] >= 0
        texts = self.tokenizer.batch_decode(gen, skip_special_tokens=True)
        results = []
        for i, text in enumerate(texts):
            n = int(mask[i].sum())
            mean_logp = float(scores[i][mask[i]].sum()) / n if n else -math.inf
            results.append(Generation(text=text.strip(), confidence=math.exp(mean_logp) if n else 0.0))
        return results

    @torch.no_grad()
    def score(
        self,
        requests: Sequence[GenerationRequest],
        targets: Sequence[str],
        adapters: Sequence[str | None] | None = None,
    ) -> tuple[float, int]:
        """Teacher-forced NLL of ``targets`` (each cut to ``max_target_len`` tokens incl. end-of-sequence).

        Returns:
            ``(total_nll_nats, n_tokens)`` summed over every target token.

        Raises:
            ModelError: ``targets`` and ``requests`` differ in length, or an unknown adapter.
        """
        if len(targets) != len(requests):
            raise ModelError(f"score(): {len(requests)} requests but {len(targets)} targets")
        names = self._adapter_names(len(requests), adapters)
        total, count = 0.0, 0
        bs = self.settings.generation_batch_size
        for start in range(0, len(requests), bs):
            batch = self.encode(requests[start : start + bs])
            ids = encode_targets(self.tokenizer, targets[start : start + bs], self.settings.max_target_len)
            labels = torch.full((len(ids), max(map(len, ids))), -100, dtype=torch.long)  # (B, T)
            for i, row in enumerate(ids):
                labels[i, : len(row)] = torch.tensor(row)
            labels = labels.to(self.device)
            extra = {"adapter_names": names[start : start + bs]} if names is not None else {}
            logits = self.model(**batch, labels=labels, **extra).logits  # (B, T, V)
            nll = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100, reduction="sum"
            )
            total += float(nll)
            count += int((labels != -100).sum())
        return total, count


class _CallbackStreamer(TextStreamer):
    """transformers' ``TextStreamer`` handing its finalized text to :class:`TextPieces` instead of printing it.

    The decoded text so far is accumulated and passed as a whole, stripped like the final reply,
    so the pieces are the final text's prefixes.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, pieces: TextPieces) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.pieces = pieces
        self.text = ""

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        self.text += text
        self.pieces.update(self.text.strip())
