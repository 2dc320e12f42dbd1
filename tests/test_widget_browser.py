"""The web chat widget in a real headless Chromium (Debian ``chromium`` + ``chromium-driver``, Selenium).

A live server on 127.0.0.1 with real Redis, the real FAQ index and pipeline, and a slow streaming
generator, so the browser sees each reply arrive in pieces. Marked slow: a browser start takes seconds.
"""

from __future__ import annotations

import html
import time

import pytest
from flask import Flask, request
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from assistant.pipeline import Pipeline, PipelineConfig
from tests.browser import LAST_BOT, MESSAGES, WIDGET, chromium, emulate_phone
from tests.streaming_support import HANDOFF_REPLY, SlowGenerator, live_server

pytestmark = pytest.mark.slow

SCRIPT_REPLY = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> <b>bold</b>'
SITE_KEY = "pk_test_widget_0123456789"


@pytest.fixture
def widget_app(make_app, demo_faq_index):
    def make(**settings):
        generator = SlowGenerator(delay=0.12, scripts={"zebra": HANDOFF_REPLY, "markup": SCRIPT_REPLY})
        pipeline = Pipeline(demo_faq_index, generator, PipelineConfig(handoff_replies=(HANDOFF_REPLY,)))
        return make_app(use_pipeline=pipeline, **settings)

    return make


@pytest.fixture(scope="module")
def driver():
    with chromium() as d:
        yield d


def open_widget(driver, url: str) -> None:
    driver.get(url)
    host = wait_for(lambda: driver.find_elements(By.ID, "support-assistant-widget"))[0]
    launcher = host.shadow_root.find_element(By.CSS_SELECTOR, ".launcher")
    launcher.click()
    wait_for(lambda: driver.execute_script(f"return !{WIDGET}.querySelector('.panel').hidden"))


def wait_for(condition, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting for the page")


def send(driver, text: str) -> list[tuple[str, str]]:
    """Type ``text`` + Enter; poll the reply bubble until it is complete; returns ``(text, aria-busy)`` seen."""
    host = driver.find_element(By.ID, "support-assistant-widget")
    before = len(driver.execute_script(MESSAGES))
    host.shadow_root.find_element(By.CSS_SELECTOR, "textarea").send_keys(text, Keys.ENTER)
    wait_for(lambda: len(driver.execute_script(MESSAGES)) >= before + 2)
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        content, busy, _ = driver.execute_script(LAST_BOT)
        if not seen or seen[-1] != (content, busy):
            seen.append((content, busy))
        if busy == "false":
            return seen
        time.sleep(0.02)
    raise AssertionError(f"the reply did not complete: {seen}")


def test_reply_streams_in_pieces_keyboard_and_history_after_reload(widget_app, driver):
    with live_server(widget_app()) as url:
        open_widget(driver, f"{url}/widget/")
        assert driver.execute_script(f"return {WIDGET}.activeElement.tagName") == "TEXTAREA"
        log = driver.execute_script(
            f"const l = {WIDGET}.querySelector('.log'); return [l.getAttribute('role'), l.getAttribute('aria-live')]"
        )
        assert log == ["log", "polite"]

        question = "penguins dance on ice floes tonight"
        seen = send(driver, question)
        final = f"echo after 1 turns: {question}"
        assert seen[-1] == (final, "false")
        # the reply grew in front of the user: several proper prefixes before the end (the whole text may
        # show while still busy, between the last chunk and the final event)
        partial = {text for text, busy in seen if busy == "true" and text and text != final}
        assert len(partial) >= 3 and all(final.startswith(p) for p in partial), seen

        # Escape closes the panel and gives the focus back to the launcher
        host = driver.find_element(By.ID, "support-assistant-widget")
        host.shadow_root.find_element(By.CSS_SELECTOR, "textarea").send_keys(Keys.ESCAPE)
        assert driver.execute_script(f"return {WIDGET}.querySelector('.panel').hidden") is True
        assert "launcher" in driver.execute_script(f"return {WIDGET}.activeElement.className")

        driver.refresh()
        open_widget(driver, f"{url}/widget/")
        wait_for(lambda: len(driver.execute_script(MESSAGES)) >= 3)
        assert driver.execute_script(MESSAGES)[1:] == [["user", question], ["bot", final]]
        # the conversation goes on with its history: the model sees 3 turns
        assert send(driver, "and walruses")[-1][0] == "echo after 3 turns: and walruses"


def test_handoff_reply_changes_the_widget_state_and_survives_reload(widget_app, driver):
    with live_server(widget_app()) as url:
        driver.get("about:blank")
        open_widget(driver, f"{url}/widget/")
        driver.execute_script("localStorage.clear()")
        driver.refresh()
        open_widget(driver, f"{url}/widget/")
        assert driver.execute_script(f"return {WIDGET}.querySelector('.status').textContent") == "Assistant"
        assert send(driver, "my zebra wants a word")[-1] == (HANDOFF_REPLY, "false")
        state = f"return [{WIDGET}.querySelector('.root').dataset.handoff, {WIDGET}.querySelector('.status').textContent]"
        assert driver.execute_script(state) == ["true", "Waiting for a person"]
        assert driver.execute_script(MESSAGES)[-1] == ["system", "A person will reply here."]
        driver.refresh()
        open_widget(driver, f"{url}/widget/")
        wait_for(lambda: driver.execute_script(state) == ["true", "Waiting for a person"])


def test_markup_in_a_reply_is_shown_as_text(widget_app, driver):
    with live_server(widget_app()) as url:
        open_widget(driver, f"{url}/widget/")
        assert send(driver, "show me some markup")[-1] == (SCRIPT_REPLY, "false")
        assert driver.execute_script("return window.__xss === undefined") is True
        counts = f"return [{WIDGET}.querySelectorAll('.log script, .log img, .log b').length]"
        assert driver.execute_script(counts) == [0]


def test_phone_viewport_makes_the_chat_full_screen(widget_app, driver):
    with live_server(widget_app()) as url:
        emulate_phone(driver)
        try:
            open_widget(driver, f"{url}/widget/")
            rect = driver.execute_script(
                f"const r = {WIDGET}.querySelector('.panel').getBoundingClientRect();"
                "return [r.left, r.top, r.width, r.height, innerWidth, innerHeight]"
            )
            assert rect == [0, 0, 390, 844, 390, 844]
            assert send(driver, "penguins on a phone")[-1][1] == "false"
        finally:
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def host_site() -> Flask:
    """Another site embedding the widget with a public site key; ``/?api=<server URL>`` names the API."""
    site = Flask("host-site")

    @site.get("/")
    def page():
        api = html.escape(request.args["api"])
        return (
            "<!doctype html><title>shop</title><p>A shop page.</p>"
            f'<script src="{api}/widget.js" data-site-key="{SITE_KEY}" data-open="true"></script>'
        )

    return site


def test_another_site_embeds_the_widget_with_a_site_key_and_cors(widget_app, driver):
    """The shop page is served from http://localhost:<port>, the API from http://127.0.0.1:<port>: a
    cross-origin embed. The server requires its API key; the page holds only the public site key."""
    with live_server(host_site()) as site_url:
        allowed = site_url.replace("127.0.0.1", "localhost")
        server = widget_app(api_key="s" * 32, site_keys=f'{{"{SITE_KEY}": ["{allowed}"]}}')
        with live_server(server) as api:
            driver.get(f"{allowed}/?api={api}")
            wait_for(lambda: driver.execute_script(f"return !{WIDGET}.querySelector('.panel').hidden"))
            assert send(driver, "penguins from another site")[-1] == (
                "echo after 1 turns: penguins from another site",
                "false",
            )
            # the same page on an origin the key does not list: CORS (preflight) stops the browser
            driver.get(f"{site_url}/?api={api}")
            wait_for(lambda: driver.execute_script(f"return !{WIDGET}.querySelector('.panel').hidden"))
            text, busy = send(driver, "penguins from a stranger")[-1]
            assert busy == "false" and text.startswith("Sorry, something went wrong")
            assert "error" in driver.execute_script(LAST_BOT)[2]
