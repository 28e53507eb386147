"""The web chat page in headless Chromium against a real gateway and the Chatbase emulator.

Uses Debian's /usr/bin/chromium through Playwright's driver (never `playwright install`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from switchboard.testing import running_gateway

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = "/tmp/webchat.png"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium at /usr/bin/chromium"),
    pytest.mark.asyncio(loop_scope="module"),
]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
async def gateway() -> AsyncIterator[Any]:
    async def lookup_order(request: web.Request) -> web.Response:
        order = (await request.json())["input"]["orderId"]
        return web.json_response({"order": order, "status": "shipped", "eta": "Tuesday"})

    tool_app = web.Application()
    tool_app.router.add_post("/lookup", lookup_order)
    async with TestServer(tool_app, host="127.0.0.1") as tools:
        config = {"lookupOrder": {"url": str(tools.make_url("/lookup"))}}
        async with running_gateway({"web": {"type": "web", "title": "Acme support"}}, tools=config) as gw:
            yield gw


async def open_chat(browser: Any, url: str, problems: list[str], **options: Any) -> Any:
    """A fresh browser context on the chat page; console errors and page errors go to ``problems``."""
    context = await browser.new_context(**options)
    page = await context.new_page()
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    await page.goto(url)
    return page


async def say(page: Any, text: str) -> Any:
    """Type ``text``, send it with Enter, and wait until the answer has finished streaming."""
    before = await page.locator(".msg.assistant").count()
    await page.get_by_label("Your message").fill(text)
    await page.get_by_label("Your message").press("Enter")
    answer = page.locator(".msg.assistant").nth(before)
    await answer.wait_for()
    await page.wait_for_function(
        "n => document.querySelectorAll('.msg.assistant').length > n"
        " && !document.querySelector('.msg.assistant[aria-busy]')", arg=before)
    return answer


async def test_type_a_message_and_watch_the_answer_stream(browser: Any, gateway: Any) -> None:
    from playwright.async_api import expect

    problems: list[str] = []
    page = await open_chat(browser, gateway.url + "/chat/web", problems, viewport={"width": 390, "height": 780})
    await expect(page).to_have_title("Acme support")
    # Slow the agent down so the answer is visibly in progress: typing dots, then growing text.
    gateway.emulator.faults.token_delay = 0.25
    await page.get_by_label("Your message").fill("Hello from the browser")
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator(".msg.user")).to_have_text("Hello from the browser")
    bubble = page.locator(".msg.assistant").first
    await expect(bubble).to_have_attribute("aria-busy", "true")
    await expect(bubble).to_contain_text("You said:")
    partial = await bubble.inner_text()
    await expect(bubble).not_to_have_attribute("aria-busy", "true", timeout=15_000)
    gateway.emulator.faults.token_delay = 0
    final = await bubble.inner_text()
    assert final == 'You said: "Hello from the browser". This is message 1 of this conversation.'
    assert partial != final and final.startswith(partial.strip())  # seen growing, not all at once

    second = await say(page, "And a second one")
    await expect(second).to_have_text('You said: "And a second one". This is message 2 of this conversation.')

    # A reload keeps the session and the transcript; the conversation goes on.
    await page.reload()
    await expect(page.locator(".msg")).to_have_count(4)
    third = await say(page, "after reload")
    await expect(third).to_contain_text("This is message 3 of this conversation.")

    order = await say(page, "Where is order 1234?")
    await expect(order).to_contain_text("Let me check order 1234.")
    await expect(order).to_contain_text('Here is what I found for order 1234: {"eta": "Tuesday"')
    # Thumbs up on the answer reaches the agent's feedback endpoint, and the button shows it.
    thumbs_up = page.get_by_role("button", name="Good answer").last
    await thumbs_up.click()
    await expect(thumbs_up).to_have_attribute("aria-pressed", "true")
    await expect(page.get_by_role("status")).to_have_text("Thanks for the feedback.")
    await gateway.idle()
    patches = [r for r in gateway.emulator.requests if r.method == "PATCH"]
    assert [p.json for p in patches] == [{"feedback": "positive"}]
    await page.screenshot(path=SCREENSHOT, full_page=True)

    await page.get_by_role("button", name="New conversation").click()
    await expect(page.locator(".msg")).to_have_count(0)
    fresh = await say(page, "start over")
    await expect(fresh).to_contain_text("This is message 1 of this conversation.")
    assert problems == []  # no script errors, no CSP violations
    await page.context.close()


async def test_markdown_is_rendered_safely(browser: Any, gateway: Any) -> None:
    from playwright.async_api import expect

    problems: list[str] = []
    page = await open_chat(browser, gateway.url + "/chat/web/", problems)
    answer = await say(page, "show me markdown")
    await expect(answer.locator("h2")).to_have_text("Markdown sample")
    await expect(answer.locator("strong")).to_have_text("bold")
    await expect(answer.locator("em")).to_have_text("italic")
    await expect(answer.locator("s")).to_have_text("strike")
    await expect(answer.locator("p code")).to_have_text("inline code")
    await expect(answer.locator("pre code")).to_contain_text('return f"Hello, {name}!"')
    link = answer.locator("a")
    await expect(link).to_have_text("the example site")
    await expect(link).to_have_attribute("href", "https://example.com")
    await expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    await expect(answer.locator("ul li")).to_have_text(["first bullet", "second bullet"])
    await expect(answer.locator("ol li")).to_have_text(["step one", "step two"])
    await expect(answer).to_contain_text("Comparisons: 1 < 2 > 0 & done.")

    # Hostile text in the user's own message and in the answer that echoes it stays text.
    hostile = ('<img src=x onerror="window.pwned=1"> [click](javascript:window.pwned=2) **<b>x</b>**'
               " [see https://example.org/a](https://example.com/b)")
    echoed = await say(page, hostile)
    await expect(page.locator(".msg.user").last).to_have_text(hostile)
    await expect(echoed).to_contain_text('<img src=x onerror="window.pwned=1">')
    await expect(echoed.locator("a")).to_have_attribute("href", "https://example.com/b")
    assert await page.locator(".msg img, .msg b, .msg a[href^='javascript'], .msg a a").count() == 0
    assert await page.evaluate("window.pwned === undefined")
    assert problems == []
    await page.context.close()


async def test_failures_are_shown_in_the_page(browser: Any, gateway: Any) -> None:
    from playwright.async_api import expect

    problems: list[str] = []
    page = await open_chat(browser, gateway.url + "/chat/web/", problems)
    gateway.emulator.faults.fail_next(401, count=1)  # the operator's key was refused: apology
    apology = await say(page, "hello?")
    await expect(apology).to_contain_text("Sorry")
    await expect(apology).to_have_class("msg assistant error")
    # The text box stops at the server's limit; without it, the server's refusal is shown.
    await expect(page.get_by_label("Your message")).to_have_attribute("maxlength", "4000")
    await page.evaluate("document.getElementById('message').removeAttribute('maxlength')")
    refused = await say(page, "y" * 4001)
    await expect(refused).to_contain_text("message is longer than 4000 characters")
    await expect(refused).to_have_class("msg assistant error")
    assert [p for p in problems if "413" not in p] == []  # the browser logs the refused request
    await page.context.close()
