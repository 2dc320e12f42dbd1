"""Serving under gunicorn: the configuration (``gunicorn_conf.py``) and the buffering worker (``worker.py``)."""
