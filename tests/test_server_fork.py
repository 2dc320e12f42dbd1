"""A server process forked after the model was loaded (``gunicorn --preload``) serves its first
concurrent requests without PyTorch's "Invalid thread pool!" (``server/torch_threads.py``).

The fork is done here directly (``os.fork``) to make the race frequent; ``test_server_gunicorn.py``
does the same through a real gunicorn.
"""

from __future__ import annotations

import os
import threading

import torch


def _first_use_in_many_threads(module: torch.nn.Module, inputs: torch.Tensor, threads: int = 16) -> int:
    """In a fresh process: ``threads`` threads run ``module`` for the first time at once; errors seen."""
    errors = []
    barrier = threading.Barrier(threads)

    def work():
        barrier.wait()
        try:
            with torch.no_grad():
                module(inputs)
                (torch.arange(200_000.0) * 2).sum()  # large enough for an intra-op parallel loop
        except RuntimeError as e:
            errors.append(e)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return len(errors)


def test_a_forked_server_process_runs_torch_in_new_threads(make_app, demo_faq_index, tmp_path):
    index_dir = tmp_path / "index"
    demo_faq_index.save(index_dir)
    before = torch.get_num_threads()
    make_app(use_pipeline=None, index_dir=str(index_dir), torch_threads=2)  # the master loads the app
    try:
        module = torch.nn.LSTM(32, 64, batch_first=True)
        inputs = torch.randn(2, 5, 32)
        with torch.no_grad():
            module(inputs)  # the master used torch before forking, as a preloaded model does
            (torch.arange(200_000.0) * 2).sum()
        failed_children = 0
        for _ in range(20):
            pid = os.fork()
            if pid == 0:  # the worker: exit at once, whatever happens
                code = 1
                try:
                    code = 1 if _first_use_in_many_threads(module, inputs) else 0
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            failed_children += os.waitstatus_to_exitcode(status) != 0
        assert failed_children == 0, f"{failed_children} of 20 forked processes hit 'Invalid thread pool!'"
    finally:
        from server.torch_threads import set_torch_threads

        set_torch_threads(before)
