"""Generated benchmark warehouses: one `users` table of N rows in SQLite or DuckDB, and its sync file.

Every value is a function of the row number `n`, so both engines hold the same data and a rerun
generates it again bit for bit. The whole table is built by the engine itself (DuckDB's `range()`,
SQLite's recursive CTE): 5,000,000 rows take seconds, not minutes.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import duckdb

from amp_sync.sandbox import SANDBOX_API_KEY

BACKENDS = ("sqlite", "duckdb")

# The mapped columns, one property each, named as the column: text, text with NULLs, integer,
# decimal (REAL in SQLite), date (ISO text in SQLite) and boolean (0/1 in SQLite).
PROPERTIES = ("plan", "country", "seats", "ltv", "signup_date", "is_active")
MODEL_SQL = f"select user_id, {', '.join(PROPERTIES)} from users"

_DUCKDB_TABLE = """
create table users as select
    i as n,
    'user_' || lpad(cast(i as varchar), 9, '0') as user_id,
    ['free', 'starter', 'pro', 'enterprise'][1 + i % 4] as plan,
    case when i % 50 = 0 then null
         else ['US', 'GB', 'DE', 'FR', 'BR', 'IN', 'JP'][1 + (i * 13) % 7] end as country,
    cast(1 + (i * 31) % 500 as integer) as seats,
    cast(((i * 7919) % 1000000) / 100 as decimal(12, 2)) as ltv,
    date '2020-01-01' + cast(i % 2000 as integer) as signup_date,
    i % 3 <> 0 as is_active
from range(?) t(i)
"""

_SQLITE_SCHEMA = """
create table users (
    n integer primary key, user_id text not null, plan text, country text,
    seats integer, ltv real, signup_date text, is_active boolean
)
"""
_SQLITE_ROWS = """
with recursive seq(i) as (select 0 union all select i + 1 from seq where i < ? - 1)
insert into users select
    i,
    printf('user_%09d', i),
    case i % 4 when 0 then 'free' when 1 then 'starter' when 2 then 'pro' else 'enterprise' end,
    case when i % 50 = 0 then null else substr('USGBDEFRBRINJP', 1 + 2 * ((i * 13) % 7), 2) end,
    1 + (i * 31) % 500,
    ((i * 7919) % 1000000) / 100.0,
    date('2020-01-01', '+' || (i % 2000) || ' days'),
    i % 3 <> 0
from seq
"""


# Changes two of the six properties of one row in a hundred; `round` picks a different hundredth
# each time, so every round is a real 1% change against the previous run's snapshot.
_CHANGE = "update users set seats = seats + 1, ltv = ltv + 1 where n % 100 = ?"


@dataclass(frozen=True, slots=True)
class Warehouse:
    """One generated warehouse file."""

    backend: str
    path: Path
    rows: int

    @property
    def url(self) -> str:
        """Its SQLAlchemy URL (an absolute path: four slashes)."""
        return f"{self.backend}:///{self.path.resolve()}"


def generate(backend: str, rows: int, folder: Path) -> Warehouse:
    """Write a fresh `users` table of `rows` rows; replaces any file of the same name."""
    path = folder / f"users_{rows}.{'db' if backend == 'sqlite' else 'duckdb'}"
    path.unlink(missing_ok=True)
    if backend == "sqlite":
        _generate_sqlite(path, rows)
    else:
        _generate_duckdb(path, rows)
    return Warehouse(backend, path, rows)


def _generate_sqlite(path: Path, rows: int) -> None:
    db = sqlite3.connect(path)
    try:
        db.executescript("pragma journal_mode = off; pragma synchronous = off;")
        db.execute(_SQLITE_SCHEMA)
        db.execute(_SQLITE_ROWS, (rows,))
        db.commit()
    finally:
        db.close()


def _generate_duckdb(path: Path, rows: int) -> None:
    with _duckdb(path) as db:
        db.execute(_DUCKDB_TABLE, [rows])
        db.execute("checkpoint")


def _duckdb(path: Path) -> duckdb.DuckDBPyConnection:
    db = duckdb.connect(str(path))
    db.execute("set enable_progress_bar = false")  # else it draws one over the bench's log
    return db


def change_one_percent(warehouse: Warehouse, round_: int) -> int:
    """Change 1% of the rows (a different 1% each round); returns how many rows changed."""
    if warehouse.backend == "sqlite":
        db = sqlite3.connect(warehouse.path)
        try:
            changed = db.execute(_CHANGE, (round_ % 100,)).rowcount
            db.commit()
        finally:
            db.close()
        return changed
    with _duckdb(warehouse.path) as db:
        found = db.execute(_CHANGE, [round_ % 100]).fetchone()
        db.execute("checkpoint")
    return int(found[0]) if found else 0


def sync_file(warehouse: Warehouse, endpoint: str, folder: Path) -> Path:
    """Write the sync file that maps every property of `warehouse` to the sandbox at `endpoint`."""
    mappings = "".join(f'\n[[sync.mappings]]\ncolumn = "{p}"\nproperty = "{p}"\n' for p in PROPERTIES)
    text = f"""[source]
url = "{warehouse.url}"

[destination]
name = "bench sandbox"
api_key = "{SANDBOX_API_KEY}"
region = "us"
endpoint = "{endpoint}"

[model]
name = "bench_users"
sql = "{MODEL_SQL}"

[sync]
name = "bench-users"
object = "user"
behavior = "update_or_create"
key = "user_id"
{mappings}"""
    path = folder / f"{warehouse.path.stem}_{warehouse.backend}.toml"
    path.write_text(text, encoding="utf-8")
    return path
