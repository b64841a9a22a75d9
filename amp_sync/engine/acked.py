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

While a run sends, the outbox itself is only read: the moment an item leaves goes to
`outbox_sent`, and an item acknowledged (or refused for sure) to `outbox_done`, both appends
of one small commit. `merge` moves the acknowledged items' values to `acked_delta` and takes
them out of the outbox, in one transaction; readers of the outbox see it through `LIVE_OUTBOX`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
from sqlglot import exp

from amp_sync.engine.ingest import Family
from amp_sync.engine.sql import DIALECT, cast_to, common_type

# The outbox as readers see it while senders append to outbox_sent and outbox_done.
LIVE_OUTBOX = """(SELECT o.* EXCLUDE (sent_at), coalesce(o.sent_at, s.sent_at) AS sent_at FROM outbox o
LEFT JOIN (SELECT id, min(sent_at) AS sent_at FROM outbox_sent GROUP BY id) s ON s.id = o.id
WHERE o.id NOT IN (SELECT id FROM outbox_done))"""
ROW_TABLES = ("acked", "acked_delta", "previous", "outbox")  # the tables with a column per property
_SCHEMA = """
CREATE TABLE IF NOT EXISTS values_meta (name VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
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
CREATE TABLE IF NOT EXISTS outbox_sent (id BIGINT NOT NULL, sent_at DOUBLE NOT NULL);
CREATE TABLE IF NOT EXISTS outbox_done (id BIGINT NOT NULL, acked BOOLEAN NOT NULL);
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
    row = (con.execute("SELECT id FROM layouts WHERE pairs = ?", [textual]).fetchall() or [()])[0]
    if row or not create:
        return int(row[0]) if row else None
    new = int(con.execute("SELECT coalesce(max(id), 0) + 1 FROM layouts").fetchall()[0][0])
    con.execute("INSERT INTO layouts VALUES (?, ?)", [new, textual])
    return new


def hold(con: duckdb.DuckDBPyConnection, name: str, kind: str) -> Property:
    """The property's column, created or retyped so that it holds values of `kind` too.

    A retyped column keeps every value's JSON (see sql.common_type); values of another type
    become their JSON text.
    """
    known = properties(con).get(name)
    if known is None:
        new = int(con.execute("SELECT coalesce(max(id), 0) + 1 FROM properties").fetchall()[0][0])
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


def current(dest: int, props: Sequence[Property], outbox: bool = False) -> str:
    """The acknowledged rows of destination `dest`: `acked` with the newer `acked_delta` rows over it.

    With `outbox`, each key's newest update sent and waiting in the outbox counts as acknowledged:
    what the state will hold once a run has resent it (what a preview shows).
    """
    columns = ", ".join(["key", "seq", "run_id", "layout", "link", *(f'"{p.column}"' for p in props)])
    d = int(dest)
    newer = (
        f"SELECT {columns}, 1 AS rank FROM acked_delta WHERE dest = {d} "
        f"UNION ALL SELECT {columns}, 2 FROM outbox WHERE dest = {d} AND channel <> 'synthetic' "
        "AND id IN (SELECT id FROM outbox_done WHERE acked)"
    )
    if outbox:
        newer += (
            f" UNION ALL SELECT {columns}, 3 FROM {LIVE_OUTBOX} WHERE dest = {d} AND channel <> 'synthetic' "
            "AND sent_at IS NOT NULL"
        )
    return (
        f"(SELECT {columns} FROM acked WHERE dest = {d} AND key NOT IN (SELECT key FROM ({newer})) "
        f"UNION ALL SELECT {columns} FROM ({newer}) "
        "QUALIFY row_number() OVER (PARTITION BY key ORDER BY rank DESC, seq DESC) = 1)"
    )


def merge(con: duckdb.DuckDBPyConnection) -> int:
    """Fold `acked_delta` into `acked`, keeping in `previous` each replaced row; returns the rows folded.

    One transaction: the acknowledged rows are in one table or the other, never in neither.
    """
    compact(con)
    waiting = con.execute("SELECT count(*) FROM acked_delta").fetchall()[0][0]
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
    """Amplitude acknowledged these outbox items: one append, durable when it returns.

    Their values join the acknowledged rows at the next `merge` (the state is the outbox's
    acknowledged items as much as the rows), so an acknowledgement costs one small commit.
    """
    with_ids(con, ids, "INSERT INTO outbox_done SELECT id, TRUE FROM {ids}")


def with_ids(
    con: duckdb.DuckDBPyConnection, ids: Sequence[int], sql: str, params: Sequence[object] = ()
) -> None:
    """Run `sql` for a set of outbox ids: {ids} names them as a table, {lo} and {hi} bound them.

    The bounds let DuckDB skip every row group outside them (ids grow as items are queued).
    """
    if not ids:
        return
    name = f"amp_ids_{threading.get_ident()}"
    con.register(name, pa.table({"id": pa.array(ids, type=pa.int64())}))
    try:
        con.execute(sql.format(ids=name, lo=int(min(ids)), hi=int(max(ids))), list(params))
    finally:
        con.unregister(name)


def compact(con: duckdb.DuckDBPyConnection) -> None:
    """Fold what senders appended (sent at, done) into the outbox, in one transaction."""
    waiting = con.execute("SELECT (SELECT count(*) FROM outbox_sent) + (SELECT count(*) FROM outbox_done)")
    if not waiting.fetchall()[0][0]:
        return
    columns = ", ".join(f'"{c}"' for c in _columns(con, "acked"))
    con.execute("BEGIN")
    try:
        con.execute(
            f"INSERT INTO acked_delta ({columns}) SELECT {columns} FROM outbox "
            "WHERE id IN (SELECT id FROM outbox_done WHERE acked) AND channel <> 'synthetic'"
        )
        con.execute(
            "UPDATE outbox SET sent_at = s.sent_at FROM (SELECT id, min(sent_at) AS sent_at FROM outbox_sent "
            "GROUP BY id) s WHERE outbox.id = s.id AND outbox.sent_at IS NULL"
        )
        con.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox_done)")
        con.execute("DELETE FROM outbox_sent")
        con.execute("DELETE FROM outbox_done")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
