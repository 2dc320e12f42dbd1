"""The LSTM encoder-decoder reply model with attention (config, encoder, attention, decoder, model).

Only the network lives here: tokenization is in ``assistant/generators/lstm/tokenizer.py``, search in
``assistant/generators/decoding.py``, saving and loading in ``assistant/generators/lstm/checkpoint.py``, training in
``finetune/train_lstm.py``.
"""

from assistant.generators.lstm.config import Seq2SeqConfig
from assistant.generators.lstm.model import DecoderState, Seq2SeqModel, reorder_state

__all__ = ["DecoderState", "Seq2SeqConfig", "Seq2SeqModel", "reorder_state"]
