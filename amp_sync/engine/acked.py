"""What Amplitude acknowledged, as typed values per property in DuckDB tables.

- `properties`: every property any layout has held, with the type its column stores.
- `layouts`: the (property, operation) pairs of a mapping; each acknowledged key notes the layout
  it was sent under, so a mapping edit shows as a change of exactly the edited properties.
- `acked`: one row per destination and key: the update count, the run that last changed it, the
  layout, the user a device belongs to, and one typed column per property (`p<id>`).
- `acked_delta`: rows acknowledged since the last merge, appended after each acknowledged batch
  (an append needs no index and no scan); `merge` folds them into `acked` and keeps, in
  `previous`, the row each replaced (what a revert restores).

Readers see `acked` with `acked_delta` laid over it, so nothing acknowledged is ever out of sight.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
from sqlglot import exp

from amp_sync.engine.ingest import Family
from amp_sync.engine.sql import DIALECT, cast_to, common_type

ROW_TABLES = ("acked", "acked_delta", "previous", "outbox")  # the tables with a column per property
_SCHEMA = """
CREATE TABLE IF NOT EXISTS properties (
    id INTEGER PRIMARY KEY, name VARCHAR NOT NULL UNIQUE, type VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS layouts (id INTEGER PRIMARY KEY, pairs VARCHAR NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS acked (
    dest INTEGER NOT NULL, key VARCHAR NOT NULL, seq BIGINT NOT NULL, run_id BIGINT, layout INTEGER NOT NULL,
    link VARCHAR);
CREATE TABLE IF NOT EXISTS acked_delta (
    dest INTEGER NOT NULL, key VARCHAR NOT NULL, seq BIGINT NOT NULL, run_id BIGINT, layout INTEGER NOT NULL,
    link VARCHAR);
CREATE TABLE IF NOT EXISTS outbox (
    id BIGINT NOT NULL, dest INTEGER NOT NULL, run_id BIGINT, key VARCHAR NOT NULL, part BIGINT NOT NULL,
    channel VARCHAR NOT NULL, item VARCHAR NOT NULL, seq BIGINT NOT NULL, layout INTEGER, link VARCHAR,
    follows BIGINT, planned_at DOUBLE NOT NULL, sent_at DOUBLE);
CREATE TABLE IF NOT EXISTS previous (
    dest INTEGER NOT NULL, key VARCHAR NOT NULL, run_id BIGINT, existed BOOLEAN NOT NULL, layout INTEGER,
    link VARCHAR);
"""


@dataclass(frozen=True, slots=True)
class Property:
    """One property's column in the row tables."""

    id: int
    name: str
    type: str

    @property
    def column(self) -> str:
        """Its column name."""
        return f"p{self.id}"


def create(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables of typed acknowledged values (a no-op when they exist)."""
    for statement in filter(str.strip, _SCHEMA.split(";")):
        con.execute(statement)


def properties(con: duckdb.DuckDBPyConnection) -> dict[str, Property]:
    """Every known property by name."""
    rows = con.execute("SELECT id, name, type FROM properties").fetchall()
    return {name: Property(i, name, kind) for i, name, kind in rows}


def pairs_text(pairs: Sequence[tuple[str, str]]) -> str:
    """A layout's canonical text: its (property, operation) pairs sorted."""
    return json.dumps(sorted(pairs), separators=(",", ":"), ensure_ascii=False)


def layouts(con: duckdb.DuckDBPyConnection) -> dict[int, dict[str, str]]:
    """Every layout: id -> {property: operation}."""
    return {i: dict(json.loads(p)) for i, p in con.execute("SELECT id, pairs FROM layouts").fetchall()}


def layout_id(con: duckdb.DuckDBPyConnection, pairs: Sequence[tuple[str, str]], create: bool) -> int | None:
    """The id of a layout, registered if `create` (None when it is new and not created)."""
    textual = pairs_text(pairs)
    row = con.execute("SELECT id FROM layouts WHERE pairs = ?", [textual]).fetchone()
    if row or not create:
        return int(row[0]) if row else None
    new = int(con.execute("SELECT coalesce(max(id), 0) + 1 FROM layouts").fetchone()[0])  # type: ignore[index]
    con.execute("INSERT INTO layouts VALUES (?, ?)", [new, textual])
    return new


def hold(con: duckdb.DuckDBPyConnection, name: str, kind: str) -> Property:
    """The property's column, created or retyped so that it holds values of `kind` too.

    A retyped column keeps every value's JSON (see sql.common_type); values of another type
    become their JSON text.
    """
    known = properties(con).get(name)
    if known is None:
        new = int(con.execute("SELECT coalesce(max(id), 0) + 1 FROM properties").fetchone()[0])  # type: ignore[index]
        stored = kind if kind != Family.NULL else Family.TEXT
        prop = Property(new, name, kind)
        con.execute("INSERT INTO properties VALUES (?, ?, ?)", [new, name, kind])
        for table in _tables(con):
            con.execute(f'ALTER TABLE {table} ADD COLUMN "{prop.column}" {stored}')
        return prop
    target = common_type(known.type, kind)
    if target == known.type:
        return known
    physical = target if target != Family.NULL else Family.TEXT
    using = cast_to(exp.column(known.column), known.type, target).sql(DIALECT)
    for table in _tables(con):
        con.execute(f'ALTER TABLE {table} ALTER COLUMN "{known.column}" TYPE {physical} USING {using}')
    con.execute("UPDATE properties SET type = ? WHERE id = ?", [target, known.id])
    return Property(known.id, name, target)


def _tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    return [t for t in ROW_TABLES if t in names]


def current(dest: int, props: Sequence[Property]) -> str:
    """The acknowledged rows of destination `dest`: `acked` with the newer `acked_delta` rows over it."""
    columns = ", ".join(["key", "seq", "run_id", "layout", "link", *(f'"{p.column}"' for p in props)])
    return (
        f"(SELECT {columns} FROM acked WHERE dest = {int(dest)} AND key NOT IN "
        f"(SELECT key FROM acked_delta WHERE dest = {int(dest)}) "
        f"UNION ALL SELECT {columns} FROM acked_delta WHERE dest = {int(dest)} "
        "QUALIFY row_number() OVER (PARTITION BY key ORDER BY seq DESC) = 1)"
    )


def merge(con: duckdb.DuckDBPyConnection) -> int:
    """Fold `acked_delta` into `acked`, keeping in `previous` each replaced row; returns the rows folded.

    One transaction: the acknowledged rows are in one table or the other, never in neither.
    """
    waiting = con.execute("SELECT count(*) FROM acked_delta").fetchone()[0]  # type: ignore[index]
    if not waiting:
        return 0
    columns = [c for c in _columns(con, "acked") if c.startswith("p")]
    values = "".join(f', a."{c}"' for c in columns)
    listed = "".join(f', "{c}"' for c in columns)
    con.execute("BEGIN")
    try:
        # A key changed by a run other than the one it was last changed by: its row before this run.
        con.execute(
            f"INSERT INTO previous (dest, key, run_id, existed, layout, link{listed}) "
            f"SELECT d.dest, d.key, d.run_id, a.key IS NOT NULL, a.layout, a.link{values} "
            "FROM acked_delta d LEFT JOIN acked a ON a.dest = d.dest AND a.key = d.key "
            "WHERE a.key IS NULL OR a.run_id IS DISTINCT FROM d.run_id"
        )
        con.execute(
            "DELETE FROM previous p USING acked_delta d WHERE p.dest = d.dest AND p.key = d.key "
            "AND p.run_id IS DISTINCT FROM d.run_id"
        )
        con.execute("DELETE FROM acked a USING acked_delta d WHERE a.dest = d.dest AND a.key = d.key")
        con.execute(
            "INSERT INTO acked SELECT * FROM acked_delta "
            "QUALIFY row_number() OVER (PARTITION BY dest, key ORDER BY seq DESC) = 1"
        )
        con.execute("DELETE FROM acked_delta")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return int(waiting)


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[0] for r in con.execute(f"SELECT column_name FROM (DESCRIBE {table})").fetchall()]


def acknowledge(con: duckdb.DuckDBPyConnection, ids: Sequence[int]) -> None:
    """Amplitude acknowledged these outbox items: their values join the state and they leave the outbox.

    One transaction, so the state never claims an item the outbox still holds, or the reverse.
    """
    if not ids:
        return
    columns = ", ".join(f'"{c}"' for c in _columns(con, "acked"))
    table = pa.table({"id": pa.array(ids, type=pa.int64())})
    lo, hi = min(ids), max(ids)
    con.register("amp_acked_ids", table)
    try:
        con.execute("BEGIN")
        try:
            # The range lets DuckDB skip every row group outside it (ids grow as items are queued).
            con.execute(
                f"INSERT INTO acked_delta ({columns}) SELECT {columns} FROM outbox "
                f"WHERE id BETWEEN {lo} AND {hi} AND id IN (SELECT id FROM amp_acked_ids) "
                "AND channel <> 'synthetic'"
            )
            con.execute(
                f"DELETE FROM outbox WHERE id BETWEEN {lo} AND {hi} AND id IN (SELECT id FROM amp_acked_ids)"
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.unregister("amp_acked_ids")
