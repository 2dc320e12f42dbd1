"""The LSTM seq2seq model as a :class:`~assistant.generators.base.Generator`: batched replies and likelihoods.

Turns :class:`~assistant.generators.base.GenerationRequest` objects into model input (the last
``max_context_turns`` turns as the shared :func:`~assistant.model_input.format_context` text, tokenized,
left-truncated to ``max_source_len``, eos appended), runs greedy or
beam search (``assistant/generators/decoding.py``) over :meth:`Seq2SeqModel.step`, and detokenizes. It also scores
reference replies (teacher-forced NLL) for perplexity. :meth:`LSTMGenerator.stream` decodes one reply and
passes its text on token by token: with greedy search every token as it is chosen, with beam search
each token as soon as every hypothesis that can still win agrees on it (often only at the end). Loading a directory is
:func:`load_lstm_generator`; training is ``finetune/train_lstm.py``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from assistant.errors import ConfigError, ModelError
from assistant.generators.base import Generation, GenerationRequest, Generator, TextCallback, TextPieces
from assistant.generators.decoding import DecodeResult, DecodingConfig, StepCallback, decode
from assistant.generators.lstm import Seq2SeqModel
from assistant.generators.lstm.batching import pad_batch, source_ids
from assistant.generators.lstm.checkpoint import load_checkpoint
from assistant.generators.lstm.model import reorder_state
from assistant.generators.lstm.tokenizer import Tokenizer
from assistant.model_input import format_context


class LSTMGenerator(Generator):
    """Replies from a trained :class:`Seq2SeqModel`.

    Args:
        model: the model (put in eval mode here).
        tokenizer: its tokenizer.
        decoding: search settings (beam size, length penalty, max/min length, n-gram blocking).
        device: where the model runs.
        batch_size: requests decoded together.
        use_grounding: put the request's FAQ answer into the input (``<faq> answer``).
    """

    name = "lstm"

    def __init__(
        self,
        model: Seq2SeqModel,
        tokenizer: Tokenizer,
        decoding: DecodingConfig,
        device: torch.device | str = "cpu",
        batch_size: int = 64,
        use_grounding: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.decoding = decoding
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.use_grounding = use_grounding

    @property
    def supports_perplexity(self) -> bool:
        return True

    def _texts(self, requests: Sequence[GenerationRequest]) -> list[str]:
        """Model input text: the last ``max_context_turns`` turns (as in training) and the grounding."""
        n = self.model.config.max_context_turns
        return [
            format_context(
                r.context[-n:], grounding=r.grounding.answer if (self.use_grounding and r.grounding) else None
            )
            for r in requests
        ]

    def _batches(self, n: int, lengths: Sequence[int]) -> list[list[int]]:
        order = sorted(range(n), key=lambda i: lengths[i])  # similar lengths together: less padding
        return [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]

    @torch.inference_mode()
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Generate one reply per request (batched); confidence is ``exp(mean token log-prob)``.

        Raises:
            ModelError: decoding produced no valid hypothesis (every continuation was blocked).
        """
        sources = source_ids(self.tokenizer, self._texts(requests), self.model.config.max_source_len)
        results: list[Generation | None] = [None] * len(requests)
        for index in self._batches(len(sources), [len(s) for s in sources]):
            out = self._decode([sources[i] for i in index])
            texts = self.tokenizer.decode(out.tokens)
            for row, (i, text) in enumerate(zip(index, texts, strict=True)):
                results[i] = self._generation(out, row, text, i)
        return [r for r in results if r is not None]

    @torch.inference_mode()
    def stream(self, request: GenerationRequest, on_text: TextCallback) -> Generation:
        """Generate one reply, passing its text to ``on_text`` token by token (see the module docstring).

        The result equals ``generate([request])[0]``; the pieces concatenated equal its text.

        Raises:
            ModelError: as :meth:`generate`.
        """
        pieces = TextPieces(on_text)
        source = source_ids(self.tokenizer, self._texts([request]), self.model.config.max_source_len)
        out = self._decode(source, on_step=lambda final: pieces.update(self.tokenizer.decode(final)[0]))
        generation = self._generation(out, 0, self.tokenizer.decode(out.tokens)[0], 0)
        pieces.finish(generation.text)
        return generation

    def _decode(self, sources: list[list[int]], on_step: StepCallback | None = None) -> DecodeResult:
        src, lengths = pad_batch(sources, self.tokenizer.pad_id, self.device)
        state = self.model.encode(src, lengths)
        return decode(
            self.model.step,
            reorder_state,
            state,
            len(sources),
            self.tokenizer.bos_id,
            self.tokenizer.eos_id,
            self.decoding,
            self.device,
            on_step,
        )

    def _generation(self, out: DecodeResult, row: int, text: str, request_index: int) -> Generation:
        logp, n = out.log_probs[row], out.n_scored[row]
        if not math.isfinite(logp):
            raise ModelError(
                f"no reply could be decoded for request {request_index}: every continuation was "
                f"blocked (min_len={self.decoding.min_len}, "
                f"no_repeat_ngram_size={self.decoding.no_repeat_ngram_size})"
            )
        return Generation(text=text, confidence=float(math.exp(logp / max(n, 1))))

    @torch.inference_mode()
    def score(self, requests: Sequence[GenerationRequest], targets: Sequence[str]) -> tuple[float, int]:
        """Teacher-forced NLL of ``targets`` (eos included, targets not truncated).

        Returns:
            ``(total_nll_nats, n_tokens)``.

        Raises:
            ModelError: ``requests`` and ``targets`` differ in length.
        """
        if len(requests) != len(targets):
            raise ModelError(
                f"score() needs one target per request, got {len(requests)} requests and "
                f"{len(targets)} targets"
            )
        sources = source_ids(self.tokenizer, self._texts(requests), self.model.config.max_source_len)
        target_ids = [ids + [self.tokenizer.eos_id] for ids in self.tokenizer.encode(list(targets))]
        total, count = 0.0, 0
        for index in self._batches(len(sources), [len(s) for s in sources]):
            src, src_len = pad_batch([sources[i] for i in index], self.tokenizer.pad_id, self.device)
            tgt_in, _ = pad_batch(
                [[self.tokenizer.bos_id] + target_ids[i][:-1] for i in index],
                self.tokenizer.pad_id,
                self.device,
            )
            tgt_out, _ = pad_batch([target_ids[i] for i in index], self.tokenizer.pad_id, self.device)
            nll = self.model.token_nll(self.model(src, src_len, tgt_in), tgt_out)  # (B, T)
            total += float(nll.sum())
            count += int((tgt_out != self.tokenizer.pad_id).sum())
        return total, count


def load_lstm_generator(path: Path, **options: Any) -> LSTMGenerator:
    """Load an LSTM model directory as a generator.

    Args:
        path: a directory written by ``finetune/train_lstm.py``.
        **options: ``device`` (default ``"cpu"``), ``batch_size`` (64), ``use_grounding`` (True), and any
            :class:`~assistant.generators.decoding.DecodingConfig` field (``beam_size``, ``max_len``, ``min_len``,
            ``length_penalty``, ``no_repeat_ngram_size``) overriding the defaults saved at training time.

    Raises:
        CheckpointError: the directory is not a valid LSTM checkpoint.
        ConfigError: an unknown option or an invalid value.
    """
    decoding_fields = {f.name for f in dataclasses.fields(DecodingConfig)}
    generator_fields = {"device", "batch_size", "use_grounding"}
    unknown = sorted(set(options) - decoding_fields - generator_fields)
    if unknown:
        raise ConfigError(
            f"unknown LSTM generator options {unknown}; valid: {sorted(decoding_fields | generator_fields)}"
        )
    device = options.get("device", "cpu")
    checkpoint = load_checkpoint(path, device=device)
    decoding = dataclasses.replace(
        checkpoint.decoding_config, **{k: v for k, v in options.items() if k in decoding_fields}
    )
    return LSTMGenerator(
        checkpoint.model,
        checkpoint.tokenizer,
        decoding,
        device=device,
        batch_size=int(options.get("batch_size", 64)),
        use_grounding=bool(options.get("use_grounding", True)),
    )
