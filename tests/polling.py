"""Bounded polling for tests that wait on Redis's own clock (TTLs, lock expiry) instead of sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(probe: Callable[[], T], *, timeout: float = 5.0, interval: float = 0.05) -> T:
    """Call ``probe`` until it returns a truthy value and return it; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {probe}")
        time.sleep(interval)
