"""Blueprint ``widget``: the embeddable web chat (``GET /widget.js``) and its demo page (``GET /widget/``).

The files live in ``server/widget/`` (package data, so a non-editable install serves them too). The demo
page embeds the widget from this server; ``/widget/?site_key=<key>`` puts a public site key into its
``<script>`` tag (needed when the server requires a key: ``server/site_keys.py``). No API key is
needed for either file: they hold no secrets. The chat itself is ``POST /v1/chat`` (``chat.py``).
"""

from __future__ import annotations

import html
from pathlib import Path
from string import Template

from flask import Blueprint, Response, request

from server.errors import ApiError

bp = Blueprint("widget", __name__)
WIDGET_DIR = Path(__file__).resolve().parent.parent / "widget"


def _read(name: str) -> str:
    return (WIDGET_DIR / name).read_text(encoding="utf-8")


@bp.get("/widget.js")
def widget_js():
    """The widget script (cached by browsers for 5 minutes)."""
    response = Response(_read("widget.js"), mimetype="text/javascript")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/widget/")
def demo_page():
    """A demo page with the widget on it."""
    site_key = request.args.get("site_key", "")
    if len(site_key) > 128:
        raise ApiError(422, "invalid_field", "query parameter 'site_key' is longer than 128 characters")
    server = request.host_url.rstrip("/")
    page = Template(_read("index.html")).substitute(
        server=html.escape(server),
        site_key_attr=f'data-site-key="{html.escape(site_key)}"' if site_key else "",
    )
    response = Response(page, mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'"
    )
    return response
