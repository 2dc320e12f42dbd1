"""Deciding when not to answer: the reply model's in-domain check (``scope``), small talk and requests
for a person (``smalltalk``), conversation-level rules (``rules``) and the shipped generic out-of-scope
messages (``generic``). The pipeline (``assistant/pipeline.py``) applies them."""
