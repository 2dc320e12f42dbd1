"""The production server for real: gunicorn with ``server/serving/gunicorn_conf.py`` on a loopback port,
a tiny LSTM reply model and a BM25 FAQ index saved to disk, and a real Redis.

* ``--preload`` then SIGHUP reloads: the first concurrent requests of each fresh worker never hit
  PyTorch's "Invalid thread pool!" (defect 3);
* 64 clients that send part of a body and stall do not starve the others, and are closed (defect 4);
* workers recycled by ``--max-requests``, or all killed at once, neither stop nor restart the embedded
  Redis (defect 10; the master holds a registration).

Each test starts its own gunicorn and stops it by PID at the end (``tests/processes.py``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import torch
from polling import wait_until
from processes import Gunicorn

from assistant.generators.decoding import DecodingConfig
from assistant.generators.lstm import Seq2SeqConfig, Seq2SeqModel
from assistant.generators.lstm.checkpoint import save_checkpoint
from assistant.generators.lstm.tokenizer import Tokenizer, TokenizerConfig
from server.store.redis_process import RedisProcess

pytestmark = pytest.mark.slow

API_KEY = "k" * 24
AUTH = {"Authorization": f"Bearer {API_KEY}"}
CORPUS = [f"my order {n} has not arrived, can you check it" for n in range(30)] + [
    "could I get your name please",
    "thank you and goodbye",
]


def _save_tiny_lstm(directory):
    """A tiny LSTM reply model (untrained: its replies are nonsense, its code path is the real one)."""
    torch.manual_seed(0)
    tokenizer = Tokenizer.train(CORPUS, TokenizerConfig(vocab_size=80))
    model = Seq2SeqModel(
        Seq2SeqConfig(emb_size=16, hidden_size=32, max_source_len=16, max_target_len=8),
        tokenizer.vocab_size,
        tokenizer.pad_id,
    )
    save_checkpoint(
        directory,
        model,
        tokenizer,
        TokenizerConfig(vocab_size=80),
        DecodingConfig(max_len=8),
        data=[{"role": "train", "path": "x.jsonl", "sha256": "0" * 64, "examples": 3}],
        training={"target_tokens_per_s": 1.0},
    )


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, demo_faq_index):
    """A tiny LSTM reply model and the demo FAQ index (BM25), saved as a deployment would have them."""
    root = tmp_path_factory.mktemp("deploy")
    _save_tiny_lstm(root / "model")
    demo_faq_index.save(root / "index")
    return root / "model", root / "index"


@pytest.fixture(scope="module", params=["torch", "onnx-int8"])
def dense_model_dirs(request, tmp_path_factory, demo_data):
    """The tiny LSTM and a dense FAQ index (the bundled MiniLM encoder) of five demo FAQ entries, so
    that a request's first step runs the query encoder in the forked worker: PyTorch, or ONNX Runtime
    (the default ``dense_backend``; its session must be made anew after the fork)."""
    from assistant.data import read_faq, read_queries
    from assistant.retrieval.index import FaqIndex, RetrieverConfig

    root = tmp_path_factory.mktemp("deploy-dense")
    _save_tiny_lstm(root / "model")
    every = read_faq(demo_data / "faq" / "faq.jsonl")
    entries = every[:5]
    ids = {e.id for e in entries}
    queries = read_queries(demo_data / "faq" / "queries-dev.jsonl", [e.id for e in every])
    index = FaqIndex.build(entries, RetrieverConfig(method="dense", dense_backend=request.param))
    index.calibrate([q for q in queries if q.faq_id is None or q.faq_id in ids])
    index.save(root / "index")
    return root / "model", root / "index"


@pytest.fixture
def redis_proc(tmp_path):
    server = RedisProcess(tmp_path / "redis-data")
    server.start()
    yield server
    server.kill()


def app_env(tmp_path, model_dirs, **extra) -> dict[str, str]:
    model_dir, index_dir = model_dirs
    return {
        "ASSISTANT_API_KEY": API_KEY,
        "ASSISTANT_MODEL_DIR": str(model_dir),
        "ASSISTANT_INDEX_DIR": str(index_dir),
        "ASSISTANT_INSTANCE_DIR": str(tmp_path / "instance"),
        **extra,
    }


def chat(server: Gunicorn, conversation_id: str, text: str = "tell me a joke about penguins", timeout=30):
    return server.request(
        "POST", "/v1/chat", {"conversation_id": conversation_id, "text": text}, headers=AUTH, timeout=timeout
    )


def test_preloaded_workers_serve_their_first_concurrent_requests_after_each_reload(
    tmp_path, dense_model_dirs, redis_proc
):
    env = app_env(tmp_path, dense_model_dirs, REDIS_URL=redis_proc.url, ASSISTANT_TORCH_THREADS="2")
    args = ["--preload", "--workers", "2", "--threads", "16"]
    with Gunicorn(env, args, tmp_path / "gunicorn.log") as server:
        statuses = []
        for round_ in range(3):
            old = set(server.worker_pids())
            server.signal(signal.SIGHUP)  # graceful reload: fresh workers forked from the master
            wait_until(lambda: len(set(server.worker_pids()) - old) == 2, timeout=60)  # noqa: B023
            wait_until(lambda: server.request("GET", "/healthz")[0] == 200, timeout=30)
            results: dict[int, int] = {}
            barrier = threading.Barrier(32)

            def send(i, round_=round_, results=results, barrier=barrier):
                barrier.wait()  # all at once: every request thread of the fresh workers starts together
                results[i] = chat(
                    server, f"r{round_}-{i}", "my parcel has not arrived, the tracking is empty"
                )[0]

            threads = [threading.Thread(target=send, args=(i,)) for i in range(32)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            statuses += results.values()
        log = server.log()
    assert statuses == [200] * 96, {s: statuses.count(s) for s in set(statuses)}
    assert "Invalid thread pool" not in log and "Traceback" not in log


def _slow_client(port: int) -> socket.socket:
    """A client that sends the head and 10 of 200 announced body bytes, then stalls."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        b"POST /v1/chat HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + API_KEY.encode() + b"\r\nContent-Length: 200\r\n\r\n"
        b'{"convers'
    )
    return sock


def test_slow_clients_do_not_starve_the_server_and_are_closed(tmp_path, model_dirs, redis_proc):
    env = app_env(tmp_path, model_dirs, REDIS_URL=redis_proc.url, GUNICORN_REQUEST_READ_TIMEOUT="4")
    with Gunicorn(env, ["--workers", "1", "--threads", "4"], tmp_path / "gunicorn.log") as server:
        slow = [_slow_client(server.port) for _ in range(64)]
        try:
            time.sleep(0.5)  # all 64 are connected and stalled
            started = time.monotonic()
            answered = []
            for i in range(8):
                try:
                    answered.append(chat(server, f"n-{i}", timeout=8)[0])
                except TimeoutError:
                    answered.append("timeout")
            took = time.monotonic() - started
            assert answered == [200] * 8 and took < 8, (answered, took)
            # each slow connection is answered 408 and closed once its read timeout has passed
            closed_at = []
            for sock in slow:
                sock.settimeout(15)
                data = b""
                while chunk := sock.recv(4096):
                    data += chunk
                assert data.startswith(b"HTTP/1.1 408"), data[:80]
                closed_at.append(time.monotonic() - started)
            assert max(closed_at) < 4 + 3
        finally:
            for sock in slow:
                sock.close()
        assert server.request("GET", "/readyz")[0] == 200


def _flock_holders(path) -> set[int]:
    """PIDs holding a ``flock`` on ``path`` (Linux ``/proc/locks``: ``FLOCK ... <pid> <maj>:<min>:<inode>``)."""
    inode = os.stat(path).st_ino
    holders = set()
    for line in Path("/proc/locks").read_text(encoding="ascii").splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and int(fields[5].rsplit(":", 1)[1]) == inode:
            holders.add(int(fields[4]))
    return holders


def test_recycled_workers_neither_stop_nor_restart_the_embedded_redis(tmp_path, model_dirs):
    env = app_env(tmp_path, model_dirs)  # no REDIS_URL: the embedded Redis in the instance folder
    args = ["--workers", "2", "--threads", "2", "--max-requests", "8", "--max-requests-jitter", "0"]
    state_file = tmp_path / "instance" / "redis" / "server.json"
    with Gunicorn(env, args, tmp_path / "gunicorn.log") as server:
        pid = json.loads(state_file.read_text())["pid"]
        assert server.process.pid in _flock_holders(state_file.parent / "users.lock")  # the master is a user
        workers_seen = set(server.worker_pids())
        statuses = []
        for i in range(48):
            statuses.append(chat(server, f"m-{i % 5}")[0])
            workers_seen |= set(server.worker_pids())
        assert statuses == [200] * 48, {s: statuses.count(s) for s in set(statuses)}
        assert len(workers_seen) >= 5  # workers were recycled several times
        assert json.loads(state_file.read_text())["pid"] == pid  # the same server all along
        # every worker leaving at once, as when both reach --max-requests together (SIGTERM: the same
        # graceful exit): the last one out would stop the server, but the master's own registration
        # keeps it
        old = set(server.worker_pids())
        for worker in old:
            os.kill(worker, signal.SIGTERM)
        wait_until(lambda: len(set(server.worker_pids()) - old) == 2, timeout=60)
        assert chat(server, "after-kill")[0] == 200
        assert json.loads(state_file.read_text())["pid"] == pid
    wait_until(lambda: not state_file.exists(), timeout=10)  # gunicorn stopped: so did Redis
    wait_until(lambda: not _running(pid), timeout=10)


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process: gone, or a zombie its dead parent left unreaped, is not."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
