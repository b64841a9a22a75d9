"""Deliver the outbox: batches per user partition, several in flight, commit on acknowledgement."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from amp_sync.amplitude import (
    MAX_BYTES,
    MAX_ITEMS,
    Answer,
    Channel,
    IdentifyClient,
    Outcome,
    RetryPolicy,
    encoded_size,
)
from amp_sync.config import Destination
from amp_sync.errors import FatalError
from amp_sync.outbox import Outbox, Pending, Scope, acknowledge
from amp_sync.state import StateStore


@dataclass(slots=True)
class Delivery:
    """What a run delivered: acknowledged rows, failures with reasons, requests made."""

    sent: int = 0
    failed: int = 0
    batches: int = 0
    requests: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    fatal: str | None = None
    synthetic_sent: int = 0  # "updated" events acknowledged
    synthetic_failed: int = 0
    in_doubt: int = 0  # rows whose answer never came: they stay in the outbox


def batches(
    rows: Iterator[Pending],
    overhead: int,
    max_items: int = MAX_ITEMS,
    max_bytes: int = MAX_BYTES,
    item_size: Callable[[bytes], int] = encoded_size,
) -> Iterator[list[Pending]]:
    """Group rows in order into batches under the item and byte limits."""
    batch: list[Pending] = []
    size = overhead
    for row in rows:
        grow = item_size(row.item)
        if batch and (len(batch) >= max_items or size + grow > max_bytes):
            yield batch
            batch, size = [], overhead
        batch.append(row)
        size += grow
    if batch:
        yield batch


@dataclass(slots=True)
class Sender:
    """Sends outbox items to one destination and commits each acknowledged batch to the store."""

    destination: Destination
    store: StateStore
    outbox: Outbox
    scope: Scope
    concurrency: int = 4
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    on_progress: Callable[[Delivery], None] | None = None
    delivery: Delivery = field(default_factory=Delivery)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self, total: int) -> Delivery:
        """Deliver every item in scope; rows not acknowledged are counted failed."""
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="amp-send") as pool:
            futures = [pool.submit(self._partition, p) for p in range(self.concurrency)]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                self._stop.set()  # Ctrl+C or a worker's error: finish in-flight batches, send no more
                raise
        self.delivery.failed = total - self.delivery.sent
        return self.delivery

    def _partition(self, part: int) -> None:
        for channel in Channel:
            client = IdentifyClient(
                self.destination, self.policy, self.sleep, random.Random(), channel=channel
            )
            self._send_channel(client, part)

    def _send_channel(self, client: IdentifyClient, part: int) -> None:
        overhead = len(client.encode([]))
        rows = self.outbox.partition(part, self.concurrency, client.channel, self.scope)
        if client.channel is Channel.SYNTHETIC:
            rows = self._acknowledged_only(rows)
        route = client.route
        try:
            for batch in batches(rows, overhead, route.max_items, route.max_bytes, client.item_size):
                if self._stop.is_set():
                    return
                self._deliver(client, batch)
        except FatalError as exc:
            self._stop.set()
            with self._lock:
                self.delivery.fatal = str(exc)
        except BaseException:
            self._stop.set()
            raise
        finally:
            with self._lock:
                self.delivery.requests += client.requests_sent

    def _acknowledged_only(self, rows: Iterator[Pending], piece: int = 1000) -> Iterator[Pending]:
        """Synthetic events of profiles whose update Amplitude acknowledged (in the snapshot now)."""
        batch: list[Pending] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= piece:
                yield from self._committed(batch)
                batch = []
        yield from self._committed(batch)

    def _committed(self, rows: list[Pending]) -> list[Pending]:
        """Those of `rows` whose profile update is acknowledged; those whose update was refused go."""
        if not rows:
            return []
        done = self.store.acknowledged([(p.key, p.digest) for p in rows])
        rest = [p for p in rows if p.key not in done]
        waiting = self.outbox.waiting(rest)  # the update is in doubt: the event waits with it
        self.outbox.forget([p for p in rest if p.id not in waiting])
        return [p for p in rows if p.key in done]

    def _deliver(self, client: IdentifyClient, batch: list[Pending]) -> None:
        queue = [batch]
        synthetic = client.channel is Channel.SYNTHETIC
        while queue and not self._stop.is_set():
            part = queue.pop(0)
            self.outbox.mark_sent(part)  # before it leaves: a kill from here on leaves it in doubt
            try:
                answer = client.send([p.item for p in part])
            except FatalError:
                self.outbox.forget(part)  # refused whole (an invalid key): nothing of it arrived
                raise
            queue[:0] = self._settle(part, answer, synthetic)

    def _settle(self, part: list[Pending], answer: Answer, synthetic: bool = False) -> list[list[Pending]]:
        """Commit or count one answered batch; returns the pieces to send again, in order."""
        if answer.outcome is Outcome.OK:
            self._acknowledged(part, synthetic)
            return []
        if answer.outcome is Outcome.SPLIT and len(part) > 1:
            half = len(part) // 2
            return [part[:half], part[half:]]
        if answer.outcome is Outcome.REJECTED:
            bad = set(answer.bad_items)
            self._unsent(
                [p for i, p in enumerate(part) if i in bad], answer, synthetic, "Amplitude refused the row: "
            )
            rest = [p for i, p in enumerate(part) if i not in bad]
            return [rest] if rest else []
        self._unsent(part, answer, synthetic)
        return []

    def _unsent(self, part: list[Pending], answer: Answer, synthetic: bool, prefix: str = "") -> None:
        """Items not acknowledged: in doubt (kept) if any try may have arrived, else refused (gone)."""
        reason = prefix + (answer.detail if prefix else _reason(answer, self.policy.attempts))
        if answer.maybe_ingested:
            self._note(reason + IN_DOUBT, len(part), synthetic)
            if not synthetic:
                with self._lock:
                    self.delivery.in_doubt += len(part)
            return
        self.outbox.forget(part)  # refused for sure: the next run plans these rows again
        self._note(reason, len(part), synthetic)

    def _acknowledged(self, part: list[Pending], synthetic: bool = False) -> None:
        acknowledge(self.store, part)
        if synthetic:  # its profile is committed already; the event itself changes no state
            with self._lock:
                self.delivery.synthetic_sent += len(part)
            return
        with self._lock:
            self.delivery.sent += len(part)
            self.delivery.batches += 1
            if self.on_progress:
                self.on_progress(self.delivery)

    def _note(self, reason: str, rows: int, synthetic: bool = False) -> None:
        with self._lock:
            if synthetic:
                reason = f"synthetic event not delivered: {reason}"
                self.delivery.synthetic_failed += rows
            self.delivery.reasons[reason] = self.delivery.reasons.get(reason, 0) + rows


IN_DOUBT = " (in doubt: the next run resends them first, exactly as they were)"


def _reason(answer: Answer, attempts: int) -> str:
    if answer.outcome is Outcome.RETRY:
        tries = "1 try" if attempts == 1 else f"{attempts} tries"
        return f"gave up after {tries}: {answer.detail}"
    if answer.outcome is Outcome.SPLIT:
        return "a single row is larger than Amplitude's request limit"
    return answer.detail
