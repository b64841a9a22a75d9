"""Every sync file in examples/ runs end to end through the CLI on the demo warehouse and sandbox.

Each test checks what a user would look for in the sandbox afterwards: the groups and their
properties, the events with their times and properties, one "updated" event per changed user,
profiles back to their earlier values after a revert, and zero requests on a second run.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import UTC
from pathlib import Path
from typing import Any

import duckdb
import pytest

from amp_sync.cli import main
from amp_sync.config import SyncObject, load_config
from amp_sync.demo import demo_url
from amp_sync.sandbox import Sandbox
from amp_sync.templates import STARTER_MODELS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# What every example points at: the demo warehouse (read from examples/) and the sandbox.
DEMO_URL = "duckdb:///../demo/warehouse.duckdb"
SANDBOX_URL = "http://127.0.0.1:8766"
JUNK_IDS = ("null", "undefined", "0")  # the demo's placeholder user ids


def example(name: str, folder: Path, warehouse: Path, sandbox: Sandbox) -> Path:
    """A copy of examples/`name` aimed at this test's warehouse and sandbox."""
    text = (EXAMPLES / name).read_text()
    assert DEMO_URL in text and SANDBOX_URL in text
    path = folder / name
    path.write_text(text.replace(DEMO_URL, demo_url(warehouse)).replace(SANDBOX_URL, sandbox.url))
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    """Run amp-sync; the JSON report with --json, else the text output."""
    code = main(list(args))
    out, err = capsys.readouterr()
    if "--json" not in args:
        return code, out + err
    assert out, f"no JSON on stdout; stderr: {err}"
    return code, json.loads(out)


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def props(sandbox: Sandbox, user_id: str) -> dict[str, Any]:
    profile = sandbox.store.profile(user_id=user_id)
    assert profile is not None, f"no profile for {user_id}"
    return profile["user_properties"]


def paths(sandbox: Sandbox) -> Counter[str]:
    return Counter(r["path"] for r in sandbox.store.requests())


def test_every_example_is_a_valid_sync_file_with_the_starter_models_sql() -> None:
    files = sorted(p.name for p in EXAMPLES.glob("*.toml"))
    assert files == ["demo.toml", "events.toml", "groups.toml", "synthetic.toml"]
    objects = {name: load_config(EXAMPLES / name).sync.object for name in files}
    assert objects == {
        "demo.toml": SyncObject.USER,
        "events.toml": SyncObject.EVENT,
        "groups.toml": SyncObject.GROUP,
        "synthetic.toml": SyncObject.USER,
    }
    starters = {model.name: model for model in STARTER_MODELS}
    for name in files:
        config = load_config(EXAMPLES / name)
        starter = starters.get(config.model.name)
        if starter is not None:  # the example and the Models page template say the same
            assert config.model.sql.strip() == starter.sql.strip()
            assert (starter.object, starter.key) == (config.sync.object, config.sync.key)


def test_demo_example_syncs_users_and_a_second_run_sends_nothing(demo_db, sandbox, home, tmp_path, capsys):
    path = example("demo.toml", tmp_path, demo_db, sandbox)
    code, report = cli(capsys, "run", str(path), "--json")
    assert code == 0 and report["sent"] == report["new"] >= 10_000 and report["failed"] == 0
    assert len(sandbox.store.profiles()) == report["sent"]
    assert props(sandbox, "u_000010")["plan"] in {"Free", "Trial", "Starter", "Pro", "Enterprise"}

    before = len(sandbox.store.requests())
    code, again = cli(capsys, "run", str(path), "--json")
    assert (code, again["sent"], again["unchanged"]) == (0, 0, report["sent"])
    assert len(sandbox.store.requests()) == before


def test_groups_example_creates_one_company_group_per_company(demo_db, sandbox, home, tmp_path, capsys):
    path = example("groups.toml", tmp_path, demo_db, sandbox)
    code, report = cli(capsys, "run", str(path), "--json")
    companies = query(
        demo_db,
        "SELECT company, count(*), sum(CASE WHEN p.monthly_price > 0 THEN 1 ELSE 0 END), "
        "sum(p.monthly_price), CAST(min(signup_at) AS DATE) FROM users JOIN plans AS p USING (plan_id) "
        "WHERE company IS NOT NULL AND length(company) <= 1024 GROUP BY company",
    )
    assert code == 0 and (report["sent"], report["failed"]) == (len(companies), 0)
    assert [r["reason"] for r in report["rejections"]] == ["the group value is longer than 1,024 characters"]

    groups = {g["group_value"]: g for g in sandbox.store.groups()}
    assert {g["group_type"] for g in groups.values()} == {"company"}
    assert set(groups) == {name for name, *_ in companies}
    for name, seats, paying, mrr, since in companies:
        got = groups[name]["group_properties"]
        assert (got["seats"], got["paying_seats"]) == (seats, paying)
        assert got["mrr"] == pytest.approx(float(mrr))
        assert got["customer_since"] == since.isoformat()
        assert got["account_status"] in {"customer", "trial", "free"}
        assert (got["account_status"] == "customer") == (paying > 0)
    assert set(paths(sandbox)) == {"/groupidentify"}  # $set and $setOnce: no event needed
    assert sandbox.store.profiles() == []  # groups are not users

    before = len(sandbox.store.requests())
    code, again = cli(capsys, "run", str(path), "--json")
    assert (code, again["unchanged"], again["sent"]) == (0, len(companies), 0)
    assert len(sandbox.store.requests()) == before


def test_events_example_backfills_each_event_once(demo_db, sandbox, home, tmp_path, capsys):
    path = example("events.toml", tmp_path, demo_db, sandbox)
    code, shown = cli(capsys, "preview", str(path))
    assert code == 0 and "events from 2026-08-03 00:00 UTC to 2026-10-31 23:59 UTC" in shown
    assert "count toward your event volume and can take up to 48 hours to appear" in shown
    assert "arrives as a new event" not in shown  # the example has an insert_id_column

    code, report = cli(capsys, "run", str(path), "--json")
    expected = {
        event_id: (user_id, kind, when, platform)
        for event_id, user_id, kind, when, platform in query(
            demo_db,
            "SELECT e.event_id, e.user_id, e.event_type, e.occurred_at, d.platform FROM events AS e "
            "JOIN devices AS d USING (device_id) "
            f"WHERE e.user_id IS NOT NULL AND e.user_id NOT IN {JUNK_IDS}",
        )
    }
    assert code == 0 and (report["new"], report["sent"], report["failed"]) == (
        len(expected),
        len(expected),
        0,
    )
    refused = query(
        demo_db,
        f"SELECT coalesce(user_id, ''), count(*) FROM events WHERE user_id IS NULL OR user_id IN {JUNK_IDS} "
        "GROUP BY 1",
    )
    assert Counter(r["key"] for r in report["rejections"]) == dict(refused)

    events = sandbox.store.events()
    assert len(events) == len(expected)
    assert len({e["insert_id"] for e in events}) == len(events)  # no duplicates
    for event in events:
        user_id, kind, when, platform = expected[event["insert_id"]]
        assert (event["user_id"], event["event_type"]) == (user_id, kind)
        assert event["time"] == int(when.replace(tzinfo=UTC).timestamp() * 1000)
        assert event["event_properties"] == {"platform": platform}
        assert event["$skip_user_properties_sync"] is True
    requests = sandbox.store.requests()
    assert {r["path"] for r in requests} == {"/batch"} and max(r["items"] for r in requests) == 2000

    code, again = cli(capsys, "run", str(path), "--json")
    assert (code, again["new"], again["unchanged"], again["sent"]) == (0, 0, len(expected), 0)
    assert len(sandbox.store.requests()) == len(requests)  # zero requests, so no event twice

    assert main(["revert", str(path), "--preview"]) == 2
    assert "an event sync cannot be reverted" in capsys.readouterr().err


@pytest.fixture
def own_demo(demo_db: Path, tmp_path: Path) -> Path:
    """A copy of the demo warehouse this test may edit."""
    return Path(shutil.copy(demo_db, tmp_path / "warehouse.duckdb"))


def move_to_enterprise(path: Path, count: int) -> dict[str, str]:
    """Put `count` free users on the Enterprise plan; returns their ids and the plan they left."""
    con = duckdb.connect(str(path))
    try:
        picked = con.execute(
            "SELECT user_id FROM users WHERE plan_id = 'free' AND user_id LIKE 'u_0%' AND user_id IN "
            "(SELECT user_id FROM users GROUP BY user_id HAVING count(*) = 1) ORDER BY user_id LIMIT ?",
            [count],
        ).fetchall()
        ids = [user_id for (user_id,) in picked]
        con.execute(
            f"UPDATE users SET plan_id = 'enterprise' WHERE user_id IN ({', '.join('?' * len(ids))})", ids
        )
    finally:
        con.close()
    return dict.fromkeys(ids, "Free")


def updated_events(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [e for e in sandbox.store.events() if e["event_type"] == "Updated by amp_sync"]


def test_synthetic_example_sends_one_updated_event_per_changed_user_and_reverts(
    own_demo, sandbox, home, tmp_path, capsys
):
    path = example("synthetic.toml", tmp_path, own_demo, sandbox)
    code, shown = cli(capsys, "preview", str(path))
    assert code == 0 and "would send 11,999 'Updated by amp_sync' events" in shown
    assert "is not in the project yet" in shown

    code, report = cli(capsys, "run", str(path), "--json")
    assert code == 0 and report["sent"] == report["synthetic"] == report["synthetic_sent"] == 11_999
    first = updated_events(sandbox)
    assert Counter(e["user_id"] for e in first).most_common(1)[0][1] == 1  # one per user
    assert len(first) == 11_999
    alice = next(e for e in first if e["user_id"] == "u_000010")
    assert alice["user_properties"] == props(sandbox, "u_000010")  # the values set, at once

    code, shown = cli(capsys, "preview", str(path))
    assert "'Updated by amp_sync' is active in Amplitude" in shown and "Edit Activity" in shown
    sandbox.store.mark_inactive("Updated by amp_sync")
    code, shown = cli(capsys, "preview", str(path))
    assert "'Updated by amp_sync' is marked inactive in Amplitude" in shown

    before = len(sandbox.store.requests())
    code, again = cli(capsys, "run", str(path), "--json")
    assert (code, again["unchanged"], again["sent"]) == (0, 11_999, 0) and "synthetic" not in again
    assert len(sandbox.store.requests()) == before and len(updated_events(sandbox)) == 11_999

    left = move_to_enterprise(own_demo, 3)
    code, report = cli(capsys, "run", str(path), "--json")
    assert (code, report["changed"], report["synthetic_sent"]) == (0, 3, 3)
    latest = updated_events(sandbox)[11_999:]
    assert {e["user_id"]: e["user_properties"] for e in latest} == {u: {"plan": "Enterprise"} for u in left}
    assert {u: props(sandbox, u)["plan"] for u in left} == dict.fromkeys(left, "Enterprise")

    before = len(sandbox.store.requests())
    code, shown = cli(capsys, "revert", str(path), "--preview", "--json")
    assert (code, shown["changed"], shown["sent"], shown["reverts_run"]) == (0, 3, 0, 3)
    assert len(sandbox.store.requests()) == before  # a preview sends nothing

    code, undone = cli(capsys, "revert", str(path), "--json")
    assert (code, undone["changed"], undone["sent"], undone["failed"]) == (0, 3, 3, 0)
    assert {u: props(sandbox, u)["plan"] for u in left} == left
    assert len(updated_events(sandbox)) == 11_999 + 3 + 3  # the restored values show at once too

    code, redone = cli(capsys, "revert", str(path), "--json")  # reverting the revert
    assert (code, redone["sent"]) == (0, 3)
    assert {u: props(sandbox, u)["plan"] for u in left} == dict.fromkeys(left, "Enterprise")
    code, again = cli(capsys, "run", str(path), "--json")
    assert (code, again["changed"], again["sent"]) == (0, 0, 0)


def test_a_revert_after_a_rerun_restores_and_the_next_run_sends_the_warehouse_again(
    own_demo, sandbox, home, tmp_path, capsys
):
    path = example("demo.toml", tmp_path, own_demo, sandbox)
    assert cli(capsys, "run", str(path), "--json")[0] == 0
    left = move_to_enterprise(own_demo, 2)
    code, report = cli(capsys, "run", str(path), "--json")
    assert (code, report["changed"]) == (0, 2)

    code, undone = cli(capsys, "revert", str(path), "--json")
    assert (code, undone["sent"]) == (0, 2)
    assert {u: props(sandbox, u)["plan"] for u in left} == left
    code, report = cli(capsys, "run", str(path), "--json")  # the warehouse still says Enterprise
    assert (code, report["changed"], report["sent"]) == (0, 2, 2)
    assert {u: props(sandbox, u)["plan"] for u in left} == dict.fromkeys(left, "Enterprise")
    code, shown = cli(capsys, "revert", str(path), "--preview")
    assert "reverting run #4, which changed 2 keys" in shown
