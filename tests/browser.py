"""A real headless Chromium for the widget tests and screenshots: Debian's ``chromium`` and ``chromium-driver``.

Install them with ``apt-get install -y chromium chromium-driver`` (``.ci/run`` does). Selenium is pointed at
``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` so it never downloads a browser or a driver.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,800",
)
INSTALL = "apt-get install -y chromium chromium-driver"


@contextmanager
def chromium() -> Iterator[Any]:
    """A Selenium WebDriver on a fresh headless Chromium profile, quit afterwards.

    When Chromium or its driver is not installed, the test is skipped with the install line as its
    reason, or failed under ``REQUIRE_BROWSER=1`` (CI, which installs them: ``.ci/run``).
    """
    import pytest
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            reason = f"{path} is missing: the browser tests need Debian's Chromium ({INSTALL})"
            if os.environ.get("REQUIRE_BROWSER") == "1":
                pytest.fail(f"REQUIRE_BROWSER=1 but {reason}", pytrace=False)
            pytest.skip(reason)
    profile = tempfile.mkdtemp(prefix="widget-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def emulate_phone(driver: Any, width: int = 390, height: int = 844) -> None:
    """Make the page a phone-sized viewport (CSS pixels; device pixel ratio 2, touch, mobile)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": True},
    )


# JavaScript helpers run in the page: the widget lives in an open shadow root.
WIDGET = "document.getElementById('support-assistant-widget').shadowRoot"
LAST_BOT = f"""
const bots = {WIDGET}.querySelectorAll('.msg.bot');
const last = bots[bots.length - 1];
return last ? [last.textContent, last.getAttribute('aria-busy'), last.className] : null;
"""
MESSAGES = f"""
return Array.from({WIDGET}.querySelectorAll('.msg')).map(m => [m.dataset.role, m.textContent]);
"""
