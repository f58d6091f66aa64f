"""The web console in a real headless Chromium, against the running stack and the fake LLM.

Needs Debian's `chromium` (Playwright's own browser download is not used); the
module is skipped, saying so, when it is not installed.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import ROOT, start_api
from tests.fakes.openai_protocol import expected_reply

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The README's screenshots come from this test: `UPDATE_SCREENSHOTS=1 make test` refreshes
# them; other runs write to a scratch folder so a test run leaves the tree clean.
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("UPDATE_SCREENSHOTS")
    else Path(tempfile.mkdtemp(prefix="switchboard-screenshots-"))
)
# Bounded waits (ms): long enough for a loaded CI machine, short enough to fail fast.
STEP = 15_000
PASSWORD = "correct horse battery"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="browser tests need Chromium: apt-get install chromium"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser: Browser, base_url: str, **context_options) -> Iterator[Page]:
    """A fresh browser profile on the console; fails the test on any uncaught script error."""
    context = browser.new_context(base_url=base_url, locale="en-US", **context_options)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    page = context.new_page()
    page.set_default_timeout(STEP)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/")
    yield page
    context.close()
    assert errors == [], f"uncaught script errors in the console: {errors}"


@pytest.fixture
def page(browser: Browser, api_server: str) -> Iterator[Page]:
    yield from open_page(browser, api_server, viewport={"width": 1280, "height": 820})


def sign_up(page: Page) -> str:
    email = f"web-{uuid.uuid4().hex[:8]}@example.com"
    page.get_by_role("link", name="Create one").click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("link", name="API keys")).to_be_visible()
    return email


def stored_session(page: Page) -> dict:
    return page.evaluate("JSON.parse(localStorage.getItem('switchboard.session'))")


def send(page: Page, content: str) -> None:
    page.locator("textarea[name=content]").fill(content)
    page.get_by_role("button", name="Send").click()


def last_reply(page: Page):
    return page.locator(".message.assistant .content").last


@pytest.mark.usefixtures("celery_worker")
def test_sign_up_chat_resume_keys_and_usage(page: Page, api_server: str, fake_llm) -> None:
    sign_up(page)
    streaming = page.locator(".message.assistant.streaming .content")

    # A first message streams token by token, then the title job names the conversation.
    first = "Hello console [[tag=web1 tokens=20 delay=0.1]]"
    send(page, first)
    expect(streaming).to_contain_text("w1-web1")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(page.locator(".message.assistant.complete")).to_have_count(1)
    assert last_reply(page).text_content() == expected_reply(first)
    expect(page.locator(".conversations a.active")).to_have_text("Talk about web1", timeout=30_000)
    expect(page.locator(".conversation-title")).to_have_text("Talk about web1")

    # A reload mid-stream picks the reply up where it was (Last-Event-ID), no restart.
    second = "And again [[tag=web2 tokens=40 delay=0.1]]"
    send(page, second)
    expect(streaming).to_contain_text("w3-web2")
    resumes = []
    page.on(
        "request",
        lambda r: "/stream" in r.url and "/v1/generations/" in r.url and resumes.append(r),
    )
    page.reload()
    expect(streaming).to_contain_text("w0-web2")
    expect(page.locator(".message.assistant.complete")).to_have_count(2, timeout=30_000)
    assert last_reply(page).text_content() == expected_reply(second)
    expect(page.locator(".message")).to_have_count(4)
    assert len(resumes) == 1
    assert re.fullmatch(r"\d+-\d+", resumes[0].all_headers()["last-event-id"])
    assert len([r for r in fake_llm.requests_tagged("web2") if not r["is_title"]]) == 1
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "chat.png")

    # Stop keeps the partial reply, marked as stopped.
    third = "A long one [[tag=web3 tokens=300 delay=0.1]]"
    send(page, third)
    expect(streaming).to_contain_text("w2-web3")
    page.get_by_role("button", name="Stop").click()
    stopped = page.locator(".message.assistant.cancelled")
    expect(stopped).to_contain_text("Stopped")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    assert "w299-web3" not in last_reply(page).text_content()
    assert last_reply(page).text_content().startswith("w0-web3 w1-web3 w2-web3 ")

    # A key is shown once, copies, works, and stops working when revoked.
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("from-the-browser")
    page.get_by_role("button", name="Create key").click()
    revealed = page.get_by_label("New API key")
    expect(revealed).to_have_value(re.compile(r"^sk-sb-[A-Za-z0-9_-]{32,}$"))
    expect(page.locator(".new-key")).to_contain_text("shown only once")
    key = revealed.input_value()
    page.get_by_role("button", name="Copy").click()
    expect(page.locator(".new-key .notice")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == key
    row = page.locator("tr", has_text="from-the-browser")
    expect(row).to_contain_text(key[:10])
    assert key not in row.text_content()

    headers = {"Authorization": f"Bearer {key}"}
    models = httpx.get(f"{api_server}/v1/models", headers=headers, timeout=30)
    assert models.status_code == 200
    model = models.json()["data"][0]["id"]
    prompt = "[[tag=web4 tokens=5]]"
    completion = httpx.post(
        f"{api_server}/v1/chat/completions",
        headers=headers,
        json={"model": model, "messages": [{"role": "user", "content": prompt}]},
        timeout=30,
    )
    assert completion.status_code == 200
    assert completion.json()["choices"][0]["message"]["content"] == expected_reply(prompt)

    page.reload()
    expect(row.locator(".requests")).to_have_text("2")
    expect(row).not_to_contain_text("never")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(row).to_have_count(0)
    expect(page.locator("table.keys")).to_contain_text("No keys yet.")
    assert httpx.get(f"{api_server}/v1/models", headers=headers, timeout=30).status_code == 401

    # Usage: three console replies and one API call, today.
    page.get_by_role("link", name="Usage").click()
    expect(page.locator(".plan-name")).to_have_text("free")
    expect(page.locator(".total-requests")).to_have_text("4")
    expect(page.locator(".quota-used")).to_have_text("4 / 10,000 requests")
    bars = page.locator(".history svg").first.locator("g.bar")
    expect(bars).to_have_count(30)
    expect(bars.last).to_have_attribute("data-total", "4")
    page.screenshot(path=SCREENSHOTS / "usage.png", full_page=True)


def tiny_png() -> bytes:
    """A real 2x2 PNG, so the browser can draw the thumbnail."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" + b"\xff\x00\x00" * 2 + b"\x00" + b"\x00\x00\xff" * 2)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.mark.usefixtures("celery_worker")
def test_attach_an_image_and_open_it_full_size(page: Page, api_server: str, fake_llm) -> None:
    sign_up(page)
    page.locator("input[name=attach]").set_input_files(
        {"name": "receipt.png", "mimeType": "image/png", "buffer": tiny_png()}
    )
    pending = page.locator(".attachments.pending img.thumbnail")
    expect(pending).to_have_count(1)
    send(page, "What is this? [[tag=webimg]]")
    expect(page.locator(".message.assistant.complete")).to_have_count(1, timeout=30_000)
    expect(pending).to_have_count(0)
    [request] = [r for r in fake_llm.requests_tagged("webimg") if not r["is_title"]]
    url = request["body"]["messages"][-1]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")

    # After a reload the thumbnail comes from the API (fetched with the bearer token).
    page.reload()
    thumb = page.locator(".message.user img.thumbnail")
    expect(thumb).to_have_count(1)
    expect(thumb).to_have_attribute("src", re.compile(r"^blob:"))
    page.wait_for_function(
        "document.querySelector('.message.user img.thumbnail').naturalWidth === 2"
    )
    thumb.click()
    full = page.locator("dialog.image-viewer img")
    expect(full).to_be_visible()
    expect(full).to_have_attribute("src", re.compile(r"^blob:"))
    full.click()
    expect(full).to_have_count(0)


def test_revoked_session_goes_back_to_sign_in(page: Page, api_server: str) -> None:
    email = sign_up(page)
    access = stored_session(page)["access_token"]
    logout = httpx.post(
        f"{api_server}/v1/auth/logout", headers={"Authorization": f"Bearer {access}"}, timeout=30
    )
    assert logout.status_code == 204

    page.get_by_role("link", name="Usage").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator(".notice.error")).to_have_text(
        "Your session has ended. Please sign in again."
    )
    assert stored_session(page) is None

    # A wrong password shows the API's own message; the right one signs in.
    wrong = httpx.post(
        f"{api_server}/v1/auth/login", json={"email": email, "password": "wrong-password"}
    ).json()["detail"]
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("form .notice.error")).to_have_text(wrong)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".usage-grid, .chat").first).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert stored_session(page) is None


@pytest.fixture(scope="module")
def short_token_api(service_env: dict[str, str]) -> Iterator[str]:
    """An API replica whose access tokens live 4 s, so silent refresh happens in the test."""
    server, base_url = start_api({**service_env, "ACCESS_TOKEN_TTL_SECONDS": "4"})
    yield base_url
    server.stop()


@pytest.fixture
def short_token_page(browser: Browser, short_token_api: str) -> Iterator[Page]:
    yield from open_page(browser, short_token_api)


def wait_for_rotation(page: Page, refresh_token: str) -> dict:
    page.wait_for_function(
        "token => JSON.parse(localStorage.getItem('switchboard.session'))?.refresh_token !== token",
        arg=refresh_token,
    )
    return stored_session(page)


def test_tokens_are_refreshed_silently(short_token_page: Page) -> None:
    page = short_token_page
    sign_up(page)
    first = stored_session(page)
    second = wait_for_rotation(page, first["refresh_token"])
    assert second["access_token"] != first["access_token"]
    # Rotation goes on, so the session outlives its first access tokens.
    wait_for_rotation(page, second["refresh_token"])
    page.get_by_role("link", name="Usage").click()
    expect(page.locator(".plan-name")).to_have_text("free")
    assert stored_session(page) is not None


@pytest.fixture
def phone_page(browser: Browser, api_server: str) -> Iterator[Page]:
    yield from open_page(browser, api_server, viewport={"width": 390, "height": 844})


def test_history_loads_older_messages_on_a_phone(phone_page: Page, api_server: str) -> None:
    from core.db import worker_session
    from models import Message

    page = phone_page
    sign_up(page)
    headers = {"Authorization": f"Bearer {stored_session(page)['access_token']}"}
    created = httpx.post(
        f"{api_server}/v1/conversations", json={"title": "Long history"}, headers=headers
    )
    assert created.status_code == 201
    with worker_session() as session:
        session.add_all(
            Message(
                conversation_id=uuid.UUID(created.json()["id"]),
                role=("user", "assistant")[i % 2],
                content=f"message {i}",
            )
            for i in range(60)
        )

    # A phone shows the list or a conversation, never both.
    page.reload()
    composer = page.locator("textarea[name=content]")
    expect(composer).to_be_hidden()
    page.get_by_role("link", name="Long history").click()
    expect(composer).to_be_visible()
    expect(page.get_by_role("link", name="New chat")).to_be_hidden()

    messages = page.locator(".message .content")
    expect(messages).to_have_count(50)
    expect(messages.first).to_have_text("message 10")
    expect(messages.last).to_have_text("message 59")
    page.get_by_role("button", name="Load older messages").click()
    expect(messages).to_have_count(60)
    expect(messages.first).to_have_text("message 0")
    expect(page.get_by_role("button", name="Load older messages")).to_be_hidden()

    page.get_by_role("link", name="← Chats").click()
    expect(composer).to_be_hidden()
    page.get_by_role("link", name="New chat").click()
    expect(composer).to_be_visible()


def wait_for_plugin_account(api_server: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = httpx.get(f"{api_server}/v1/plugin-api/key", headers=headers, timeout=10)
        if answer.json()["status"] == "active":
            return
        time.sleep(0.2)
    raise AssertionError(f"plug-in-api account not provisioned: {answer.text}")


@pytest.mark.usefixtures("celery_worker")
def test_settings_profile_model_configs_password_and_plugin_account(
    page: Page, api_server: str
) -> None:
    email = sign_up(page)
    headers = {"Authorization": f"Bearer {stored_session(page)['access_token']}"}
    page.get_by_role("link", name="Settings").click()

    profile = page.locator("form.profile")
    profile.get_by_label("Full name").fill("Ada Lovelace")
    profile.get_by_role("button", name="Save profile").click()
    expect(profile.locator(".notice")).to_have_text("Profile saved.")
    me = httpx.get(f"{api_server}/v1/user/profile", headers=headers).json()
    assert me["full_name"] == "Ada Lovelace"

    # Model endpoints: the key goes in and is never shown again, only its hint.
    endpoints = page.locator(".card", has=page.get_by_role("heading", name="Your model endpoints"))
    endpoints.get_by_label("Name").fill("My endpoint")
    endpoints.get_by_label("Base URL").fill("https://1.1.1.1/v1")
    endpoints.get_by_label("Model").fill("model-one")
    endpoints.get_by_label("API key").fill("sk-secret-key-1234")
    endpoints.get_by_role("button", name="Add endpoint").click()
    expect(endpoints.locator(".notice")).to_have_text("Endpoint added.")
    item = endpoints.locator("li", has_text="My endpoint")
    expect(item).to_contain_text("model-one at https://1.1.1.1/v1 · key …1234")
    expect(endpoints.get_by_label("API key")).to_have_value("")
    assert "sk-secret-key-1234" not in page.content()

    item.get_by_role("button", name="Edit").click()
    expect(endpoints.get_by_label("Model")).to_have_value("model-one")
    expect(endpoints.get_by_label("API key")).to_have_attribute("placeholder", re.compile("1234"))
    endpoints.get_by_label("Model").fill("model-two")
    endpoints.get_by_role("button", name="Save endpoint").click()
    expect(item).to_contain_text("model-two at https://1.1.1.1/v1 · key …1234")
    [stored] = httpx.get(f"{api_server}/v1/model-configs", headers=headers).json()
    assert (stored["model"], stored["api_key_hint"]) == ("model-two", "1234")

    refused = {"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key": "sk-x"}
    answer = httpx.post(f"{api_server}/v1/model-configs", json=refused, headers=headers)
    [refusal] = answer.json()["detail"]
    endpoints.get_by_label("Base URL").fill(refused["base_url"])
    endpoints.get_by_label("Model").fill(refused["model"])
    endpoints.get_by_label("API key").fill(refused["api_key"])
    endpoints.get_by_role("button", name="Add endpoint").click()
    # The console names the refused field before the API's message.
    expect(endpoints.locator(".notice.error")).to_have_text(f"base_url: {refusal['msg']}")

    page.once("dialog", lambda dialog: dialog.accept())
    item.get_by_role("button", name="Delete").click()
    expect(endpoints.locator("ul.model-configs")).to_have_text("No endpoints yet.")

    # A wrong current password is reported, and does not sign anyone out.
    password = page.locator("form.password")
    password.get_by_label("Current password").fill("not-my-password")
    password.get_by_label("New password").fill("a brand new password")
    password.get_by_role("button", name="Change password").click()
    expect(password.locator(".notice.error")).to_be_visible()
    expect(page.get_by_role("link", name="Settings")).to_be_visible()
    password.get_by_label("Current password").fill(PASSWORD)
    password.get_by_role("button", name="Change password").click()
    expect(password.locator(".notice")).to_have_text(
        "Password changed. Other sessions were signed out."
    )

    wait_for_plugin_account(api_server, headers)
    page.reload()
    expect(page.locator(".plugin .badge")).to_have_text("Ready")

    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("a brand new password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="Settings")).to_be_visible()


def test_redeem_a_code_and_cancel_on_the_usage_page(page: Page, api_server: str, make_user) -> None:
    admin = make_user(is_superuser=True)
    made = httpx.post(
        f"{api_server}/v1/admin/redemption-codes",
        headers=admin.headers,
        json={"plan": "pro", "days": 30, "count": 1},
        timeout=30,
    )
    (code,) = made.json()["codes"]
    sign_up(page)
    page.get_by_role("link", name="Usage").click()
    plan = page.locator(".card.plan")
    expect(plan.locator(".plan-name")).to_have_text("free")
    expect(plan.locator(".plan-price")).to_have_text("Free")

    plan.get_by_label("Code").fill(code.lower())
    plan.get_by_role("button", name="Redeem").click()
    expect(plan.locator(".plan-name")).to_have_text("pro")
    expect(plan.locator(".plan-price")).to_have_text("$29.00 / month")
    expect(plan.locator(".plan-period")).to_contain_text("Current period ends")
    expect(plan.locator(".notice")).to_contain_text("Code redeemed: pro")

    # The same code again: refused, said so.
    plan.get_by_label("Code").fill(code)
    plan.get_by_role("button", name="Redeem").click()
    expect(plan.locator(".notice")).to_contain_text("used")

    page.once("dialog", lambda dialog: dialog.accept())
    plan.get_by_role("button", name="Cancel plan").click()
    expect(plan.locator(".plan-period")).to_contain_text("Cancelled: ends")
    expect(plan.locator(".plan-name")).to_have_text("pro")
    expect(plan.get_by_role("button", name="Cancel plan")).to_have_count(0)
