"""T5 reply model: load or build a T5 encoder-decoder and its tokenizer; load a model directory.

The model is any T5-family ``T5ForConditionalGeneration`` (Raffel et al., 2020, "Exploring the Limits
of Transfer Learning with a Unified Text-to-Text Transformer"): a Hugging Face model id such as
``google/flan-t5-small`` (needs network access) or a local directory, both through ``from_pretrained``;
or one built from a :class:`T5ModelConfig` and a tokenizer directory, to train from scratch offline.
LoRA adapters on top of it live in :mod:`assistant.generators.t5.adapters`, reply generation in
:mod:`assistant.generators.t5.generator` (re-exported here).

Input format (the same for every reply model, :func:`assistant.model_input.format_context`)::

    <customer> {text} <agent> {text} ... <customer> {latest message} <faq> {grounding FAQ answer}

``<customer>``, ``<agent>`` and ``<faq>`` are added to the T5 tokenizer as single special tokens
(T5's vocabulary has no ``<``); they fit in the 28 unused embedding rows of every T5 checkpoint
(32,100 tokens, 32,128 rows). The input is cut from the left to ``max_source_len`` tokens, so the
oldest turns go first and the latest message and the FAQ answer are kept.

A model directory holds ``assistant.json`` (``kind: "t5"``), the tokenizer, and either the full model
weights or one or more adapters on a base named by id or relative path. Loading it for serving
(:func:`load_t5_generator`) also converts the model with its default adapter merged to CTranslate2
(``backend="ct2"``, the default; :mod:`assistant.generators.t5.ct2_convert`, cached beside the model). This module does not train
(``finetune/train_t5.py``) and does not pick FAQ answers (``assistant/pipeline.py``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tokenizers import AddedToken
from transformers import AutoTokenizer, PreTrainedTokenizerBase, T5Config, T5ForConditionalGeneration

from assistant import artifacts
from assistant.config import dataclass_from_dict, require
from assistant.errors import CheckpointError, ConfigError, ModelError
from assistant.generators.base import MANIFEST, read_manifest_of_kind
from assistant.generators.t5.adapters import load_adapters, merge_adapter
from assistant.generators.t5.ct2_convert import converted_model
from assistant.generators.t5.ct2_decode import CT2Decoder
from assistant.generators.t5.generator import T5GenerationSettings, T5Generator, encode_targets
from assistant.model_input import SPECIAL_MARKERS

__all__ = [
    "PRESETS",
    "T5GenerationSettings",
    "T5Generator",
    "T5ModelConfig",
    "build_model",
    "check_vocab_fits",
    "encode_targets",
    "load_base_model",
    "load_t5_generator",
    "load_tokenizer",
    "resolve_model_config",
    "write_manifest",
]

FORMAT_VERSION = 1


@dataclass
class T5ModelConfig:
    """Size of a T5 model built from scratch (fields of ``transformers.T5Config``)."""

    d_model: int = field(default=256, metadata={"help": "hidden size of every layer"})
    d_ff: int = field(default=1024, metadata={"help": "inner size of the feed-forward blocks"})
    d_kv: int = field(default=64, metadata={"help": "size of each attention head"})
    num_layers: int = field(default=4, metadata={"help": "encoder layers"})
    num_decoder_layers: int = field(default=4, metadata={"help": "decoder layers"})
    num_heads: int = field(default=4, metadata={"help": "attention heads per layer"})
    dropout_rate: float = field(default=0.1, metadata={"help": "dropout in every layer, in [0, 1)"})
    feed_forward_proj: Literal["relu", "gated-gelu"] = field(
        default="relu",
        metadata={"help": "feed-forward activation: relu (T5 1.0) or gated-gelu (T5 1.1 / flan-t5)"},
    )
    tie_word_embeddings: bool = field(
        default=True,
        metadata={
            "help": "share input embeddings and output softmax weights (saves vocab x d_model parameters)"
        },
    )
    vocab_size: int = field(
        default=32128,
        metadata={
            "help": "embedding rows; must be >= the tokenizer's size incl. added markers "
            "(32,103 for t5-small's)"
        },
    )

    def __post_init__(self) -> None:
        for name in (
            "d_model",
            "d_ff",
            "d_kv",
            "num_layers",
            "num_decoder_layers",
            "num_heads",
            "vocab_size",
        ):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        require(0.0 <= self.dropout_rate < 1.0, f"dropout_rate must be in [0, 1), got {self.dropout_rate}")

    def to_hf(self) -> T5Config:
        """The ``T5Config`` (pad 0, end-of-sequence 1, decoder start 0: T5's conventions)."""
        return T5Config(**asdict(self), pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)


#: Named sizes for ``--init-from-config``.
PRESETS: dict[str, T5ModelConfig] = {
    # tests: seconds on CPU
    "tiny": T5ModelConfig(d_model=32, d_ff=64, d_kv=8, num_layers=2, num_decoder_layers=2, num_heads=4),
    # the STAR adaptation experiment (trains on one shared CPU core): 12.9 M parameters, 8.2 M of them
    # the tied embedding (the 32k softmax dominates the cost at this size)
    "star-small": T5ModelConfig(
        d_model=256, d_ff=768, d_kv=64, num_layers=3, num_decoder_layers=3, num_heads=4
    ),
    # from scratch on a CPU budget with a trained vocabulary (--vocab-size 4000: vocab_size is set to the
    # tokenizer's, 4,160 rows): 5.3 M parameters, ~4x the examples per CPU second of star-small
    # (docs/results/t5.md); less dropout, as the budget allows only a few epochs
    "star-fast": T5ModelConfig(
        d_model=256,
        d_ff=768,
        d_kv=64,
        num_layers=3,
        num_decoder_layers=3,
        num_heads=4,
        dropout_rate=0.05,
        vocab_size=4160,
    ),
    # star-fast with 2+2 layers and a wider feed-forward block: 4.74 M parameters, 1.33x the examples per CPU
    # second of star-fast and a lower validation loss after 3 CPU minutes (1.11 vs 1.35, docs/results/t5.md)
    "star-shallow": T5ModelConfig(
        d_model=256,
        d_ff=1024,
        d_kv=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        dropout_rate=0.05,
        vocab_size=4160,
    ),
}


def resolve_model_config(spec: str) -> T5Config:
    """A ``T5Config`` from a preset name (:data:`PRESETS`), an HF ``config.json``, or a JSON of T5ModelConfig.

    Raises:
        ConfigError: not a preset and not a readable JSON file, or invalid values.
    """
    if spec in PRESETS:
        return PRESETS[spec].to_hf()
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"--init-from-config {spec!r}: not a preset {sorted(PRESETS)} and not a JSON file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from e
    if isinstance(data, dict) and data.get("model_type") == "t5":
        return T5Config.from_dict(data)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return dataclass_from_dict(T5ModelConfig, data, str(path)).to_hf()


def load_tokenizer(name_or_dir: str | Path) -> PreTrainedTokenizerBase:
    """Load a T5 tokenizer (id or directory), add the role/FAQ markers, and truncate from the left.

    Raises:
        ModelError: the tokenizer cannot be loaded.
    """
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_dir))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load a tokenizer from {str(name_or_dir)!r}: {e}") from e
    missing = [m for m in SPECIAL_MARKERS if m not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(
            [AddedToken(m, special=True, normalized=False) for m in missing], special_tokens=True
        )
    tokenizer.truncation_side = "left"
    return tokenizer


def check_vocab_fits(
    tokenizer: PreTrainedTokenizerBase, model: T5ForConditionalGeneration, where: str
) -> None:
    """Check that each token id of ``tokenizer`` has an embedding row in ``model``.

    Raises:
        CheckpointError: the tokenizer is larger than the embedding (a tokenizer/config mismatch).
    """
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise CheckpointError(
            f"{where}: the tokenizer has {len(tokenizer)} tokens (incl. markers {list(SPECIAL_MARKERS)}) "
            "but the "
            f"model's embedding has only {rows} rows; use a config with vocab_size >= {len(tokenizer)} "
            "or the "
            f"tokenizer the model was trained with"
        )
    if (
        tokenizer.pad_token_id != model.config.pad_token_id
        or tokenizer.eos_token_id != model.config.eos_token_id
    ):
        raise CheckpointError(
            f"{where}: tokenizer pad/eos ids ({tokenizer.pad_token_id}, {tokenizer.eos_token_id}) "
            "differ from the "
            f"model config's ({model.config.pad_token_id}, {model.config.eos_token_id})"
        )


def load_base_model(
    name_or_dir: str | Path, tokenizer: PreTrainedTokenizerBase | None = None
) -> tuple[T5ForConditionalGeneration, PreTrainedTokenizerBase]:
    """Load a T5 model and its tokenizer from a Hugging Face id or a local directory (``from_pretrained``).

    Args:
        name_or_dir: e.g. ``google/flan-t5-small`` (network) or a directory written by ``save_pretrained``.
        tokenizer: use this tokenizer instead of the one stored with the model.

    Raises:
        CheckpointError: the model cannot be loaded or does not fit the tokenizer.
    """
    where = str(name_or_dir)
    try:
        model = T5ForConditionalGeneration.from_pretrained(where)
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"cannot load a T5 model from {where!r} (a model id or a save_pretrained directory): {e}"
        ) from e
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(name_or_dir)
    check_vocab_fits(tokenizer, model, where)
    return model, tokenizer


def build_model(
    config: T5Config, tokenizer: PreTrainedTokenizerBase, seed: int = 0
) -> T5ForConditionalGeneration:
    """A randomly initialised T5 model of ``config`` for ``tokenizer`` (training from scratch).

    Raises:
        ModelError: the tokenizer does not fit the config's vocabulary (see :func:`check_vocab_fits`).
    """
    if len(tokenizer) > config.vocab_size:
        raise ModelError(
            f"the tokenizer has {len(tokenizer)} tokens but the model config's vocab_size is "
            f"{config.vocab_size}; set vocab_size >= {len(tokenizer)}"
        )
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    check_vocab_fits(tokenizer, model, "model config")
    return model


#: how replies are decoded when serving (:func:`load_t5_generator`'s ``backend``).
BACKENDS = ("ct2", "transformers")

#: the default CTranslate2 conversion cache folder inside a model directory.
CT2_CACHE = "ct2"

#: distributions whose versions a T5 model directory's manifest records.
LIBRARIES = ("torch", "transformers", "peft", "accelerate")


def write_manifest(model_dir: Path, manifest: dict[str, Any]) -> None:
    """Write ``assistant.json`` atomically (:func:`assistant.artifacts.write_manifest` stamps ``kind``,
    ``format_version``, library ``versions`` and ``created``; ``manifest`` is the rest)."""
    artifacts.write_manifest(
        model_dir, MANIFEST, kind="t5", format_version=FORMAT_VERSION, body=manifest, libraries=LIBRARIES
    )


def _model_dir_path(model_dir: Path, rel: str) -> Path:
    return (model_dir / rel).resolve()


def load_t5_generator(
    path: Path,
    *,
    adapter: str | None = "default",
    extra_adapters: dict[str, str] | None = None,
    merge: bool = False,
    device: str = "cpu",
    backend: str = "ct2",
    compute_type: str | None = None,
    ct2_threads: int | None = None,
    ct2_cache_dir: str | Path | None = None,
    **settings: Any,
) -> T5Generator:
    """Load a T5 model directory (``assistant.json`` kind ``t5``) as a :class:`T5Generator`.

    Manifest fields read: ``base_model`` (``{"path": relative dir}`` or ``{"id": hub id}``), ``tokenizer``
    (relative dir), ``adapters`` (list of ``{"name", "path"}``), ``generation`` (T5GenerationSettings).

    Args:
        path: the model directory.
        adapter: the adapter used by default: ``"default"`` = the manifest's first adapter (or none when it
            has none), a name, or ``None`` for the base model alone.
        extra_adapters: more adapters to load beside the manifest's: name → adapter directory.
        merge: merge the default adapter into the base weights (faster; no per-request selection then).
        device: torch device.
        backend: ``"ct2"`` (default): replies that use the default adapter are decoded by CTranslate2 on
            the model with that adapter merged, converted at load time into ``ct2_cache_dir`` (reused
            while the model's files are unchanged); per-request adapters and ``score`` keep transformers.
            ``"transformers"``: ``generate`` for every reply.
        compute_type: ``ct2`` only: ``"float32"`` (default; same greedy replies as transformers) or
            ``"int8"`` (weights quantized when loading; faster, replies may differ).
        ct2_threads: ``ct2`` only: CTranslate2 threads (default: ``torch.get_num_threads()``).
        ct2_cache_dir: ``ct2`` only: where conversions are kept (default ``<path>/ct2``).
        **settings: overrides of :class:`T5GenerationSettings` fields (e.g. ``beam_size=4``).

    Raises:
        CheckpointError: a missing or inconsistent file, a base model that does not fit, a cache folder
            that cannot be written.
        ModelError / ConfigError: unknown adapter, setting or backend, a ``ct2`` option with
            ``backend="transformers"``, a compute type the device does not support.
    """
    known = {f for f in T5GenerationSettings.__dataclass_fields__}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(
            f"unknown options {unknown} for a t5 model; valid: adapter, extra_adapters, merge, "
            f"device, backend, compute_type, ct2_threads, ct2_cache_dir, {sorted(known)}"
        )
    ct2_options = {"compute_type": compute_type, "ct2_threads": ct2_threads, "ct2_cache_dir": ct2_cache_dir}
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if backend == "transformers" and any(v is not None for v in ct2_options.values()):
        given = sorted(k for k, v in ct2_options.items() if v is not None)
        raise ConfigError(f"options {given} apply to backend 'ct2' only, not to backend 'transformers'")
    path = Path(path)
    manifest = read_manifest_of_kind(path, "t5", FORMAT_VERSION)
    tok_rel = manifest.get("tokenizer", ".")
    tokenizer = load_tokenizer(_model_dir_path(path, tok_rel))
    base = manifest.get("base_model") or {}
    if "path" in base:
        base_ref: str | Path = _model_dir_path(path, base["path"])
        if not Path(base_ref).is_dir():
            raise CheckpointError(
                f"{path / MANIFEST}: base model directory {base['path']!r} "
                f"(resolved {base_ref}) does not exist"
            )
    elif "id" in base:
        base_ref = base["id"]
    else:
        raise CheckpointError(
            f"{path / MANIFEST}: 'base_model' must be {{'path': ...}} or {{'id': ...}}, got {base!r}"
        )
    model, tokenizer = load_base_model(base_ref, tokenizer)
    adapters = {a["name"]: _model_dir_path(path, a["path"]) for a in manifest.get("adapters", [])}
    for name, directory in (extra_adapters or {}).items():
        if name in adapters:
            raise ModelError(f"extra adapter {name!r} clashes with an adapter of {path}")
        adapters[name] = Path(directory)
    if adapter == "default":
        adapter = next(iter(adapters), None)
    if adapter is not None and adapter not in adapters:
        raise ModelError(f"adapter {adapter!r} not in {path}; available: {sorted(adapters)} (or None = base)")
    if adapters:
        model = load_adapters(model, adapters)
    served = adapter  # the adapter merged into the CTranslate2 model
    if merge:
        if adapter is None or len(adapters) > 1:
            raise ModelError("merge=True needs exactly one adapter loaded and selected")
        model, adapter = merge_adapter(model, adapter), None
    saved = manifest.get("generation") or {}
    gen_settings = dataclass_from_dict(T5GenerationSettings, {**saved, **settings}, str(path / MANIFEST))
    fast = None
    if backend == "ct2":

        def build_merged() -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
            if merge or not adapters:
                return model, tokenizer  # already the served weights, a plain model
            fresh, _ = load_base_model(base_ref, tokenizer)  # the loaded model keeps its adapters unmerged
            if served is not None:
                fresh = merge_adapter(load_adapters(fresh, {served: adapters[served]}), served)
            return fresh, tokenizer

        sources = [path, _model_dir_path(path, tok_rel)]
        sources += [Path(base_ref)] if "path" in base else []
        sources += [adapters[served]] if served is not None else []
        folder, _ = converted_model(
            Path(ct2_cache_dir) if ct2_cache_dir is not None else path / CT2_CACHE,
            sources,
            served,
            build_merged,
            base_id=base.get("id"),
            model_dir=path.resolve(),
        )
        fast = CT2Decoder(
            folder,
            tokenizer,
            compute_type=compute_type or "float32",
            device=device,
            threads=ct2_threads if ct2_threads is not None else torch.get_num_threads(),
        )
    label = (
        "t5"
        + (f"+lora:{served}" if served else "")
        + (" (merged)" if merge else "")
        + (f" ct2:{fast.compute_type}" if fast else "")
    )
    return T5Generator(
        model, tokenizer, gen_settings, default_adapter=adapter, device=device, name=label, fast=fast
    )
