"""T5 reply model: building/loading (``model``), LoRA adapters (``adapters``), serving (``generator``)."""
