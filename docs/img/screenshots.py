"""Take the README's widget screenshots in headless Chromium against a running server (the demo model).

    assistant serve --port 8765 &
    python docs/img/screenshots.py --url http://127.0.0.1:8765

Opens ``/widget/``, asks an FAQ question and a two-message billing problem that the demo model hands
to a person, then saves ``widget-desktop.png`` (1280x800) and ``widget-phone.png`` (390x844, the same
conversation loaded from the history on reload) next to this file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.browser import LAST_BOT, WIDGET, chromium, emulate_phone

MESSAGES = ["How do I cancel my order?", "I've been charged twice", "PC-128066 i think"]


def open_widget(driver, url: str) -> None:
    driver.get(f"{url}/widget/")
    time.sleep(0.5)
    driver.find_element(By.ID, "support-assistant-widget").shadow_root.find_element(
        By.CSS_SELECTOR, ".launcher"
    ).click()
    time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    args = parser.parse_args()
    out = Path(__file__).resolve().parent
    with chromium() as driver:
        driver.get(f"{args.url}/widget/")
        driver.execute_script("localStorage.clear()")
        open_widget(driver, args.url)
        for text in MESSAGES:
            box = driver.find_element(By.ID, "support-assistant-widget").shadow_root
            box.find_element(By.CSS_SELECTOR, "textarea").send_keys(text, Keys.ENTER)
            time.sleep(0.3)
            deadline = time.monotonic() + 30
            while driver.execute_script(LAST_BOT)[1] != "false" and time.monotonic() < deadline:
                time.sleep(0.05)
        time.sleep(0.3)
        driver.save_screenshot(str(out / "widget-desktop.png"))
        emulate_phone(driver)
        open_widget(driver, args.url)
        time.sleep(1.0)
        driver.execute_script(f"const l = {WIDGET}.querySelector('.log'); l.scrollTop = l.scrollHeight")
        driver.save_screenshot(str(out / "widget-phone.png"))
    print(f"saved {out / 'widget-desktop.png'} and {out / 'widget-phone.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
