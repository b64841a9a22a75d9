"""The Home page: the sandbox banner, the setup checklist and the latest runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from amp_sync import runner
from amp_sync.config import Destination, Mapping_, Region, SyncObject
from amp_sync.secret import Secret
from amp_sync.workspace import DEMO_WAREHOUSE, SANDBOX_DESTINATION, SavedModel, SavedSync, Workspace

ROOT = Path(__file__).resolve().parents[1]
DONE, NOT_DONE = ":material/check_circle: done", ":material/radio_button_unchecked: not done yet"


def open_home() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    return at


def checklist(at: AppTest) -> list[str]:
    """Each setup step's line, in order."""
    return [m.value for m in at.markdown if m.value.startswith("**") and " — " in m.value]


def save_sync(home: Path) -> Workspace:
    ws = Workspace(home)
    ws.save(
        SavedModel("plans", DEMO_WAREHOUSE, "select user_id, plan_id from users order by user_id limit 40")
    )
    mapping = (Mapping_("plan_id", "plan"),)
    ws.save(SavedSync("plan-sync", "plans", SANDBOX_DESTINATION, SyncObject.USER, "user_id", mapping))
    return ws


def test_a_fresh_home_shows_demo_mode_and_the_first_two_steps_done(app_env) -> None:
    at = open_home()
    assert at.title[0].value == "amp_sync"
    assert "Demo mode" in at.info[0].value and "nothing leaves this machine" in at.info[0].value
    assert not at.warning  # the sandbox is running
    steps = checklist(at)
    assert [s.split(" — ")[1] for s in steps] == [
        f"{DONE} · 1 saved",
        f"{DONE} · 1 saved",
        NOT_DONE,
        NOT_DONE,
    ]
    assert "Amplitude destination" in steps[0] and "sync" in steps[3]
    links = {link.proto.page for link in at.page_link}
    assert {"destinations", "warehouses", "models", "syncs"} <= links
    assert "No runs yet" in at.info[1].value and not at.dataframe
    assert "ingested after the update" in at.caption[-1].value


def test_a_stopped_sandbox_says_how_to_start_it(app_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMP_SYNC_SANDBOX_URL", "http://127.0.0.1:9")
    at = open_home()
    warning = at.warning[0].value
    assert "not running at http://127.0.0.1:9" in warning
    assert "`amp-sync sandbox`" in warning and "`make run`" in warning


def test_demo_mode_ends_when_a_real_destination_is_saved(app_env) -> None:
    at = open_home()
    Workspace(app_env.home).save(Destination("Prod", Secret("prod-api-key-0000"), None, Region.EU))
    at.run()
    assert not any("Demo mode" in i.value for i in at.info)
    assert checklist(at)[0].endswith(f"{DONE} · 2 saved")


def test_the_checklist_and_recent_runs_follow_saved_syncs_and_runs(app_env) -> None:
    at = open_home()
    ws = save_sync(app_env.home)
    at.run()
    assert [s.split(" — ")[1] for s in checklist(at)][2:] == [f"{DONE} · 1 saved", f"{DONE} · 1 saved"]
    assert not at.dataframe

    report = runner.run(ws.sync_config("plan-sync"), app_env.home)
    assert report.ok and report.sent > 0
    at.run()
    assert not at.exception
    runs = at.dataframe[0].value
    assert list(runs.columns) == ["sync", "started", "duration", "status", "sent", "failed", "rejected"]
    row = runs.iloc[0]
    assert (row["sync"], row["status"], row["sent"], row["failed"]) == ("plan-sync", "ok", report.sent, 0)
    assert row["rejected"] == report.plan.rejected
    assert len(app_env.sandbox.store.profiles()) == report.sent

    runner.run(ws.sync_config("plan-sync"), app_env.home)  # nothing changed: sends nothing
    at.run()
    assert at.dataframe[0].value["sent"].tolist() == [0, report.sent]  # newest first
