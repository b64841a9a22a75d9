"""The History page: runs per sync, a chart of what each sent, the rows each run rejected, the revert."""

from __future__ import annotations

import json

import pytest
from support import AppEnv
from test_page_preview import (
    DIRTY_IDS,
    MAPPINGS,
    SMALL_SQL,
    SYNC,
    keys,
    metrics,
    open_page,
    save_sync,
    table,
    texts,
)

from amp_sync import runner
from amp_sync.config import SyncObject, SyncOptions
from amp_sync.errors import FatalError
from amp_sync.workspace import DEMO_WAREHOUSE, SANDBOX_DESTINATION, SavedModel, SavedSync


def test_no_sync_points_to_preview(app_env: AppEnv) -> None:
    at = open_page("app_pages/history.py")
    assert "no run of any sync yet" in texts(at.info)
    assert [link.proto.page for link in at.page_link] == ["preview"]
    assert not at.dataframe


def test_a_sync_that_never_ran_points_to_preview(app_env: AppEnv) -> None:
    save_sync(app_env, sql=SMALL_SQL, mappings=MAPPINGS[1:2])
    at = open_page("app_pages/history.py")
    at.selectbox(key="history_sync").select(SYNC).run()
    assert "no run of this sync yet" in texts(at.info)
    assert [link.proto.page for link in at.page_link] == ["preview"]
    assert not at.exception


def test_runs_counts_chart_and_rejected_rows(app_env: AppEnv) -> None:
    ws = save_sync(app_env)
    first = runner.run(ws.sync_config(SYNC), app_env.home)
    second = runner.run(ws.sync_config(SYNC), app_env.home)
    assert (first.sent, second.sent) == (11_999, 0)

    at = open_page("app_pages/history.py")
    runs = table(at, "Run", "Sent")
    assert list(runs["Run"]) == [second.run_id, first.run_id]  # newest first
    assert list(runs["Sent"]) == [0, 11_999]
    assert list(runs["New"]) == [0, 11_999]
    assert list(runs["Unchanged"]) == [11_999, 0]
    assert list(runs["Rejected"]) == [8, 8]
    assert list(runs["Status"]) == ["ok", "ok"]
    # The counts show as the metrics do, 11,999 and not 11999: a thousands-separated format.
    grid = next(df for df in at.dataframe if "Sent" in df.value.columns)
    formats = {
        name: c.get("type_config", {}).get("format") for name, c in json.loads(grid.proto.columns).items()
    }
    assert all(formats[name] == "localized" for name in ("Sent", "New", "Unchanged", "Rejected"))
    assert at.get("vega_lite_chart")

    older = [o for o in at.selectbox(key="history_run").options if f"run {first.run_id} " in o]
    at.selectbox(key="history_run").select(older[0]).run()
    rejected = table(at, "Key", "Reason")
    assert set(rejected["Key"]) == (DIRTY_IDS - {""}) | {"(missing)"}
    assert "appears 2 times" in " ".join(rejected["Reason"])
    download = at.download_button(key="history_csv")
    assert download.label == "Download 8 rejected rows (CSV)"
    assert not at.exception


def test_all_syncs_together_and_a_refused_run(app_env: AppEnv) -> None:
    ws = save_sync(app_env, sql=SMALL_SQL, mappings=MAPPINGS[1:2])
    runner.run(ws.sync_config(SYNC), app_env.home)
    save_sync(app_env, name="wrong-key-sync", sql=SMALL_SQL, mappings=MAPPINGS[1:2], api_key="wrong-key")
    with pytest.raises(FatalError):
        runner.run(ws.sync_config("wrong-key-sync"), app_env.home)

    at = open_page("app_pages/history.py")
    assert at.selectbox(key="history_sync").value == "All syncs"
    runs = table(at, "Sync", "Status")
    assert list(runs["Sync"]) == ["wrong-key-sync", SYNC]
    assert list(runs["Status"]) == ["error", "ok"]
    assert "refused the API key" in runs["Message"].iloc[0]
    assert "This run rejected no rows." in texts(at.caption)
    assert "history_csv" not in keys(at.download_button)

    at.selectbox(key="history_sync").select(SYNC).run()
    assert list(table(at, "Sync", "Status")["Sync"]) == [SYNC]
    assert at.session_state["selected_sync"] == SYNC
    assert not at.exception


def original_plans(env: AppEnv) -> dict[str, str]:
    return {p["user_id"]: p["user_properties"].get("plan") for p in env.sandbox.store.profiles()}


def test_revert_the_last_run_after_previewing_each_field(app_env: AppEnv) -> None:
    ws = save_sync(app_env, sql=SMALL_SQL, mappings=MAPPINGS[1:2])
    runner.run(ws.sync_config(SYNC), app_env.home)
    before = original_plans(app_env)
    edited = SMALL_SQL.replace(
        "plan_id as plan", "case when user_id = 'u_000003' then null else 'Gold' end as plan"
    )
    ws.save(SavedModel(f"{SYNC} model", DEMO_WAREHOUSE, edited), f"{SYNC} model")
    second = runner.run(ws.sync_config(SYNC), app_env.home)
    assert set(original_plans(app_env).values()) == {"Gold", None}

    at = open_page("app_pages/history.py")
    at.selectbox(key="history_sync").select(SYNC).run()
    assert "history_revert_confirm" not in keys(at.button)  # nothing is sent without a preview
    at.button(key="history_revert_preview").click().run()
    assert not at.exception
    assert metrics(at) == {
        "Reverts run": f"#{second.run_id}",
        "Keys to revert": "30",
        "Already as before": "0",
    }
    changes = table(at, "Current value", "Restored value").set_index("Key")
    assert changes.loc["u_000003", "Current value"] == "(unset)"
    assert changes.loc["u_000003", "Restored value"] == before["u_000003"]
    assert changes.loc["u_000010", "Current value"] == "Gold"
    assert changes.loc["u_000010", "Restored value"] == before["u_000010"]
    assert set(original_plans(app_env).values()) == {"Gold", None}  # a preview sends nothing

    confirm = at.button(key="history_revert_confirm")
    assert confirm.label == f"Revert run #{second.run_id}: send 30 keys back"
    confirm.click().run()
    assert not at.exception
    assert f"Reverted run #{second.run_id}: sent 30 keys back" in texts(at.success)
    assert original_plans(app_env) == before
    runs = table(at, "Run", "Kind")
    assert list(runs["Kind"]) == ["revert", "run", "run"]
    assert runs["Message"].iloc[0] == f"reverted run #{second.run_id}"
    assert list(runs["Sent"]) == [30, 30, 30]


def test_reverting_a_first_run_unsets_what_it_set(app_env: AppEnv) -> None:
    ws = save_sync(app_env, sql=SMALL_SQL, mappings=MAPPINGS[1:2])
    first = runner.run(ws.sync_config(SYNC), app_env.home)
    at = open_page("app_pages/history.py")
    at.selectbox(key="history_sync").select(SYNC).run()
    at.button(key="history_revert_preview").click().run()
    changes = table(at, "Current value", "Restored value")
    assert set(changes["Restored value"]) == {"(unset)"} and set(changes["Operation"]) == {"$unset"}
    assert "(unset): the property is cleared in Amplitude" in texts(at.caption)
    at.button(key="history_revert_confirm").click().run()
    assert f"Reverted run #{first.run_id}" in texts(at.success)
    assert set(original_plans(app_env).values()) == {None}


def test_nothing_to_revert_is_said_in_words(app_env: AppEnv) -> None:
    ws = save_sync(app_env, sql=SMALL_SQL + " and 1 = 0", mappings=MAPPINGS[1:2])
    runner.run(ws.sync_config(SYNC), app_env.home)
    at = open_page("app_pages/history.py")
    at.selectbox(key="history_sync").select(SYNC).run()
    at.button(key="history_revert_preview").click().run()
    assert not at.exception and not at.error
    assert "Nothing to revert: no run of this sync has changed anything in Amplitude yet." in texts(at.info)
    assert "history_revert_confirm" not in keys(at.button)


def test_a_run_after_the_revert_preview_asks_for_a_new_one(app_env: AppEnv) -> None:
    ws = save_sync(app_env, sql=SMALL_SQL, mappings=MAPPINGS[1:2])
    runner.run(ws.sync_config(SYNC), app_env.home)
    at = open_page("app_pages/history.py")
    at.selectbox(key="history_sync").select(SYNC).run()
    at.button(key="history_revert_preview").click().run()
    runner.run(ws.sync_config(SYNC), app_env.home)
    at.run()
    assert "preview the revert again" in texts(at.info)
    assert "history_revert_confirm" not in keys(at.button)


def test_an_event_sync_explains_that_events_cannot_be_reverted(app_env: AppEnv) -> None:
    sql = "select event_id, user_id, event_type, occurred_at from events where user_id = 'u_000002'"
    ws = save_sync(app_env, sql=sql)
    options = SyncOptions(event_type_column="event_type", time_column="occurred_at")
    ws.save(
        SavedSync(SYNC, f"{SYNC} model", SANDBOX_DESTINATION, SyncObject.EVENT, "user_id", (), None, options),
        SYNC,
    )
    runner.run(ws.sync_config(SYNC), app_env.home)
    at = open_page("app_pages/history.py")
    at.selectbox(key="history_sync").select(SYNC).run()
    assert "Events cannot be reverted" in texts(at.info)
    assert "history_revert_preview" not in keys(at.button)
    assert not at.exception


def test_all_syncs_together_offer_no_revert(app_env: AppEnv) -> None:
    ws = save_sync(app_env, sql=SMALL_SQL, mappings=MAPPINGS[1:2])
    runner.run(ws.sync_config(SYNC), app_env.home)
    at = open_page("app_pages/history.py")
    assert "Pick one sync above to revert its last run." in texts(at.caption)
    assert "history_revert_preview" not in keys(at.button)


def test_each_run_names_its_destination(app_env: AppEnv) -> None:
    ws = save_sync(app_env, sql=SMALL_SQL, mappings=MAPPINGS[1:2])
    runner.run(ws.sync_config(SYNC), app_env.home)
    at = open_page("app_pages/history.py")
    runs = table(at, "Run", "Destination")
    assert list(runs.columns[:3]) == ["Sync", "Destination", "Run"]
    assert list(runs["Destination"]) == [SANDBOX_DESTINATION]
    assert "already has" not in texts(at.caption)


def test_a_sync_run_from_a_file_shows_in_history_beside_the_apps(app_env: AppEnv, tmp_path) -> None:
    """The CLI and the app share one home: a sync file's runs are listed without importing it."""
    from support import sync_file_text

    from amp_sync.cli import main
    from amp_sync.workspace import Warehouse, Workspace

    ws = save_sync(app_env, sql=SMALL_SQL, mappings=MAPPINGS[1:2])
    runner.run(ws.sync_config(SYNC), app_env.home)
    url = Workspace(app_env.home).get(Warehouse, DEMO_WAREHOUSE).url.reveal()
    sql = (
        "select user_id, plan_id as plan, 1 as ltv from users where user_id between 'u_000100' and 'u_000104'"
    )
    path = tmp_path / "cli.toml"
    path.write_text(sync_file_text(url, app_env.sandbox.url, sql=sql, name="from-a-file"), encoding="utf-8")
    assert main(["run", str(path)]) == 0

    at = open_page("app_pages/history.py")
    runs = table(at, "Run", "Sent")
    assert sorted(runs["Sync"]) == ["from-a-file", SYNC]
    assert dict(zip(runs["Sync"], runs["Sent"], strict=True))["from-a-file"] == 5
    at.selectbox(key="history_sync").select("from-a-file").run()
    assert not at.exception
    assert "runs from a sync file" in texts(at.caption) and "amp-sync revert FILE" in texts(at.caption)
