"""Shared set-up of the LSTM benchmarks against OpenNMT-py: the same STAR pieces for both, onmt configs.

``bench/lstm_train_speed.py`` and ``bench/lstm_decode_speed.py`` use it. It trains our SentencePiece
tokenizer on the STAR training turns (as ``finetune/train_lstm.py`` does), encodes (context, reply)
examples into our ids, and writes the same ids as space-separated piece strings for OpenNMT-py, with a
vocabulary file of our pieces, so that both trainers see exactly the same token sequences. Our eos
piece ``</s>`` ends every source line (our sources carry eos; OpenNMT-py adds none to sources) and
OpenNMT-py adds ``<s>``/``</s>`` around targets as we do, so both predict the same target tokens.

It does not time anything. OpenNMT-py runs from its own virtual environment (``make bench-peers``
builds ``.venv-onmt`` in the checkout).
"""

from __future__ import annotations

import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

from assistant.data import read_dialogs
from assistant.generators.lstm import Seq2SeqConfig
from assistant.generators.lstm.tokenizer import TOKENIZER_FILE, Tokenizer, TokenizerConfig
from finetune.lstm_data import encode_examples, load_examples

ROOT = Path(__file__).resolve().parent.parent
STAR = ROOT.parent / "shared" / "data" / "dialogs" / "star"  # ../shared/data beside the checkout

#: The sizes of the issue: bidirectional 1x384 encoder, 1x384 decoder, embedding 256, general
#: attention, no input feed; STAR's preset limits (64 source, 48 target tokens), dropout 0.1.
MODEL = Seq2SeqConfig(
    emb_size=256,
    hidden_size=384,
    encoder_layers=1,
    decoder_layers=1,
    dropout=0.1,
    attention="general",
    max_context_turns=3,
    max_source_len=64,
    max_target_len=48,
)
VOCAB_SIZE = 4000
LR = 2e-3


def onmt_bin(name: str) -> Path:
    """Path of an OpenNMT-py console script in the checkout's ``.venv-onmt``.

    Raises:
        SystemExit: the venv does not have it (run ``make bench-peers``).
    """
    script = ROOT / ".venv-onmt" / "bin" / name
    if not script.is_file():
        raise SystemExit(f"OpenNMT-py's {name} not found in {ROOT / '.venv-onmt'}: run `make bench-peers`")
    return script


def peer_env() -> dict[str, str]:
    """Environment for peer subprocesses: one thread, torch.load of onmt's pickled checkpoints allowed."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    env.pop("PYTHONPATH", None)
    return env


@dataclass
class PeerData:
    """Our tokenizer and id pairs, and the OpenNMT-py files holding the same tokens."""

    tokenizer: Tokenizer
    train_pairs: list[tuple[list[int], list[int]]]
    valid_pairs: list[tuple[list[int], list[int]]]
    valid_contexts: list[str]
    workdir: Path

    @property
    def vocab(self) -> Path:
        return self.workdir / "onmt-vocab.txt"

    def onmt_file(self, split: str, side: str) -> Path:
        return self.workdir / f"{split}.{side}"


def prepare(workdir: Path) -> PeerData:
    """Tokenizer, id pairs and onmt text files in ``workdir`` (reused when already there).

    Raises:
        SystemExit: the STAR data is missing.
    """
    train, valid = STAR / "train.jsonl", STAR / "valid.jsonl"
    if not train.is_file():
        raise SystemExit(f"STAR data not found at {STAR} (see ../shared/data/README)")
    workdir.mkdir(parents=True, exist_ok=True)
    cache = workdir / "pairs.pkl"
    if cache.is_file() and (workdir / TOKENIZER_FILE).is_file():
        tokenizer = Tokenizer.load(workdir / TOKENIZER_FILE)
        with cache.open("rb") as fh:
            train_pairs, valid_pairs, contexts = pickle.load(fh)
        return PeerData(tokenizer, train_pairs, valid_pairs, contexts, workdir)
    tokenizer = Tokenizer.train(
        [t.text for d in read_dialogs(train) for t in d.turns], TokenizerConfig(vocab_size=VOCAB_SIZE), seed=0
    )
    tokenizer.save(workdir / TOKENIZER_FILE)
    train_pairs = encode_examples(load_examples(train, MODEL.max_context_turns), tokenizer, MODEL)
    valid_examples = load_examples(valid, MODEL.max_context_turns)
    valid_pairs = encode_examples(valid_examples, tokenizer, MODEL)
    from assistant.model_input import format_context

    contexts = [format_context(e.context) for e in valid_examples]
    with cache.open("wb") as fh:
        pickle.dump((train_pairs, valid_pairs, contexts), fh)
    data = PeerData(tokenizer, train_pairs, valid_pairs, contexts, workdir)
    specials = {tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id}
    data.vocab.write_text(
        "".join(
            f"{tokenizer.id_to_piece(i)} {VOCAB_SIZE - i}\n"
            for i in range(tokenizer.vocab_size)
            if i not in specials
        ),
        encoding="utf-8",
    )
    for split, pairs in (("train", train_pairs), ("valid", valid_pairs)):
        # sources keep our eos (written as onmt's "</s>"); targets drop it (onmt appends its own).
        _write(data.onmt_file(split, "src"), [src for src, _ in pairs], tokenizer)
        _write(data.onmt_file(split, "tgt"), [tgt[:-1] for _, tgt in pairs], tokenizer)
    return data


def _write(path: Path, rows: list[list[int]], tokenizer: Tokenizer) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for ids in rows:
            fh.write(" ".join(tokenizer.id_to_piece(i) for i in ids) + "\n")


def onmt_config(data: PeerData, run_dir: Path, steps: int, report_every: int, seed: int = 0) -> Path:
    """Write an ``onmt_train`` YAML config for the issue's sizes and return its path.

    OpenNMT-py cannot tie the output layer to a 256-d embedding under a 384-d decoder
    (``share_decoder_embeddings`` needs equal sizes), so its output layer is an untied 384 → vocab
    linear; ours is 384 → 256 → vocab (tied). Everything else matches: shared embeddings, a bridge,
    dropout 0.1, Adam at 2e-3, gradient norm clipped at 1, 64 sentences per batch, one data worker
    thread (``num_workers 0``).
    """
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    config = f"""
save_data: {run_dir}/data
src_vocab: {data.vocab}
share_vocab: true
src_vocab_size: {VOCAB_SIZE + 8}
tgt_vocab_size: {VOCAB_SIZE + 8}
vocab_size_multiple: 1
src_words_min_frequency: 0
tgt_words_min_frequency: 0
data:
  corpus_1:
    path_src: {data.onmt_file("train", "src")}
    path_tgt: {data.onmt_file("train", "tgt")}
  valid:
    path_src: {data.onmt_file("valid", "src")}
    path_tgt: {data.onmt_file("valid", "tgt")}
save_model: {run_dir}/model
save_checkpoint_steps: {steps}
keep_checkpoint: 1
seed: {seed}
train_steps: {steps}
valid_steps: {steps * 10}
report_every: {report_every}
world_size: 1
gpu_ranks: []
num_workers: 0
batch_type: sents
batch_size: 64
valid_batch_size: 64
accum_count: [1]
model_type: text
encoder_type: brnn
decoder_type: rnn
rnn_type: LSTM
enc_layers: 1
dec_layers: 1
hidden_size: {MODEL.hidden_size}
word_vec_size: {MODEL.emb_size}
global_attention: general
input_feed: 0
bridge: true
share_embeddings: true
share_decoder_embeddings: false
dropout: [{MODEL.dropout}]
attention_dropout: [0.0]
optim: adam
learning_rate: {LR}
adam_beta1: 0.9
adam_beta2: 0.999
max_grad_norm: 1.0
decay_method: none
param_init: 0.1
"""
    path = run_dir / "config.yaml"
    path.write_text(config, encoding="utf-8")
    return path
