"""PyTorch's intra-op thread count for a server process, kept valid in processes forked from it.

``gunicorn --preload`` loads the app (and the model) in the master, then forks the workers. PyTorch
marks its ``pthreadpool`` as "leaked" in a forked child and rebuilds it on the next call to
``at::set_num_threads``; a process that called ``torch.set_num_threads`` before the fork makes every
new thread of the child call it on its first parallel operation. With several request threads
starting at once, two of them rebuild the pool at the same time and one finds none: ``RuntimeError:
pool INTERNAL ASSERT FAILED ... Invalid thread pool!`` (a 500). :func:`set_torch_threads` sets the
count and registers an ``os.register_at_fork`` handler that sets it again in the child, while the
child still has a single thread, so the pool is rebuilt once, before any request runs.

It does not load models (``server/runtime.py`` does) and does nothing without PyTorch threads set.
"""

from __future__ import annotations

import os

_threads = 0
_registered = False


def set_torch_threads(threads: int) -> None:
    """``torch.set_num_threads(threads)`` now and in every process forked from this one later.

    Args:
        threads: intra-op threads, >= 1 (the ``torch_threads`` setting; 0 means "leave PyTorch's
            default", which needs nothing here).
    """
    global _threads, _registered
    if threads < 1:
        return
    import torch

    torch.set_num_threads(threads)
    _threads = threads
    if not _registered:
        os.register_at_fork(after_in_child=_reset_in_child)
        _registered = True


def _reset_in_child() -> None:
    import torch

    torch.set_num_threads(_threads)
