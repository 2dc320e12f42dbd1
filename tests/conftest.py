"""Shared test fixtures: paths to the shipped demo data and to the public data sets beside the repo."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
DEMO_DATA = ROOT / "data"
T5_TOKENIZER = SHARED_DATA / "models" / "t5-small-tokenizer"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: the public sets in canonical formats (present on CI beside the checkout)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: the tests need ../shared/data beside the checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_data() -> Path:
    """``data/``: the demo FAQ and dialogs the project ships."""
    return DEMO_DATA
