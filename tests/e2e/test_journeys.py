"""The analyst's journeys in a real browser: connect, write a model, map, preview, sync, history, revert."""

from __future__ import annotations

from e2e_support import (
    LIVE,
    App,
    board,
    choose,
    choose_settled,
    drag_into_mapping,
    open_page,
    screenshot,
    wait_idle,
)
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
    for field in ("dest_api_key", "dest_secret_key"):  # the saved keys leave the form, as a person sees
        expect(page.locator(f".st-key-{field} input")).to_have_value("", timeout=20_000)
    html = page.content()
    assert SANDBOX_SECRET_KEY not in html and SANDBOX_API_KEY not in html  # masked after saving
    screenshot(page, "destinations")


def _ace_frame(page: Page, key_prefix: str):  # type: ignore[no-untyped-def]
    page.wait_for_selector(f'[class*="st-key-{key_prefix}"] iframe')
    return next(f for f in page.frames if "code_editor" in f.url)


def test_b_write_sql_run_it_see_the_rows_and_save_the_model(page: Page, app: App) -> None:
    from amp_sync.workspace import SavedModel, Workspace

    open_page(page, app, "models")
    ace = _ace_frame(page, "model_sql_")
    ace.evaluate(
        "() => document.querySelector('.ace_editor').env.editor.setValue("
        "'select user_id, plan_id, country from users where country is not null', 1)"
    )
    page.frame_locator('[class*="st-key-model_sql_"] iframe').locator(".ace_editor").first.click()
    page.keyboard.press("Control+Enter")
    expect(page.get_by_text("Rows: ", exact=False).first).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
    page.locator(".st-key-model_name input").fill("countries")
    page.locator(".st-key-model_save button").click()
    expect(page.get_by_text("countries", exact=False).first).to_be_visible()
    page.wait_for_timeout(500)
    saved = Workspace(app.home).get(SavedModel, "countries")
    assert "country is not null" in saved.sql
    screenshot(page, "models")


def test_c_build_a_sync_by_dragging_two_columns_into_the_mapper(page: Page, app: App) -> None:
    from amp_sync.templates import template
    from amp_sync.workspace import DEMO_WAREHOUSE, SavedModel, SavedSync, Workspace

    open_page(page, app)  # the first visit creates the demo warehouse
    ws = Workspace(app.home)
    if "ltv" not in ws.names(SavedModel):
        ws.save(SavedModel("ltv", DEMO_WAREHOUSE, template("lifetime_value").sql))
    open_page(page, app, "syncs")
    choose(page, "sync_model", "ltv")
    expect(board(page).locator(".sortable-item", has_text="plan")).to_be_visible(timeout=30_000)
    for column in ("plan", "lifetime_value"):
        drag_into_mapping(page, column)
    wait_idle(page)  # a redrawn table leaves its old copy behind, marked stale, until the rerun ends
    fields = page.locator(f'[class*="st-key-sync_fields_"]{LIVE}').first
    expect(fields).to_be_visible(timeout=20_000)
    page.locator(".st-key-sync_name input").fill("ltv-journey")
    page.locator(".st-key-sync_name input").press("Enter")
    wait_idle(page)
    page.locator(f".st-key-sync_save{LIVE} button").click()
    expect(page.get_by_text("Saved the sync 'ltv-journey'.")).to_be_visible(timeout=20_000)
    sync = Workspace(app.home).get(SavedSync, "ltv-journey")
    assert sorted(m.column for m in sync.mappings) == ["lifetime_value", "plan"]
    assert sync.key == "user_id" and sync.model == "ltv"
    screenshot(page, "syncs")


def _saved_sync(app: App, name: str) -> None:
    from amp_sync.config import Mapping_, Operation, SyncObject
    from amp_sync.templates import template
    from amp_sync.workspace import DEMO_WAREHOUSE, SANDBOX_DESTINATION, SavedModel, SavedSync, Workspace

    ws = Workspace(app.home)
    if "ltv" not in ws.names(SavedModel):
        ws.save(SavedModel("ltv", DEMO_WAREHOUSE, template("lifetime_value").sql))
    mappings = (Mapping_("plan", "plan", Operation.SET), Mapping_("lifetime_value", "ltv", Operation.SET))
    ws.save(SavedSync(name, "ltv", SANDBOX_DESTINATION, SyncObject.USER, "user_id", mappings))


def test_d_preview_then_sync_then_history(page: Page, app: App) -> None:
    open_page(page, app)  # the first visit creates the sandbox destination and demo warehouse
    _saved_sync(app, "journey-d")
    open_page(page, app, "preview")
    choose(page, "preview_sync", "journey-d")
    page.locator(".st-key-preview_button button").click()
    expect(page.get_by_test_id("stMetric").filter(has_text="New").first).to_contain_text(
        "11,999", timeout=60_000
    )
    expect(page.get_by_test_id("stMetric").filter(has_text="Rejected").first).to_contain_text("8")
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible()  # the field-level diff
    expect(page.get_by_text("Rows that are not sent")).to_be_visible()
    screenshot(page, "preview")
    assert app.sandbox.store.profiles() == []  # a preview sends nothing

    start = page.locator(".st-key-start_sync button")
    expect(start).to_be_disabled()  # 11,999 users: the name must be typed first
    page.locator(".st-key-confirm_sync_name input").fill("journey-d")
    page.locator(".st-key-confirm_sync_name input").press("Enter")
    wait_idle(page)
    expect(start).to_be_enabled()
    start.click()
    expect(page.get_by_test_id("stMetric").filter(has_text="Sent").first).to_contain_text(
        "11,999", timeout=120_000
    )
    profile = app.sandbox.store.profile(user_id="u_000010")
    assert profile is not None and set(profile["user_properties"]) == {"plan", "ltv"}
    assert len(app.sandbox.store.profiles()) == 11_999

    open_page(page, app, "history")
    choose(page, "history_sync", "journey-d")
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
    expect(page.get_by_text("Download 8 rejected rows (CSV)")).to_be_visible()
    screenshot(page, "history")


def test_e_backfill_events_then_revert_a_user_sync(page: Page, app: App) -> None:
    from amp_sync import runner, state
    from amp_sync.config import Mapping_, SyncObject, SyncOptions
    from amp_sync.workspace import DEMO_WAREHOUSE, SANDBOX_DESTINATION, SavedModel, SavedSync, Workspace

    open_page(page, app)  # the first visit creates the sandbox destination and demo warehouse
    ws = Workspace(app.home)
    sql = "select event_id, user_id, event_type, occurred_at from events where user_id = 'u_000002'"
    ws.save(SavedModel("logins", DEMO_WAREHOUSE, sql))

    # An event sync, built on the Syncs page: the event columns are guessed from their names.
    open_page(page, app, "syncs")
    choose(page, "sync_model", "logins")
    page.locator(".st-key-sync_object").get_by_text("Event", exact=True).click()
    wait_idle(page)
    time_column = page.locator(".st-key-sync_time_column").get_by_role("combobox")
    expect(time_column).to_have_value("occurred_at", timeout=20_000)
    expect(page.locator(".st-key-sync_event_type_column").get_by_role("combobox")).to_have_value("event_type")
    expect(page.locator(".st-key-sync_skip_user_props input")).to_be_checked()
    expect(page.locator(".st-key-sync_insert_id_column").get_by_role("combobox")).to_have_attribute(
        "placeholder", "None: a hash of the row"
    )
    choose_settled(page, "sync_insert_id_column", "event_id")
    page.locator(".st-key-sync_name input").fill("events-journey")
    page.locator(".st-key-sync_name input").press("Enter")
    wait_idle(page)
    page.locator(f".st-key-sync_save{LIVE} button").click()
    expect(page.get_by_text("Saved the sync 'events-journey'.")).to_be_visible(timeout=20_000)
    screenshot(page, "syncs-events")
    saved = Workspace(app.home).get(SavedSync, "events-journey")
    assert (saved.object, saved.options.insert_id_column) == (SyncObject.EVENT, "event_id")

    # Preview: the events, how far back they go, the warnings; then the run sends each once.
    open_page(page, app, "preview")
    choose(page, "preview_sync", "events-journey")
    page.locator(".st-key-preview_button button").click()
    to_send = page.get_by_test_id("stMetric").filter(has_text="Events to send").first
    expect(to_send).to_be_visible(timeout=60_000)
    total = int(to_send.get_by_test_id("stMetricValue").inner_text().replace(",", ""))
    assert total > 0
    expect(page.get_by_text("Events from 2026-", exact=False)).to_be_visible()
    expect(page.get_by_text("count toward your event volume", exact=False)).to_be_visible()
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible()  # the events themselves
    screenshot(page, "preview-events")
    assert app.sandbox.store.events() == []
    page.locator(".st-key-start_sync button").click()
    expect(page.get_by_text(f"Sent {total:,} events", exact=False)).to_be_visible(timeout=60_000)
    arrived = [e for e in app.sandbox.store.events() if e["insert_id"].startswith("evt_")]
    assert len(arrived) == total and {e["user_id"] for e in arrived} == {"u_000002"}

    # A user sync ran twice; History previews the revert of the second run, then sends it.
    small = "select user_id, plan_id as plan from users where user_id between 'u_000002' and 'u_000011'"
    ws.save(SavedModel("plans", DEMO_WAREHOUSE, small))
    mappings = (Mapping_("plan", "plan"),)
    options = SyncOptions(synthetic_event="Updated by amp_sync")
    ws.save(SavedSync("plans-journey", "plans", SANDBOX_DESTINATION, SyncObject.USER, "user_id", mappings,
                      None, options))  # fmt: skip
    runner.run(ws.sync_config("plans-journey"), app.home)
    before = app.sandbox.store.profile(user_id="u_000005")["user_properties"]["plan"]
    ws.save(SavedModel("plans", DEMO_WAREHOUSE, small.replace("plan_id as plan", "'Gold' as plan")), "plans")
    runner.run(ws.sync_config("plans-journey"), app.home)
    assert app.sandbox.store.profile(user_id="u_000005")["user_properties"]["plan"] == "Gold"

    open_page(page, app, "history")
    choose(page, "history_sync", "plans-journey")
    page.locator(".st-key-history_revert_preview button").click()
    expect(page.get_by_test_id("stMetric").filter(has_text="Keys to revert").first).to_contain_text(
        "10", timeout=60_000
    )
    expect(page.get_by_text("(unset): the property is cleared", exact=False)).to_be_visible()
    screenshot(page, "revert")
    page.locator(".st-key-history_revert_confirm button").click()
    expect(page.get_by_text("Reverted run #2: sent 10 keys back", exact=False)).to_be_visible(timeout=60_000)
    assert app.sandbox.store.profile(user_id="u_000005")["user_properties"]["plan"] == before
    newest = state.history(app.home, "plans-journey")[0]
    assert (newest.kind, newest.message) == ("revert", "reverted run #2")
