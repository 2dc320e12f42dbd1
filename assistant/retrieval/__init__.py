"""FAQ retrieval: config and hits (``config``), the index (``index``), its persistence (``store``),
query/entry embeddings (``embeddings``) and confidence calibration (``calibration``)."""
