"""Helpers for the browser journeys: the running app, page loading, screenshots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Error, Page, expect

from amp_sync.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"


@dataclass
class App:
    """A running app: its URL, its home folder and the sandbox it syncs into."""

    url: str
    home: Path
    sandbox: Sandbox


def open_page(page: Page, app: App, path: str = "") -> None:
    """Load a page of the app and wait until its script has finished running."""
    page.goto(f"{app.url}/{path}")
    # Every page starts with a title; before the script has run, the main area is empty.
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=60_000)
    wait_idle(page)


def choose(page: Page, key: str, option: str) -> None:
    """Pick `option` in the selectbox with widget key `key`."""
    page.locator(f".st-key-{key}").get_by_role("combobox").click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def choose_settled(page: Page, key: str, option: str, attempts: int = 3) -> None:
    """Pick `option`, again if a rerun (a component mounting, say) closed the list first."""
    box = page.locator(f".st-key-{key}").get_by_role("combobox")
    for attempt in range(attempts):
        try:
            box.click()
            page.get_by_role("option", name=option, exact=True).click(timeout=5_000)
            wait_idle(page)
            expect(box).to_have_value(option, timeout=5_000)
            return
        except (Error, AssertionError):
            if attempt == attempts - 1:
                raise
            page.keyboard.press("Escape")
            wait_idle(page)


def wait_idle(page: Page) -> None:
    """Wait until Streamlit has finished the current rerun."""
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")


def screenshot(page: Page, name: str) -> None:
    """Save a screenshot of the main area under tests/artifacts (ignored by git)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # Streamlit scrolls an inner element, so a full-page shot is only the viewport: grow it instead.
    size = page.viewport_size or {"width": 1400, "height": 1000}
    page.set_viewport_size({"width": size["width"], "height": 1800})
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    page.set_viewport_size(size)
