"""The History page: runs per sync, a chart of what each sent, and the rows each run rejected."""

from __future__ import annotations

import pytest
from support import AppEnv
from test_page_preview import DIRTY_IDS, MAPPINGS, SMALL_SQL, SYNC, keys, open_page, save_sync, table, texts

from amp_sync import runner
from amp_sync.errors import FatalError


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
