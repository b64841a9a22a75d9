"""The diff of a profile sync as one statement: model rows against what Amplitude acknowledged.

The model is loaded chunk by chunk into a DuckDB temporary table (it spills to disk past the
memory limit). One statement, built once as a sqlglot tree (`statement`), joins it with the
acknowledged rows by key and yields, per row, its fate (new, changed, unchanged, held, refused,
repeated), a change flag per property and, for rows to send, the request item as JSON text,
its channel and its sender partition. The planner returns what it found (`ProfileDiff`); the
runner queues the items (`queue`) and sends them.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from amp_sync.amplitude import ACCUMULATING, Channel
from amp_sync.config import Operation, SyncConfig, SyncObject
from amp_sync.engine import acked
from amp_sync.engine.ingest import Chunk, Family, Ingest
from amp_sync.engine.sql import (
    DIALECT,
    cast_to,
    common_type,
    differs,
    increment,
    json_key,
    json_of,
    parse,
    text,
)

_COUNTER = itertools.count()
FLUSH_ROWS = 250_000  # rows of the model buffered in Arrow before they are appended to its table
UNSET_OPS = (Operation.SET, Operation.SET_ONCE, Operation.ADD)  # a NULL clears these (values.py)
USER_LINK = "$user_id"


@dataclass(frozen=True, slots=True)
class SlotState:
    """One mapped property during a diff: its model column's type and its stored column."""

    property: str
    op: str
    model_type: str
    stored: acked.Property | None  # None: never acknowledged at this state


@dataclass(slots=True)
class ProfileDiff:
    """What the diff found; `planned` names the temporary table of rows to queue."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    held: int = 0
    rows_read: int = 0
    rejections: list[tuple[str, str]] = field(default_factory=list)
    property_counts: Counter[str] = field(default_factory=Counter)
    sample: list[tuple[str, str, str, Any, Any, bool]] = field(default_factory=list)
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    planned: str = ""


class ProfilePlanner:
    """Loads the model in chunks, then diffs it in one statement against the acknowledged rows."""

    def __init__(
        self,
        config: SyncConfig,
        columns: Sequence[str],
        con: duckdb.DuckDBPyConnection,
        dest: int | None,
        *,
        where: str,
        held: Iterable[str] = (),
        writable: bool = False,
        carried: bool = False,
        sample_limit: int = 5000,
        json_columns: frozenset[str] = frozenset(),
    ) -> None:
        self.config, self.con, self.dest, self.where = config, con, dest, where
        self.writable, self.sample_limit, self.carried = writable, sample_limit, carried
        self.ingest = Ingest(config, columns, json_columns)
        self.slots = self.ingest.layout.slots
        self.tag = next(_COUNTER)
        self.model = f"amp_model_{self.tag}"
        self.types: list[str] | None = None
        self.refused: list[tuple[int, str, str]] = []
        self.held = sorted(set(held))
        self.states: list[SlotState] = []
        self._buffer: list[Chunk] = []
        self._buffered = 0

    # -- loading ------------------------------------------------------------------------------

    def add(self, data: pa.RecordBatch | pa.Table | Sequence[Sequence[Any]]) -> None:
        """Normalise one chunk; chunks reach the model table a few hundred thousand rows at a time."""
        chunk = self.ingest.chunk(data)
        self.refused += chunk.refused
        if self._buffer and self._buffer[0].types != chunk.types:
            self._flush()
        self._buffer.append(chunk)
        self._buffered += chunk.table.num_rows
        if self._buffered >= FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        """Append the buffered chunks (of one set of types) to the model table in one statement.

        One large append costs a tenth of many small ones in DuckDB.
        """
        if not self._buffer:
            return
        chunk = Chunk(pa.concat_tables([c.table for c in self._buffer]), self._buffer[0].types, [])
        self._buffer, self._buffered = [], 0
        if self.types is None:
            self._create(chunk.types)
        assert self.types is not None
        for i, kind in enumerate(chunk.types):
            target = common_type(self.types[i], kind)
            if target != self.types[i]:
                self._retype(i, target)
        values = [
            cast_to(exp.column(f"s{i}"), kind, self.types[i]).sql(DIALECT)
            for i, kind in enumerate(chunk.types)
        ]
        self.con.register("amp_chunk", chunk.table)
        try:
            select = ", ".join(["row", "key", "link", "reason", *values])
            self.con.execute(f"INSERT INTO {self.model} SELECT {select} FROM amp_chunk")
        finally:
            self.con.unregister("amp_chunk")

    def _create(self, types: Sequence[str]) -> None:
        self.types = list(types)
        slots = ", ".join(f"s{i} {_physical(t)}" for i, t in enumerate(types))
        self.con.execute(
            f"CREATE TEMP TABLE {self.model} (row BIGINT, key VARCHAR, link VARCHAR, reason VARCHAR"
            f"{', ' + slots if slots else ''})"
        )

    def _retype(self, i: int, target: str) -> None:
        assert self.types is not None
        using = cast_to(exp.column(f"s{i}"), self.types[i], target).sql(DIALECT)
        self.con.execute(f"ALTER TABLE {self.model} ALTER COLUMN s{i} TYPE {_physical(target)} USING {using}")
        self.types[i] = target

    # -- the diff -----------------------------------------------------------------------------

    def finish(self) -> ProfileDiff:
        """Diff the loaded model against the acknowledged rows."""
        self._flush()
        if self.types is None:
            self._create([Family.NULL] * len(self.slots))
        assert self.types is not None
        states = self._states()
        layout = acked.layout_id(self.con, [(s.property, s.op) for s in self.slots], create=self.writable)
        known_layouts = acked.layouts(self.con)
        stored = [s.stored for s in states if s.stored is not None]
        current = acked.current(self.dest if self.dest is not None else -1, stored, outbox=self.carried)
        held = f"amp_held_{self.tag}"
        self.con.execute(f"CREATE TEMP TABLE {held} (key VARCHAR)")
        if self.held:
            self.con.executemany(f"INSERT INTO {held} VALUES (?)", [[k] for k in self.held])
        statement = self.statement(states, layout, known_layouts, current, held)
        result = ProfileDiff(rows_read=self.ingest.rows, planned=f"amp_planned_{self.tag}")
        self.con.execute(f"CREATE TEMP TABLE {result.planned} AS {statement.sql(DIALECT)}")
        self._counts(result, states, current)
        self._rejections(result)
        self._sample(result, states, current)
        self.states = states
        return result

    def _counts(self, result: ProfileDiff, states: Sequence[SlotState], current: str) -> None:
        kinds = dict(
            self.con.execute(f"SELECT kind, count(*) FROM {result.planned} GROUP BY kind").fetchall()
        )
        result.new, result.changed = int(kinds.get("new", 0)), int(kinds.get("changed", 0))
        result.unchanged, result.held = int(kinds.get("unchanged", 0)), int(kinds.get("held", 0))
        sums = ", ".join([*(f"sum(d{i}::INT)" for i in range(len(states))), "sum(d_link::INT)"])
        row = (
            self.con.execute(
                f"SELECT {sums} FROM {result.planned} WHERE kind IN ('new', 'changed')"
            ).fetchall()
            or [()]
        )[0]
        names = [s.property for s in states] + [USER_LINK]
        for name, n in zip(names, row or (), strict=True):
            if n:
                result.property_counts[name] += int(n)
        if self.dest is not None:
            removed = (
                self.con.execute(
                    f"SELECT count(*) FROM {current} a WHERE NOT EXISTS "
                    f"(SELECT 1 FROM {self.model} m WHERE m.key = a.key)"
                ).fetchall()
                or [()]
            )[0]
            result.removed = int(removed[0]) if removed else 0

    def _rejections(self, result: ProfileDiff) -> None:
        result.rejections = [(key, reason) for _, key, reason in self.refused]
        repeated = self.con.execute(
            f"SELECT key, any_value(times), min(row) AS first FROM {result.planned} WHERE kind = 'repeat' "
            "GROUP BY key ORDER BY first"
        ).fetchall()
        label = self.ingest.layout.key_label
        for key, times, _ in repeated:
            reason = f"{label} appears {times} times in the model; none of its rows is sent"
            result.rejections += [(key, reason)] * int(times)
        bad = self.con.execute(
            f"SELECT key, reason FROM {result.planned} WHERE kind = 'bad' ORDER BY row"
        ).fetchall()
        result.rejections += [(k, r) for k, r in bad]

    def _sample(self, result: ProfileDiff, states: Sequence[SlotState], current: str) -> None:
        """The first field-level changes in model order, with their rows' items."""
        if self.sample_limit <= 0:
            return
        news = [
            json_of(exp.column(f"s{i}", table="m"), s.model_type).sql(DIALECT) for i, s in enumerate(states)
        ]
        olds = [
            json_of(exp.column(s.stored.column, table="a"), s.stored.type).sql(DIALECT)
            if s.stored
            else "NULL"
            for s in states
        ]
        columns = ", ".join(
            ["p.key", "p.item", "p.channel", "p.d_link", "m.link", "a.link",
             *(f"p.d{i}" for i in range(len(states))), *(f"p.present{i}" for i in range(len(states))),
             *news, *olds]
        )  # fmt: skip
        first = (
            f"(SELECT * FROM {result.planned} WHERE kind IN ('new', 'changed') ORDER BY row "
            f"LIMIT {int(self.sample_limit)})"
        )
        rows = self.con.execute(
            f"SELECT {columns} FROM {first} p JOIN {self.model} m ON m.row = p.row "
            f"LEFT JOIN {current} a ON a.key = p.key ORDER BY p.row"
        ).fetchall()
        n = len(states)
        for row in rows:
            room = self.sample_limit - len(result.sample)
            if room <= 0:
                break
            key, item, channel, d_link, link, old_link = row[:6]
            flags, present = row[6 : 6 + n], row[6 + n : 6 + 2 * n]
            new_values, old_values = row[6 + 2 * n : 6 + 3 * n], row[6 + 3 * n :]
            changes = [
                (
                    key,
                    s.property,
                    s.op,
                    _load(old_values[i]) if present[i] else None,
                    _load(new_values[i]),
                    not present[i],
                )
                for i, s in enumerate(states)
                if flags[i]
            ]
            if d_link:
                changes.append((key, USER_LINK, "$user", old_link, link, old_link is None))
            result.sample += changes[:room]
            result.payloads[key] = _identification(json.loads(item), channel, self.config)

    def close(self) -> None:
        """Drop the temporary tables of this plan."""
        for table in (self.model, f"amp_planned_{self.tag}", f"amp_held_{self.tag}"):
            self.con.execute(f"DROP TABLE IF EXISTS {table}")

    def _states(self) -> list[SlotState]:
        assert self.types is not None
        known = acked.properties(self.con)
        states = []
        for slot, kind in zip(self.slots, self.types, strict=True):
            prop = known.get(slot.property)
            if self.writable:
                prop = acked.hold(self.con, slot.property, kind)
            states.append(SlotState(slot.property, slot.op, kind, prop))
        return states

    def statement(
        self,
        states: Sequence[SlotState],
        layout: int | None,
        known_layouts: dict[int, dict[str, str]],
        current: str,
        held: str,
    ) -> exp.Expr:
        """The diff statement: one row per model row with a valid key.

        Three steps, each naming what the next one uses: the join of the model with the
        acknowledged rows and each property's change flag; the properties object of the item;
        the item, its channel and partition.
        """
        n = len(states)
        flagged = self._flags(states, layout, known_layouts, current, held)
        col = exp.column
        news = [col(f"s{i}", table="m") for i in range(n)]
        olds = [col(f"o{i}", table="m") for i in range(n)]
        flags = [col(f"d{i}", table="m") for i in range(n)]
        present = [col(f"present{i}", table="m") for i in range(n)]
        old_types = [s.stored.type if s.stored is not None else Family.NULL for s in states]
        props = self._properties(states, news, olds, old_types, flags, present)
        items = _Items(self.config, self.where)
        events = items.events(states, news, flags)
        with_props = exp.select(
            "m.*", exp.alias_(props, "props"), exp.alias_(events, "events"), copy=False
        ).from_(exp.alias_(exp.paren(flagged), "m"), copy=False)
        item, channel, part = items.item(col("props", table="m"), col("events", table="m"))
        synthetic = items.synthetic(col("props", table="m"), states, news, flags)
        sending = parse("m.kind IN ('new', 'changed')")
        final: list[exp.Expr] = [
            *(col(c, table="m") for c in ("row", "key", "times", "reason", "kind", "seq", "d_link")),
            *(col(f"d{i}", table="m") for i in range(n)),
            *(col(f"present{i}", table="m") for i in range(n)),
            *(
                exp.alias_(parse("CASE WHEN :s THEN :v END", s=sending, v=value), name)
                for value, name in (
                    (item, "item"),
                    (channel, "channel"),
                    (part, "part"),
                    (synthetic, "synthetic"),
                )
            ),
        ]
        return exp.select(*final, copy=False).from_(exp.alias_(exp.paren(with_props), "m"), copy=False)

    def _flags(
        self,
        states: Sequence[SlotState],
        layout: int | None,
        known_layouts: dict[int, dict[str, str]],
        current: str,
        held: str,
    ) -> exp.Expr:
        """The model joined with the acknowledged rows: each row's fate and each property's flag."""
        status = _layout_status(states, known_layouts)
        olds = [
            exp.column(s.stored.column, table="a") if s.stored is not None else exp.Null() for s in states
        ]
        old_types = [s.stored.type if s.stored is not None else Family.NULL for s in states]
        news = [exp.column(f"s{i}", table="m") for i in range(len(states))]
        flags = []
        for i, s in enumerate(states):
            flags.append(
                parse(
                    "CASE WHEN a.key IS NULL OR coalesce(:st, 0) = 0 THEN :n IS NOT NULL "
                    "WHEN :st = 2 THEN TRUE ELSE coalesce(:same, FALSE) END",
                    st=exp.column(f"st{i}", table="l"),
                    n=news[i],
                    same=differs(news[i], s.model_type, olds[i], old_types[i]),
                )
            )
        # A user id that goes away changes the row but is no field change: Amplitude cannot unlink.
        link_flag = parse("m.link IS NOT NULL AND (a.key IS NULL OR m.link IS DISTINCT FROM a.link)")
        any_change = exp.or_(
            parse("a.layout IS DISTINCT FROM :layout", layout=exp.Literal.number(layout if layout else -1)),
            parse("m.link IS DISTINCT FROM a.link"),
            *flags,
        )
        kind = parse(
            "CASE WHEN m.times > 1 THEN 'repeat' WHEN h.key IS NOT NULL THEN 'held' "
            "WHEN m.reason IS NOT NULL THEN 'bad' WHEN a.key IS NULL THEN 'new' "
            "WHEN :changed THEN 'changed' ELSE 'unchanged' END",
            changed=any_change,
        )
        present = [
            parse("a.key IS NOT NULL AND coalesce(l.st" + str(i) + ", 0) <> 0") for i in range(len(states))
        ]
        selects: list[exp.Expr] = [
            *(exp.column(c, table="m") for c in ("row", "key", "times", "reason", "link")),
            *news,
            exp.alias_(kind, "kind"),
            exp.alias_(parse("coalesce(a.seq, 0) + 1"), "seq"),
            exp.alias_(link_flag, "d_link"),
            *(exp.alias_(o, f"o{i}") for i, o in enumerate(olds)),
            *(exp.alias_(f, f"d{i}") for i, f in enumerate(flags)),
            *(exp.alias_(p, f"present{i}") for i, p in enumerate(present)),
        ]
        counted = sqlglot.parse_one(
            f"SELECT *, count(*) OVER (PARTITION BY key) AS times FROM {self.model}", read=DIALECT
        )
        acknowledged = exp.paren(sqlglot.parse_one(current.strip("()"), read=DIALECT))
        return (
            exp.select(*selects, copy=False)
            .from_(exp.alias_(exp.paren(counted), "m"), copy=False)
            .join(exp.alias_(acknowledged, "a"), on="a.key = m.key", join_type="left", copy=False)
            .join(exp.alias_(status, "l"), on="l.layout = a.layout", join_type="left", copy=False)
            .join(exp.alias_(exp.to_table(held), "h"), on="h.key = m.key", join_type="left", copy=False)
        )

    def _properties(
        self,
        states: Sequence[SlotState],
        news: Sequence[exp.Expr],
        olds: Sequence[exp.Expr],
        old_types: list[str],
        flags: Sequence[exp.Expr],
        present: Sequence[exp.Expr],
    ) -> exp.Expr:
        """The properties object of the item: {"<op>": {property: value}, "$unset": {...}}."""
        groups: dict[str, list[exp.Expr]] = {}
        unset: list[exp.Expr] = []
        for i, s in enumerate(states):
            value = json_of(news[i], s.model_type)
            if s.op == Operation.ADD:
                value = parse(
                    "CASE WHEN :p AND :number THEN :inc ELSE :v END",
                    p=present[i],
                    number=_is_number(olds[i], old_types[i]),
                    inc=increment(news[i], s.model_type, olds[i], old_types[i]),
                    v=value,
                )
            entry = parse(
                "CASE WHEN :d AND :n IS NOT NULL THEN :k || :v END",
                d=flags[i],
                n=news[i],
                k=json_key(s.property),
                v=value,
            )
            groups.setdefault(s.op, []).append(entry)
            if s.op in UNSET_OPS:
                unset.append(
                    parse(
                        "CASE WHEN :d AND :n IS NULL AND :p THEN :k || '\"-\"' END",
                        d=flags[i],
                        n=news[i],
                        p=present[i],
                        k=json_key(s.property),
                    )
                )
        parts = [_group(op, entries) for op, entries in groups.items()]
        if unset:
            parts.append(_group("$unset", unset))
        inner = exp.func("concat_ws", text(","), *parts, dialect=DIALECT) if parts else text("")
        return parse("'{' || :inner || '}'", inner=inner)


def _group(op: str, entries: list[exp.Expr]) -> exp.Expr:
    inner = exp.func("concat_ws", text(","), *entries, dialect=DIALECT)
    return parse("CASE WHEN :i <> '' THEN :k || '{' || :i || '}' END", i=inner, k=json_key(op))


def _is_number(value: exp.Expr, kind: str) -> exp.Expr:
    if kind in (Family.INT, Family.DOUBLE) or kind.startswith("DECIMAL"):
        return parse(":v IS NOT NULL", v=value)
    if kind == Family.JSON:
        return parse("coalesce(json_type(:v) IN ('BIGINT', 'UBIGINT', 'DOUBLE'), FALSE)", v=value)
    return exp.false()


class _Items:
    """The request items of one sync, as SQL over the diff's row."""

    def __init__(self, config: SyncConfig, where: str) -> None:
        self.sync = config.sync
        self.where = where

    def _dedup(self, props: exp.Expr, *extra: str) -> exp.Expr:
        tail = "".join("\x00" + e for e in extra)
        return parse(
            "'amp_sync-' || md5(:name || chr(0) || :where || chr(0) || m.key || chr(0) || "
            "CAST(m.seq AS VARCHAR) || chr(0) || :props || :tail)",
            name=text(self.sync.name),
            where=text(self.where),
            props=props,
            tail=text(tail),
        )

    def _ids(self) -> exp.Expr:
        """The id fields of an Identify item ("user_id", "device_id")."""
        if self.sync.object is SyncObject.USER:
            return parse("'\"user_id\":' || CAST(to_json(coalesce(m.link, m.key)) AS VARCHAR)")
        return parse(
            "'\"device_id\":' || CAST(to_json(m.key) AS VARCHAR) || "
            "CASE WHEN m.link IS NOT NULL THEN ',\"user_id\":' || CAST(to_json(m.link) AS VARCHAR) "
            "ELSE '' END"
        )

    def events(
        self, states: Sequence[SlotState], news: Sequence[exp.Expr], flags: Sequence[exp.Expr]
    ) -> exp.Expr:
        """Whether the item adds to what is there ($add, $append, $prepend): it travels as an event."""
        accumulating = [
            parse(":d AND :n IS NOT NULL", d=flags[i], n=news[i])
            for i, s in enumerate(states)
            if s.op in ACCUMULATING
        ]
        return exp.or_(*accumulating) if accumulating else exp.false()

    def item(self, props: exp.Expr, events: exp.Expr) -> tuple[exp.Expr, exp.Expr, exp.Expr]:
        """The item, its channel and its partition key."""
        part = parse("hash(coalesce(m.link, m.key))")
        if self.sync.object is SyncObject.GROUP:
            group_type = text(json.dumps(self.sync.options.group_type, ensure_ascii=False))
            user = parse(
                "CASE WHEN m.link IS NOT NULL THEN ',\"user_id\":' || CAST(to_json(m.link) AS VARCHAR) "
                "ELSE '' END"
            )
            plain = parse(
                "'{\"group_type\":' || :gt || ',\"group_value\":' || "
                "CAST(to_json(m.key) AS VARCHAR) || :user || "
                "',\"group_properties\":' || :props || '}'",
                gt=group_type,
                user=user,
                props=props,
            )
            event = parse(
                '\'{"event_type":"$groupidentify","groups":{\' || :gt || \':\' || '
                "CAST(to_json(m.key) AS VARCHAR) || "
                "'},\"group_properties\":' || :props || ',\"insert_id\":\"' || :dedup || '\"}'",
                gt=group_type,
                props=props,
                dedup=self._dedup(props),
            )
            plain_channel = text(Channel.GROUPS)
        else:
            plain = parse(
                "'{' || :ids || ',\"user_properties\":' || :props || '}'", ids=self._ids(), props=props
            )
            event = parse(
                "'{' || :ids || ',\"user_properties\":' || :props || "
                '\',"event_type":"$identify","insert_id":"\' || :dedup || \'"}\'',
                ids=self._ids(),
                props=props,
                dedup=self._dedup(props),
            )
            plain_channel = text(Channel.IDENTIFY)
        item = parse("CASE WHEN :e THEN :event ELSE :plain END", e=events, event=event, plain=plain)
        channel = parse(
            "CASE WHEN :e THEN :events ELSE :plain END",
            e=events,
            events=text(Channel.EVENTS),
            plain=plain_channel,
        )
        return item, channel, part

    def synthetic(
        self,
        props: exp.Expr,
        states: Sequence[SlotState],
        news: Sequence[exp.Expr],
        flags: Sequence[exp.Expr],
    ) -> exp.Expr:
        """The "updated" event that follows the profile update, or NULL when the sync sends none."""
        name = self.sync.options.synthetic_event
        if not name or self.sync.object not in (SyncObject.USER, SyncObject.DEVICE):
            return exp.Null()
        values = [
            parse(
                "CASE WHEN :d AND :n IS NOT NULL THEN :k || :v END",
                d=flags[i],
                n=news[i],
                k=json_key(s.property),
                v=json_of(news[i], s.model_type),
            )
            for i, s in enumerate(states)
            if s.op == Operation.SET
        ]
        inner = exp.func("concat_ws", text(","), *values, dialect=DIALECT) if values else text("")
        user_properties = parse(
            "CASE WHEN :i <> '' THEN ',\"user_properties\":{' || :i || '}' ELSE '' END", i=inner
        )
        return parse(
            "'{' || :ids || ',\"event_type\":' || :name || :up || ',\"insert_id\":\"' || :dedup || '\"}'",
            ids=self._ids(),
            name=text(json.dumps(name, ensure_ascii=False)),
            up=user_properties,
            dedup=self._dedup(props, "synthetic"),
        )


def _layout_status(states: Sequence[SlotState], known: dict[int, dict[str, str]]) -> exp.Expr:
    """Per known layout and slot: 0 the property was not in it, 1 it was with this op, 2 with another."""
    names = ["layout", *(f"st{i}" for i in range(len(states)))]
    rows = []
    for layout_id, pairs in sorted(known.items()):
        codes = [0 if s.property not in pairs else 1 if pairs[s.property] == s.op else 2 for s in states]
        rows.append(exp.Tuple(expressions=[exp.Literal.number(v) for v in (layout_id, *codes)]))
    if not rows:
        rows.append(exp.Tuple(expressions=[exp.Literal.number(-1), *(exp.Literal.number(0) for _ in states)]))
    values = exp.Values(expressions=rows, alias=exp.TableAlias(columns=[exp.to_identifier(n) for n in names]))
    return exp.paren(exp.select("*").from_(values))


def queue(
    con: duckdb.DuckDBPyConnection,
    planner: ProfilePlanner,
    diff: ProfileDiff,
    *,
    dest: int,
    run_id: int | None,
    lanes: int,
    now: float,
) -> int:
    """Append the diff's items (and their synthetic events) to the outbox; returns how many."""
    states = planner.states
    layout = acked.layout_id(con, [(s.property, s.op) for s in planner.slots], create=True)
    values = [
        cast_to(exp.column(f"s{i}", table="m"), s.model_type, s.stored.type).sql(DIALECT)
        for i, s in enumerate(states)
        if s.stored is not None
    ]
    columns = [s.stored.column for s in states if s.stored is not None]
    base = int(con.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchall()[0][0])
    sending = f"{diff.planned} p JOIN {planner.model} m ON m.row = p.row WHERE p.item IS NOT NULL"
    count = int(con.execute(f"SELECT count(*) FROM {sending}").fetchall()[0][0])
    listed = "".join(f', "{c}"' for c in columns)
    picked = "".join(f", {v}" for v in values)
    run = "NULL" if run_id is None else str(int(run_id))
    con.execute("BEGIN")
    try:
        con.execute(
            f"INSERT INTO outbox (id, dest, run_id, key, part, channel, item, seq, layout, link, planned_at"
            f"{listed}) SELECT {base} + row_number() OVER (ORDER BY p.row), {int(dest)}, {run}, p.key, "
            f"p.part % {int(lanes)}, p.channel, p.item, p.seq, {int(layout or 0)}, m.link, {now!r}{picked} "
            f"FROM {sending}"
        )
        con.execute(
            f"INSERT INTO outbox (id, dest, run_id, key, part, channel, item, seq, follows, planned_at) "
            f"SELECT {base + count} + row_number() OVER (ORDER BY p.row), {int(dest)}, {run}, p.key, "
            f"p.part % {int(lanes)}, 'synthetic', p.synthetic, p.seq, "
            f"{base} + row_number() OVER (ORDER BY p.row), {now!r} FROM {sending} AND p.synthetic IS NOT NULL"
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return count


def _load(text_: str | None) -> Any:
    return None if text_ is None else json.loads(text_)


def _identification(item: dict[str, Any], channel: str, config: SyncConfig) -> dict[str, Any]:
    """The Identify item an $identify or $groupidentify event carries (what a preview shows)."""
    if channel != Channel.EVENTS:
        return item
    if "groups" in item:
        ((group_type, value),) = item["groups"].items()
        return {"group_type": group_type, "group_value": value, "group_properties": item["group_properties"]}
    return {k: v for k, v in item.items() if k not in ("event_type", "insert_id")}


def _physical(kind: str) -> str:
    return Family.TEXT if kind == Family.NULL else kind
