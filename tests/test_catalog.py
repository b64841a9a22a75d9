"""The app's helpers over saved objects: forms checked, connections tested, schemas and runs listed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import duckdb
import pytest
from support import open_state

from amp_sync import health
from amp_sync.catalog import (
    WAREHOUSE_EXAMPLES,
    check_connection,
    default_choice,
    destination_from_form,
    health_label,
    health_labels,
    mark,
    ranked,
    recent_runs,
    schema,
    setup_steps,
    warehouse_from_form,
    widget_ids,
)
from amp_sync.config import Destination, Region
from amp_sync.errors import ConfigError, WarehouseError
from amp_sync.secret import Secret
from amp_sync.workspace import SavedModel, Warehouse, Workspace

SAVED = Destination(
    "Prod", Secret("saved-api-key"), Secret("saved-secret"), Region.EU, "https://proxy.example"
)


@pytest.mark.parametrize(
    ("fields", "current", "expected"),
    [
        (("New", "k1", "", "us", ""), None, Destination("New", Secret("k1"), None, Region.US, None)),
        (
            (" New ", " k1 ", " s1 ", "eu", " http://127.0.0.1:8766/ "),
            None,
            Destination("New", Secret("k1"), Secret("s1"), Region.EU, "http://127.0.0.1:8766"),
        ),
        (("Prod 2", "", "", "eu", "https://proxy.example"), SAVED, SAVED.__class__(
            "Prod 2", SAVED.api_key, SAVED.secret_key, Region.EU, "https://proxy.example")),
        (("Prod", "new-key", "", "us", ""), SAVED, Destination(
            "Prod", Secret("new-key"), SAVED.secret_key, Region.US, None)),
    ],
)  # fmt: skip
def test_destination_from_form_keeps_saved_keys_when_fields_are_empty(fields, current, expected) -> None:
    assert destination_from_form(*fields, current=current) == expected


@pytest.mark.parametrize(
    ("fields", "current", "problems"),
    [
        (("", "k", "", "us", ""), None, ["give the destination a name"]),
        (("a", " ", "", "us", ""), None, ["enter the project's API key"]),
        (("a", "k", "", "us", "localhost:8766"), None, ["must be an http:// or https:// URL"]),
        (("", "", "", "us", "x"), None, ["a name", "API key", "http://"]),
        (("", "", "", "us", ""), SAVED, ["a name"]),
    ],
)
def test_destination_from_form_lists_every_problem(fields, current, problems) -> None:
    with pytest.raises(ConfigError) as caught:
        destination_from_form(*fields, current=current)
    assert len(caught.value.problems) == len(problems)
    assert all(p in found for p, found in zip(problems, caught.value.problems, strict=True))


def test_warehouse_from_form_requires_a_name_and_a_parsable_url_and_keeps_the_saved_one() -> None:
    assert warehouse_from_form(" wh ", " sqlite:///a.db ") == Warehouse("wh", Secret("sqlite:///a.db"))
    saved = Warehouse("wh", Secret("postgresql+psycopg://u:pw@h/db"))
    assert warehouse_from_form("wh2", "", saved) == Warehouse("wh2", saved.url)
    with pytest.raises(ConfigError) as caught:
        warehouse_from_form("", "")
    assert caught.value.problems == [
        "give the warehouse a name",
        "enter the warehouse's SQLAlchemy URL, e.g. sqlite:///path.db",
    ]
    with pytest.raises(ConfigError, match="not a SQLAlchemy URL"):
        warehouse_from_form("wh", "warehouse.db")


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as db:
        db.execute("create table customers (id text, ltv real)")
        db.execute("create view rich as select id from customers where ltv > 100")
    return path


@pytest.fixture
def duckdb_file(tmp_path: Path) -> Path:
    path = tmp_path / "wh.duckdb"
    with duckdb.connect(str(path)) as db:
        db.execute("create table users (user_id varchar, ltv decimal(10, 2), seen timestamp)")
        db.execute("create view payers as select user_id from users where ltv > 0")
    return path


def test_check_connection_answers_in_words(sqlite_db: Path, duckdb_file: Path, tmp_path: Path) -> None:
    assert check_connection(f"sqlite:///{sqlite_db}").ok
    assert check_connection(f"duckdb:///{duckdb_file}").message.startswith(
        f"connected to duckdb:///{duckdb_file}"
    )
    refused = check_connection("postgresql+psycopg://u:topsecret@127.0.0.1:9/db")
    assert not refused.ok and "cannot connect" in refused.message and "topsecret" not in refused.message
    no_driver = check_connection("snowflake://u:p@acct/db")
    assert not no_driver.ok and "snowflake://u:***@acct/db" in no_driver.message
    assert "Can't load plugin: sqlalchemy.dialects:snowflake" in no_driver.message


@pytest.mark.parametrize("scheme", ["sqlite", "duckdb"])
def test_a_missing_database_file_is_reported_and_never_created(tmp_path: Path, scheme: str) -> None:
    path = tmp_path / "typo.db"
    check = check_connection(f"{scheme}:///{path}")
    assert not check.ok and check.message.startswith(f"there is no {scheme} file at {path}")
    with pytest.raises(WarehouseError, match="there is no"):
        schema(f"{scheme}:///{path}")
    assert not path.exists()


def test_schema_lists_tables_and_views_with_column_types(sqlite_db: Path, duckdb_file: Path) -> None:
    assert schema(f"sqlite:///{sqlite_db}") == {
        "customers": [("id", "TEXT"), ("ltv", "REAL")],
        "rich": [("id", "TEXT")],
    }
    assert schema(f"duckdb:///{duckdb_file}") == {
        "payers": [("user_id", "VARCHAR")],
        "users": [("user_id", "VARCHAR"), ("ltv", "DECIMAL(10,2)"), ("seen", "TIMESTAMP")],
    }


def test_setup_steps_count_each_kind(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "home")
    assert [(s.kind, s.done) for s in setup_steps(ws)] == [
        ("destination", False), ("warehouse", False), ("model", False), ("sync", False),
    ]  # fmt: skip
    ws.save(Warehouse("a", Secret("sqlite://")))
    ws.save(Warehouse("b", Secret("sqlite://")))
    ws.save(SavedModel("m", "a", "select 1"))
    assert [s.count for s in setup_steps(ws)] == [0, 2, 1, 0]


def _record(home: Path, sync: str, counts: dict[str, int], status: str = "ok") -> None:
    store = open_state(home, sync)
    try:
        store.finish_run(store.start_run("run"), status, counts, "", [])
    finally:
        store.close()


def test_recent_runs_merge_every_sync_newest_first(tmp_path: Path) -> None:
    _record(tmp_path, "a", {"sent": 3, "failed": 0, "rejected": 1})
    _record(tmp_path, "b", {"sent": 2, "failed": 1, "rejected": 0}, "failed")
    _record(tmp_path, "a", {"sent": 0})
    runs = recent_runs(tmp_path, ["a", "b", "never-ran"])
    assert [(r.sync, r.status, r.sent, r.failed, r.rejected) for r in runs] == [
        ("a", "ok", 0, 0, 0), ("b", "failed", 2, 1, 0), ("a", "ok", 3, 0, 1),
    ]  # fmt: skip
    assert all(r.seconds is not None and r.seconds >= 0 for r in runs)
    assert len(recent_runs(tmp_path, ["a", "b"], limit=2)) == 2


def test_widget_ids_are_distinct_and_css_friendly() -> None:
    ids = widget_ids(["Amplitude sandbox", "amplitude-sandbox", "Prod (EU)", "✨"])
    assert ids == {
        "Amplitude sandbox": "amplitude-sandbox",
        "amplitude-sandbox": "amplitude-sandbox-2",
        "Prod (EU)": "prod-eu",
        "✨": "item",
    }


def test_only_duckdb_sqlite_and_postgresql_examples_are_bundled() -> None:
    bundled = {e.label for e in WAREHOUSE_EXAMPLES if e.bundled}
    assert bundled == {"DuckDB", "SQLite", "PostgreSQL"}
    assert all(e.package for e in WAREHOUSE_EXAMPLES if not e.bundled)


WORKS, FAILS = health.Check(True, "connected", 1000.0), health.Check(False, "no file", 1000.0)


@pytest.mark.parametrize(
    ("check", "now", "words"),
    [
        (None, 1000.0, "Never checked"),
        (WORKS, 1030.0, "Works · checked just now"),
        (WORKS, 1000.0 + 120, "Works · checked 2 min ago"),
        (FAILS, 1000.0 + 3 * 3600 + 59, "Failed: no file · checked 3 h ago"),
        (FAILS, 1000.0 + 86400, "Failed: no file · checked 1 day ago"),
        (WORKS, 1000.0 + 4 * 86400, "Works · checked 4 days ago"),
        (WORKS, 900.0, "Works · checked just now"),  # a clock set back: never "in the future"
    ],
)
def test_a_check_in_words(check, now, words) -> None:
    assert health.label(check, now) == words


@pytest.mark.parametrize(
    ("checks", "preferred", "order", "default"),
    [
        ({"a": FAILS, "b": None, "c": WORKS}, None, ["c", "b", "a"], "c"),
        ({"a": FAILS, "b": None, "c": None}, "c", ["b", "c", "a"], "c"),  # preferred among the best
        ({"a": WORKS, "b": None}, "b", ["a", "b"], "a"),  # a never-checked preferred loses to a working one
        ({"a": FAILS, "b": FAILS}, "b", ["a", "b"], "b"),  # all failing: only then a failing one
        ({"a": FAILS, "b": WORKS}, "a", ["b", "a"], "b"),
        ({}, "a", [], None),
    ],
)
def test_working_ones_come_first_and_a_failing_one_is_never_the_default(
    checks, preferred, order, default
) -> None:
    assert health.ranked(checks, checks) == order
    assert health.default_choice(checks, checks, preferred) == default


def test_a_secret_is_scrubbed_longest_first() -> None:
    assert health.scrubbed("url a:pw@h, pw", ["pw", "a:pw@h", ""]) == "url ***, ***"


def test_a_mark_is_markdown_taken_literally() -> None:
    failed = health.Check(False, "no file at /tmp/my_db*.db [x] :red[y] $HOME", 0.0)
    text = mark(failed, 0.0)
    assert text.startswith(
        ":red[:material/error: Failed\\: no file at /tmp/my\\_db\\*\\.db \\[x\\] \\:red\\[y\\]"
    )
    assert "\\$HOME" in text and text.endswith("]")
    assert mark(None, 0.0) == ":gray[:material/help: Never checked]"


def test_labels_and_defaults_read_the_workspace(tmp_path) -> None:
    ws = Workspace(tmp_path / "home")
    for name in ("A", "B", "Demo"):
        ws.save(Warehouse(name, Secret(f"sqlite:///{tmp_path / name}.db")))
    ws.record_check(Warehouse, "A", health.Check(False, "there is no sqlite file", 1000.0))
    ws.record_check(Warehouse, "B", health.Check(True, "connected", 1000.0))
    assert (
        health_label(ws, Warehouse, "A", now=1120.0)
        == "A · Failed: there is no sqlite file · checked 2 min ago"
    )
    assert health_label(ws, Warehouse, "Demo", now=1120.0) == "Demo · Never checked"
    assert default_choice(ws, Warehouse, ["A", "B", "Demo"], preferred="Demo") == "B"
    assert default_choice(ws, Warehouse, ["A", "Demo"], preferred="A") == "Demo"
    assert ranked(ws, Warehouse, ["A", "B", "Demo"]) == ["B", "Demo", "A"]
    assert health_labels(ws, Warehouse, now=1000.0)["B"] == "B · Works · checked just now"
