"""The field mapper in a real browser: drag a column in, rename its property in place, leave, save."""

from __future__ import annotations

from e2e_support import ARTIFACTS, App, choose, open_page, wait_idle
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import FrameLocator, Locator, Page, expect

# The board as it is now, not the copy a rerun leaves behind (marked stale) until it ends.
BOARD = '[class*="st-key-mapper_"]:not([data-stale="true"]) iframe[data-testid="stCustomComponentV1"]'


def board(page: Page) -> FrameLocator:
    return page.frame_locator(BOARD).first


def mouse_drag(page: Page, src: Locator, dst: Locator, steps: int = 15) -> None:
    """Press on the card, move in steps as a hand does (dnd-kit ignores a jump), release over the list."""
    src.scroll_into_view_if_needed()
    sb, db = src.bounding_box(), dst.bounding_box()
    assert sb and db
    x0, y0 = sb["x"] + sb["width"] / 2, sb["y"] + sb["height"] / 2
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 6, y0 + 6, steps=3)
    page.mouse.move(db["x"] + db["width"] / 2, db["y"] + db["height"] - 12, steps=steps)
    page.mouse.up()


def drag_into_list(page: Page, column: str) -> None:
    """Drag a model column's card into the mapping list; once more if the board was still loading."""
    for attempt in range(2):
        card = board(page).locator(".sortable-container").nth(0).locator(".sortable-item", has_text=column)
        expect(card).to_be_visible(timeout=20_000)
        try:
            mouse_drag(page, card, board(page).locator(".sortable-container").nth(1))
            wait_idle(page)
            expect(property_field(page, 0)).to_have_value(column, timeout=8_000)
            return
        except (AssertionError, PlaywrightError):
            if attempt:
                raise


def property_field(page: Page, index: int) -> Locator:
    return page.locator('.st-key-sync_fields_list [class*="st-key-sync_map_prop_"] input').nth(index)


def test_drag_a_column_in_rename_it_in_place_leave_and_save(page: Page, app: App) -> None:
    from amp_sync.config import Mapping_
    from amp_sync.templates import template
    from amp_sync.workspace import DEMO_WAREHOUSE, SavedModel, SavedSync, Workspace

    # Profiles sent by earlier journeys would make the property a pick list of theirs: start empty.
    app.sandbox.store.reset()
    open_page(page, app)  # the first visit creates the demo warehouse
    ws = Workspace(app.home)
    if "ltv" not in ws.names(SavedModel):
        ws.save(SavedModel("ltv", DEMO_WAREHOUSE, template("lifetime_value").sql))
    open_page(page, app, "syncs")
    choose(page, "sync_model", "ltv")
    expect(page.get_by_text("No field mapped yet", exact=False)).to_be_visible(timeout=20_000)

    drag_into_list(page, "plan")
    field = property_field(page, 0)
    field.click()
    field.press("Control+A")
    page.keyboard.type("plan_tier")
    page.keyboard.press("Enter")
    wait_idle(page)
    mapped = board(page).locator(".sortable-container").nth(1)
    expect(mapped.locator(".sortable-item", has_text="plan → plan_tier")).to_be_visible(timeout=15_000)
    expect(page.get_by_text("Unsaved changes")).to_be_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator('[data-testid="stMain"]').screenshot(path=str(ARTIFACTS / "mapper.png"))

    page.get_by_test_id("stSidebarNav").get_by_text("Home", exact=True).click()
    expect(page.locator('[data-testid="stMain"] h1')).not_to_have_text("Syncs")
    wait_idle(page)
    page.get_by_test_id("stSidebarNav").get_by_text("Syncs", exact=True).click()
    warning = page.get_by_text("You left unsaved changes to the mapping of the new sync", exact=False)
    expect(warning).to_be_visible(timeout=20_000)
    expect(property_field(page, 0)).to_have_value("plan_tier")

    page.locator(".st-key-sync_name input").fill("mapper-journey")
    page.locator(".st-key-sync_name input").press("Enter")
    wait_idle(page)
    page.locator(".st-key-sync_save button").click()
    expect(page.get_by_text("Saved the sync 'mapper-journey'.")).to_be_visible(timeout=20_000)
    expect(warning).to_be_hidden()
    expect(page.get_by_text("Unsaved changes")).to_be_hidden()
    assert ws.get(SavedSync, "mapper-journey").mappings == (Mapping_("plan", "plan_tier"),)
