"""The assistant library: data formats, reply models, FAQ retrieval and the reply pipeline.

It imports neither Flask nor Redis: the server (``server/``) and the training and evaluation
CLIs (``finetune/``) build on it, never the other way round.
"""

__version__ = "0.1.0"
