"""The Preview page: what a sync changes before anything is sent, the confirmation, the run."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from support import AppEnv

from amp_sync import runner, templates
from amp_sync.amplitude import RetryPolicy
from amp_sync.config import Destination, Mapping_, Operation, Region, SyncObject, SyncOptions
from amp_sync.demo import demo_url
from amp_sync.outbox import Stale
from amp_sync.runner import RunOptions
from amp_sync.sandbox import SANDBOX_API_KEY, SANDBOX_SECRET_KEY, Faults, Sandbox
from amp_sync.secret import Secret
from amp_sync.state import run_lock, state_path
from amp_sync.workspace import (
    DEMO_WAREHOUSE,
    SANDBOX_DESTINATION,
    SavedModel,
    SavedSync,
    Warehouse,
    Workspace,
)

ROOT = Path(__file__).resolve().parents[1]
SYNC = "ltv-to-sandbox"
LTV_SQL = templates.template("lifetime_value").sql
MAPPINGS = (
    Mapping_("lifetime_value", "lifetime_value", Operation.SET),
    Mapping_("plan", "plan", Operation.SET),
    Mapping_("first_paid_date", "first_paid_date", Operation.SET_ONCE),
)
# 30 clean users, for the tests about behaviour rather than volume.
SMALL_SQL = "select user_id, plan_id as plan from users where user_id between 'u_000002' and 'u_000031'"
DIRTY_IDS = {"u_1", "abc", "0", "null", "undefined", "u_000001"}


def save_sync(
    env: AppEnv,
    name: str = SYNC,
    sql: str = LTV_SQL,
    mappings: tuple[Mapping_, ...] = MAPPINGS,
    api_key: str = SANDBOX_API_KEY,
) -> Workspace:
    """The demo warehouse, the sandbox destination (or one with another key), a model and a sync."""
    ws = Workspace(env.home)
    destination = SANDBOX_DESTINATION if api_key == SANDBOX_API_KEY else "Project with another key"
    ws.save(Destination(destination, Secret(api_key), None, Region.US, env.sandbox.url), destination)
    ws.save(Warehouse(DEMO_WAREHOUSE, Secret(demo_url(env.demo))), DEMO_WAREHOUSE)
    ws.save(SavedModel(f"{name} model", DEMO_WAREHOUSE, sql), f"{name} model")
    sync = SavedSync(name, f"{name} model", destination, SyncObject.USER, "user_id", mappings)
    ws.save(sync, name)
    return ws


def open_page(path: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page(path).run()
    assert not at.exception
    return at


def preview(at: AppTest) -> AppTest:
    at.button(key="preview_button").click().run()
    assert not at.exception
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def texts(elements: object) -> str:
    return "\n".join(e.value for e in elements)  # type: ignore[attr-defined]


def page_text(at: AppTest) -> str:
    """Every element's content as sent to the browser, tables included."""
    parts = [str(getattr(e, "proto", "")) for e in at.main]
    parts += [df.value.to_csv() for df in at.dataframe]
    return "\n".join(parts)


def table(at: AppTest, *columns: str) -> pd.DataFrame:
    """The table showing these columns (AppTest finds st.dataframe by position, not by key)."""
    found = [df.value for df in at.dataframe if set(columns) <= set(df.value.columns)]
    assert len(found) == 1, f"{len(found)} tables with columns {columns}"
    return found[0]


def keys(widgets: object) -> list[str]:
    return [w.key for w in widgets]  # type: ignore[attr-defined]


def test_no_sync_yet_points_to_the_syncs_page(app_env: AppEnv) -> None:
    at = open_page("app_pages/preview.py")
    assert "no saved sync" in texts(at.info)
    assert [link.proto.page for link in at.page_link] == ["syncs"]
    assert not at.button


def test_preview_shows_every_change_before_sending(app_env: AppEnv) -> None:
    save_sync(app_env)
    at = preview(open_page("app_pages/preview.py"))

    assert metrics(at) == {"New": "11,999", "Changed": "0", "Unchanged": "0", "Removed": "0", "Rejected": "8"}
    props = table(at, "Property", "Users")
    assert dict(zip(props["Property"], props["Users"], strict=True))["plan"] == 11_999
    assert "ingested **after** the update" in texts(at.info)

    changes = table(at, "Last synced")
    assert len(changes) == 5_000
    assert set(changes["Last synced"]) == {"(new)"}
    # Every user's plan and lifetime value, and the paid ones' first paid date: the true total.
    total = sum(props["Users"])
    assert total > 2 * 11_999 and props["Users"].max() == 11_999
    assert f"5,000 shown of {total:,} field changes: the preview keeps the first 5,000" in texts(at.caption)
    key = changes["Key"].iloc[0]  # the warehouse returns rows in no fixed order
    at.text_input(key="preview_filter").input(key).run()
    one = table(at, "Last synced")
    assert set(one["Key"]) == {key}
    values = dict(zip(one["Property"], one["New value"], strict=True))

    at.selectbox(key="preview_payload_key").select(key).run()
    payload = json.loads(at.code[0].value)
    assert payload["user_id"] == key
    assert str(payload["user_properties"]["$set"]["lifetime_value"]) == values["lifetime_value"]
    assert payload["user_properties"]["$set"]["plan"] == values["plan"]
    assert payload["user_properties"].get("$setOnce", {}).get("first_paid_date", "(none)") == values.get(
        "first_paid_date", "(none)"
    )
    at.text_input(key="preview_filter").input("no such key").run()
    assert "No field change" in texts(at.warning)

    rejected = table(at, "Key", "Reason")
    assert set(rejected["Key"]) == (DIRTY_IDS - {""}) | {"(missing)"}
    assert "shorter than 5 characters" in " ".join(rejected["Reason"])
    assert at.download_button(key="preview_rejections_csv")
    assert app_env.sandbox.store.profiles() == []
    assert not at.exception


def test_widgets_reuse_the_preview_instead_of_reading_again(app_env: AppEnv) -> None:
    save_sync(app_env, sql=SMALL_SQL, mappings=MAPPINGS[1:2])
    at = preview(open_page("app_pages/preview.py"))
    report = at.session_state["preview_reports"][SYNC][1]
    at.text_input(key="preview_filter").input("plan").run()
    at.selectbox(key="preview_payload_key").select_index(3).run()
    assert at.session_state["preview_reports"][SYNC][1] is report
    assert not at.exception


def test_confirmation_then_run_delivers_and_a_second_preview_is_empty(app_env: AppEnv) -> None:
    save_sync(app_env)
    at = preview(open_page("app_pages/preview.py"))
    assert at.button(key="start_sync").disabled
    assert SYNC in at.text_input(key="confirm_sync_name").label
    at.text_input(key="confirm_sync_name").input("ltv").run()
    assert at.button(key="start_sync").disabled
    assert app_env.sandbox.store.profiles() == []

    at.text_input(key="confirm_sync_name").input(SYNC).run()
    assert not at.button(key="start_sync").disabled
    at.button(key="start_sync").click().run()
    assert not at.exception
    assert metrics(at)["Sent"] == "11,999"
    assert metrics(at)["Failed"] == "0"
    assert "Sent 11,999 rows" in texts(at.success)
    assert "history" in [link.proto.page for link in at.page_link]
    profiles = app_env.sandbox.store.profiles()
    assert len(profiles) == 11_999
    assert app_env.sandbox.store.profile(user_id="u_000003")["user_properties"]["plan"] == "Starter"

    at.switch_page("app_pages/history.py").run()
    assert at.selectbox(key="history_sync").value == SYNC
    assert list(table(at, "Run", "Sent")["Sent"]) == [11_999]

    at.switch_page("app_pages/preview.py").run()
    assert at.selectbox(key="preview_sync").value == SYNC
    assert "Sent 11,999 rows" in texts(at.success)  # the outcome stays until the next preview
    preview(at)
    assert "Sent 11,999 rows" not in texts(at.success)
    assert metrics(at)["Unchanged"] == "11,999"
    assert (metrics(at)["New"], metrics(at)["Changed"]) == ("0", "0")
    assert not at.text_input  # nothing to confirm: nothing to send
    assert "nothing to send" in at.button(key="start_sync").label
    assert at.button(key="start_sync").disabled


def test_after_a_run_the_diff_shows_last_synced_and_new_values(app_env: AppEnv) -> None:
    ws = save_sync(app_env, sql=SMALL_SQL, mappings=MAPPINGS[1:2])
    runner.run(ws.sync_config(SYNC), app_env.home)
    before = app_env.sandbox.store.profile(user_id="u_000003")["user_properties"]["plan"]
    edited = SMALL_SQL.replace(
        "plan_id as plan", "case when user_id = 'u_000003' then null else 'Gold' end as plan"
    )
    ws.save(SavedModel(f"{SYNC} model", DEMO_WAREHOUSE, edited), f"{SYNC} model")

    at = preview(open_page("app_pages/preview.py"))
    assert (metrics(at)["New"], metrics(at)["Changed"]) == ("0", "30")
    changes = table(at, "Last synced").set_index("Key")
    assert changes.loc["u_000003", "Last synced"] == before
    assert changes.loc["u_000003", "New value"] == "(unset)"
    assert (changes["New value"] != "(unset)").sum() == len(changes) - 1
    at.selectbox(key="preview_payload_key").select("u_000003").run()
    assert json.loads(at.code[0].value)["user_properties"] == {"$unset": {"plan": "-"}}


def test_an_edited_sync_asks_for_a_new_preview(app_env: AppEnv) -> None:
    ws = save_sync(app_env, sql=SMALL_SQL, mappings=MAPPINGS[1:2])
    at = preview(open_page("app_pages/preview.py"))
    assert "start_sync" in keys(at.button)
    ws.save(SavedSync(SYNC, f"{SYNC} model", SANDBOX_DESTINATION, SyncObject.USER, "user_id", ()), SYNC)
    at.run()
    assert "edited after this preview" in texts(at.info)
    assert "start_sync" not in keys(at.button)


def test_an_invalid_key_is_refused_in_words(app_env: AppEnv) -> None:
    save_sync(app_env, sql=SMALL_SQL, mappings=MAPPINGS[1:2], api_key="wrong-key")
    at = preview(open_page("app_pages/preview.py"))
    at.button(key="start_sync").click().run()
    assert not at.exception
    assert "refused the API key" in texts(at.error)
    assert "refused the API key" in page_text(at)
    assert "wrong-key" not in page_text(at)  # the key itself is never shown
    assert app_env.sandbox.store.profiles() == []
    assert at.button(key="preview_button")  # the page stays usable
    preview(at)
    assert metrics(at)["New"] == "30"


def test_another_run_in_progress_is_refused_in_words(app_env: AppEnv) -> None:
    save_sync(app_env, sql=SMALL_SQL, mappings=MAPPINGS[1:2])
    at = preview(open_page("app_pages/preview.py"))
    with run_lock(app_env.home, SYNC):
        at.button(key="start_sync").click().run()
    assert not at.exception
    assert "another run" in texts(at.error)
    assert app_env.sandbox.store.profiles() == []


def test_a_missing_column_is_explained(app_env: AppEnv) -> None:
    wrong = (*MAPPINGS[1:2], Mapping_("nickname", "nickname", Operation.SET))
    save_sync(app_env, sql=SMALL_SQL, mappings=wrong)
    at = preview(open_page("app_pages/preview.py"))
    assert "does not return the column 'nickname'" in texts(at.error)
    assert not at.metric


EVENTS_SQL = (
    "select event_id, user_id, event_type, occurred_at from events "
    "where user_id between 'u_000002' and 'u_000011'"
)
EVENT_OPTIONS = SyncOptions(event_type_column="event_type", time_column="occurred_at")


def save_other_sync(
    env: AppEnv,
    obj: SyncObject,
    key: str,
    sql: str,
    mappings: tuple[Mapping_, ...],
    options: SyncOptions,
    name: str = SYNC,
) -> Workspace:
    """A sync of any object into the sandbox, through a destination that holds the secret key."""
    ws = save_sync(env, name=name, sql=sql)
    destination = Destination("Sandbox with secret", Secret(SANDBOX_API_KEY), Secret(SANDBOX_SECRET_KEY),
                              Region.US, env.sandbox.url)  # fmt: skip
    ws.save(destination, destination.name)
    ws.save(SavedSync(name, f"{name} model", destination.name, obj, key, mappings, None, options), name)
    return ws


def notes(at: AppTest) -> str:
    return texts([*at.info, *at.warning, *at.success])


def event_count(env: AppEnv, sql: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(demo_url(env.demo))
    with engine.connect() as conn:
        count = conn.execute(sa.text(f"select count(*) from ({sql}) as model")).scalar_one()
    engine.dispose()
    return int(count)


def test_an_event_sync_shows_the_events_it_sends_then_sends_each_once(app_env: AppEnv) -> None:
    total = event_count(app_env, EVENTS_SQL)
    props = (Mapping_("event_id", "source_id"),)
    save_other_sync(app_env, SyncObject.EVENT, "user_id", EVENTS_SQL, props, EVENT_OPTIONS)
    at = preview(open_page("app_pages/preview.py"))

    assert metrics(at) == {"Events to send": f"{total:,}", "Already sent": "0", "Rejected": "0"}
    assert f"A run sends {total:,} events." in texts(at.caption)
    said = notes(at)
    assert "Events from 2026-" in said and " UTC to 2026-" in said  # how far back they go
    assert "Backfilled events count toward your event volume and can take up to 48 hours to appear." in texts(
        at.warning
    )
    assert "a row edited after it was sent arrives as a new event" in texts(at.warning)
    assert "ingested **after** the update" not in said  # that note is about profiles

    events = table(at, "Event type", "Insert id")
    assert list(events.columns) == ["Id", "Event type", "Time", "Properties", "Insert id"]
    assert len(events) == total and set(events["Id"]) <= {f"u_{n:06d}" for n in range(2, 12)}
    first = events.iloc[0]
    at.selectbox(key="preview_payload_key").select(first["Insert id"]).run()
    event = json.loads(at.code[0].value)
    assert event["user_id"] == first["Id"] and event["event_type"] == first["Event type"]
    assert event["insert_id"] == first["Insert id"] and event["$skip_user_properties_sync"] is True
    assert json.dumps(event["event_properties"], sort_keys=True) == first["Properties"]
    assert "Batch API" in texts(at.caption)
    at.text_input(key="preview_filter").input(first["Insert id"]).run()
    assert list(table(at, "Event type", "Insert id")["Insert id"]) == [first["Insert id"]]
    assert app_env.sandbox.store.events() == []  # a preview sends nothing

    at.button(key="start_sync").click().run()
    assert not at.exception
    assert metrics(at)["Sent"] == f"{total:,}"
    assert f"Sent {total:,} events" in texts(at.success)
    arrived = app_env.sandbox.store.events()
    assert len(arrived) == total
    assert {e["insert_id"] for e in arrived} == set(events["Insert id"])
    assert app_env.sandbox.store.profiles()  # users exist, with no property set by the backfill

    preview(at)
    assert metrics(at) == {"Events to send": "0", "Already sent": f"{total:,}", "Rejected": "0"}
    assert "No event to send: every event was sent before." in texts(at.caption)
    assert "event volume" not in texts(at.warning)


def test_an_event_sync_with_an_insert_id_column_says_nothing_about_edited_rows(app_env: AppEnv) -> None:
    options = SyncOptions(event_type="Backfilled", time_column="occurred_at", insert_id_column="event_id")
    save_other_sync(app_env, SyncObject.EVENT, "user_id", EVENTS_SQL, (), options)
    at = preview(open_page("app_pages/preview.py"))
    assert "edited after it was sent" not in notes(at)
    events = table(at, "Event type", "Insert id")
    assert set(events["Event type"]) == {"Backfilled"} and set(events["Properties"]) == {""}
    assert all(i.startswith("evt_") for i in events["Insert id"])
    assert "The events carry no property." in texts(at.caption)


def test_a_synthetic_event_is_counted_and_its_activity_checked(app_env: AppEnv) -> None:
    options = SyncOptions(synthetic_event="Updated by amp_sync")
    ws = save_other_sync(app_env, SyncObject.USER, "user_id", SMALL_SQL, MAPPINGS[1:2], options)
    at = preview(open_page("app_pages/preview.py"))
    assert metrics(at)["Synthetic events"] == "30"
    warned = texts(at.warning)
    assert "Would send 30 'Updated by amp_sync' events, one per updated profile" in warned
    assert "Before the first run" in warned and "inactive" in warned
    assert "'Updated by amp_sync' is not in the project yet" in warned  # read with the secret key
    assert SANDBOX_SECRET_KEY not in page_text(at) and SANDBOX_API_KEY not in page_text(at)

    at.button(key="start_sync").click().run()
    assert not at.exception
    assert metrics(at)["Synthetic events sent"] == "30"
    assert "Sent 30 of 30 'Updated by amp_sync' events" in texts(at.warning)
    updated = [e for e in app_env.sandbox.store.events() if e["event_type"] == "Updated by amp_sync"]
    assert len(updated) == 30 and updated[0]["user_properties"]["plan"]

    app_env.sandbox.store.mark_inactive("Updated by amp_sync")
    edited = SMALL_SQL.replace("plan_id as plan", "'Gold' as plan")
    ws.save(SavedModel(f"{SYNC} model", DEMO_WAREHOUSE, edited), f"{SYNC} model")
    preview(at)
    assert metrics(at)["Synthetic events"] == "30"
    assert "'Updated by amp_sync' is marked inactive in Amplitude." in texts(at.success)
    assert "Before the first run" not in texts(at.warning)


def test_a_group_sync_previews_and_runs_into_groups(app_env: AppEnv) -> None:
    sql = "select company, count(*) as seats from users where company like 'Harbor%' group by company"
    mappings = (Mapping_("seats", "seats", Operation.SET),)
    save_other_sync(app_env, SyncObject.GROUP, "company", sql, mappings, SyncOptions(group_type="company"))
    at = preview(open_page("app_pages/preview.py"))
    assert "groups of type **company**" in texts(at.caption)
    new = int(metrics(at)["New"])
    assert new >= 1 and "A run sends" in texts(at.caption) and "groups (new and changed)" in texts(at.caption)
    assert list(table(at, "Property", "Groups")["Groups"]) == [new]
    payload = json.loads(at.code[0].value)
    assert payload["group_type"] == "company" and "seats" in payload["group_properties"]["$set"]
    assert "Group Identify API" in texts(at.caption)
    at.button(key="start_sync").click().run()
    assert not at.exception
    groups = app_env.sandbox.store.groups()
    assert len(groups) == new and {g["group_type"] for g in groups} == {"company"}


OLD_KEY, NEW_KEY = "old-project-key-0001", "new-project-key-0002"


def test_a_new_key_of_the_same_project_is_rekeyed_from_the_preview(app_env: AppEnv) -> None:
    with Sandbox(api_keys={OLD_KEY: None, NEW_KEY: None}) as project:
        ws = save_sync(app_env, sql=SMALL_SQL, mappings=MAPPINGS[1:2])
        ws.save(
            Destination(SANDBOX_DESTINATION, Secret(OLD_KEY), None, Region.US, project.url),
            SANDBOX_DESTINATION,
        )
        assert runner.run(ws.sync_config(SYNC), app_env.home).sent == 30
        ws.save(
            Destination(SANDBOX_DESTINATION, Secret(NEW_KEY), None, Region.US, project.url),
            SANDBOX_DESTINATION,
        )

        at = preview(open_page("app_pages/preview.py"))
        assert metrics(at)["New"] == "30"
        assert "`amp-sync rekey FILE`" in texts(at.warning)
        at.button(key="preview_rekey").click().run()
        assert not at.exception
        assert texts(at.success).startswith(f"Kept the state of '{SANDBOX_DESTINATION}'")
        assert (metrics(at)["New"], metrics(at)["Unchanged"]) == ("0", "30")  # previewed again
        assert "preview_rekey" not in keys(at.button) and "rekey" not in texts(at.warning)
        assert OLD_KEY not in page_text(at) and NEW_KEY not in page_text(at)


def lose_answers(env: AppEnv, fault: Faults, days: float = 0) -> tuple[Workspace, int]:
    """An event sync whose first run left every batch in doubt, first sent `days` ago."""
    total = event_count(env, EVENTS_SQL)
    ws = save_other_sync(env, SyncObject.EVENT, "user_id", EVENTS_SQL, (), EVENT_OPTIONS)
    env.sandbox.set_faults(fault)
    fast = RunOptions(sleep=lambda s: None, policy=RetryPolicy(attempts=1))
    assert runner.run(ws.sync_config(SYNC), env.home, fast).in_doubt == total
    env.sandbox.set_faults(Faults())
    db = sqlite3.connect(state_path(env.home, SYNC))
    db.execute("UPDATE outbox SET sent_at = ?", (time.time() - days * 86_400,))
    db.commit()
    db.close()
    return ws, total


def test_updates_in_doubt_are_counted_and_resent_first(app_env: AppEnv) -> None:
    _, total = lose_answers(app_env, Faults(ingest_then_500=1.0))
    at = preview(open_page("app_pages/preview.py"))
    assert metrics(at)["In doubt"] == f"{total:,}" and metrics(at)["Events to send"] == "0"
    assert "the run resends them first" in texts(at.warning)
    assert "preview_stale_resend" not in keys(at.button)  # not stale: resent without asking
    at.button(key="start_sync").click().run()
    assert not at.exception
    assert f"Resent {total:,} updates left in doubt by an earlier run" in notes(at)
    assert len(app_env.sandbox.store.events()) == total  # de-duplicated by insert_id
    preview(at)
    assert "In doubt" not in metrics(at) and metrics(at)["Already sent"] == f"{total:,}"


@pytest.mark.parametrize(
    ("fault", "button", "chosen"),
    [
        (Faults(ingest_then_500=1.0), "preview_stale_delivered", "takes the updates in doubt"),
        (Faults(error_500=1.0), "preview_stale_resend", "resends the updates in doubt"),
    ],
)
def test_stale_updates_wait_for_the_users_word(app_env: AppEnv, fault, button, chosen) -> None:
    _, total = lose_answers(app_env, fault, days=8)
    before = len(app_env.sandbox.store.requests())
    at = preview(open_page("app_pages/preview.py"))
    assert "In doubt" not in metrics(at)
    assert f"{total:,} updates in doubt for over 7 days" in texts(at.markdown)
    assert "older than 7 days" in texts(at.warning)

    at.button(key=button).click().run()
    assert not at.exception
    assert f"The run {chosen} for over 7 days" in texts(at.info)
    if button == "preview_stale_resend":
        assert metrics(at)["In doubt"] == f"{total:,}"  # resent first by the run
    else:
        assert "In doubt" not in metrics(at)  # taken as delivered: nothing is in doubt any more
        assert f"{total:,} updates in doubt for over 7 days are taken as delivered" in notes(at)
    assert "preview_stale_hold" in keys(at.button)
    assert at.session_state["preview_reports"][SYNC][2] is not Stale.HOLD
    assert len(app_env.sandbox.store.requests()) == before  # a preview sends nothing

    at.button(key="start_sync").click().run()
    assert not at.exception
    assert "Last run" in texts(at.subheader)
    assert len(app_env.sandbox.store.events()) == total  # there exactly once, whichever the case
    if button == "preview_stale_delivered":
        assert len(app_env.sandbox.store.requests()) == before  # taken as delivered: nothing resent
    preview(at)
    assert "In doubt" not in metrics(at) and metrics(at)["Already sent"] == f"{total:,}"
    assert "preview_stale_delivered" not in keys(at.button)


def test_leave_stale_updates_alone_again(app_env: AppEnv) -> None:
    lose_answers(app_env, Faults(ingest_then_500=1.0), days=8)
    at = preview(open_page("app_pages/preview.py"))
    at.button(key="preview_stale_resend").click().run()
    at.button(key="preview_stale_hold").click().run()
    assert not at.exception
    assert "preview_stale_resend" in keys(at.button) and "In doubt" not in metrics(at)


def test_a_saved_sync_writing_the_same_property_is_named_before_either_ran(app_env: AppEnv) -> None:
    ws = save_sync(app_env, sql=SMALL_SQL, mappings=MAPPINGS[1:2])
    mine = ws.get(SavedSync, SYNC)
    ws.save(replace(mine, name="plans-too"))
    at = preview(open_page("app_pages/preview.py"))
    prop = mine.mappings[0].property
    assert f"The sync 'plans-too' also writes {prop} at this destination" in notes(at)


def test_arriving_from_the_syncs_page_shows_the_preview_already_computed(app_env: AppEnv) -> None:
    save_sync(app_env, sql=SMALL_SQL, mappings=MAPPINGS[1:2])
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.session_state["selected_sync"] = SYNC
    at.session_state["preview_asked"] = SYNC  # what the Syncs page's Preview button leaves
    at.switch_page("app_pages/preview.py").run()
    assert not at.exception
    assert metrics(at)["New"] == "30"  # computed on arrival, no Preview click
    at.run()
    assert metrics(at)["New"] == "30" and "preview_asked" not in at.session_state
