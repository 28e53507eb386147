"""The chat page and its static files, served from the package with strict security headers."""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files

from aiohttp import web

#: the only files served under ``static/``: a fixed list, so no path can escape the package
ASSETS = {
    "chat.js": "text/javascript",
    "markdown.js": "text/javascript",
    "frame.js": "text/javascript",
    "chat.css": "text/css",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def _asset(body: bytes, content_type: str) -> Asset:
    return Asset(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')


def load_assets(
    title: str, max_chars: int, greeting: Sequence[str] = (), prompts: Sequence[str] = ()
) -> dict[str, Asset]:
    """The page (this instance's settings filled in, escaped), its scripts, style sheet and embed.js."""
    static = files("channels.web").joinpath("static")
    page = static.joinpath("index.html").read_text(encoding="utf-8")
    values = {
        "title": html.escape(title),
        "max_chars": str(max_chars),
        # JSON in a quoted attribute: html.escape also escapes the quotes, the script parses it.
        "greeting": html.escape(json.dumps(list(greeting))),
        "prompts": html.escape(json.dumps(list(prompts))),
    }
    for key, value in values.items():
        page = page.replace("{{" + key + "}}", value)
    assets = {"index.html": _asset(page.encode(), "text/html")}
    for name, content_type in ASSETS.items():
        assets[name] = _asset(static.joinpath(name).read_bytes(), content_type)
    # JSON is a JavaScript literal; ensure_ascii keeps U+2028 and friends out, and the value sits
    # in a script file, not in HTML, so "</script>" means nothing there.
    defaults = json.dumps({"title": title}, ensure_ascii=True)
    embed = static.joinpath("embed.js").read_text(encoding="utf-8").replace("/*{{defaults}}*/ null", defaults)
    assets["embed.js"] = _asset(embed.encode(), "text/javascript")
    return assets


def embed_headers() -> dict[str, str]:
    """Headers of embed.js: a script other sites load, so it must be loadable cross-origin."""
    return {
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "cross-origin",
        "Cache-Control": "no-cache",
    }


def security_headers(frame_ancestors: str) -> dict[str, str]:
    """Headers that keep the page from running anything but its own files.

    No inline script or style is allowed, so even an escaping bug in the Markdown renderer
    cannot run injected code; ``connect-src 'self'`` keeps answers flowing only to this gateway.
    """
    csp = "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            f"frame-ancestors {frame_ancestors}",
        ]
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def serve(request: web.Request, asset: Asset, headers: dict[str, str]) -> web.Response:
    """The asset, or 304 when the browser already has this version."""
    all_headers = {**headers, "ETag": asset.etag}
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=all_headers)
    return web.Response(body=asset.body, content_type=asset.content_type, charset="utf-8", headers=all_headers)
