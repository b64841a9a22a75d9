"""Chunks of model rows to typed, normalised Arrow columns per mapped property, with their rejections.

A value becomes what Amplitude will store, in the narrowest type that keeps it: text stays text,
a whole number an integer, a decimal a decimal, a date or timestamp the ISO text it is sent as,
NaN nothing. Whatever has no plain column form (nested values, mixed types in one column, bytes,
UUIDs) becomes canonical JSON text through `amp_sync.values.to_json`, one value at a time.

The tests a row must pass (ids, text length, numbers for `$add`, ...) run as vectorised
expressions that flag every row that may fail; only those rows are looked at again in Python,
by the same functions that decide and word every rejection (`values.to_id`, `RowShaper`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from amp_sync.config import Operation, SyncConfig, SyncObject
from amp_sync.values import (
    JUNK_IDS,
    MAX_STRING,
    MIN_ID_LENGTH,
    Invalid,
    load_json,
    to_group_value,
    to_id,
    to_json,
)

# One encoder for stored and compared JSON text: keys sorted, no spaces, Unicode as it is.
CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_JUNK = pa.array(sorted(JUNK_IDS))
# Ids whose first and last characters are printable ASCII: str.strip() leaves them as they are.
_BORDERED = r"^[!-~](.*[!-~])?$"


class Family(StrEnum):
    """The stored type of one property's values (a DuckDB type)."""

    TEXT = "VARCHAR"
    INT = "BIGINT"
    DOUBLE = "DOUBLE"
    BOOL = "BOOLEAN"
    JSON = "JSON"  # canonical JSON text: nested values, and columns of mixed types
    NULL = "NULL"  # every value so far is NULL: fits any type

    @staticmethod
    def decimal(scale: int) -> str:
        """The decimal type of a given scale (precision is always 38, the widest)."""
        return f"DECIMAL(38,{scale})"


NUMERIC_OPS = frozenset({Operation.ADD})


def is_decimal(kind: str) -> bool:
    """Whether a stored type is a decimal."""
    return kind.startswith("DECIMAL")


def decimal_scale(kind: str) -> int:
    """The scale of a decimal type."""
    return int(kind.rstrip(")").split(",")[1])


def is_numeric(kind: str) -> bool:
    """Whether values of this type are JSON numbers."""
    return kind in (Family.INT, Family.DOUBLE) or is_decimal(kind)


@dataclass(frozen=True, slots=True)
class Slot:
    """One mapped property: where its values come from and the operation that sends them."""

    property: str
    op: str
    column: str


@dataclass(frozen=True, slots=True)
class Layout:
    """What a profile sync reads from each model row."""

    key: str
    link: str | None  # the user id column of a device sync
    slots: tuple[Slot, ...]
    key_label: str
    group: bool  # group values follow other rules than user and device ids

    @classmethod
    def of(cls, config: SyncConfig) -> Layout:
        """The layout of a user, device or group sync."""
        sync = config.sync
        slots = tuple(Slot(m.property, str(m.op), m.column) for m in sync.mappings)
        return cls(sync.key, sync.user_key, slots, sync.key_label, sync.object is SyncObject.GROUP)

    def columns(self) -> list[str]:
        """The model columns it reads, each once."""
        wanted = [self.key, *([self.link] if self.link else []), *(s.column for s in self.slots)]
        return list(dict.fromkeys(wanted))


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk of the model, normalised.

    `table` holds the rows with a valid key: row (position in the model), key, link, reason
    (why the row cannot be sent, or null) and one column per slot, typed as `types` says.
    `refused` holds the rows whose key Amplitude would refuse: (row, key as text, reason).
    """

    table: pa.Table
    types: tuple[str, ...]
    refused: list[tuple[int, str, str]]


class Ingest:
    """Normalises chunks of one model for one profile sync."""

    def __init__(
        self, config: SyncConfig, columns: Sequence[str], json_columns: frozenset[str] = frozenset()
    ) -> None:
        from amp_sync.plan import RowShaper  # the row-at-a-time checks: the words of each rejection

        self.layout = Layout.of(config)
        self.columns = list(columns)
        self.shaper = RowShaper(config, columns)
        self.at = {name: i for i, name in enumerate(columns)}
        self.json_columns = json_columns  # JSON text in Arrow batches: decoded, as drivers decode it
        self.rows = 0

    def chunk(self, data: pa.RecordBatch | pa.Table | Sequence[Sequence[Any]]) -> Chunk:
        """Normalise one chunk: an Arrow batch (any columns of the model) or driver rows."""
        first = self.rows
        if isinstance(data, pa.RecordBatch | pa.Table):
            n = data.num_rows
            decoded = decode_json(data, self.json_columns) if self.json_columns else data
            raw = {name: _column(decoded, name) for name in self.layout.columns()}
            python_rows = None
        else:
            n = len(data)
            python_rows = data
            # Transposed in C: far faster than a loop per column.
            columns = list(zip(*data, strict=True)) if n else [() for _ in self.columns]
            raw = {name: _from_python(list(columns[self.at[name]])) for name in self.layout.columns()}
        self.rows += n
        if n == 0:
            empty = [pa.array([], pa.int64()), *(pa.array([], pa.string()) for _ in range(3))]
            nulls = [pa.array([], pa.string()) for _ in self.layout.slots]
            names = ["row", "key", "link", "reason", *(f"s{i}" for i in range(len(nulls)))]
            return Chunk(pa.table([*empty, *nulls], names=names), (Family.NULL,) * len(nulls), [])
        rows = pa.array(np.arange(first, first + n, dtype=np.int64))
        key, key_flag = _key(raw[self.layout.key], self.layout.group)
        flags = [] if self.layout.link is None else [_id_flag(raw[self.layout.link], nullable=True)]
        values, types = [], []
        for slot in self.layout.slots:
            value, kind, flag = normalise(raw[slot.column], slot.op)
            values.append(value)
            types.append(kind)
            if flag is not None:
                flags.append(pc.fill_null(flag, False))  # a NULL passes every test
        link = _link(raw[self.layout.link]) if self.layout.link else pa.nulls(n, pa.string())
        reason = pa.nulls(n, pa.string())
        refused: list[tuple[int, str, str]] = []
        if key_flag is not None or flags:
            keys, links, reasons, refused = self._recheck(
                data, python_rows, key_flag, flags, key.to_pylist(), link.to_pylist(), first
            )
            key = pa.array(keys, type=pa.string())
            link = pa.array(links, type=pa.string())
            reason = pa.array(reasons, type=pa.string())
        names = ["row", "key", "link", "reason", *(f"s{i}" for i in range(len(values)))]
        table = pa.table([rows, key, link, reason, *values], names=names)
        if refused:
            table = table.filter(pc.is_valid(table["key"]))
        return Chunk(table, tuple(types), refused)

    def _recheck(
        self,
        data: Any,
        python_rows: Sequence[Sequence[Any]] | None,
        key_flag: pa.Array | None,
        flags: list[pa.Array],
        keys: list[str | None],
        links: list[str | None],
        first: int,
    ) -> tuple[list[str | None], list[str | None], list[str | None], list[tuple[int, str, str]]]:
        """Look again, one row at a time, at the rows a vectorised test flagged.

        Returns the keys (None where refused), the user ids of device rows, each row's reason not
        to send it, and the rows refused for their key as (row, key as text, reason).
        """
        flagged = key_flag
        for flag in flags:
            flagged = flag if flagged is None else pc.or_(flagged, flag)
        assert flagged is not None
        picked = pc.indices_nonzero(pc.fill_null(flagged, True)).to_pylist()
        reasons: list[str | None] = [None] * len(keys)
        refused: list[tuple[int, str, str]] = []
        if python_rows is not None:
            rows = [python_rows[i] for i in picked]
        else:
            taken = data.take(pa.array(picked, type=pa.int64())).to_pylist() if picked else []
            rows = [tuple(self._value(r, c) for c in self.columns) for r in taken]
        check = to_group_value if self.layout.group else to_id
        at = self.at[self.layout.key]
        for i, row in zip(picked, rows, strict=True):
            value = row[at]
            key = check(value, self.layout.key_label)
            if isinstance(key, Invalid):
                keys[i] = None
                refused.append((first + i, "" if value is None else str(value), key.reason))
                continue
            keys[i] = key
            if self.layout.link is not None:
                uid = row[self.at[self.layout.link]]
                checked = None if uid is None else to_id(uid, "user id")
                links[i] = checked if isinstance(checked, str) else None
            doc = self.shaper.doc(row)
            if isinstance(doc, Invalid):
                reasons[i] = doc.reason
        return keys, links, reasons, refused

    def _value(self, row: dict[str, Any], column: str) -> Any:
        value = row.get(column)
        return load_json(value) if column in self.json_columns and value is not None else value


def decode_json(data: pa.RecordBatch | pa.Table, names: frozenset[str]) -> pa.Table:
    """JSON text columns as the values they hold (nested values become canonical JSON text)."""
    table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
    for i, name in enumerate(table.column_names):
        if name in names:
            texts = table.column(i).to_pylist()
            table = table.set_column(
                i, name, _Opaque.wrap([None if t is None else load_json(t) for t in texts])
            )
    return table


def _column(data: pa.RecordBatch | pa.Table, name: str) -> pa.Array:
    column = data.column(name)
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _from_python(values: list[Any]) -> pa.Array:
    """Driver values of one column as an Arrow array; JSON text when they have no common type."""
    kinds = set(map(type, values))
    kinds.discard(type(None))
    try:
        if not kinds:
            return pa.nulls(len(values))
        if len(kinds) == 1:
            (kind,) = kinds
            if kind in _ARROW_TYPES:
                return pa.array(values, type=_ARROW_TYPES[kind])
            if kind is Decimal:
                return _decimals(values)
            if kind is dt.datetime:
                return _datetimes(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, ValueError):
        pass
    return _Opaque.wrap(values)


_ARROW_TYPES: dict[type, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    dt.date: pa.date32(),
}


def _decimals(values: list[Any]) -> pa.Array:
    if any(v is not None and not v.is_finite() for v in values):
        raise ValueError("not finite")
    return pa.array(values)


def _datetimes(values: list[Any]) -> pa.Array:
    zoned = {v.tzinfo is not None for v in values if v is not None}
    if zoned == {True}:
        values = [None if v is None else v.astimezone(dt.UTC).replace(tzinfo=None) for v in values]
    elif zoned != {False}:
        raise ValueError("naive and zoned timestamps in one column")
    return pa.array(values, type=pa.timestamp("us"))


class _Opaque:
    """Python values with no common Arrow type, carried as an Arrow array of Python objects' JSON."""

    @staticmethod
    def wrap(values: list[Any]) -> pa.Array:
        encoded = [_json_or_invalid(v) for v in values]
        return pa.ExtensionArray.from_storage(_OPAQUE, pa.array(encoded, type=pa.string()))


class _OpaqueType(pa.ExtensionType):
    """Canonical JSON text of values that had no column type, or "\\x00" + reason when refused."""

    def __init__(self) -> None:
        super().__init__(pa.string(), "amp_sync.opaque")

    def __arrow_ext_serialize__(self) -> bytes:
        return b""

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type: pa.DataType, serialized: bytes) -> _OpaqueType:
        return cls()


_OPAQUE = _OpaqueType()


def _json_or_invalid(value: Any) -> str | None:
    converted = to_json(value)
    if isinstance(converted, Invalid):
        return "\x00" + converted.reason
    return None if converted is None else CANONICAL.encode(converted)


def normalise(array: pa.Array, op: str) -> tuple[pa.Array, str, pa.Array | None]:
    """A column's values as stored and sent, their type, and the rows that may be refused (or None)."""
    kind = array.type
    if isinstance(kind, pa.DictionaryType):
        return normalise(array.dictionary_decode(), op)
    if isinstance(kind, _OpaqueType):
        return _opaque(array, op)
    if pa.types.is_null(kind):
        return pa.nulls(len(array), pa.string()), Family.NULL, None
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        text = array.cast(pa.string())
        too_long = pc.greater(pc.utf8_length(text), MAX_STRING)
        return text, Family.TEXT, _with_add(too_long, text, op)
    if pa.types.is_boolean(kind):
        return array, Family.BOOL, _with_add(None, array, op)
    if pa.types.is_integer(kind) and kind != pa.uint64():
        return array.cast(pa.int64()), Family.INT, None
    if pa.types.is_floating(kind):
        number = array.cast(pa.float64())
        number = pc.if_else(pc.is_nan(number), pa.scalar(None, pa.float64()), number)
        return number, Family.DOUBLE, pc.is_inf(number)
    if pa.types.is_decimal(kind) and kind.precision <= 38 and kind.scale >= 0:
        return array.cast(pa.decimal128(38, kind.scale)), Family.decimal(kind.scale), None
    if pa.types.is_date(kind):
        text = array.cast(pa.date32()).cast(pa.string())
        return text, Family.TEXT, _with_add(None, text, op)
    if pa.types.is_timestamp(kind):
        text = _iso_timestamps(array)
        return text, Family.TEXT, _with_add(None, text, op)
    return _opaque(_Opaque.wrap(array.to_pylist()), op)


def _opaque(array: pa.Array, op: str) -> tuple[pa.Array, str, pa.Array | None]:
    text = array.storage if isinstance(array, pa.ExtensionArray) else array
    refused = pc.starts_with(text, "\x00")
    if op == Operation.ADD:
        number = pc.match_substring_regex(text, r"^-?[0-9]")
        refused = pc.or_(refused, pc.and_(pc.is_valid(text), pc.invert(number)))
    return pc.if_else(refused, pa.scalar(None, pa.string()), text), Family.JSON, refused


def _with_add(flag: pa.Array | None, values: pa.Array, op: str) -> pa.Array | None:
    """`$add` takes numbers only: any other value is a refused row."""
    if op != Operation.ADD:
        return flag
    present = pc.is_valid(values)
    return present if flag is None else pc.or_(flag, present)


def _iso_timestamps(array: pa.Array) -> pa.Array:
    """Timestamps as Amplitude is sent them: UTC, ISO-8601, microseconds only when there are any, "Z"."""
    unit = array.type.unit
    utc = array.cast(pa.timestamp(unit)) if array.type.tz else array  # the UTC instant, without a zone
    micro = utc.cast(pa.timestamp("us"), safe=False)
    seconds = pc.floor_temporal(micro, unit="second")
    base = pc.strftime(seconds.cast(pa.timestamp("s")), format="%Y-%m-%dT%H:%M:%S")
    fraction = pc.subtract(micro.cast(pa.int64()), seconds.cast(pa.int64()))
    digits = pc.utf8_lpad(fraction.cast(pa.string()), 6, "0")
    dotted = pc.if_else(pc.equal(fraction, 0), "", pc.binary_join_element_wise(".", digits, ""))
    return pc.binary_join_element_wise(base, dotted, "Z", "")


def _id_text(array: pa.Array) -> pa.Array | None:
    """An id column as text, when it holds text or whole numbers (None otherwise: checked in Python)."""
    if isinstance(array.type, pa.DictionaryType):
        array = array.dictionary_decode()
    kind = array.type
    if pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return array.cast(pa.string())
    return None


def _key(array: pa.Array, group: bool) -> tuple[pa.Array, pa.Array | None]:
    """The keys as text, and the rows whose key may be refused (None when none may be)."""
    text = _id_text(array)
    if text is None:
        return pa.nulls(len(array), pa.string()), pa.array([True] * len(array))
    flag = _group_flag(text) if group else _id_flag(text, nullable=False)
    return text, flag


def _id_flag(array: pa.Array, nullable: bool) -> pa.Array:
    """Ids that may be placeholders, too short or too long: `to_id` looks at these again."""
    text = _id_text(array)
    if text is None:
        return pc.is_valid(array) if nullable else pa.array([True] * len(array))
    array = text
    length = pc.utf8_length(array)
    odd = pc.or_(pc.less(length, MIN_ID_LENGTH), pc.greater(length, MAX_STRING))
    short = pc.less_equal(length, 40)
    plain = pc.and_(pc.match_substring_regex(array, _BORDERED), pc.string_is_ascii(array))
    junk = pc.is_in(pc.utf8_lower(array), value_set=_JUNK)
    flag = pc.or_(odd, pc.and_(short, pc.or_(pc.invert(plain), junk)))
    return pc.fill_null(flag, False) if nullable else pc.fill_null(flag, True)


def _group_flag(array: pa.Array) -> pa.Array:
    length = pc.utf8_length(array)
    plain = pc.and_(pc.match_substring_regex(array, _BORDERED), pc.string_is_ascii(array))
    return pc.fill_null(pc.or_(pc.greater(length, MAX_STRING), pc.invert(plain)), True)


def _link(array: pa.Array) -> pa.Array:
    text = _id_text(array)
    if text is not None:
        return text
    values = [None if v is None else to_id(v, "user id") for v in array.to_pylist()]
    return pa.array([v if isinstance(v, str) else None for v in values], type=pa.string())
