"""Helpers for the browser journeys: the running app, page loading, dragging, screenshots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Error, FrameLocator, Locator, Page, expect

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


# An element of the page as it is now, not the copy a rerun leaves behind until it ends.
LIVE = ':not([data-stale="true"])'
# The mapper's drag board as it is now.
BOARD = f'[class*="st-key-mapper_"]{LIVE} iframe[data-testid="stCustomComponentV1"]'
MAPPING_ROWS = f'{LIVE}[class*="st-key-sync_fields_list"] [class*="st-key-sync_map_prop_"] input'


def board(page: Page) -> FrameLocator:
    return page.frame_locator(BOARD).first


def settled_box(page: Page, element: Locator, tries: int = 20) -> dict[str, float]:
    """The element's place once it has stopped moving (a frame growing or a banner above it shifts it)."""
    last = None
    for _ in range(tries):
        box = element.bounding_box()
        if box is not None and box == last:
            return box
        last = box
        page.wait_for_timeout(150)
    assert last is not None, "the element never appeared on screen"
    return last


def mouse_drag(page: Page, src: Locator, dst: Locator, steps: int = 15) -> None:
    """Press on the card, move in steps as a hand does (dnd-kit ignores a jump), rest, release over dst."""
    # Mouse events only land inside the viewport: bring the list (below the cards) into view too.
    src.scroll_into_view_if_needed()
    dst.scroll_into_view_if_needed()
    sb = settled_box(page, src)
    x0, y0 = sb["x"] + sb["width"] / 2, sb["y"] + sb["height"] / 2
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 6, y0 + 6, steps=3)  # past dnd-kit's activation distance
    db = settled_box(page, dst)
    height = (page.viewport_size or {"height": 720})["height"]
    page.mouse.move(db["x"] + db["width"] / 2, min(db["y"] + db["height"] - 12, height - 8), steps=steps)
    page.wait_for_timeout(150)  # let the list open a gap under the card, as it does for a hand
    page.mouse.up()


def drag_into_mapping(page: Page, column: str, tries: int = 4) -> None:
    """Drag a model column's card into the mapped list and wait until its row shows under the board.

    Under load the page may still be settling (a check finishing, a frame redrawn) when the mouse
    goes down; a person whose card snapped back drags it again, and so does this.
    """
    rows = page.locator(MAPPING_ROWS)
    for _ in range(tries):
        wait_idle(page)
        before = rows.count()
        unmapped = board(page).locator(".sortable-container").nth(0)
        card = unmapped.locator(".sortable-item", has_text=column).first
        try:
            expect(card).to_be_visible(timeout=20_000)
            mouse_drag(page, card, board(page).locator(".sortable-container").nth(1))
            wait_idle(page)
            expect(rows).to_have_count(before + 1, timeout=8_000)
            return
        except (AssertionError, Error):
            page.mouse.up()  # a drag cut short by a redraw must not leave the button held
    raise AssertionError(f"the {column!r} card never landed in the mapped list")
