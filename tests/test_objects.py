"""Group and event syncs, the synthetic "updated" event and reverting a run, end to end.

Each test syncs a real SQLite warehouse into the sandbox over loopback HTTP and checks what a user
would check in Amplitude: group properties, the events and their times, one synthetic event per
updated user, and profiles back to their earlier values after a revert.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import Warehouse

from amp_sync.amplitude import RetryPolicy
from amp_sync.cli import main
from amp_sync.config import load_config
from amp_sync.credentials import Activity, event_activity
from amp_sync.errors import AmpSyncError
from amp_sync.revert import NothingToRevert
from amp_sync.runner import RunOptions, preview, preview_revert, revert, run
from amp_sync.sandbox import SANDBOX_SECRET_KEY, Faults, Sandbox
from amp_sync.state import history

FAST = RunOptions(policy=RetryPolicy(attempts=12, base_delay=0.001, max_delay=0.01, throttle_delay=0.01))


def props(sandbox: Sandbox, user_id: str) -> dict | None:
    profile = sandbox.store.profile(user_id=user_id)
    return None if profile is None else profile["user_properties"]


def paths(sandbox: Sandbox) -> list[str]:
    return [r["path"] for r in sandbox.store.requests()]


# --- groups ---------------------------------------------------------------------------------

COMPANIES = [
    {"company": "acme", "plan": "pro", "seats": 10},
    {"company": "globex", "plan": "free", "seats": 2},
    {"company": "initech", "plan": "pro", "seats": None},
]


def make_companies(wh: Warehouse, rows: list[dict] = COMPANIES) -> None:
    wh.execute(
        "create table companies (company text, plan text, seats integer)",
        "insert into companies values (:company, :plan, :seats)",
        rows=rows,
    )


def group_sync(write_sync, wh: Warehouse, sandbox: Sandbox, seats_op: str = "$set") -> Path:
    return write_sync(
        wh.url, sandbox.url, sql="select company, plan, seats from companies",
        mappings=(("plan", "plan", "$set"), ("seats", "seats", seats_op)),
        name="companies", object_="group", key="company", extra_sync='group_type = "company"',
    )  # fmt: skip


def groups(sandbox: Sandbox) -> dict[str, dict]:
    return {
        g["group_value"]: g["group_properties"]
        for g in sandbox.store.groups()
        if g["group_type"] == "company"
    }


def test_a_group_sync_updates_group_properties_and_then_only_what_changed(
    sqlite_warehouse, sandbox, home, write_sync
):
    make_companies(sqlite_warehouse)
    config = load_config(group_sync(write_sync, sqlite_warehouse, sandbox))

    first = run(config, home)
    assert first.ok and first.sent == 3
    # Short group values are fine: the 5-character minimum is for user and device ids.
    assert groups(sandbox) == {
        "acme": {"plan": "pro", "seats": 10}, "globex": {"plan": "free", "seats": 2},
        "initech": {"plan": "pro"},
    }  # fmt: skip
    assert set(paths(sandbox)) == {"/groupidentify"}

    sent_before = len(paths(sandbox))
    assert run(config, home).sent == 0 and len(paths(sandbox)) == sent_before
    sqlite_warehouse.execute("update companies set plan = 'enterprise', seats = null where company = 'acme'")
    report = preview(config, home)
    assert (report.plan.changed, report.plan.unchanged) == (1, 2)
    assert {(c.property, c.before, c.after) for c in report.sample} == {
        ("plan", "pro", "enterprise"),
        ("seats", 10, None),
    }
    assert report.plan.payloads["acme"] == {
        "group_type": "company", "group_value": "acme",
        "group_properties": {"$set": {"plan": "enterprise"}, "$unset": {"seats": "-"}},
    }  # fmt: skip
    assert run(config, home).sent == 1
    assert groups(sandbox)["acme"] == {"plan": "enterprise"}


def test_a_group_running_total_goes_as_deduplicated_groupidentify_events(
    sqlite_warehouse, sandbox, home, write_sync
):
    make_companies(sqlite_warehouse)
    config = load_config(group_sync(write_sync, sqlite_warehouse, sandbox, seats_op="$add"))
    sandbox.set_faults(Faults(ingest_then_500=0.5, seed=3))  # applied, then "failed": resent

    assert run(config, home, FAST).ok
    sqlite_warehouse.execute("update companies set seats = seats + 5")
    assert run(config, home, FAST).ok

    assert groups(sandbox)["acme"]["seats"] == 15 and groups(sandbox)["globex"]["seats"] == 7
    # initech has no seats, so its plan alone went through /groupidentify.
    assert "/2/httpapi" in paths(sandbox)


def test_group_values_are_checked_as_group_values(sqlite_warehouse, sandbox, home, write_sync):
    make_companies(sqlite_warehouse, [*COMPANIES, {"company": "  ", "plan": "pro", "seats": 1}])
    report = run(load_config(group_sync(write_sync, sqlite_warehouse, sandbox)), home)
    assert [(r.key, r.reason) for r in report.rejections] == [("  ", "blank group value")]


# --- events ---------------------------------------------------------------------------------

EVENTS = [
    dict(zip(("event_id", "user_id", "name", "at", "amount"), row, strict=True))
    for row in (
        ("evt-0001", "alice-001", "Signed Up", "2025-01-05 10:00:00", None),
        ("evt-0002", "alice-001", "Paid", "2025-02-01 09:30:00", 49.5),
        ("evt-0003", "bobby-002", "Paid", "2025-03-15 18:45:10", 9),
        ("evt-0004", "abc", "Paid", "2025-03-16 00:00:00", 1),  # too short an id
        ("evt-0005", "carol-003", "Paid", None, 1),  # no time
    )
]


def make_events(wh: Warehouse, rows: list[dict] = EVENTS) -> None:
    wh.execute(
        "create table events (event_id text, user_id text, name text, at text, amount real)",
        "insert into events values (:event_id, :user_id, :name, :at, :amount)",
        rows=rows,
    )


def event_sync(
    write_sync, wh: Warehouse, sandbox: Sandbox, *, insert_ids: bool = True, extra: str = ""
) -> Path:
    keys = ['event_type_column = "name"', 'time_column = "at"', extra]
    if insert_ids:
        keys.append('insert_id_column = "event_id"')
    return write_sync(
        wh.url, sandbox.url, sql="select event_id, user_id, name, at, amount from events",
        mappings=(("amount", "amount", "$set"),), name="events", object_="event", behavior=None,
        extra_sync="\n".join(keys),
    )  # fmt: skip


def test_an_event_sync_backfills_each_row_once_with_its_time_and_properties(
    sqlite_warehouse, sandbox, home, write_sync
):
    make_events(sqlite_warehouse)
    config = load_config(event_sync(write_sync, sqlite_warehouse, sandbox))

    report = preview(config, home)
    assert (report.plan.new, report.plan.unchanged) == (3, 0)
    assert sorted((r.key, r.reason) for r in report.rejections) == [
        ("abc", "user id 'abc' is shorter than 5 characters"), ("carol-003", "missing event time"),
    ]  # fmt: skip
    assert report.plan.first_time == 1736071200000 and report.plan.last_time == 1742064310000
    assert report.plan.payloads["evt-0002"] == {
        "user_id": "alice-001", "event_type": "Paid", "time": 1738402200000,
        "event_properties": {"amount": 49.5}, "$skip_user_properties_sync": True, "insert_id": "evt-0002",
    }  # fmt: skip

    assert run(config, home).sent == 3
    events = sandbox.store.events()
    assert sorted((e["insert_id"], e["event_type"], e["time"]) for e in events) == [
        ("evt-0001", "Signed Up", 1736071200000), ("evt-0002", "Paid", 1738402200000),
        ("evt-0003", "Paid", 1742064310000),
    ]  # fmt: skip
    assert set(paths(sandbox)) == {"/batch"}
    assert props(sandbox, "alice-001") == {}  # the backfill left user properties alone

    # A rerun sends nothing; with an insert_id column, an edited row is never sent again either.
    sqlite_warehouse.execute("update events set amount = 99 where event_id = 'evt-0002'")
    sent_before = len(paths(sandbox))
    again = run(config, home)
    assert (again.sent, again.plan.unchanged, len(paths(sandbox))) == (0, 3, sent_before)


def test_without_an_insert_id_column_an_edited_row_arrives_as_a_new_event(
    sqlite_warehouse, sandbox, home, write_sync, capsys
):
    make_events(sqlite_warehouse, EVENTS[:3])
    path = event_sync(write_sync, sqlite_warehouse, sandbox, insert_ids=False)
    assert main(["run", str(path)]) == 0
    assert main(["run", str(path)]) == 0
    sqlite_warehouse.execute("update events set amount = 99 where event_id = 'evt-0002'")
    assert main(["preview", str(path)]) == 0
    out = capsys.readouterr().out
    assert "without insert_id_column, a row edited after it was sent arrives as a new event" in out
    assert "new 1  changed 0  unchanged 2" in out
    assert main(["run", str(path)]) == 0
    amounts = sorted(
        e["event_properties"]["amount"] for e in sandbox.store.events() if e["event_type"] == "Paid"
    )
    assert amounts == [9, 49.5, 99]


def test_event_preview_says_how_far_back_events_go_and_what_they_cost(
    sqlite_warehouse, sandbox, home, write_sync, capsys
):
    make_events(sqlite_warehouse, EVENTS[:3])
    assert main(["preview", str(event_sync(write_sync, sqlite_warehouse, sandbox))]) == 0
    out = capsys.readouterr().out
    assert "would send 3 events; nothing was sent" in out
    assert "events from 2025-01-05 10:00 UTC to 2025-03-15 18:45 UTC" in out
    assert "backfilled events count toward your event volume and can take up to 48 hours to appear" in out


def test_events_keyed_on_device_ids_with_a_constant_type_and_user_properties_sync_on(
    sqlite_warehouse, sandbox, home, write_sync
):
    sqlite_warehouse.execute(
        "create table taps (device text, owner text, at timestamp, screen text)",
        "insert into taps values ('device-0001', 'alice-001', '2025-06-01 12:00:00', 'home'), "
        "('device-0002', null, '2025-06-02 12:00:00', 'cart')",
    )
    path = write_sync(
        sqlite_warehouse.url, sandbox.url, sql="select device, owner, at, screen from taps",
        mappings=(("screen", "screen", "$set"),), name="taps", object_="event", key="device",
        behavior="insert",
        extra_sync='id_type = "device"\nuser_key = "owner"\nevent_type = "Tapped"\ntime_column = "at"\n'
        "skip_user_properties_sync = false",
    )  # fmt: skip
    assert run(load_config(path), home).sent == 2
    found = {e["device_id"]: e for e in sandbox.store.events()}
    assert found["device-0001"]["user_id"] == "alice-001" and "user_id" not in found["device-0002"]
    assert {e["event_type"] for e in found.values()} == {"Tapped"}
    assert all("$skip_user_properties_sync" not in e for e in found.values())


def test_events_arrive_exactly_once_under_failures_crashes_and_resends(
    sqlite_warehouse, home, write_sync, tmp_path
):
    rows = [
        {"event_id": f"evt-{i:05d}", "user_id": f"user-{i % 97:04d}", "name": "Paid",
         "at": f"2025-01-{1 + i % 28:02d} 10:{i % 60:02d}:00", "amount": i}
        for i in range(6000)
    ]  # fmt: skip
    make_events(sqlite_warehouse, rows)
    faults = Faults(throttle=0.1, error_500=0.1, error_503=0.1, ingest_then_500=0.2, drop=0.1, seed=11)
    with Sandbox(faults=faults) as sandbox:
        path = event_sync(write_sync, sqlite_warehouse, sandbox, insert_ids=False)
        # A run killed mid-way: what Amplitude acknowledged is saved, the rest is sent next time.
        env = {**os.environ, "AMP_SYNC_HOME": str(home)}
        child = subprocess.Popen([sys.executable, "-m", "amp_sync", "run", str(path)], env=env)
        deadline = time.monotonic() + 60
        while not sandbox.store.events() and time.monotonic() < deadline:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        report = run(load_config(path), home, FAST)
        assert report.ok, report.failure_reasons
        sandbox.set_faults(Faults())
        assert run(load_config(path), home).sent == 0

        events = sandbox.store.events()
        applied = [
            r for r in sandbox.store.requests() if r["status"] == 200 or r.get("fault") == "ingest_then_500"
        ]
        received = sum(r["items"] for r in applied if r["path"] == "/batch")
    assert len(events) == 6000 == len({e["insert_id"] for e in events})
    assert sorted(e["event_properties"]["amount"] for e in events) == list(range(6000))
    assert received > 6000  # some events did arrive twice, and Amplitude's de-duplication dropped them


def test_an_event_sync_cannot_be_reverted(sqlite_warehouse, sandbox, home, write_sync, capsys):
    make_events(sqlite_warehouse, EVENTS[:3])
    path = event_sync(write_sync, sqlite_warehouse, sandbox)
    assert main(["run", str(path)]) == 0
    assert main(["revert", str(path)]) == 2
    assert "an event sync cannot be reverted: Amplitude's events are immutable" in capsys.readouterr().err


# --- the synthetic "updated" event ----------------------------------------------------------

USERS = [
    {"user_id": "alice-001", "plan": "pro", "ltv": 10},
    {"user_id": "bobby-002", "plan": "free", "ltv": 0},
    {"user_id": "carol-003", "plan": "starter", "ltv": None},
]


def make_users(wh: Warehouse, rows: list[dict] = USERS) -> None:
    wh.execute(
        "create table users (user_id text, plan text, ltv real)",
        "insert into users values (:user_id, :plan, :ltv)",
        rows=rows,
    )


def synthetic_sync(write_sync, wh: Warehouse, sandbox: Sandbox, ltv_op: str = "$set") -> Path:
    return write_sync(
        wh.url, sandbox.url, mappings=(("plan", "plan", "$set"), ("ltv", "ltv", ltv_op)),
        extra_sync='synthetic_event = "Updated by amp_sync"',
    )  # fmt: skip


def synthetic(sandbox: Sandbox) -> list[dict]:
    return [e for e in sandbox.store.events() if e["event_type"] == "Updated by amp_sync"]


def test_one_synthetic_event_follows_each_updated_user_carrying_the_values_set(
    sqlite_warehouse, sandbox, home, write_sync
):
    make_users(sqlite_warehouse)
    config = load_config(synthetic_sync(write_sync, sqlite_warehouse, sandbox))
    assert preview(config, home).plan.synthetic == 3

    report = run(config, home)
    assert report.ok and (report.sent, report.synthetic_sent) == (3, 3)
    assert {e["user_id"]: e.get("user_properties") for e in synthetic(sandbox)} == {
        "alice-001": {"plan": "pro", "ltv": 10}, "bobby-002": {"plan": "free", "ltv": 0},
        "carol-003": {"plan": "starter"},
    }  # fmt: skip
    assert len(synthetic(sandbox)) == 3
    # The profile update goes first; the event follows it once Amplitude acknowledged it.
    firsts = {}
    for i, path in enumerate(paths(sandbox)):
        firsts.setdefault(path, i)
    assert set(firsts) == {"/identify", "/2/httpapi"} and firsts["/identify"] == 0

    assert run(config, home).synthetic_sent == 0 and len(synthetic(sandbox)) == 3
    sqlite_warehouse.execute("update users set plan = 'enterprise' where user_id = 'bobby-002'")
    report = run(config, home)
    assert (report.plan.synthetic, report.synthetic_sent) == (1, 1)
    assert synthetic(sandbox)[-1]["user_properties"] == {"plan": "enterprise"}


def test_no_synthetic_event_for_a_user_whose_update_was_not_acknowledged(
    sqlite_warehouse, home, write_sync, capsys
):
    make_users(sqlite_warehouse)
    with Sandbox(faults=Faults(error_503=1.0)) as sandbox:
        path = synthetic_sync(write_sync, sqlite_warehouse, sandbox)
        assert main(["run", str(path), "--attempts", "1"]) == 1
        assert synthetic(sandbox) == [] and sandbox.store.profiles() == []
    assert "3 rows were not delivered" in capsys.readouterr().err


def test_a_synthetic_event_failure_is_counted_and_words_say_profiles_are_updated(
    sqlite_warehouse, home, write_sync, capsys, monkeypatch
):
    make_users(sqlite_warehouse)
    from amp_sync import amplitude

    with Sandbox() as sandbox:
        path = synthetic_sync(write_sync, sqlite_warehouse, sandbox)
        # HTTP V2 refuses everything (a 503 each time) while /identify works.
        real_post = amplitude.IdentifyClient.post

        def post(self, items):
            if self.channel is amplitude.Channel.SYNTHETIC:
                return amplitude.Answer(amplitude.Outcome.RETRY, "server error 503")
            return real_post(self, items)

        monkeypatch.setattr(amplitude.IdentifyClient, "post", post)
        assert main(["run", str(path), "--attempts", "1"]) == 1
        assert len(sandbox.store.profiles()) == 3 and synthetic(sandbox) == []
    err = capsys.readouterr().err
    assert (
        "3 synthetic events not delivered "
        "(synthetic event not delivered: gave up after 1 try: server error 503)" in err
    )
    assert "their profiles were updated" in err
    record = history(home, "ltv-to-amplitude")[0]
    assert record.status == "failed" and record.counts["synthetic_failed"] == 3


def test_the_synthetic_event_activity_is_read_from_the_event_list(
    sqlite_warehouse, sandbox, home, write_sync
):
    make_users(sqlite_warehouse)
    config = load_config(synthetic_sync(write_sync, sqlite_warehouse, sandbox))
    without_secret = event_activity(config.destination, "Updated by amp_sync")
    assert without_secret.activity is Activity.UNCHECKED and "secret key" in without_secret.message

    from dataclasses import replace

    from amp_sync.secret import Secret

    destination = replace(config.destination, secret_key=Secret(SANDBOX_SECRET_KEY))
    assert event_activity(destination, "Updated by amp_sync").activity is Activity.NOT_SEEN
    run(config, home)
    found = event_activity(destination, "Updated by amp_sync")
    assert found.activity is Activity.ACTIVE and "Edit Activity" in found.message
    sandbox.store.mark_inactive("Updated by amp_sync")
    assert event_activity(destination, "Updated by amp_sync").activity is Activity.INACTIVE
    wrong = replace(destination, secret_key=Secret("not-the-secret"))
    assert event_activity(wrong, "Updated by amp_sync").activity is Activity.UNKNOWN


# --- revert ---------------------------------------------------------------------------------


def test_revert_restores_what_the_last_run_changed_for_exactly_the_rows_it_touched(
    sqlite_warehouse, sandbox, home, write_sync, capsys
):
    make_users(sqlite_warehouse)
    path = synthetic_sync(write_sync, sqlite_warehouse, sandbox, ltv_op="$add")
    config = load_config(path)
    assert main(["revert", str(path), "--preview"]) == 2
    assert (
        "nothing to revert: no run of this sync has changed anything in Amplitude yet"
        in capsys.readouterr().err
    )

    assert run(config, home).ok  # run 1
    sqlite_warehouse.execute(
        "update users set plan = 'enterprise', ltv = 15 where user_id = 'alice-001'",
        "update users set ltv = 7 where user_id = 'carol-003'",
        "insert into users values ('dave-0004', 'pro', 3)",
    )
    assert run(config, home).sent == 3  # run 2: alice and carol changed, dave is new
    assert props(sandbox, "alice-001") == {"plan": "enterprise", "ltv": 15}
    before_revert = {u: props(sandbox, u) for u in ("bobby-002",)}

    assert main(["revert", str(path), "--preview", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["changed"], shown["reverts_run"], shown["sent"]) == (3, 2, 0)
    report = preview_revert(config, home)
    assert sorted((c.key, c.property, c.op, c.before, c.after) for c in report.sample) == [
        ("alice-001", "ltv", "$add", 15, 10), ("alice-001", "plan", "$set", "enterprise", "pro"),
        ("carol-003", "ltv", "$set", 7, None), ("dave-0004", "ltv", "$set", 3, None),
        ("dave-0004", "plan", "$set", "pro", None),
    ]  # fmt: skip

    assert main(["revert", str(path)]) == 0
    assert "reverting run #2, which changed 3 keys" in capsys.readouterr().out
    assert props(sandbox, "alice-001") == {"plan": "pro", "ltv": 10}  # $add sent -5
    assert props(sandbox, "carol-003") == {"plan": "starter"}
    assert props(sandbox, "dave-0004") == {}
    assert {u: props(sandbox, u) for u in ("bobby-002",)} == before_revert
    record = history(home, "ltv-to-amplitude")[0]
    assert (record.kind, record.status, record.message, record.counts["sent"]) == (
        "revert",
        "ok",
        "reverted run #2",
        3,
    )
    # The restored users show it at once: one synthetic event each.
    assert sorted(e["user_id"] for e in synthetic(sandbox)[-3:]) == ["alice-001", "carol-003", "dave-0004"]

    # The warehouse still says what run 2 sent, so the next run sends it again ...
    again = preview(config, home)
    assert (again.plan.changed, again.plan.new) == (3, 0)
    # ... and reverting the revert re-applies it too.
    assert revert(config, home).sent == 3
    assert props(sandbox, "alice-001") == {"plan": "enterprise", "ltv": 15}
    assert props(sandbox, "dave-0004") == {"plan": "pro", "ltv": 3}
    assert run(config, home).sent == 0


def test_revert_undoes_list_operations_and_leaves_set_once_values(
    sqlite_warehouse, sandbox, home, write_sync
):
    sqlite_warehouse.execute(
        "create table users (user_id text, tag text, first_plan text)",
        "insert into users values ('alice-001', 'beta', 'free')",
    )
    path = write_sync(
        sqlite_warehouse.url, sandbox.url, sql="select user_id, tag, first_plan from users",
        mappings=(("tag", "tags", "$append"), ("first_plan", "first_plan", "$setOnce")),
    )  # fmt: skip
    config = load_config(path)
    run(config, home)
    sqlite_warehouse.execute("update users set tag = 'vip', first_plan = 'pro'")
    run(config, home)
    assert props(sandbox, "alice-001") == {"tags": ["beta", "vip"], "first_plan": "free"}
    report = revert(config, home)
    assert report.sent == 1
    assert props(sandbox, "alice-001") == {"tags": ["beta"], "first_plan": "free"}
    revert(config, home)  # undoing the revert puts the tag back, once
    assert props(sandbox, "alice-001") == {"tags": ["beta", "vip"], "first_plan": "free"}
    revert(config, home)  # and undoing that takes it out again
    assert props(sandbox, "alice-001") == {"tags": ["beta"], "first_plan": "free"}


def test_a_second_run_of_any_kind_is_refused_while_a_revert_holds_the_lock(
    sqlite_warehouse, sandbox, home, write_sync
):
    from amp_sync.state import run_lock

    make_users(sqlite_warehouse)
    config = load_config(synthetic_sync(write_sync, sqlite_warehouse, sandbox))
    run(config, home)
    with run_lock(home, config.sync.name), pytest.raises(AmpSyncError, match="another run"):
        revert(config, home)


def test_nothing_to_revert_without_a_state(sqlite_warehouse, sandbox, home, write_sync):
    make_users(sqlite_warehouse)
    config = load_config(synthetic_sync(write_sync, sqlite_warehouse, sandbox))
    with pytest.raises(NothingToRevert):
        preview_revert(config, home)
    with pytest.raises(NothingToRevert):
        revert(config, home)
    assert history(home, config.sync.name) == []


def test_identical_event_rows_are_one_event_sent_once_and_each_copy_is_reported(
    sqlite_warehouse, sandbox, home, write_sync
):
    make_events(sqlite_warehouse, [*EVENTS[:3], EVENTS[1], EVENTS[1]])
    config = load_config(event_sync(write_sync, sqlite_warehouse, sandbox, insert_ids=False))
    report = run(config, home)
    assert (report.plan.new, report.sent) == (3, 3)
    assert [r.reason for r in report.rejections] == [
        "the same user, event type, time and properties as an earlier row: one event, sent once "
        "(add an insert_id_column if these are distinct events)"
    ] * 2
    assert sorted(e["event_type"] for e in sandbox.store.events()) == ["Paid", "Paid", "Signed Up"]
    assert run(config, home).sent == 0


def test_a_repeated_insert_id_column_value_sends_none_of_its_rows(
    sqlite_warehouse, sandbox, home, write_sync
):
    make_events(sqlite_warehouse, [*EVENTS[:3], {**EVENTS[2], "amount": 10}])
    report = run(load_config(event_sync(write_sync, sqlite_warehouse, sandbox)), home)
    assert (report.plan.new, report.sent) == (2, 2)
    assert [(r.key, r.reason) for r in report.rejections] == [
        ("evt-0003", "the insert id appears 2 times in the model; none of these rows is sent")
    ] * 2


def test_output_piped_into_a_reader_that_stops_early_ends_quietly(
    sqlite_warehouse, sandbox, home, write_sync
):
    rows = [{**EVENTS[1], "event_id": f"e-{i}", "user_id": "x"} for i in range(3000)]  # 3,000 rejected
    make_events(sqlite_warehouse, rows)
    path = event_sync(write_sync, sqlite_warehouse, sandbox)
    env = {**os.environ, "AMP_SYNC_HOME": str(home)}
    # About 200 kB of JSON, more than a pipe holds: the writer meets the closed pipe.
    command = f"{sys.executable} -m amp_sync preview {path} --json | head -c 100"
    done = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith('{"new": 0')
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-01-05 10:00:00", 1736071200000),
        ("2025-01-05T10:00:00+01:00", 1736067600000),
        ("2025-01-05", 1736035200000),
        (1736071200123, 1736071200123),
        (1736071200123.0, 1736071200123),
        (None, "missing event time"),
        ("yesterday", "event time 'yesterday' is not an ISO-8601 date or timestamp"),
        (
            1736071200,
            "event time 1736071200 looks like seconds since the epoch; Amplitude takes milliseconds",
        ),
        (1.5, "event time 1.5 is not a whole number of milliseconds"),
        (-5, "event time is before 1970"),
        (True, "event time must be a timestamp, a date or milliseconds, not bool"),
    ],
)
def test_event_times_in_milliseconds_or_words(value, expected):
    import datetime as dt

    from amp_sync.events import event_time
    from amp_sync.values import Invalid

    found = event_time(value)
    if isinstance(expected, int):
        assert found == expected
    else:
        assert isinstance(found, Invalid) and found.reason.startswith(expected)
    assert event_time(dt.date(2025, 1, 5)) == 1736035200000
    assert event_time(dt.datetime(2025, 1, 5, 10, 0, 0, 999)) == 1736071200000
