"""Rows to a sync plan: validate each row, diff it against the snapshot, queue what must be sent."""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeGuard

import numpy as np
import pyarrow as pa

from amp_sync.amplitude import ACCUMULATING, Channel
from amp_sync.config import Operation, Sync, SyncConfig, SyncObject
from amp_sync.outbox import Outbox
from amp_sync.snapshot import SnapshotIndex, digest, key_hash, raw_hash
from amp_sync.state import SEQ, DestinationRef
from amp_sync.values import MAX_STRING, Invalid, JsonValue, plain_id, to_group_value, to_id, to_json

# A device row's user id is kept in the snapshot under a name no property can take.
USER_LINK = "$user_id"
SAMPLE_LIMIT = 5000

Doc = dict[str, list[Any]]  # property -> [operation, JSON value]


class Kind(IntEnum):
    """What the plan does with one key."""

    NEW = 0
    CHANGED = 1
    UNCHANGED = 2
    BAD = 3
    HELD = 4  # an earlier update of the key is still in doubt: left alone this run


@dataclass(frozen=True, slots=True)
class Rejection:
    """A row that is not sent, with its key and the reason in words."""

    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One property of one key: the value Amplitude last acknowledged and the one to send."""

    key: str
    property: str
    op: str
    before: JsonValue
    after: JsonValue
    first_sync: bool


@dataclass(slots=True)
class Plan:
    """Counts and details of what a run would send; the outbox holds the requests' items."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    property_counts: Counter[str] = field(default_factory=Counter)
    sample: list[FieldChange] = field(default_factory=list)
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)  # the sample's request items
    columns: list[str] = field(default_factory=list)
    rows_read: int = 0
    synthetic: int = 0  # "updated" events that follow the profiles sent (synthetic_event)
    first_time: int | None = None  # event syncs: the earliest and latest event to send, ms
    last_time: int | None = None
    reverts_run: int | None = None  # a revert: the run whose changes it undoes
    held: int = 0  # rows left alone: an earlier update of their key is still in doubt

    @property
    def rejected(self) -> int:
        """Rows that will not be sent."""
        return len(self.rejections)

    @property
    def to_send(self) -> int:
        """Rows (new or changed) that a run sends."""
        return self.new + self.changed


# One encoder for every row: json.dumps with options builds a new one on each call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(doc: Doc) -> str:
    """The one text form of a row's fields, used for hashing and storage."""
    return _CANONICAL.encode(doc)


def partition_key(identity: str) -> int:
    """A user's stable partition key: modulo the senders, one user always goes through one."""
    return zlib.crc32(identity.encode("utf-8"))


def partition_of(identity: str, partitions: int) -> int:
    """Stable partition for a user, so one user's changes always go through one sender."""
    return partition_key(identity) % partitions


class RowShaper:
    """Turns a model row into (key, fields) or a Rejection, for one sync and column list."""

    def __init__(self, config: SyncConfig, columns: Sequence[str]) -> None:
        pos = {name: i for i, name in enumerate(columns)}
        sync = config.sync
        self.key_label = sync.key_label
        self.key_at = pos[sync.key]
        self.user_at = pos[sync.user_key] if sync.user_key else None
        self.fields = [(pos[m.column], m.property, str(m.op)) for m in sync.mappings]
        needed = [
            self.key_at,
            *([self.user_at] if self.user_at is not None else []),
            *(f[0] for f in self.fields),
        ]
        self.needed = tuple(dict.fromkeys(needed))
        # The raw hash covers the mapping too: any edit to it sends every row the exact way.
        self.layout = json.dumps([sync.key, sync.user_key, [list(f) for f in self.fields]]).encode()

    def raws(self, rows: Sequence[Sequence[Any]]) -> list[int]:
        """Each row's raw hash under this sync's columns and mapping."""
        layout, needed = self.layout, self.needed
        try:
            if needed == tuple(range(len(needed))) and all(len(r) == len(needed) for r in rows[:1]):
                return [raw_hash(layout, tuple(r)) for r in rows]  # the model is exactly the mapped columns
            return [raw_hash(layout, tuple(r[i] for i in needed)) for r in rows]
        except RecursionError:  # a value nested deeper than repr() goes: hash row by row
            return [_raw_or_deep(layout, tuple(r[i] for i in needed)) for r in rows]

    def doc(self, row: Sequence[Any]) -> Doc | Invalid:
        """The row's mapped fields as JSON, or the first reason one cannot be sent."""
        doc: Doc = {}
        for at, prop, op in self.fields:
            value = row[at]
            kind = type(value)
            # Most values are already JSON: skip the general converter for them.
            if (kind is str and len(value) > MAX_STRING) or kind not in _PLAIN:
                value = to_json(value)
                if isinstance(value, Invalid):
                    return Invalid(f"{prop}: {value.reason}")
            if op == Operation.ADD and value is not None and not _number(value):
                return Invalid(f"{prop}: $add needs a number, not {_what(value)}")
            doc[prop] = [op, value]
        if self.user_at is not None and row[self.user_at] is not None:
            uid = to_id(row[self.user_at], "user id")
            if isinstance(uid, Invalid):
                return uid
            doc[USER_LINK] = ["$user", uid]
        return doc


_PLAIN = frozenset({str, int, bool, type(None)})
# Not NO_RAW, which rows stored without a raw hash carry: a stored row matches this value only
# by a 64-bit coincidence, so the row is looked at afresh.
_TOO_DEEP = 1


def _raw_or_deep(layout: bytes, values: tuple[Any, ...]) -> int:
    """The raw hash, or _TOO_DEEP for a row whose values nest deeper than repr() can go.

    Such a row takes the exact path, where to_json refuses it in words: it keeps MAX_DEPTH
    levels, far fewer than Python's recursion limit.
    """
    try:
        return raw_hash(layout, values)
    except RecursionError:
        return _TOO_DEEP


def _what(value: Any) -> str:
    """A value's kind in words, for a rejection that must not repeat the whole value."""
    if isinstance(value, str):
        return f"the text {value[:40]!r}" if len(value) <= 40 else f"the text {value[:37]!r}..."
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, list | dict):
        return "a list" if isinstance(value, list) else "an object"
    return f"a {type(value).__name__}"


def _shell(obj: SyncObject, key: str, group_type: str | None) -> tuple[dict[str, Any], str]:
    """An empty request item for `key`, and the name of its properties field."""
    if obj is SyncObject.GROUP:
        return {"group_type": group_type, "group_value": key}, "group_properties"
    return ({"user_id": key} if obj is SyncObject.USER else {"device_id": key}), "user_properties"


def properties_of(item: dict[str, Any]) -> dict[str, Any]:
    """The property operations of an Identify or Group Identify item."""
    return item.get("user_properties") or item.get("group_properties") or {}


def new_item(
    obj: SyncObject, key: str, new: Doc, group_type: str | None = None
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The request item and changed properties of a key Amplitude has never acknowledged.

    The same as identification(field_changes(key, None, new)) without building a FieldChange per
    property: a full backfill makes one of these per row.
    """
    item, props_field = _shell(obj, key, group_type)
    props: dict[str, dict[str, Any]] = {}
    changed = []
    for prop, (op, value) in new.items():
        if value is None:
            continue
        changed.append(prop)
        if prop == USER_LINK:
            item["user_id"] = value
        else:
            props.setdefault(op, {})[prop] = value
    item[props_field] = props
    return item, tuple(changed)


def field_changes(key: str, old: Doc | None, new: Doc) -> list[FieldChange]:
    """Properties whose operation or value differ from the snapshot (all non-null if new)."""
    changes = []
    for prop, (op, value) in new.items():
        before = old.get(prop) if old else None
        if before is not None and same_field(before, [op, value]):
            continue
        if before is None and value is None:
            continue  # nothing known, nothing to clear
        prev = before[1] if before else None
        changes.append(FieldChange(key, prop, op, prev, value, before is None))
    return changes


def same_field(a: list[Any], b: list[Any]) -> bool:
    """The same operation and value, as Amplitude would see them."""
    # JSON text, not ==, because True == 1 == 1.0 in Python but not in Amplitude.
    return a == b and json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def identification(
    obj: SyncObject, key: str, new: Doc, changes: Iterable[FieldChange], group_type: str | None = None
) -> dict:
    """The Identify (or Group Identify) item that applies `changes` to the profile `key`."""
    item, props_field = _shell(obj, key, group_type)
    link = new.get(USER_LINK)
    if link is not None:
        item["user_id"] = link[1]
    props: dict[str, dict[str, Any]] = {}
    for change in changes:
        if change.property != USER_LINK:
            _add_operation(props, change)
    item[props_field] = props
    return item


def _add_operation(props: dict[str, dict[str, Any]], change: FieldChange) -> None:
    op, value, before = change.op, change.after, change.before
    if value is None:
        # A running total ($add) that becomes NULL is cleared too, so the next number starts
        # the total again: 10, NULL, 5 ends at 5 in Amplitude, as in the column.
        if op in (Operation.SET, Operation.SET_ONCE, Operation.ADD) and not change.first_sync:
            props.setdefault("$unset", {})[change.property] = "-"
        return  # list operations have nothing to add for a null
    if op == Operation.ADD and _number(value) and _number(before) and not change.first_sync:
        # $add of a running total sends the increment since the last acknowledged value.
        value = value - before
    props.setdefault(op, {})[change.property] = value


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def insert_id(*parts: str) -> str:
    """A deterministic insert_id: the same parts always give the same id, so resends de-duplicate."""
    hashed = hashlib.blake2b("\x00".join(parts).encode(), digest_size=16)
    return f"amp_sync-{hashed.hexdigest()}"


def update_id(sync: Sync, where: str, key: str, seq: int, props: dict[str, Any], *extra: str) -> str:
    """The insert_id of one update: of this sync, destination, key, update count and content.

    A resend of the same update (from the outbox, byte for byte) has the same id and is dropped
    by Amplitude; a different update of the same key never reuses it, even when an earlier
    update's answer was lost and the update count did not move.
    """
    return insert_id(sync.name, where, key, str(seq), _CANONICAL.encode(props), *extra)


def wire(sync: Sync, where: str, key: str, item: dict[str, Any], seq: int) -> tuple[Channel, dict[str, Any]]:
    """The channel and request item: accumulating operations go as de-duplicated events."""
    props = properties_of(item)
    if not ACCUMULATING.intersection(props):
        return (Channel.GROUPS if sync.object is SyncObject.GROUP else Channel.IDENTIFY), item
    # Only HTTP V2 de-duplicates (on insert_id, for 7 days), so a resend after a lost answer is
    # dropped instead of adding twice: https://amplitude.com/docs/apis/analytics/http-v2
    dedup = update_id(sync, where, key, seq, props)
    if sync.object is SyncObject.GROUP:
        groups = {item["group_type"]: item["group_value"]}
        event = {"event_type": "$groupidentify", "groups": groups, "group_properties": props}
        return Channel.EVENTS, {**event, "insert_id": dedup}
    return Channel.EVENTS, {**item, "event_type": "$identify", "insert_id": dedup}


def synthetic_event(sync: Sync, where: str, item: dict[str, Any], key: str, seq: int) -> dict[str, Any]:
    """The "updated" event that follows an acknowledged profile update, carrying the values set.

    On an event other than $identify, user_properties is a plain dict of values that Amplitude
    applies and shows on this event at once (https://amplitude.com/docs/data/user-properties-and-events).
    """
    event: dict[str, Any] = {name: item[name] for name in ("user_id", "device_id") if name in item}
    event["event_type"] = sync.options.synthetic_event
    values = properties_of(item).get(Operation.SET)
    if values:
        event["user_properties"] = dict(values)
    event["insert_id"] = update_id(sync, where, key, seq, properties_of(item), "synthetic")
    return event


def queue_update(
    outbox: Outbox,
    sync: Sync,
    where: str,
    key: str,
    item: dict[str, Any],
    commit: tuple[str, bytes, int, int, str | None],
) -> None:
    """Queue one profile update, and the synthetic event that follows it if the sync has one.

    `commit` is what the snapshot records once Amplitude acknowledges the update: the doc text,
    its digest, the raw hash, the key's update count and the doc it replaces. `where` is the
    destination's identity, part of every insert_id.
    """
    text, fp, raw, seq, before = commit
    channel, sent = wire(sync, where, key, item, seq)
    part = partition_key(item.get("user_id") or key)
    outbox.add(key, part, sent, text, fp, raw, seq, channel, before)
    if sync.options.synthetic_event and sync.object in (SyncObject.USER, SyncObject.DEVICE):
        event = synthetic_event(sync, where, item, key, seq)
        outbox.add(key, part, event, "", fp, 0, seq, Channel.SYNTHETIC)


def without_seq(doc: dict[str, Any]) -> Doc:
    """A snapshot doc as it was acknowledged, without the update count read back with it."""
    return {k: v for k, v in doc.items() if k != SEQ}


class Planner:
    """Streams chunks of rows through validation and diff; queues new and changed rows.

    Per row it keeps only a key hash, a kind and a change-set id (and the key in Arrow form), so
    memory grows by a few dozen bytes a row; repeated keys and counts are settled at the end.
    """

    def __init__(
        self,
        config: SyncConfig,
        columns: Sequence[str],
        index: SnapshotIndex,
        snapshot_docs: Callable[[list[str]], dict[str, Doc]],
        outbox: Outbox | None,
        refresh: Callable[[list[tuple[int, str]]], None] | None = None,
        held: Iterable[str] = (),
    ) -> None:
        self.config, self.index, self.outbox = config, index, outbox
        self.where = DestinationRef.of(config.destination).ident
        self.shaper = RowShaper(config, columns)
        self.snapshot_docs, self.refresh = snapshot_docs, refresh
        self.held = np.unique(np.fromiter(map(key_hash, held), dtype=np.int64))
        self.plan = Plan(columns=list(columns))
        self.signatures: dict[tuple[str, ...], int] = {(): 0}
        self.bad: dict[str, str] = {}
        self._hashes: list[np.ndarray] = []
        self._kinds: list[np.ndarray] = []
        self._sigs: list[np.ndarray] = []
        self._keys: list[pa.Array] = []
        self._refreshed: list[tuple[int, str]] = []

    def add(self, rows: Sequence[Sequence[Any]]) -> None:
        """Plan one chunk of rows."""
        keys, valid = self._keys_of(rows)
        n = len(keys)
        hashes = np.fromiter(map(key_hash, keys), dtype=np.int64, count=n)
        raws = np.fromiter(self.shaper.raws(valid), dtype=np.int64, count=n)
        pos = self.index.find(hashes)
        hit = pos >= 0
        unchanged = hit & (self.index.raws[np.maximum(pos, 0)] == raws) if len(self.index) else hit
        kinds = np.full(n, Kind.UNCHANGED, dtype=np.int8)
        sigs = np.zeros(n, dtype=np.int32)
        if self.held.size:  # keys whose earlier update is in doubt wait for its answer
            held = np.isin(hashes, self.held)
            kinds[held] = Kind.HELD
            unchanged = unchanged | held
        exact = np.flatnonzero(~unchanged)
        old_docs = self.snapshot_docs([keys[i] for i in exact if hit[i]]) if exact.size else {}
        for i in exact:
            stored = self.index.digests[pos[i]] if hit[i] else None
            kinds[i], sigs[i] = self._exact(keys[i], valid[i], int(raws[i]), stored, old_docs.get(keys[i]))
        self._hashes.append(hashes)
        self._kinds.append(kinds)
        self._sigs.append(sigs)
        self._keys.append(pa.array(keys, type=pa.string()))
        self._flush_refreshed(5_000)

    def _keys_of(self, rows: Sequence[Sequence[Any]]) -> tuple[list[str], list[Sequence[Any]]]:
        keys: list[str] = []
        valid: list[Sequence[Any]] = []
        at, label, plain = self.shaper.key_at, self.shaper.key_label, plain_id
        checked = to_group_value if self.config.sync.object is SyncObject.GROUP else to_id
        for row in rows:
            value = row[at]
            key = value if plain(value) else checked(value, label)
            if isinstance(key, Invalid):
                self.plan.rejections.append(Rejection("" if value is None else str(value), key.reason))
            else:
                keys.append(key)
                valid.append(row)
        self.plan.rows_read += len(rows)
        return keys, valid

    def _exact(
        self, key: str, row: Sequence[Any], raw: int, stored: bytes | None, old: Doc | None
    ) -> tuple[int, int]:
        """Values to JSON, digest and field diff: for rows the raw hash could not vouch for."""
        doc = self.shaper.doc(row)
        if isinstance(doc, Invalid):
            self.bad[key] = doc.reason
            return Kind.BAD, 0
        text = canonical(doc)
        fp = digest(key, text)
        if stored == fp:
            self._refreshed.append((raw, key))
            return Kind.UNCHANGED, 0
        item, signature = self._item(key, doc, old)
        if self.outbox is not None:
            acknowledged: Any = (old or {}).get(SEQ, 0)
            seq = int(acknowledged) + 1
            before = canonical(without_seq(old)) if old is not None else None
            commit = (text, fp, raw, seq, before)
            queue_update(self.outbox, self.config.sync, self.where, key, item, commit)
        sig = self.signatures.setdefault(signature, len(self.signatures))
        return (Kind.NEW if old is None else Kind.CHANGED), sig

    def _item(self, key: str, doc: Doc, old: Doc | None) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The request item and the changed properties; the first rows also fill the sample."""
        room = SAMPLE_LIMIT - len(self.plan.sample)
        sync = self.config.sync
        if old is None and room <= 0:  # a new key past the sample: the short way
            return new_item(sync.object, key, doc, sync.options.group_type)
        changes = field_changes(key, old, doc)
        item = identification(sync.object, key, doc, changes, sync.options.group_type)
        if room > 0:
            self.plan.sample += changes[:room]
            self.plan.payloads[key] = item
        return item, tuple(c.property for c in changes)

    def _flush_refreshed(self, at_least: int) -> None:
        if self.refresh is not None and len(self._refreshed) >= at_least:
            self.refresh(self._refreshed)
        if len(self._refreshed) >= at_least:
            self._refreshed = []

    def finish(self) -> Plan:
        """Settle repeated keys and the counts once every row has been read."""
        self._flush_refreshed(1)
        hashes = np.concatenate(self._hashes) if self._hashes else np.empty(0, dtype=np.int64)
        kinds = np.concatenate(self._kinds) if self._kinds else np.empty(0, dtype=np.int8)
        sigs = np.concatenate(self._sigs) if self._sigs else np.empty(0, dtype=np.int32)
        ordered = np.sort(hashes)
        same = ordered[1:] == ordered[:-1]
        twice = np.unique(ordered[1:][same])
        unique = ordered[np.concatenate(([True], ~same))] if len(ordered) else ordered
        del ordered, same
        repeated = self._repeated_rows(hashes, twice)
        excluded = self._reject_repeats(repeated)
        keep = np.ones(len(hashes), dtype=bool)
        keep[excluded] = False
        self._count(kinds[keep], sigs[keep])
        self.plan.removed = self.index.missing_from(unique)
        if self.config.sync.options.synthetic_event:
            self.plan.synthetic = self.plan.to_send
        return self.plan

    def _repeated_rows(self, hashes: np.ndarray, twice: np.ndarray) -> dict[int, str]:
        """Row positions whose key appears more than once, with that key."""
        if twice.size == 0:
            return {}
        candidates = np.flatnonzero(np.isin(hashes, twice))
        if candidates.size == 0:
            return {}
        keys = pa.chunked_array(self._keys, type=pa.string()).take(pa.array(candidates)).to_pylist()
        times = Counter(keys)
        return {int(i): k for i, k in zip(candidates, keys, strict=True) if times[k] > 1}

    def _reject_repeats(self, repeated: dict[int, str]) -> list[int]:
        """Reject every row of a repeated key; returns the row positions left out of the counts."""
        for key, times in Counter(repeated.values()).items():
            self.plan.rejections += [Rejection(key, self.repeat_reason(key, times))] * times
            self.bad.pop(key, None)
            if self.outbox is not None:
                self.outbox.drop(key)
        self.plan.rejections += [Rejection(k, r) for k, r in self.bad.items()]
        dropped = set(repeated.values())
        if dropped:
            self.plan.sample = [c for c in self.plan.sample if c.key not in dropped]
            self.plan.payloads = {k: v for k, v in self.plan.payloads.items() if k not in dropped}
        return list(repeated)

    def repeat_reason(self, key: str, times: int) -> str:
        """Why the rows of a key that the model returns more than once are not sent."""
        return f"{self.shaper.key_label} appears {times} times in the model; none of its rows is sent"

    def _count(self, kinds: np.ndarray, sigs: np.ndarray) -> None:
        counts = np.bincount(kinds, minlength=5)
        self.plan.new, self.plan.changed, self.plan.unchanged = (int(c) for c in counts[:3])
        self.plan.held = int(counts[Kind.HELD])
        names = {sig: signature for signature, sig in self.signatures.items()}
        sent = (kinds == Kind.NEW) | (kinds == Kind.CHANGED)
        for sig, n in enumerate(np.bincount(sigs[sent], minlength=len(names))):
            for prop in names[sig] if n else ():
                self.plan.property_counts[prop] += int(n)
