"""Event syncs: each model row becomes one historical event, sent once through the Batch API.

Events are appended, never updated: a row is known by its insert_id (a column of the model, or a
hash of the sync name, id, event type, time and event properties). An insert_id that Amplitude
acknowledged is in the snapshot and is never sent again; a resend of one that was not (after a
crash, a retry, or a 500 that came after ingesting) is dropped by Amplitude, which de-duplicates
insert_ids for 7 days (https://amplitude.com/docs/apis/analytics/http-v2,
https://amplitude.com/docs/apis/analytics/batch-event-upload).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa

from amp_sync.amplitude import ROUTES, Channel
from amp_sync.config import SyncConfig
from amp_sync.plan import Kind, Planner, Rejection, canonical, insert_id, partition_key
from amp_sync.snapshot import digest, key_hash
from amp_sync.values import MAX_STRING, Invalid, to_id, to_json

EVENT_SAMPLE = 1000  # events shown in a preview
IDENTICAL_ROW = (
    "the same user, event type, time and properties as an earlier row: one event, sent once "
    "(add an insert_id_column if these are distinct events)"
)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_BATCH_BYTES = ROUTES[Channel.BATCH].max_bytes  # one event property value must fit in one request
# As milliseconds, anything below this is before March 1973: far likelier to be seconds.
_SECONDS_LOOK_ALIKE = 100_000_000_000


def event_time(value: Any) -> int | Invalid:
    """Milliseconds since the epoch, as the HTTP and Batch APIs take `time`.

    Timestamps without a time zone are taken as UTC; a date is its midnight in UTC; a whole
    number is taken as milliseconds already; text is read as ISO-8601.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Invalid("missing event time")
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return Invalid(f"event time {value[:40]!r} is not an ISO-8601 date or timestamp")
    if isinstance(value, dt.datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        ms = (stamp - _EPOCH) // dt.timedelta(milliseconds=1)
    elif isinstance(value, dt.date):
        ms = (value - _EPOCH.date()).days * 86_400_000
    elif isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return Invalid(f"event time must be a timestamp, a date or milliseconds, not {type(value).__name__}")
    else:
        whole = _whole(value)
        if whole is None:
            return Invalid(f"event time {value} is not a whole number of milliseconds")
        if 0 < whole < _SECONDS_LOOK_ALIKE:
            return Invalid(
                f"event time {whole} looks like seconds since the epoch; Amplitude takes "
                "milliseconds (multiply by 1000 in the model)"
            )
        ms = whole
    if ms < 0:
        return Invalid("event time is before 1970")
    return ms


def _whole(value: int | float | Decimal) -> int | None:
    try:
        whole = int(value)
    except (ValueError, OverflowError, ArithmeticError):  # NaN, infinity
        return None
    return whole if whole == value else None


def event_type_of(value: Any) -> str | Invalid:
    """An event type from a column: non-empty text Amplitude does not reserve."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return Invalid("missing event type")
    text = str(value)
    if text.startswith("$") or text.startswith("[Amplitude]"):
        return Invalid(f"event type {text[:40]!r} is reserved by Amplitude")
    if len(text) > MAX_STRING:
        return Invalid(f"the event type is longer than {MAX_STRING:,} characters")
    return text


class EventShaper:
    """Turns a model row into (insert_id, event) or the reason it cannot be sent."""

    def __init__(self, config: SyncConfig, columns: Sequence[str]) -> None:
        pos = {name: i for i, name in enumerate(columns)}
        sync, o = config.sync, config.sync.options
        self.sync_name = sync.name
        self.id_field = "device_id" if o.id_type == "device" else "user_id"
        self.key_label = sync.key_label
        self.key_at = pos[sync.key]
        self.user_at = pos[sync.user_key] if sync.user_key else None
        self.type_at = pos[o.event_type_column] if o.event_type_column else None
        self.constant_type = o.event_type
        self.time_at = pos[o.time_column] if o.time_column else None
        self.insert_at = pos[o.insert_id_column] if o.insert_id_column else None
        self.skip_sync = o.skip_user_properties_sync
        self.fields = [(pos[m.column], m.property) for m in sync.mappings]

    def key(self, row: Sequence[Any]) -> str | Invalid:
        """The row's user or device id."""
        return to_id(row[self.key_at], self.key_label)

    def shape(self, row: Sequence[Any], key: str) -> tuple[str, dict[str, Any]] | Invalid:
        """The row's insert_id and event, or the first reason it cannot be sent."""
        event: dict[str, Any] = {self.id_field: key}
        if self.user_at is not None and row[self.user_at] is not None:
            uid = to_id(row[self.user_at], "user id")
            if isinstance(uid, Invalid):
                return uid
            event["user_id"] = uid
        kind = self.constant_type if self.type_at is None else event_type_of(row[self.type_at])
        if isinstance(kind, Invalid) or kind is None:
            return kind or Invalid("missing event type")
        event["event_type"] = kind
        when = event_time(row[self.time_at]) if self.time_at is not None else Invalid("missing event time")
        if isinstance(when, Invalid):
            return when
        event["time"] = when
        props: dict[str, Any] = {}
        for at, prop in self.fields:
            value = to_json(row[at], _BATCH_BYTES)
            if isinstance(value, Invalid):
                return Invalid(f"{prop}: {value.reason}")
            if value is not None:
                props[prop] = value
        if props:
            event["event_properties"] = props
        if self.skip_sync:
            # A backfilled event must not overwrite the user's current properties (§3).
            event["$skip_user_properties_sync"] = True
        given = self._given_insert_id(row)
        if isinstance(given, Invalid):
            return given
        dedup = given or insert_id(self.sync_name, key, kind, str(when), canonical(props))
        event["insert_id"] = dedup
        return dedup, event

    def _given_insert_id(self, row: Sequence[Any]) -> str | Invalid | None:
        if self.insert_at is None:
            return None
        value = row[self.insert_at]
        if value is None or (isinstance(value, str) and not value.strip()):
            return Invalid("missing insert id")
        text = str(value)
        if len(text) > MAX_STRING:
            return Invalid(f"the insert id is longer than {MAX_STRING:,} characters")
        return text


class EventPlanner(Planner):
    """Plans an event sync: an event whose insert_id is in the snapshot was delivered already."""

    def __init__(self, config: SyncConfig, columns: Sequence[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(config, columns, *args, **kwargs)
        self.events = EventShaper(config, columns)

    def add(self, rows: Sequence[Sequence[Any]]) -> None:
        """Plan one chunk of rows."""
        ids: list[str] = []
        events: list[dict[str, Any]] = []
        for row in rows:
            key = self.events.key(row)
            shaped = key if isinstance(key, Invalid) else self.events.shape(row, key)
            if isinstance(shaped, Invalid):
                shown = row[self.events.key_at]
                self.plan.rejections.append(Rejection("" if shown is None else str(shown), shaped.reason))
                continue
            ids.append(shaped[0])
            events.append(shaped[1])
        self.plan.rows_read += len(rows)
        hashes = np.fromiter(map(key_hash, ids), dtype=np.int64, count=len(ids))
        sent = self.index.find(hashes) >= 0
        kinds = np.where(sent, Kind.UNCHANGED, Kind.NEW).astype(np.int8)
        if self.held.size:  # an event in doubt is never planned again beside itself
            held = np.isin(hashes, self.held)
            kinds[held] = Kind.HELD
            sent |= held
        for i in np.flatnonzero(~sent):
            self._new_event(ids[i], events[i])
        self._hashes.append(hashes)
        self._kinds.append(kinds)
        self._sigs.append(np.zeros(len(ids), dtype=np.int32))
        self._keys.append(pa.array(ids, type=pa.string()))

    def _new_event(self, dedup: str, event: dict[str, Any]) -> None:
        when = event["time"]
        plan = self.plan
        plan.first_time = when if plan.first_time is None else min(plan.first_time, when)
        plan.last_time = when if plan.last_time is None else max(plan.last_time, when)
        for prop in event.get("event_properties", ()):
            plan.property_counts[prop] += 1
        if len(plan.payloads) < EVENT_SAMPLE:
            plan.payloads[dedup] = event
        if self.outbox is not None:
            text = canonical(event)
            part = partition_key(event.get("user_id") or event.get("device_id") or dedup)
            self.outbox.add(dedup, part, event, text, digest(dedup, text), 0, 1, Channel.BATCH)

    def repeat_reason(self, key: str, times: int) -> str:
        """Rows sharing an insert_id_column value: which one is the event is unknowable."""
        return f"the insert id appears {times} times in the model; none of these rows is sent"

    def _reject_repeats(self, repeated: dict[int, str]) -> list[int]:
        """Without an insert_id column, a repeated id means identical rows: one event, sent once.

        Amplitude would keep only one of them anyway (they share the insert_id); each copy after
        the first is reported, so nothing is dropped silently.
        """
        if self.events.insert_at is not None:
            return super()._reject_repeats(repeated)
        first: set[str] = set()
        copies = []
        for at in sorted(repeated):
            key = repeated[at]
            if key in first:
                copies.append(at)
                self.plan.rejections.append(Rejection(key, IDENTICAL_ROW))
            else:
                first.add(key)
        if self.outbox is not None:
            self.outbox.keep_first(first)
        return copies

    def _count(self, kinds: np.ndarray, sigs: np.ndarray) -> None:
        counts = np.bincount(kinds, minlength=5)
        self.plan.new, self.plan.changed, self.plan.unchanged = (int(c) for c in counts[:3])
        self.plan.held = int(counts[Kind.HELD])
        # property_counts were counted per event as it was planned

    def finish(self) -> Any:
        """Settle repeated insert_ids and the counts; "removed" means nothing for events."""
        plan = super().finish()
        plan.removed = 0
        return plan
