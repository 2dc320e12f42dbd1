"""Reply models: the interface (``base``), loading by kind (``loader``), model-agnostic search
(``decoding``), the retrieval baseline, and the LSTM and T5 families (``lstm/``, ``t5/``)."""
