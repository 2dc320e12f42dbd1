"""A small T5 tokenizer trained on the demo data at test time, so the T5 tests need no download.

SentencePiece unigram (Kudo, 2018; the model type of T5's own tokenizer) on every text of the demo
FAQ and dialogs, with T5's special ids (pad 0, ``</s>`` 1, ``<unk>`` 2), wrapped as a transformers
``T5Tokenizer`` from its pieces and scores and saved with ``save_pretrained``, so
``assistant.generators.t5.model.load_tokenizer`` loads it like t5-small's. No sentinel ``<extra_id_*>``
tokens (span corruption is not used here). Training takes well under a second.
"""

from __future__ import annotations

from pathlib import Path

import sentencepiece as spm
from transformers import T5Tokenizer

from assistant.data import read_dialogs, read_faq

VOCAB_SIZE = 800


def demo_texts(demo_dir: Path) -> list[str]:
    """Every FAQ question, answer and example and every dialog turn of the demo data."""
    texts = [t for e in read_faq(demo_dir / "faq" / "faq.jsonl") for t in (e.question, e.answer, *e.examples)]
    for split in ("train", "valid", "test"):
        texts += [t.text for d in read_dialogs(demo_dir / "dialogs" / f"{split}.jsonl") for t in d.turns]
    return texts


def build_tiny_t5_tokenizer(demo_dir: Path, out: Path, vocab_size: int = VOCAB_SIZE) -> Path:
    """Train the tokenizer on :func:`demo_texts` and save it to ``out`` (returned)."""
    model_file = out / "spm.model"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(demo_texts(demo_dir)),
        model_prefix=str(out / "spm"),
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    processor = spm.SentencePieceProcessor(model_file=str(model_file))
    pieces = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    T5Tokenizer(vocab=pieces, extra_ids=0).save_pretrained(str(out))
    model_file.unlink()
    (out / "spm.vocab").unlink()
    return out
