"""The demo warehouse is deterministic and dirty on purpose, and every starter model runs on it."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlalchemy as sa

from amp_sync.config import SyncObject
from amp_sync.demo import (
    AS_OF,
    build_demo_warehouse,
    demo_url,
    ensure_demo_warehouse,
)
from amp_sync.templates import STARTER_MODELS, ModelTemplate, template

TABLES = ("plans", "users", "devices", "payments", "events")
AS_OF_MIDNIGHT = datetime(AS_OF.year, AS_OF.month, AS_OF.day)


@pytest.fixture(scope="module")
def full_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default-size demo, built once by ensure_demo_warehouse because it is missing."""
    path = tmp_path_factory.mktemp("full") / "demo" / "warehouse.duckdb"
    return ensure_demo_warehouse(path)


@pytest.fixture
def engine(full_demo: Path) -> Iterator[sa.Engine]:
    """A SQLAlchemy engine on the full demo, disposed so later tests can open the file."""
    engine = sa.create_engine(demo_url(full_demo))
    yield engine
    engine.dispose()


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Run `sql` on a DuckDB file and close it again."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def digests(path: Path) -> dict[str, str]:
    """A hash of each table's sorted contents."""
    return {
        table: hashlib.sha256(repr(rows(path, f"SELECT * FROM {table} ORDER BY ALL")).encode()).hexdigest()
        for table in TABLES
    }


def test_same_seed_builds_identical_tables(tmp_path: Path) -> None:
    first = build_demo_warehouse(tmp_path / "a" / "w.duckdb", users=300, seed=11)
    second = build_demo_warehouse(tmp_path / "b" / "w.duckdb", users=300, seed=11)
    assert digests(first) == digests(second)


def test_another_seed_builds_other_tables(tmp_path: Path) -> None:
    first = digests(build_demo_warehouse(tmp_path / "a.duckdb", users=300, seed=11))
    second = digests(build_demo_warehouse(tmp_path / "b.duckdb", users=300, seed=12))
    assert first["plans"] == second["plans"]
    assert all(first[table] != second[table] for table in TABLES if table != "plans")


def test_default_size_has_over_ten_thousand_users(full_demo: Path) -> None:
    [(count, distinct)] = rows(full_demo, "SELECT count(*), count(DISTINCT user_id) FROM users")
    assert distinct >= 10_000
    assert count > distinct  # the NULL and the duplicated id come on top


def test_every_table_is_filled(full_demo: Path) -> None:
    counts = {table: rows(full_demo, f"SELECT count(*) FROM {table}")[0][0] for table in TABLES}
    assert counts["plans"] == 5
    assert counts["users"] <= counts["devices"] <= 3 * counts["users"]
    assert counts["payments"] > counts["users"]
    assert 200_000 <= counts["events"] <= 400_000


@pytest.mark.parametrize(
    "check",
    [
        pytest.param("SELECT count(*) = 2 FROM users WHERE user_id IN ('u_1', 'abc')", id="short"),
        pytest.param("SELECT count(*) = 1 FROM users WHERE user_id IS NULL", id="null-id"),
        pytest.param("SELECT count(*) = 3 FROM users WHERE user_id IN ('null', 'undefined', '0')", id="junk"),
        pytest.param(
            "SELECT count(*) = 1 FROM (SELECT user_id FROM users WHERE user_id IS NOT NULL "
            "GROUP BY user_id HAVING count(*) > 1 AND count(DISTINCT plan_id) > 1)",
            id="duplicate-id",
        ),
        pytest.param("SELECT count(*) > 0 FROM users WHERE country IS NULL", id="null-country"),
        pytest.param("SELECT count(*) = 1 FROM users WHERE name LIKE '%🦄%'", id="emoji-name"),
        pytest.param("SELECT count(*) = 1 FROM users WHERE length(company) > 1024", id="long"),
    ],
)
def test_dirty_rows_are_planted(full_demo: Path, check: str) -> None:
    assert rows(full_demo, check) == [(True,)]


def test_small_build_keeps_the_dirty_rows(tmp_path: Path) -> None:
    path = build_demo_warehouse(tmp_path / "w.duckdb", users=3)
    [(count,)] = rows(path, "SELECT count(*) FROM users WHERE length(company) > 1024")
    assert count == 1
    assert len(rows(path, "SELECT * FROM users")) == 3 + 7


def test_events_span_the_90_days_before_as_of(full_demo: Path) -> None:
    [(first, last)] = rows(full_demo, "SELECT min(occurred_at), max(occurred_at) FROM events")
    assert AS_OF_MIDNIGHT - timedelta(days=90) <= first < AS_OF_MIDNIGHT - timedelta(days=89)
    assert AS_OF_MIDNIGHT - timedelta(days=1) <= last < AS_OF_MIDNIGHT


def test_activity_is_skewed(full_demo: Path) -> None:
    per_user = [
        n
        for (n,) in rows(
            full_demo,
            "SELECT count(e.event_id) FROM (SELECT DISTINCT user_id FROM users) AS u "
            "LEFT JOIN events AS e ON e.user_id = u.user_id GROUP BY u.user_id ORDER BY 1 DESC",
        )
    ]
    top_tenth = sum(per_user[: len(per_user) // 10])
    assert top_tenth > 0.4 * sum(per_user)
    assert 0.25 < per_user.count(0) / len(per_user) < 0.5


def test_ensure_keeps_an_existing_file(tmp_path: Path) -> None:
    path = build_demo_warehouse(tmp_path / "w.duckdb", users=50)
    before = path.stat().st_mtime_ns
    assert ensure_demo_warehouse(path) == path
    assert path.stat().st_mtime_ns == before
    assert rows(path, "SELECT count(*) FROM users") == [(57,)]


def test_rebuild_replaces_the_file_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = build_demo_warehouse(tmp_path / "w.duckdb", users=50)
    build_demo_warehouse(path, users=80)
    assert rows(path, "SELECT count(*) FROM users") == [(87,)]
    assert [p.name for p in tmp_path.iterdir()] == ["w.duckdb"]


def test_too_few_users_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 3"):
        build_demo_warehouse(tmp_path / "w.duckdb", users=2)
    assert not any(tmp_path.iterdir())


def test_demo_url_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    expected = tmp_path.resolve() / "demo" / "warehouse.duckdb"
    assert demo_url(Path("demo/warehouse.duckdb")) == f"duckdb:///{expected}"


def test_the_default_demo_is_the_checkouts_wherever_amp_sync_starts(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = Path(__file__).resolve().parents[1]
    assert demo_url() == f"duckdb:///{root / 'demo' / 'warehouse.duckdb'}"


USER_MODELS = [model for model in STARTER_MODELS if model.object is SyncObject.USER]


def test_every_event_comes_from_one_of_its_users_devices(full_demo: Path) -> None:
    [(events, matched)] = rows(
        full_demo,
        "SELECT count(*), count(d.device_id) FROM events AS e JOIN devices AS d "
        "ON d.device_id = e.device_id AND d.user_id IS NOT DISTINCT FROM e.user_id",
    )
    assert events == matched
    [(ids, platforms)] = rows(
        full_demo,
        "SELECT count(DISTINCT event_id) = count(*), count(DISTINCT platform) FROM events "
        "JOIN devices USING (device_id)",
    )
    assert ids and platforms == 5


def test_adding_event_devices_left_every_other_value_as_it_was(tmp_path: Path) -> None:
    # Values from the build before events.device_id existed: the new column is drawn last.
    path = build_demo_warehouse(tmp_path / "w.duckdb", users=200, seed=7)
    picked = rows(
        path,
        "SELECT event_id, user_id, event_type, occurred_at FROM events "
        "WHERE event_id IN ('evt_0000001', 'evt_0002000', 'evt_0005645') ORDER BY event_id",
    )
    assert picked == [
        ("evt_0000001", "u_000001", "Login", datetime(2026, 10, 17, 2, 45, 16)),
        ("evt_0002000", "u_000071", "Login", datetime(2026, 8, 24, 10, 41, 57)),
        ("evt_0005645", "u_000001", "Login", datetime(2026, 10, 26, 21, 45, 58)),
    ]
    assert rows(path, "SELECT count(*) FROM events") == [(5645,)]


@pytest.mark.parametrize("model", USER_MODELS, ids=lambda model: model.name)
def test_template_returns_one_row_per_user(engine: sa.Engine, model: ModelTemplate) -> None:
    with engine.connect() as conn:
        result = conn.execute(sa.text(model.sql))
        columns, got = list(result.keys()), result.fetchall()
        users = conn.execute(sa.text("SELECT user_id FROM users")).fetchall()
    assert model.key == "user_id"
    assert {model.key, *(column for column, _ in model.mappings)} <= set(columns)
    key = columns.index(model.key)
    assert Counter(row[key] for row in got) == Counter(user_id for (user_id,) in users)


def test_lifetime_value_adds_up_succeeded_payments(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        ltv = conn.execute(sa.text(template("lifetime_value").sql)).mappings().fetchall()
        [(paid,)] = conn.execute(
            sa.text(
                "SELECT sum(amount) FROM payments WHERE status = 'succeeded' "
                "AND user_id IN (SELECT user_id FROM users)"
            )
        ).fetchall()
    per_user = {row["user_id"]: row["lifetime_value"] for row in ltv if row["user_id"]}
    assert sum(per_user.values()) == paid


def test_trial_days_left_count_down_from_as_of(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        trials = conn.execute(sa.text(template("trial_end").sql)).fetchall()
    left = [days for _, end, days in trials if end is not None]
    assert left and all(0 <= days <= 14 for days in left)
    assert max(left) > 0
    assert all(days is None for _, end, days in trials if end is None)


def test_key_actions_in_7_days_are_within_30_days(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        counts = conn.execute(sa.text(template("key_actions").sql)).fetchall()
    assert all(0 <= week <= month for _, week, month in counts)
    assert any(week > 0 for _, week, _ in counts)


def test_company_template_has_one_row_per_company(engine: sa.Engine) -> None:
    model = template("company_accounts")
    with engine.connect() as conn:
        got = conn.execute(sa.text(model.sql)).mappings().fetchall()
        [(companies, users)] = conn.execute(
            sa.text("SELECT count(DISTINCT company), count(company) FROM users")
        ).fetchall()
    assert model.object is SyncObject.GROUP and model.key == "company"
    assert len(got) == companies and sum(row["seats"] for row in got) == users
    assert {column for column, _ in model.mappings} <= set(got[0])
    assert all(0 <= row["paying_seats"] <= row["seats"] for row in got)


def test_events_template_has_one_row_per_event_with_its_platform(engine: sa.Engine) -> None:
    model = template("product_events")
    with engine.connect() as conn:
        got = conn.execute(sa.text(model.sql)).mappings().fetchall()
        [(events,)] = conn.execute(sa.text("SELECT count(*) FROM events")).fetchall()
    assert model.object is SyncObject.EVENT
    assert len(got) == len({row["event_id"] for row in got}) == events
    assert all(row["platform"] is not None for row in got)


def test_unknown_template_names_the_choices() -> None:
    assert template("trial_end").title == "Trial end date"
    with pytest.raises(KeyError, match="lifetime_value, trial_end, became_active, key_actions"):
        template("ltv")
