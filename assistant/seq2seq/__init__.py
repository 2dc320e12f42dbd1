"""The LSTM encoder-decoder reply model with attention (config, encoder, attention, decoder, model).

Only the network lives here: tokenization is in ``assistant/tokenizer.py``, search in
``assistant/decoding.py``, saving and loading in ``assistant/checkpoint.py``, training in
``finetune/train_lstm.py``.
"""

from assistant.seq2seq.config import Seq2SeqConfig
from assistant.seq2seq.model import DecoderState, Seq2SeqModel, reorder_state

__all__ = ["DecoderState", "Seq2SeqConfig", "Seq2SeqModel", "reorder_state"]
