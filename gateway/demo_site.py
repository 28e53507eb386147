"""The demo's stand-in customer website: an ordinary page that embeds the chat bubble.

``switchboard demo`` serves it at ``/demo/`` so a newcomer sees what their own visitors would see.
The page has a strict Content-Security-Policy (nothing inline), as a careful site would, and a
"Sign in" button showing signed identity: the hash is made here, server side, with the demo
channel's ``identity_secret``, exactly as docs/setup/web.md tells a site to.
"""

from __future__ import annotations

import hashlib
import hmac
import html

from aiohttp import web

DEMO_PAGE_PATH = "/demo/"
DEMO_USER = "ada@example.com"
GREETING = ("Hi! I'm the demo assistant of Acme Outdoor.", "Ask me anything, or pick a question below.")
PROMPTS = ("hello", "show me markdown", "Where is order 1234?")

_CSP = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-src 'self'", "img-src 'self' data:",
    "object-src 'none'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
])

_CSS = """
body { margin: 0; font: 16px/1.5 Georgia, "Times New Roman", serif; color: #2b2118; background: #f7f1e8; }
header { background: #2b2118; color: #f7f1e8; padding: 1rem 2rem; }
header h1 { margin: 0; font-size: 1.6rem; letter-spacing: 0.05em; }
main { max-width: 46rem; margin: 2rem auto; padding: 0 1.5rem 6rem; }
.products { display: grid; grid-template-columns: repeat(auto-fill, minmax(12rem, 1fr)); gap: 1rem; }
.product { background: #fff; border: 1px solid #d9cbb5; border-radius: 0.5rem; padding: 1rem; }
.product h3 { margin: 0 0 0.3rem; }
pre { background: #fff; border: 1px solid #d9cbb5; padding: 0.8rem; overflow-x: auto; font-size: 0.85rem; }
button { font: inherit; padding: 0.4rem 0.9rem; border: 1px solid #2b2118; background: #fff; cursor: pointer; }
#who { margin-left: 0.5rem; }
"""

_JS = """
"use strict";
// The shop's own script: sign in/out just tells the widget who the visitor is.
const button = document.getElementById("sign-in");
const who = document.getElementById("who");
button.addEventListener("click", () => {
  const signedIn = button.dataset.state === "in";
  if (signedIn) {
    Switchboard.identify(null, null);
    button.dataset.state = "out";
    button.textContent = "Sign in as " + button.dataset.userId;
    who.textContent = "Browsing anonymously.";
  } else {
    Switchboard.identify(button.dataset.userId, button.dataset.userHash);
    button.dataset.state = "in";
    button.textContent = "Sign out";
    who.textContent = "Signed in: the chat follows you to any browser where you sign in.";
  }
});
Switchboard.on("answer", (answer) => console.info("Switchboard answered:", answer.text.slice(0, 60)));
"""


def page_html(channel: str, secret: str) -> str:
    embed = f"/chat/{channel}/embed.js"
    user_hash = hmac.new(secret.encode(), DEMO_USER.encode(), hashlib.sha256).hexdigest()
    tag = f'<script src="{embed}" data-color="#b4531f"></script>'
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Acme Outdoor (Switchboard demo shop)</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="{DEMO_PAGE_PATH}site.css">
</head>
<body>
  <header><h1>Acme Outdoor</h1></header>
  <main>
    <p>This is an ordinary website standing in for yours. The round button in the corner is the
    Switchboard chat widget, added by one line:</p>
    <pre>{html.escape(tag)}</pre>
    <p><button id="sign-in" type="button" data-state="out" data-user-id="{DEMO_USER}"
       data-user-hash="{user_hash}">Sign in as {DEMO_USER}</button><span id="who">Browsing anonymously.</span></p>
    <h2>Bestsellers</h2>
    <div class="products">
      <div class="product"><h3>Trail tent</h3><p>Two people, 1.9 kg.</p></div>
      <div class="product"><h3>Down jacket</h3><p>Warm to -10 °C.</p></div>
      <div class="product"><h3>Headlamp</h3><p>400 lumen, USB-C.</p></div>
    </div>
  </main>
  {tag}
  <script src="{DEMO_PAGE_PATH}site.js"></script>
</body>
</html>
"""


def add_demo_site(app: web.Application, channel: str, secret: str) -> None:
    """Serve the demo shop page and its files on ``app``."""
    headers = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
    body = page_html(channel, secret)

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="text/html", headers=headers)

    async def script(request: web.Request) -> web.Response:
        return web.Response(text=_JS, content_type="text/javascript", headers=headers)

    async def style(request: web.Request) -> web.Response:
        return web.Response(text=_CSS, content_type="text/css", headers=headers)

    app.router.add_get(DEMO_PAGE_PATH, page)
    app.router.add_get(DEMO_PAGE_PATH + "site.js", script)
    app.router.add_get(DEMO_PAGE_PATH + "site.css", style)
