"""Whole syncs through the CLI against real warehouses and the sandbox over loopback HTTP."""

from __future__ import annotations

import json

import pytest
from scripted import DROP, Scripted, serve
from support import Warehouse, open_state

from amp_sync.cli import main
from amp_sync.config import load_config
from amp_sync.errors import WarehouseError
from amp_sync.runner import RunOptions, run

USERS = [
    {"user_id": "alice-001", "plan": "pro", "ltv": 120.5},
    {"user_id": "bobby-002", "plan": "free", "ltv": 0},
    {"user_id": "carol-003", "plan": "starter", "ltv": None},
    {"user_id": "abc", "plan": "pro", "ltv": 1},          # too short: rejected
    {"user_id": "undefined", "plan": "pro", "ltv": 1},    # junk id: rejected
    {"user_id": "dave-0004", "plan": "pro", "ltv": 5},    # duplicate: both rejected
    {"user_id": "dave-0004", "plan": "free", "ltv": 6},
]  # fmt: skip


def make_users(wh: Warehouse, rows: list[dict] = USERS) -> None:
    wh.execute(
        "create table users (user_id varchar(64), plan varchar(32), ltv numeric(12,2))",
        "insert into users (user_id, plan, ltv) values (:user_id, :plan, :ltv)",
        rows=rows,
    )


def cli(capsys, *args: str) -> tuple[int, dict | str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    if "--json" in args:
        assert out, f"no JSON on stdout; stderr: {err}"
        return code, json.loads(out), err
    return code, out, err


def props(sandbox, user_id: str) -> dict | None:
    profile = sandbox.store.profile(user_id=user_id)
    return None if profile is None else profile["user_properties"]


def identify_items(sandbox) -> int:
    return sum(r["items"] for r in sandbox.store.requests() if r["path"] == "/identify")


def test_first_run_syncs_the_model_and_the_second_sends_nothing(warehouse, sandbox, home, write_sync, capsys):
    make_users(warehouse)
    path = write_sync(warehouse.url, sandbox.url)

    code, preview, _ = cli(capsys, "preview", str(path), "--json")
    assert code == 0 and not sandbox.store.requests()
    assert not (home / "state").exists() or not list((home / "state").glob("*.sqlite"))
    assert preview == {
        "new": 3, "changed": 0, "unchanged": 0, "removed": 0, "rejected": 4, "sent": 0, "failed": 0,
        "in_doubt": 0, "held": 0, "stale": 0, "rejections": preview["rejections"],
    }  # fmt: skip
    assert sorted(r["key"] for r in preview["rejections"]) == [
        "abc",
        "dave-0004",
        "dave-0004",
        "undefined",
    ]

    code, report, _ = cli(capsys, "run", str(path), "--json")
    assert code == 0 and (report["sent"], report["failed"], report["rejected"]) == (3, 0, 4)
    assert props(sandbox, "alice-001") == {"plan": "pro", "lifetime_value": 120.5}
    assert props(sandbox, "bobby-002") == {"plan": "free", "lifetime_value": 0}
    assert props(sandbox, "carol-003") == {"plan": "starter"}
    assert props(sandbox, "dave-0004") is None and props(sandbox, "abc") is None

    before = len(sandbox.store.requests())
    code, again, _ = cli(capsys, "run", str(path), "--json")
    assert code == 0 and (again["unchanged"], again["sent"], again["rejected"]) == (3, 0, 4)
    assert len(sandbox.store.requests()) == before  # zero requests


def test_only_changed_properties_are_sent_and_null_unsets(warehouse, sandbox, home, write_sync, capsys):
    make_users(warehouse)
    path = write_sync(warehouse.url, sandbox.url)
    assert cli(capsys, "run", str(path), "--json")[0] == 0
    warehouse.execute(
        "update users set plan = 'enterprise' where user_id = 'alice-001'",
        "update users set ltv = null where user_id = 'bobby-002'",
        "delete from users where user_id = 'carol-003'",
    )
    sandbox.store.reset()
    code, report, _ = cli(capsys, "run", str(path), "--json")
    assert code == 0
    assert (
        report["new"],
        report["changed"],
        report["unchanged"],
        report["removed"],
        report["sent"],
    ) == (0, 2, 0, 1, 2)
    # A reset sandbox shows exactly what the second run sent: only the changed properties.
    assert props(sandbox, "alice-001") == {"plan": "enterprise"}
    assert props(sandbox, "bobby-002") == {}
    assert props(sandbox, "carol-003") is None


def test_null_becomes_unset_on_the_profile(sqlite_warehouse, sandbox, home, write_sync, capsys):
    make_users(sqlite_warehouse)
    path = write_sync(sqlite_warehouse.url, sandbox.url)
    cli(capsys, "run", str(path))
    sqlite_warehouse.execute("update users set ltv = null where user_id = 'alice-001'")
    cli(capsys, "run", str(path))
    assert props(sandbox, "alice-001") == {"plan": "pro"}


def test_a_mapping_change_sends_that_property_for_every_row(
    sqlite_warehouse, sandbox, home, write_sync, capsys
):
    make_users(sqlite_warehouse)
    path = write_sync(sqlite_warehouse.url, sandbox.url)
    cli(capsys, "run", str(path))
    renamed = (("plan", "plan", "$set"), ("ltv", "ltv_usd", "$set"))
    path = write_sync(sqlite_warehouse.url, sandbox.url, mappings=renamed)
    sandbox.store.reset()
    code, report, _ = cli(capsys, "run", str(path), "--json")
    assert (code, report["changed"], report["sent"]) == (0, 3, 3)
    assert props(sandbox, "alice-001") == {"ltv_usd": 120.5}  # plan unchanged, not resent
    assert props(sandbox, "carol-003") == {}  # null new property: nothing to set
    assert identify_items(sandbox) == 3


def test_rows_that_failed_are_sent_on_the_next_run(sqlite_warehouse, sandbox, home, write_sync, capsys):
    make_users(sqlite_warehouse)
    down = write_sync(sqlite_warehouse.url, "http://127.0.0.1:9", filename="down.toml")
    config = load_config(down)
    report = run(config, home, RunOptions(concurrency=2, sleep=lambda s: None))
    assert (report.sent, report.failed) == (0, 3)
    assert "gave up after 8 tries" in next(iter(report.failure_reasons))

    path = write_sync(sqlite_warehouse.url, sandbox.url)
    code, again, _ = cli(capsys, "run", str(path), "--json")
    assert (code, again["new"], again["sent"], again["failed"]) == (0, 3, 3, 0)


def test_cli_exit_code_and_one_line_reason_when_rows_fail(sqlite_warehouse, home, write_sync, capsys):
    make_users(sqlite_warehouse)
    path = write_sync(sqlite_warehouse.url, "http://127.0.0.1:9")
    code, report, err = cli(capsys, "run", str(path), "--json", "--attempts", "1")
    assert code == 1 and report["failed"] == 3
    assert "3 rows were not delivered" in err and "run again" in err


def test_a_run_that_dies_midway_resumes_without_resending(sqlite_warehouse, sandbox, home, write_sync):
    rows = [{"user_id": f"user-{i:05d}", "plan": "pro", "ltv": i} for i in range(2500)]
    make_users(sqlite_warehouse, rows)
    config = load_config(write_sync(sqlite_warehouse.url, sandbox.url))

    def crash(progress):
        if progress.phase == "sending" and progress.sent >= 1000:
            raise KeyboardInterrupt  # the process dies after one acknowledged batch

    with pytest.raises(KeyboardInterrupt):
        run(config, home, RunOptions(concurrency=1), progress=crash)
    acknowledged = identify_items(sandbox)
    assert acknowledged == 1000
    store = open_state(home, config.sync.name)
    assert len(store.index()) == 1000  # the state claims exactly what was acknowledged
    assert (store.runs()[0].status, store.runs()[0].message) == ("error", "interrupted")
    store.close()

    report = run(config, home, RunOptions(concurrency=1))
    assert (report.plan.unchanged, report.plan.new, report.sent) == (1000, 1500, 1500)
    assert identify_items(sandbox) == 2500  # nothing acknowledged was sent twice
    assert len(sandbox.store.profiles()) == 2500


def test_failed_batches_are_not_committed_and_go_out_next_time(sqlite_warehouse, sandbox, home, write_sync):
    rows = [{"user_id": f"user-{i:05d}", "plan": "pro", "ltv": i} for i in range(2500)]
    make_users(sqlite_warehouse, rows)
    scripted = Scripted(script=[(200, "success"), DROP, DROP, (503, ""), (503, "")] + [(500, "")] * 20)
    server, url = serve(scripted)
    try:
        flaky = load_config(write_sync(sqlite_warehouse.url, url, filename="flaky.toml"))
        options = RunOptions(concurrency=1, sleep=lambda s: None)
        report = run(flaky, home, options)
    finally:
        server.shutdown()
    assert (report.sent, report.failed, report.in_doubt) == (1000, 1500, 1500)  # answers lost: in doubt
    store = open_state(home, flaky.sync.name, read_only=True)
    assert store is not None and len(store.digests()) == 1000  # only what was acknowledged
    store.close()
    good = load_config(write_sync(sqlite_warehouse.url, sandbox.url))
    report = run(good, home, RunOptions(concurrency=1))  # another destination: it starts afresh
    assert (report.plan.new, report.sent, report.failed, report.resent) == (2500, 2500, 0, 0)


def test_413_halves_the_batch(sqlite_warehouse, home, write_sync):
    rows = [{"user_id": f"user-{i:05d}", "plan": "pro", "ltv": i} for i in range(8)]
    make_users(sqlite_warehouse, rows)
    scripted = Scripted(script=[(413, '{"code":413,"error":"Payload too large"}')])
    server, url = serve(scripted)
    try:
        report = run(load_config(write_sync(sqlite_warehouse.url, url)), home, RunOptions(concurrency=1))
    finally:
        server.shutdown()
    sizes = [len(json.loads(r["form"]["identification"][0])) for r in scripted.received]
    assert sizes == [8, 4, 4] and report.sent == 8


def test_an_invalid_key_stops_the_run_without_showing_the_key(
    sqlite_warehouse, sandbox, home, write_sync, capsys
):
    make_users(sqlite_warehouse)
    secret = "wrong-key-0123456789abcdef"
    path = write_sync(sqlite_warehouse.url, sandbox.url, api_key=secret)
    code, out, err = cli(capsys, "run", str(path))
    assert code == 2 and "refused the API key" in err and "region" in err
    assert secret not in out + err
    assert sandbox.store.profiles() == []


def test_device_sync_links_devices_to_their_user(sqlite_warehouse, sandbox, home, write_sync, capsys):
    sqlite_warehouse.execute(
        "create table devices (device_id text, uid text, platform text)",
        "insert into devices values (:d, :u, :p)",
        rows=[
            {"d": "device-aaa1", "u": "alice-001", "p": "iOS"},
            {"d": "device-bbb2", "u": "alice-001", "p": "Web"},
            {"d": "device-ccc3", "u": None, "p": "Android"},
        ],
    )  # fmt: skip
    path = write_sync(
        sqlite_warehouse.url, sandbox.url, sql="select device_id, uid, platform from devices",
        mappings=(("platform", "last_platform", "$set"),), object_="device", key="device_id",
        extra_sync='user_key = "uid"',
    )  # fmt: skip
    code, report, _ = cli(capsys, "run", str(path), "--json")
    assert (code, report["sent"]) == (0, 3)
    alice = sandbox.store.profile(user_id="alice-001")
    assert sorted(alice["device_ids"]) == ["device-aaa1", "device-bbb2"]
    assert sandbox.store.profile(device_id="device-ccc3")["user_properties"] == {"last_platform": "Android"}


def test_a_missing_column_is_a_config_error_before_any_request(
    sqlite_warehouse, sandbox, home, write_sync, capsys
):
    make_users(sqlite_warehouse)
    path = write_sync(sqlite_warehouse.url, sandbox.url, sql="select user_id, plan from users")
    code, _, err = cli(capsys, "run", str(path))
    assert code == 2 and "does not return the column 'ltv'" in err
    assert sandbox.store.requests() == []


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        ("delete from users", "must be a SELECT or WITH query, not DELETE"),
        ("select 1; select 2", "the model has 2 statements"),
        (
            "with x as (select 1) insert into users select * from x",
            "must be a SELECT or WITH query, not INSERT",
        ),
        ("select * from no_such_table", "no such table"),
        ("selec user_id from users", "cannot parse the model as sqlite SQL"),
    ],
)
def test_bad_models_are_refused_in_words(sqlite_warehouse, home, write_sync, capsys, sql, words):
    make_users(sqlite_warehouse)
    path = write_sync(sqlite_warehouse.url, "http://127.0.0.1:9", sql=sql)
    code, _, err = cli(capsys, "preview", str(path))
    assert code == 2 and words in err and "Traceback" not in err


def test_a_warehouse_error_never_commits(sqlite_warehouse, home, write_sync):
    make_users(sqlite_warehouse)
    config = load_config(
        write_sync(
            sqlite_warehouse.url,
            "http://127.0.0.1:9",
            sql="select user_id, plan, ltv, 1/0 from nowhere",
        )
    )
    with pytest.raises(WarehouseError):
        run(config, home)
    store = open_state(home, config.sync.name)
    assert store.runs()[0].status == "error" and store.digests() == {}
    store.close()
