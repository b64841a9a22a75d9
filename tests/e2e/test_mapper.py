"""The field mapper in a real browser: drag a column in, rename its property in place, leave, save."""

from __future__ import annotations

from e2e_support import (
    ARTIFACTS,
    LIVE,
    MAPPING_ROWS,
    App,
    board,
    choose,
    drag_into_mapping,
    open_page,
    wait_idle,
)
from playwright.sync_api import Locator, Page, expect


def property_field(page: Page, index: int) -> Locator:
    return page.locator(MAPPING_ROWS).nth(index)


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

    drag_into_mapping(page, "plan")
    field = property_field(page, 0)
    expect(field).to_have_value("plan")
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
    page.locator(f".st-key-sync_save{LIVE} button").click()
    expect(page.get_by_text("Saved the sync 'mapper-journey'.")).to_be_visible(timeout=20_000)
    expect(warning).to_be_hidden()
    expect(page.get_by_text("Unsaved changes")).to_be_hidden()
    assert ws.get(SavedSync, "mapper-journey").mappings == (Mapping_("plan", "plan_tier"),)
