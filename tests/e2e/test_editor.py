"""The Models page's SQL editor in a real browser: typed by keyboard, run with the Run button."""

from __future__ import annotations

from e2e_support import ARTIFACTS, App, open_page, wait_idle
from playwright.sync_api import FrameLocator, Page, expect

EDITOR = '[class*="st-key-model_sql_"] iframe'
TEXT = ".ace_editor:not(.ace_autocomplete)"  # the completion popup is an Ace editor of its own


def editor(page: Page) -> FrameLocator:
    """The editor's frame, once its text area is drawn."""
    frame = page.frame_locator(EDITOR)
    expect(frame.locator(f"{TEXT} .ace_content")).to_be_visible(timeout=30_000)
    return frame


def type_sql(page: Page, lines: list[str]) -> None:
    """Click into the editor and type `lines` as a person does, pressing Enter between them."""
    frame = editor(page)
    frame.locator(f"{TEXT} .ace_content").click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    for n, line in enumerate(lines):
        if n:
            page.keyboard.press("Enter")
        page.keyboard.type(line, delay=15)


def click_run(page: Page) -> None:
    page.locator(".st-key-model_run button").click()
    wait_idle(page)


def test_typed_sql_runs_with_the_run_button(page: Page, app: App) -> None:
    open_page(page, app, "models")
    type_sql(page, ["select user_id, plan_id", "from users u", "where u.plan_id is not null", "limit 3"])
    click_run(page)
    expect(page.get_by_text("Rows: 3 · all 3 shown", exact=False)).to_be_visible(timeout=20_000)
    grid = page.get_by_test_id("stDataFrame").first
    expect(grid).to_be_visible()
    box = grid.bounding_box()
    assert box is not None and box["height"] >= 35 * 4  # the header and all three rows, none hidden
    expect(page.get_by_text("The editor is empty")).to_have_count(0)


def test_enter_makes_a_new_line_even_while_a_suggestion_is_offered(page: Page, app: App) -> None:
    open_page(page, app, "models")
    type_sql(page, ["select u.user_id", "from users u"])
    popup = editor(page).locator(".ace_autocomplete")
    expect(popup).to_be_visible()  # `u` offers the warehouse's `users` and `user_id`
    expect(popup).to_contain_text("users")
    expect(popup).to_contain_text("table")  # offered from the warehouse's schema, not only the text
    page.keyboard.press("Enter")
    page.keyboard.type("where u.user_id = 'u_000003'", delay=15)
    page.keyboard.press("Enter")
    page.keyboard.type("limit 1", delay=15)
    lines = editor(page).locator(f"{TEXT} .ace_line")
    expect(lines).to_have_count(4)
    expect(lines.nth(1)).to_have_text("from users u")
    click_run(page)
    # Had Enter taken a suggestion, the warehouse would have refused `from users userswhere ...`.
    expect(page.get_by_text("Rows: 1 · all 1 shown", exact=False)).to_be_visible(timeout=20_000)


def test_underscores_are_drawn_inside_the_line(page: Page, app: App) -> None:
    open_page(page, app, "models")
    type_sql(page, ["select user_id, plan_id, last_seen_at from devices"])
    frame = editor(page)
    expect(frame.locator(f"{TEXT} .ace_line").first).to_contain_text("user_id, plan_id, last_seen_at")
    # An underscore is drawn at the bottom of its glyph box: the line box must hold the whole glyph.
    clipped = frame.locator(f"{TEXT} .ace_content").evaluate(
        """el => {
            const line = el.querySelector('.ace_line');
            const probe = document.createElement('span');
            probe.textContent = '_';
            line.appendChild(probe);
            const glyph = probe.getBoundingClientRect(), box = line.getBoundingClientRect();
            probe.remove();
            return glyph.bottom > box.bottom + 0.5;
        }"""
    )
    assert not clipped
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator('[class*="st-key-model_sql_"]').screenshot(path=str(ARTIFACTS / "editor.png"))


def test_a_long_line_wraps_inside_the_editor(page: Page, app: App) -> None:
    open_page(page, app, "models")
    columns = ", ".join(f"user_id as user_id_{n:02d}" for n in range(12))
    type_sql(page, [f"select {columns} from users"])
    frame = editor(page)
    expect(frame.locator(f"{TEXT} .ace_content")).to_contain_text("from users")
    # One line of SQL, one line number, drawn on several rows: it wraps instead of running off.
    expect(frame.locator(f"{TEXT} .ace_gutter-cell")).to_have_count(1)
    assert frame.locator(f"{TEXT} .ace_line").count() > 1
    expect(frame.locator(f"{TEXT} .ace_scrollbar-h")).to_be_hidden()
