"""Rows to a sync plan: validate each row, diff it against the snapshot, spool what must be sent."""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeGuard

from amp_sync.config import Operation, SyncConfig, SyncObject
from amp_sync.spool import Spool
from amp_sync.values import Invalid, JsonValue, to_id, to_json

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
    """Counts and details of what a run would send; the spool holds the requests' items."""

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

    @property
    def rejected(self) -> int:
        """Rows that will not be sent."""
        return len(self.rejections)

    @property
    def to_send(self) -> int:
        """Rows (new or changed) that a run sends."""
        return self.new + self.changed


def canonical(doc: Doc) -> str:
    """The one text form of a row's fields, used for hashing and storage."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(text: str) -> bytes:
    """A short, collision-safe fingerprint of a canonical row."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def partition_of(identity: str, partitions: int) -> int:
    """Stable partition for a user, so one user's changes always go through one sender."""
    return zlib.crc32(identity.encode("utf-8")) % partitions


class RowShaper:
    """Turns a model row into (key, fields) or a Rejection, for one sync and column list."""

    def __init__(self, config: SyncConfig, columns: Sequence[str]) -> None:
        pos = {name: i for i, name in enumerate(columns)}
        sync = config.sync
        self.key_label = "user id" if sync.object is SyncObject.USER else "device id"
        self.key_at = pos[sync.key]
        self.user_at = pos[sync.user_key] if sync.user_key else None
        self.fields = [(pos[m.column], m.property, str(m.op)) for m in sync.mappings]

    def key(self, row: Sequence[Any]) -> str | Invalid:
        """The row's Amplitude id, or why it is unusable."""
        return to_id(row[self.key_at], self.key_label)

    def doc(self, row: Sequence[Any]) -> Doc | Invalid:
        """The row's mapped fields as JSON, or the first reason one cannot be sent."""
        doc: Doc = {}
        for at, prop, op in self.fields:
            value = to_json(row[at])
            if isinstance(value, Invalid):
                return Invalid(f"{prop}: {value.reason}")
            doc[prop] = [op, value]
        if self.user_at is not None and row[self.user_at] is not None:
            uid = to_id(row[self.user_at], "user id")
            if isinstance(uid, Invalid):
                return uid
            doc[USER_LINK] = ["$user", uid]
        return doc


def field_changes(key: str, old: Doc | None, new: Doc) -> list[FieldChange]:
    """Properties whose operation or value differ from the snapshot (all non-null if new)."""
    changes = []
    for prop, (op, value) in new.items():
        before = old.get(prop) if old else None
        if before is not None and _same(before, [op, value]):
            continue
        if before is None and value is None:
            continue  # nothing known, nothing to clear
        prev = before[1] if before else None
        changes.append(FieldChange(key, prop, op, prev, value, before is None))
    return changes


def _same(a: list[Any], b: list[Any]) -> bool:
    # JSON text, not ==, because True == 1 == 1.0 in Python but not in Amplitude.
    return a == b and json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def identification(obj: SyncObject, key: str, new: Doc, changes: Iterable[FieldChange]) -> dict:
    """The Identify API item that applies `changes` to the user or device `key`."""
    item: dict[str, Any] = {"user_id": key} if obj is SyncObject.USER else {"device_id": key}
    link = new.get(USER_LINK)
    if link is not None:
        item["user_id"] = link[1]
    props: dict[str, dict[str, Any]] = {}
    for change in changes:
        if change.property != USER_LINK:
            _add_operation(props, change)
    item["user_properties"] = props
    return item


def _add_operation(props: dict[str, dict[str, Any]], change: FieldChange) -> None:
    op, value, before = change.op, change.after, change.before
    if value is None:
        if op in (Operation.SET, Operation.SET_ONCE) and not change.first_sync:
            props.setdefault("$unset", {})[change.property] = "-"
        return  # list and counter operations have nothing to add for a null
    if op == Operation.ADD and _number(value) and _number(before) and not change.first_sync:
        # $add of a running total sends the increment since the last acknowledged value.
        value = value - before
    props.setdefault(op, {})[change.property] = value


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Planner:
    """Streams chunks of rows through validation and diff; spools new and changed rows."""

    def __init__(
        self,
        config: SyncConfig,
        columns: Sequence[str],
        index: dict[str, bytes],
        snapshot_docs: Callable[[list[str]], dict[str, Doc]],
        spool: Spool | None,
        partitions: int = 1,
    ) -> None:
        self.config, self.index, self.spool = config, index, spool
        self.shaper = RowShaper(config, columns)
        self.snapshot_docs = snapshot_docs
        self.partitions = partitions
        self.plan = Plan(columns=list(columns))
        # key -> Kind in the low two bits, the id of its set of changed properties above them:
        # one small int per key keeps memory flat while counts stay exact.
        self.seen: dict[str, int] = {}
        self.signatures: dict[tuple[str, ...], int] = {(): 0}
        self.repeats: Counter[str] = Counter()
        self.bad: dict[str, str] = {}

    def add(self, rows: Sequence[Sequence[Any]]) -> None:
        """Plan one chunk of rows."""
        candidates: list[tuple[str, Doc, str, bytes]] = []
        for row in rows:
            self.plan.rows_read += 1
            item = self._shape(row)
            if item is not None:
                candidates.append(item)
        known = [c[0] for c in candidates if c[0] in self.index]
        old_docs = self.snapshot_docs(known) if known else {}
        for key, doc, text, fp in candidates:
            self._diff(key, doc, text, fp, old_docs.get(key))

    def _shape(self, row: Sequence[Any]) -> tuple[str, Doc, str, bytes] | None:
        key = self.shaper.key(row)
        if isinstance(key, Invalid):
            raw = row[self.shaper.key_at]
            self.plan.rejections.append(Rejection("" if raw is None else str(raw), key.reason))
            return None
        if key in self.seen:
            self.repeats[key] += 1
            return None
        doc = self.shaper.doc(row)
        if isinstance(doc, Invalid):
            self.seen[key], self.bad[key] = Kind.BAD, doc.reason
            return None
        text = canonical(doc)
        fp = digest(text)
        if self.index.get(key) == fp:
            self.seen[key] = Kind.UNCHANGED
            return None
        self.seen[key] = Kind.NEW  # claimed now, so a repeat later in this chunk is caught
        return key, doc, text, fp

    def _diff(self, key: str, doc: Doc, text: str, fp: bytes, old: Doc | None) -> None:
        changes = field_changes(key, old, doc)
        signature = tuple(c.property for c in changes)
        sig = self.signatures.setdefault(signature, len(self.signatures))
        self.seen[key] = (sig << 2) | (Kind.NEW if old is None else Kind.CHANGED)
        room = SAMPLE_LIMIT - len(self.plan.sample)
        if room <= 0 and self.spool is None:
            return
        item = identification(self.config.sync.object, key, doc, changes)
        if room > 0:
            self.plan.sample += changes[:room]
            self.plan.payloads[key] = item
        if self.spool is not None:
            identity = item.get("user_id") or key
            self.spool.add(key, partition_of(identity, self.partitions), item, text, fp)

    def finish(self) -> Plan:
        """Settle repeated keys and the counts once every row has been read."""
        plan = self.plan
        for key, extra in self.repeats.items():
            times = extra + 1
            reason = f"{self.shaper.key_label} appears {times} times in the model; none of its rows is sent"
            plan.rejections += [Rejection(key, reason)] * times
            self.seen[key] = Kind.BAD
            self.bad.pop(key, None)
            if self.spool is not None:
                self.spool.drop(key)
        plan.rejections += [Rejection(k, r) for k, r in self.bad.items()]
        self._count()
        plan.removed = sum(1 for key in self.index if key not in self.seen)
        if self.repeats:
            plan.sample = [c for c in plan.sample if c.key not in self.repeats]
            plan.payloads = {k: v for k, v in plan.payloads.items() if k not in self.repeats}
        return plan

    def _count(self) -> None:
        names = {sig: signature for signature, sig in self.signatures.items()}
        for code, n in Counter(self.seen.values()).items():
            kind = Kind(code & 3)
            if kind is Kind.NEW:
                self.plan.new += n
            elif kind is Kind.CHANGED:
                self.plan.changed += n
            elif kind is Kind.UNCHANGED:
                self.plan.unchanged += n
            for prop in names[code >> 2]:
                self.plan.property_counts[prop] += n
