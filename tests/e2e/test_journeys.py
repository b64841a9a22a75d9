"""The analyst's journeys in a real browser: connect, write a model, map, preview, sync, history."""

from __future__ import annotations

from e2e_support import App, open_page, screenshot
from playwright.sync_api import Page, expect


def test_home_shows_the_checklist_and_the_sandbox_banner(page: Page, app: App) -> None:
    open_page(page, app)
    expect(page.get_by_text("sandbox", exact=False).first).to_be_visible()
    screenshot(page, "home")


def test_a_create_a_destination_and_connect_it_to_the_sandbox(page: Page, app: App) -> None:
    from amp_sync.sandbox import SANDBOX_API_KEY, SANDBOX_SECRET_KEY

    open_page(page, app, "destinations")
    page.locator(".st-key-dest_name input").fill("My sandbox project")
    page.locator(".st-key-dest_api_key input").fill(SANDBOX_API_KEY)
    page.locator(".st-key-dest_secret_key input").fill(SANDBOX_SECRET_KEY)
    page.get_by_text("Advanced").click()
    page.locator(".st-key-dest_endpoint input").fill(app.sandbox.url)
    page.locator(".st-key-dest_connect button").click()
    expect(page.get_by_text("ok: the API key and secret key", exact=False)).to_be_visible(timeout=20_000)
    expect(page.get_by_text("My sandbox project").first).to_be_visible()
    html = page.content()
    assert SANDBOX_SECRET_KEY not in html and SANDBOX_API_KEY not in html  # masked after saving
    screenshot(page, "destinations")
