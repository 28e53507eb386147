"""The embed.js widget in headless Chromium: a shop on another origin, under a strict CSP, embeds it.

The shop (``http://localhost:<port>``) and the gateway (``http://127.0.0.1:<port>``) are different
sites, as in real life. The shop signs its logged-in user's id on its own server, exactly as
docs/setup/web.md tells a site to, with Python's hmac module.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.cli import free_port
from switchboard.testing import running_gateway
from tests.browser.axe import axe_source, serious_violations
from tests.browser.test_web_chromium import ARGS, CHROMIUM

SECRET = "shop-identity-secret"
GREETING = ["Hi! I'm the Acme assistant.", "Ask me about your order."]
PROMPTS = ["Where is order 1234?", "hello"]
SCREENSHOT = "/tmp/widget.png"

# Generous waits: CI machines are shared and the panel loads a whole page into a frame.
WAIT_MS = 15_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium at /usr/bin/chromium"),
    pytest.mark.asyncio(loop_scope="module"),
]

# The shop's own look: rules that would restyle the widget if it leaked out of its shadow root.
HOST_CSS = """
button { background: rgb(255, 0, 0); color: rgb(255, 255, 0); font-family: serif; border-radius: 0; }
iframe, div { border: 9px dashed orange; }
* { box-sizing: content-box; }
"""
# Records CSP violations and the widget's events; loaded before embed.js.
HOST_FIRST_JS = """
window.violations = []; window.answers = []; window.answerEvents = 0;
document.addEventListener("securitypolicyviolation",
  (e) => window.violations.push(e.violatedDirective + " " + e.blockedURI));
window.addEventListener("switchboard:answer", () => { window.answerEvents += 1; });
"""
HOST_LAST_JS = """Switchboard.on("answer", (detail) => window.answers.push(detail.text));"""
# A site that sets the widget up from its own script in <head>, before <body> exists.
HOST_MANUAL_JS = """
const who = document.documentElement.dataset;
Switchboard.identify(who.userId, who.userHash);
Switchboard.init({ title: "Manual setup", position: "left", prompts: ["hello"] });
"""


def sign(user_id: str) -> str:
    return hmac.new(SECRET.encode(), user_id.encode(), hashlib.sha256).hexdigest()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        await chromium.close()


class Shop:
    def __init__(self, url: str, gateway: Any, unlisted_url: str) -> None:
        self.url = url
        self.gateway = gateway
        #: the same shop pages on an origin that is not in allowed_origins
        self.unlisted_url = unlisted_url


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shop() -> AsyncIterator[Shop]:
    port = free_port()
    shop_origin = f"http://localhost:{port}"
    channel = {"type": "web", "title": "Acme support", "allowed_origins": [shop_origin],
               "identity_secret": SECRET}
    async with running_gateway({"web": channel}) as gw:
        csp = "; ".join([
            "default-src 'none'", f"script-src 'self' {gw.url}", f"frame-src {gw.url}", "style-src 'self'",
            "img-src 'self'", "connect-src 'self'", "base-uri 'none'", "form-action 'none'",
        ])

        async def page(request: web.Request) -> web.Response:
            # A logged-in shopper: the shop signs the id on its server and writes it into the tag.
            user = request.query.get("user")
            identity = f' data-user-id="{html.escape(user)}" data-user-hash="{sign(user)}"' if user else ""
            body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Acme shop</title>
<link rel="stylesheet" href="/host.css"><script src="/first.js"></script></head>
<body><main><h1>Acme shop</h1><p><a href="/" id="home">Home</a> <button id="buy" type="button">Buy</button></p></main>
<script src="{gw.url}/chat/web/embed.js" data-title="Acme support" data-color="#0b7a3e"
  data-greeting="{html.escape(json.dumps(GREETING))}" data-prompts="{'|'.join(PROMPTS)}"{identity}></script>
<script src="/last.js"></script></body></html>"""
            return web.Response(text=body, content_type="text/html", headers={"Content-Security-Policy": csp})

        def asset(text: str, content_type: str) -> Any:
            async def handler(request: web.Request) -> web.Response:
                return web.Response(text=text, content_type=content_type)
            return handler

        app = web.Application()
        app.router.add_get("/", page)
        app.router.add_get("/host.css", asset(HOST_CSS, "text/css"))
        app.router.add_get("/first.js", asset(HOST_FIRST_JS, "text/javascript"))
        app.router.add_get("/last.js", asset(HOST_LAST_JS, "text/javascript"))
        app.router.add_get("/favicon.ico", asset("", "image/x-icon"))
        app.router.add_get("/manual.js", asset(HOST_MANUAL_JS, "text/javascript"))

        async def manual(request: web.Request) -> web.Response:
            user = request.query["user"]
            body = f"""<!doctype html>
<html lang="en" data-user-id="{html.escape(user)}" data-user-hash="{sign(user)}"><head><meta charset="utf-8">
<title>Manual</title><script src="{gw.url}/chat/web/embed.js" data-manual></script><script src="/manual.js"></script>
</head><body><h1>Set up by script</h1></body></html>"""
            return web.Response(text=body, content_type="text/html", headers={"Content-Security-Policy": csp})

        app.router.add_get("/manual", manual)
        unlisted = free_port()
        async with TestServer(app, host="127.0.0.1", port=port), TestServer(app, host="127.0.0.1", port=unlisted):
            yield Shop(shop_origin, gw, f"http://localhost:{unlisted}")


async def visit(browser: Any, url: str, problems: list[str], **options: Any) -> Any:
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    context = await browser.new_context(**options)
    context.set_default_timeout(WAIT_MS)
    page = await context.new_page()
    page.on("console", lambda m: problems.append(f"{m.text} {m.location.get('url')}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    await page.goto(url)
    return page


def panel(page: Any) -> Any:
    return page.frame_locator("switchboard-chat iframe")


async def ask(page: Any, text: str) -> Any:
    """Type a question into the panel, send it with Enter, wait for the whole answer."""
    from playwright.async_api import expect

    chat = panel(page)
    await expect(chat.get_by_role("button", name="Send")).to_be_enabled()  # not busy loading a thread
    before = await chat.locator(".msg.assistant:not(.greeting)").count()
    await chat.get_by_label("Your message").fill(text)
    await chat.get_by_label("Your message").press("Enter")
    return await answer_after(page, before)


async def answer_after(page: Any, before: int) -> Any:
    from playwright.async_api import expect

    answers = panel(page).locator(".msg.assistant:not(.greeting)")
    await expect(answers).to_have_count(before + 1)
    await expect(answers.nth(before)).not_to_have_attribute("aria-busy", "true", timeout=15_000)
    return answers.nth(before)


async def test_the_bubble_opens_a_chat_that_streams_under_the_shops_strict_csp(browser: Any, shop: Shop) -> None:
    from playwright.async_api import expect

    gw = shop.gateway
    problems: list[str] = []
    page = await visit(browser, shop.url + "/", problems)
    launcher = page.get_by_role("button", name="Open chat: Acme support")
    await expect(launcher).to_be_visible()
    assert await page.locator("switchboard-chat iframe").get_attribute("src") is None  # loads on first open
    # The widget is styled by its own sheet (position, colour), the shop's rules do not reach it,
    # and the shop's own elements keep the shop's look.
    look = await launcher.evaluate(
        "b => { const s = getComputedStyle(b); return [s.position, s.backgroundColor, s.borderRadius] }")
    assert look == ["fixed", "rgb(11, 122, 62)", "50%"]
    assert await page.locator("#buy").evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(255, 0, 0)"

    await launcher.click()
    chat = panel(page)
    dialog = page.get_by_role("dialog", name="Acme support")
    await expect(dialog).to_be_visible()
    await expect(chat.locator(".msg.greeting")).to_have_text(GREETING)
    await expect(chat.get_by_role("heading", name="Acme support")).to_be_visible()
    assert await page.locator("switchboard-chat iframe").evaluate("f => getComputedStyle(f).borderTopStyle") == "none"

    # A suggested prompt sends its text; the answer arrives, and the host page hears of it.
    await chat.get_by_role("button", name="Where is order 1234?").click()
    order = await answer_after(page, 0)
    await expect(chat.locator(".msg.user")).to_have_text(["Where is order 1234?"])
    await expect(order).to_contain_text("Let me check order 1234.")
    await expect(chat.get_by_role("group", name="Suggested questions")).to_be_hidden()
    await page.wait_for_function("window.answers.length === 1 && window.answerEvents === 1")
    assert "Let me check order 1234." in (await page.evaluate("window.answers"))[0]

    # A typed question streams: typing dots, then text that grows, then the finished answer.
    gw.emulator.faults.token_delay = 0.2
    try:
        await chat.get_by_label("Your message").fill("Hello from the shop")
        await chat.get_by_label("Your message").press("Enter")
        bubble = chat.locator(".msg.assistant:not(.greeting)").nth(1)
        await expect(bubble).to_have_attribute("aria-busy", "true")
        await expect(bubble).to_contain_text("You said:")
        partial = await bubble.inner_text()
        await expect(bubble).not_to_have_attribute("aria-busy", "true", timeout=15_000)
    finally:
        gw.emulator.faults.token_delay = 0
    final = await bubble.inner_text()
    assert final == 'You said: "Hello from the shop". This is message 2 of this conversation.'
    assert partial != final and final.startswith(partial.strip())

    # Feedback from inside the panel reaches the agent.
    thumbs_up = chat.get_by_role("button", name="Good answer").last
    await thumbs_up.click()
    await expect(thumbs_up).to_have_attribute("aria-pressed", "true")
    await expect(chat.get_by_role("status")).to_have_text("Thanks for the feedback.")
    await gw.idle()
    assert [r.json for r in gw.emulator.requests if r.method == "PATCH"] == [{"feedback": "positive"}]
    await page.screenshot(path=SCREENSHOT)

    # The JS API: close, toggle, reset.
    await page.evaluate("Switchboard.close()")
    await expect(dialog).to_be_hidden()
    await page.evaluate("Switchboard.toggle()")
    await expect(dialog).to_be_visible()
    await page.evaluate("Switchboard.reset()")
    await expect(chat.locator(".msg.user")).to_have_count(0)
    await expect(chat.get_by_role("button", name="hello")).to_be_visible()  # prompts are back
    fresh = await ask(page, "start over")
    await expect(fresh).to_contain_text("This is message 1 of this conversation.")
    assert await page.evaluate("window.violations") == []
    assert problems == []
    await page.context.close()


async def test_a_signed_visitor_continues_on_a_second_device_and_a_bad_hash_stays_anonymous(
    browser: Any, shop: Shop
) -> None:
    from playwright.async_api import expect

    gw = shop.gateway
    problems: list[str] = []
    # Device one: the shop wrote the signed id into the script tag.
    laptop = await visit(browser, shop.url + "/?user=alice%40example.com", problems)
    await laptop.evaluate("Switchboard.open()")
    first = await ask(laptop, "My order is late")
    await expect(first).to_contain_text("This is message 1 of this conversation.")
    alice = "web.web.u.alice-40example-2ecom"  # web.<channel>.u.<userId>, escaped
    assert [c.user_id for c in gw.emulator.state.conversations.values()].count(alice) == 1

    # Device two: another browser, nothing stored; the shop identifies the visitor from its script.
    phone = await visit(browser, shop.url + "/", problems, viewport={"width": 390, "height": 780})
    await phone.evaluate("Switchboard.open()")
    await phone.evaluate(f"Switchboard.identify('alice@example.com', '{sign('alice@example.com')}')")
    chat = panel(phone)
    await expect(chat.locator(".msg.user")).to_have_text(["My order is late"])  # the thread, from the agent
    await expect(chat.locator(".msg.assistant:not(.greeting)")).to_contain_text(["This is message 1"])
    second = await ask(phone, "Any news?")
    await expect(second).to_contain_text("This is message 2 of this conversation.")
    assert await phone.evaluate("localStorage.length") == 0  # the shop's own storage is untouched
    # On a small screen the open panel fills the screen.
    box = await phone.get_by_role("dialog").bounding_box()
    assert box == {"x": 0, "y": 0, "width": 390, "height": 780}
    await chat.get_by_role("button", name="Close chat").click()  # the panel's own close button
    await expect(phone.get_by_role("dialog")).to_be_hidden()
    await expect(phone.get_by_role("button", name="Open chat: Acme support")).to_be_visible()
    # Back on the laptop, opening the panel again brings in what was said on the phone.
    await laptop.evaluate("Switchboard.close()")
    await laptop.evaluate("Switchboard.open()")
    await expect(panel(laptop).locator(".msg.user")).to_have_text(["My order is late", "Any news?"])

    # A third browser with a forged hash: anonymous, told so, and none of alice's messages.
    forged = await visit(browser, shop.url + "/", problems)
    await forged.evaluate("Switchboard.open()")
    await forged.evaluate("Switchboard.identify('alice@example.com', '" + "0" * 64 + "')")
    chat = panel(forged)
    await expect(chat.get_by_role("status")).to_contain_text("couldn't confirm that you're signed in")
    answer = await ask(forged, "Show me my orders")
    await expect(answer).to_contain_text("couldn't confirm that you're signed in")
    await expect(answer).to_contain_text("This is message 1 of this conversation.")
    await expect(chat.locator(".msg.user")).to_have_text(["Show me my orders"])
    assert [c.user_id for c in gw.emulator.state.conversations.values()].count(alice) == 1
    assert problems == []
    for page in (laptop, phone, forged):
        await page.context.close()


async def test_keyboard_only(browser: Any, shop: Shop) -> None:
    from playwright.async_api import expect

    problems: list[str] = []
    page = await visit(browser, shop.url + "/", problems)
    launcher = page.get_by_role("button", name="Open chat: Acme support")
    for _ in range(10):  # Tab through the shop's own controls to the bubble
        await page.keyboard.press("Tab")
        if await launcher.evaluate("b => b.getRootNode().activeElement === b"):
            break
    else:
        raise AssertionError("the launcher is not reachable with Tab")
    await page.keyboard.press("Enter")
    chat = panel(page)
    message = chat.get_by_label("Your message")
    await expect(message).to_be_focused()
    await page.keyboard.type("Typed without a mouse")
    await page.keyboard.press("Enter")
    answer = await answer_after(page, 0)
    await expect(answer).to_contain_text('You said: "Typed without a mouse"')

    # Tab and Shift+Tab stay inside the open panel, round and round.
    frame = page.frame_locator("switchboard-chat iframe")
    seen = set()
    for _ in range(14):
        await page.keyboard.press("Tab")
        in_panel = await page.evaluate(
            "() => document.activeElement.tagName === 'SWITCHBOARD-CHAT'"
            " && document.activeElement.shadowRoot.activeElement.tagName === 'IFRAME'")
        assert in_panel, "focus left the chat panel"
        seen.add(await frame.locator(":focus").evaluate("n => n.id || n.className || n.tagName"))
    assert {"message", "send", "close-chat", "new-conversation"} <= seen
    for _ in range(6):
        await page.keyboard.press("Shift+Tab")
        assert await page.evaluate("() => document.activeElement.tagName === 'SWITCHBOARD-CHAT'")

    # A thumbs-up by keyboard, then Escape closes the panel and gives focus back to the bubble.
    await chat.get_by_role("button", name="Good answer").focus()
    await page.keyboard.press("Enter")
    await expect(chat.get_by_role("button", name="Good answer")).to_have_attribute("aria-pressed", "true")
    await page.keyboard.press("Escape")
    await expect(page.get_by_role("dialog")).to_be_hidden()
    assert await launcher.evaluate("b => b.getRootNode().activeElement === b")
    await expect(launcher).to_have_attribute("aria-expanded", "false")
    assert problems == []
    await page.context.close()


async def test_no_serious_accessibility_violations(browser: Any, shop: Shop) -> None:
    source = axe_source()
    problems: list[str] = []
    page = await visit(browser, shop.url + "/", problems)
    await page.evaluate("Switchboard.open()")
    answer = await ask(page, "show me markdown")  # headings, lists, code, links, feedback buttons
    assert await answer.locator("h2").count() == 1
    chat_frame = next(f for f in page.frames if f.url.startswith(shop.gateway.url))
    inside = await serious_violations(chat_frame, source)
    widget = await serious_violations(page, source, "switchboard-chat")
    assert inside == [] and widget == []
    await page.context.close()


async def test_the_demo_shop_page_shows_the_bubble(browser: Any, tmp_path: Any, monkeypatch: Any) -> None:
    """``switchboard demo``'s shop page: bubble, greeting, prompts, and its sign-in button verifies."""
    from playwright.async_api import expect

    from gateway.demo import build_demo_app
    from gateway.demo_site import DEMO_USER, GREETING

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHATBASE_API_KEY", raising=False)
    port = free_port()
    app, banner = build_demo_app("127.0.0.1", port)
    assert f"http://127.0.0.1:{port}/demo/" in banner
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        problems: list[str] = []
        page = await visit(browser, f"http://127.0.0.1:{port}/demo/", problems)
        await page.get_by_role("button", name="Open chat: Acme Outdoor").click()
        chat = panel(page)
        await expect(chat.locator(".msg.greeting")).to_have_text(list(GREETING))
        await chat.get_by_role("button", name="Where is order 1234?").click()
        answer = await answer_after(page, 0)
        await expect(answer).to_contain_text("Here is what I found for order 1234")
        await page.get_by_role("button", name=f"Sign in as {DEMO_USER}").click()
        await expect(chat.locator(".msg.user")).to_have_count(0)  # the signed-in visitor's own thread
        signed = await ask(page, "hello")
        await expect(signed).to_contain_text("This is message 1 of this conversation.")  # the user's own thread
        await expect(signed).not_to_contain_text("couldn't confirm")
        await page.screenshot(path="/tmp/demo-widget.png")
        assert problems == []
        await page.context.close()
    finally:
        await runner.cleanup()


async def test_a_site_script_in_head_sets_the_widget_up_and_identifies_early(browser: Any, shop: Shop) -> None:
    from playwright.async_api import expect

    problems: list[str] = []
    page = await visit(browser, shop.url + "/manual?user=manual-user", problems)
    launcher = page.get_by_role("button", name="Open chat: Manual setup")
    await expect(launcher).to_be_visible()
    box = await launcher.bounding_box()
    assert box is not None and box["x"] < 100  # position: left
    await launcher.click()
    await panel(page).get_by_role("button", name="hello").click()
    answer = await answer_after(page, 0)
    await expect(answer).to_contain_text("This is message 1 of this conversation.")
    await expect(answer).not_to_contain_text("couldn't confirm")
    assert "web.web.u.manual-2duser" in [c.user_id for c in shop.gateway.emulator.state.conversations.values()]
    assert problems == []
    await page.context.close()


async def test_a_site_not_in_allowed_origins_cannot_show_the_chat(browser: Any, shop: Shop) -> None:
    from playwright.async_api import expect

    problems: list[str] = []
    page = await visit(browser, shop.unlisted_url + "/", problems)
    await page.get_by_role("button", name="Open chat: Acme support").click()
    await expect(page.get_by_role("dialog")).to_be_visible()
    # The browser refuses to render the chat page in the frame (its CSP frame-ancestors).
    async with asyncio.timeout(10):
        while not any("frame-ancestors" in p for p in problems):
            await asyncio.sleep(0.05)
    assert await panel(page).locator("#message").count() == 0
    await page.context.close()
