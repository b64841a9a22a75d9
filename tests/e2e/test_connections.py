"""A person adds a warehouse that cannot work: the list marks it failing, the schema browser passes it by."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from e2e_support import App, open_page, screenshot, wait_idle
from playwright.sync_api import Page, expect

from amp_sync.workspace import DEMO_WAREHOUSE, Warehouse, Workspace

BROKEN = "A missing file"  # sorts before the demo warehouse: the one a first-in-list default would pick
DEMO_ITEM = ".st-key-wh_item_demo-warehouse-duckdb"
BROKEN_ITEM = ".st-key-wh_item_a-missing-file"


@pytest.fixture
def broken_warehouse_removed(app: App) -> Iterator[None]:
    """The other journeys share this app: leave its warehouses as they were."""
    yield
    ws = Workspace(app.home)
    if BROKEN in ws.names(Warehouse):
        ws.delete(Warehouse, BROKEN)


def go_to(page: Page, link: str, title: str) -> None:
    """Follow the sidebar link to another page, as a person does (the session stays the same)."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=link).click()
    expect(page.get_by_role("heading", name=title, level=1)).to_be_visible()
    wait_idle(page)


def test_a_failing_warehouse_is_marked_and_never_the_schema_browsers_default(
    page: Page, app: App, tmp_path, broken_warehouse_removed: None
) -> None:
    open_page(page, app, "warehouses")
    page.locator(DEMO_ITEM).get_by_role("button", name="Test connection").click()
    expect(page.locator(DEMO_ITEM).get_by_text("Works · checked just now")).to_be_visible(timeout=20_000)

    missing = tmp_path / "nowhere.db"
    page.get_by_role("textbox", name="Name", exact=True).press_sequentially(BROKEN)
    page.get_by_role("textbox", name="SQLAlchemy URL").press_sequentially(f"sqlite:///{missing}")
    page.get_by_role("button", name="Save and test connection").click()
    failed = page.locator(BROKEN_ITEM).get_by_text(f"Failed: there is no sqlite file at {missing}")
    expect(failed).to_be_visible(timeout=20_000)
    expect(page.get_by_role("heading", name="Add a warehouse")).to_be_visible()  # saved: edit mode ended

    page.locator(BROKEN_ITEM).get_by_role("button", name="Edit").click()
    expect(page.get_by_role("heading", name=f"Edit warehouse “{BROKEN}”")).to_be_visible()
    go_to(page, "Destinations", "Destinations")
    go_to(page, "Warehouses", "Warehouses")  # back: a new form, and the schema browser picks afresh
    expect(page.get_by_role("heading", name="Add a warehouse")).to_be_visible()
    browser = page.locator(".st-key-wh_browse").get_by_role("combobox")
    expect(browser).to_have_value(re.compile(rf"^{re.escape(DEMO_WAREHOUSE)} · Works · checked "))
    expect(page.get_by_text(re.compile(r"^users · \d+ columns$"))).to_be_visible()
    expect(page.get_by_test_id("stMain").get_by_test_id("stAlertContentError")).to_have_count(0)
    expect(page.locator(BROKEN_ITEM).get_by_text("Failed:")).to_be_visible()
    screenshot(page, "connections")
