"""Redis Cluster clients: ``redis+cluster://host:port[,host:port...]`` → a ``redis.cluster.RedisCluster``.

The conversation keys carry the hash tag ``{conv:<id>}`` and the API keys ``{apikeys}``, so every
multi-key command and ``MULTI/EXEC`` of the server touches a single slot and works on a cluster
unchanged (``history.py``, ``keys.py``); ``SCAN`` (erasing a conversation, ``assistant export``) is
run on every primary by redis-py. The rate limits use limits' own cluster storage on the same URL
(``server/api/limits.py``). The nodes given are only where discovery starts: the client learns the
whole cluster from them and follows ``MOVED``/``ASK`` redirections (resharding, failover).

It does not start or manage a cluster (``tests/test_server_cluster.py`` starts one of three nodes).
"""

from __future__ import annotations

from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

SCHEME = "redis+cluster://"


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://``)."""
    return url.startswith(SCHEME)


def cluster_nodes(url: str) -> list[ClusterNode]:
    """The ``host:port`` nodes of a ``redis+cluster://`` URL.

    Raises:
        ValueError: not such a URL, or a node without ``host:port``.
    """
    if not is_cluster_url(url):
        raise ValueError(f"{url!r} is not a {SCHEME}host:port[,host:port...] URL")
    nodes = []
    for part in url[len(SCHEME) :].split("/", 1)[0].split(","):
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{url!r}: node {part!r} is not host:port")
        nodes.append(ClusterNode(host, int(port)))
    return nodes


def connect_cluster(
    url: str,
    *,
    socket_timeout: float,
    connect_timeout: float,
    retries: int,
    backoff_base: float,
    backoff_cap: float,
    max_connections: int,
) -> RedisCluster:
    """A cluster client with the same timeouts, retry/backoff and pool size (per node) as
    ``history.connect`` gives a single server."""
    return RedisCluster(
        startup_nodes=cluster_nodes(url),
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(ExponentialBackoff(cap=backoff_cap, base=backoff_base), retries),
        max_connections=max_connections,
    )
