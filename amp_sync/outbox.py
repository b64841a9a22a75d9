"""The outbox: every item a run sends, written durably in the sync's state before it is sent.

An item leaves the outbox in one of two ways: Amplitude acknowledged it (its values enter the
snapshot in the same transaction), or Amplitude refused it for sure (a 400 naming it, a daily
quota). Anything else (retries used up on 5xx or timeouts, a lost answer, a killed or
interrupted run) leaves it there, in doubt. The next run resends in-doubt items exactly as they
were, with the same insert_id, which Amplitude de-duplicates, before it reads the model; only
then does it diff the model against the values they carried.

Amplitude de-duplicates insert_ids for 7 days only
(https://amplitude.com/docs/apis/analytics/http-v2#event-deduplication): an in-doubt item on an
event route first sent longer ago than that is stale, and is never resent without the user's
word.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from amp_sync.amplitude import Channel
from amp_sync.state import StateStore

DEDUP_WINDOW = 7 * 24 * 3600.0  # seconds Amplitude remembers an insert_id
EVENT_CHANNELS = (Channel.EVENTS, Channel.BATCH, Channel.SYNTHETIC)  # the routes that de-duplicate
_PAGE = 1000
_COLUMNS = "id, key, item, doc, digest, raw, seq, before, channel, run_id"


class Stale(StrEnum):
    """What to do with stale in-doubt items, as the user decides."""

    HOLD = "hold"  # the default: leave them, and their keys, alone
    RESEND = "resend"  # send them again; an addition may then count twice
    DELIVERED = "delivered"  # take them as delivered: their values enter the snapshot


@dataclass(frozen=True, slots=True)
class Pending:
    """One item in the outbox: its request body and what to commit once acknowledged."""

    id: int
    key: str
    item: bytes  # the request item, JSON-encoded once; resent byte for byte
    doc: str  # canonical fields for the snapshot
    digest: bytes
    raw: int  # the row's raw hash, stored with it so the next run can skip it cheaply
    seq: int  # the key's update count once this one is acknowledged
    before: str | None = None  # the fields this item replaces (None: new), kept for a revert
    channel: str = Channel.IDENTIFY
    run_id: int | None = None  # the run that planned it: the one a revert of its change undoes


@dataclass(frozen=True, slots=True)
class Scope:
    """Which items a sender sends: one run's, or those earlier runs left (stale ones unless told)."""

    run_id: int | None = None  # only this run's items ...
    before_run: int | None = None  # ... or only those of runs before this one
    stale_before: float | None = None  # leave out event-route items first sent before this


@dataclass(frozen=True, slots=True)
class Summary:
    """The outbox of one sync at one destination, in counts."""

    in_doubt: int = 0  # profile updates and events whose answer is not known (not stale)
    stale: int = 0  # in doubt on an event route, first sent over 7 days ago
    oldest: float | None = None  # when the oldest in-doubt item was first sent

    @property
    def empty(self) -> bool:
        """Nothing from earlier runs waits to be resent."""
        return not (self.in_doubt or self.stale)


class Outbox:
    """The outbox of one sync at one destination; items added by run `run_id`."""

    def __init__(
        self, store: StateStore, run_id: int | None = None, lanes: int = 1, clock: Any = time.time
    ) -> None:
        self.store, self.run_id, self.lanes, self.clock = store, run_id, lanes, clock
        self._buffer: list[tuple[Any, ...]] = []

    def add(
        self,
        key: str,
        part: int,
        item: dict[str, Any],
        doc: str,
        digest: bytes,
        raw: int,
        seq: int,
        channel: str,
        before: str | None = None,
    ) -> None:
        """Queue one item; `part` is the partition key of its user (same user, same sender).

        It is kept modulo this run's senders (`lanes`), so each sender reads its own items by
        index; a later run with other senders takes it modulo theirs: still one user, one sender.
        """
        encoded = json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        dest, now = self.store.writable_dest(), self.clock()
        self._buffer.append(
            (dest, self.run_id, key, part % self.lanes, channel, encoded, doc, digest, raw, seq, before, now)
        )
        if len(self._buffer) >= 5000:
            self.flush()

    def flush(self) -> None:
        """Write buffered items durably."""
        if self._buffer:
            self.store.write(
                "INSERT INTO outbox (dest, run_id, key, part, channel, item, doc, digest, raw, seq, before, "
                "planned_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self._buffer,
            )
            self._buffer.clear()

    def drop(self, key: str) -> None:
        """Never send this run's items of `key` (all its rows were rejected after planning)."""
        self.flush()
        self.store.write(
            "DELETE FROM outbox WHERE dest = ? AND run_id = ? AND key = ?",
            [(self.store.writable_dest(), self.run_id, key)],
        )

    def keep_first(self, keys: Iterable[str]) -> None:
        """Send only the first item this run queued for each of `keys` (the others repeat it)."""
        self.flush()
        dest = self.store.writable_dest()
        self.store.write(
            "DELETE FROM outbox WHERE dest = ? AND run_id = ? AND key = ? AND id > "
            "(SELECT min(id) FROM outbox WHERE dest = ? AND run_id = ? AND key = ?)",
            ((dest, self.run_id, k, dest, self.run_id, k) for k in keys),
        )

    def seal(self, follow_ups: tuple[str, ...] = ()) -> int:
        """Finish writing; returns how many of this run's items will be sent.

        Items on the `follow_ups` channels (sent only after their row is acknowledged) are not
        rows of their own and are not counted.
        """
        self.flush()
        marks = ",".join("?" * len(follow_ups))
        rows = self.store.query(
            f"SELECT count(*) FROM outbox WHERE dest = ? AND run_id = ? AND channel NOT IN ({marks})",
            (self.store.writable_dest(), self.run_id, *follow_ups),
        )
        return int(rows[0][0])

    def count(self, scope: Scope, follow_ups: tuple[str, ...] = (Channel.SYNTHETIC,)) -> int:
        """How many items `scope` holds, not counting the follow-up channels."""
        where, params = self._where(scope)
        marks = ",".join("?" * len(follow_ups))
        rows = self.store.query(
            f"SELECT count(*) FROM outbox WHERE {where} AND channel NOT IN ({marks})", (*params, *follow_ups)
        )
        return int(rows[0][0])

    def partition(self, part: int, partitions: int, channel: str, scope: Scope) -> Iterator[Pending]:
        """One partition's items on one channel, oldest first, read a page at a time."""
        where, params = self._where(scope)
        # This run's items were laned for these senders: the index finds them directly. Earlier
        # runs may have had other senders: their lanes are taken modulo these.
        mine = scope.run_id is not None and scope.run_id == self.run_id and partitions == self.lanes
        lane, args = ("part = ?", (part,)) if mine else ("(part % ?) = ?", (partitions, part))
        last = 0
        while rows := self.store.query(
            f"SELECT {_COLUMNS} FROM outbox WHERE {where} AND channel = ? AND {lane} AND id > ? "
            f"ORDER BY id LIMIT {_PAGE}",
            (*params, channel, *args, last),
        ):
            yield from (Pending(*r) for r in rows)
            last = rows[-1][0]

    def _where(self, scope: Scope) -> tuple[str, tuple[Any, ...]]:
        where, params = "dest = ?", list[Any]([self._dest()])
        if scope.run_id is not None:
            where += " AND run_id = ?"
            params.append(scope.run_id)
        if scope.before_run is not None:
            where += " AND (run_id IS NULL OR run_id < ?)"
            params.append(scope.before_run)
        if scope.stale_before is not None:
            test, args = _stale(scope.stale_before)
            where += f" AND NOT ({test})"
            params += args
        return where, tuple(params)

    def stale_before(self) -> float:
        """Items on the event routes first sent before this moment are stale."""
        return self.clock() - DEDUP_WINDOW

    def _dest(self) -> int:
        return self.store.dest if self.store.dest is not None else -1  # -1: no rows at all

    def mark_sent(self, pending: list[Pending]) -> None:
        """Note, before sending, when each item first left: the start of its de-duplication window."""
        ids = [p.id for p in pending]
        marks = ",".join("?" * len(ids))  # one statement: a batch is at most 2,000 items
        self.store.write(
            f"UPDATE outbox SET sent_at = ? WHERE sent_at IS NULL AND id IN ({marks})", [(self.clock(), *ids)]
        )

    def forget(self, pending: list[Pending]) -> None:
        """Take items Amplitude refused for sure out of the outbox, with the events that follow them."""
        dest = self.store.writable_dest()
        self.store.write("DELETE FROM outbox WHERE id = ?", ((p.id,) for p in pending))
        followers = [p for p in pending if p.channel != Channel.SYNTHETIC]
        self.store.write(
            "DELETE FROM outbox WHERE dest = ? AND channel = ? AND key = ? AND digest = ?",
            ((dest, Channel.SYNTHETIC, p.key, p.digest) for p in followers),
        )

    def waiting(self, pending: list[Pending]) -> set[int]:
        """Ids of the follow-up items whose profile update is still in the outbox (in doubt)."""
        out = set()
        for p in pending:
            rows = self.store.query(
                "SELECT 1 FROM outbox WHERE dest = ? AND key = ? AND digest = ? AND channel != ? LIMIT 1",
                (self.store.dest, p.key, p.digest, Channel.SYNTHETIC),
            )
            if rows:
                out.add(p.id)
        return out

    def summary(self) -> Summary:
        """What waits in the outbox: in doubt, and stale."""
        test, args = _stale(self.stale_before())
        rows = self.store.query(
            f"SELECT {test} AS stale, count(*), min(sent_at) "
            "FROM outbox WHERE dest = ? AND channel != ? AND sent_at IS NOT NULL GROUP BY stale",
            (*args, self._dest(), Channel.SYNTHETIC),
        )
        counts = {int(s): (int(n), first) for s, n, first in rows}
        in_doubt, oldest = counts.get(0, (0, None))
        stale, stale_oldest = counts.get(1, (0, None))
        return Summary(in_doubt, stale, stale_oldest if stale else oldest)

    def held_keys(self, stale_only: bool = False) -> list[str]:
        """Keys with a profile update or event still in the outbox: the diff leaves them alone."""
        dest = self._dest()
        sql, params = (
            "SELECT DISTINCT key FROM outbox WHERE dest = ? AND channel != ? AND sent_at IS NOT NULL",
            [dest, Channel.SYNTHETIC],
        )
        if stale_only:
            test, args = _stale(self.stale_before())
            sql += f" AND {test}"
            params += args
        return [r[0] for r in self.store.query(sql, params)]

    def reclaim_unsent(self) -> int:
        """Drop what earlier runs queued but never sent (a killed run): the diff plans it afresh."""
        rows = self.store.query(
            "SELECT count(*) FROM outbox WHERE dest = ? AND sent_at IS NULL AND run_id IS NOT ?",
            (self._dest(), self.run_id),
        )
        if rows[0][0]:
            self.store.write(
                "DELETE FROM outbox WHERE dest = ? AND sent_at IS NULL AND run_id IS NOT ?",
                [(self._dest(), self.run_id)],
            )
        return int(rows[0][0])

    def settle_stale(self, how: Stale) -> int:
        """Act on the user's word about stale items; returns how many were settled."""
        if how is not Stale.DELIVERED:
            return 0
        test, args = _stale(self.stale_before())
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM outbox WHERE dest = ? AND {test}", (self.store.writable_dest(), *args)
        )
        stale = [Pending(*r) for r in rows]
        acknowledge(self.store, stale)
        return sum(p.channel != Channel.SYNTHETIC for p in stale)


def _stale(before: float) -> tuple[str, list[Any]]:
    """The one test of staleness: on an event route, first sent before `before` (0 or 1)."""
    marks = ",".join("?" * len(EVENT_CHANNELS))
    return f"coalesce(sent_at < ? AND channel IN ({marks}), 0)", [before, *EVENT_CHANNELS]


def acknowledge(store: StateStore, pending: list[Pending]) -> None:
    """Commit what Amplitude acknowledged, each under the run that planned it, and clear it out.

    A follow-up (synthetic) event changes no state: it only leaves the outbox.
    """
    for run_id, group in itertools.groupby(pending, key=lambda p: p.run_id):
        items = list(group)
        rows = (
            (p.key, p.digest, p.doc, p.raw, p.seq, p.before) for p in items if p.channel != Channel.SYNTHETIC
        )
        store.acknowledge(rows, run_id, [p.id for p in items])
