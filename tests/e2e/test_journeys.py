"""The analyst's journeys in a real browser: connect, write a model, map, preview, sync, history."""

from __future__ import annotations

from e2e_support import App, open_page, screenshot
from playwright.sync_api import Page, expect


def test_home_shows_the_checklist_and_the_sandbox_banner(page: Page, app: App) -> None:
    open_page(page, app)
    expect(page.get_by_text("sandbox", exact=False).first).to_be_visible()
    screenshot(page, "home")
