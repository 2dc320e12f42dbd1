"""Redis: the dialog store (``history``) and the embedded Redis server (``embedded``)."""
