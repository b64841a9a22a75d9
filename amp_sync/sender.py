"""Deliver spooled identifications: batches per user partition, several in flight, commit on ack."""

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
from amp_sync.spool import Pending, Spool
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
    """Sends one spool to one destination and commits each acknowledged batch to the store."""

    destination: Destination
    store: StateStore
    spool: Spool
    concurrency: int = 4
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    on_progress: Callable[[Delivery], None] | None = None
    run_id: int | None = None
    delivery: Delivery = field(default_factory=Delivery)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self, total: int) -> Delivery:
        """Deliver every spooled row; rows not acknowledged are counted failed."""
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
        rows = self.spool.partition(part, client.channel)
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
        done = self.store.acknowledged([(p.key, p.digest) for p in rows]) if rows else set()
        return [p for p in rows if p.key in done]

    def _deliver(self, client: IdentifyClient, batch: list[Pending]) -> None:
        queue = [batch]
        synthetic = client.channel is Channel.SYNTHETIC
        while queue and not self._stop.is_set():
            part = queue.pop(0)
            answer = client.send([p.item for p in part])
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
            self._note(f"Amplitude refused the row: {answer.detail}", len(bad), synthetic)
            rest = [p for i, p in enumerate(part) if i not in bad]
            return [rest] if rest else []
        self._note(_reason(answer, self.policy.attempts), len(part), synthetic)
        return []

    def _acknowledged(self, part: list[Pending], synthetic: bool = False) -> None:
        if synthetic:  # its profile is committed already; the event itself changes no state
            with self._lock:
                self.delivery.synthetic_sent += len(part)
            return
        self.store.commit(((p.key, p.digest, p.doc, p.raw, p.seq, p.before) for p in part), self.run_id)
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


def _reason(answer: Answer, attempts: int) -> str:
    if answer.outcome is Outcome.RETRY:
        tries = "1 try" if attempts == 1 else f"{attempts} tries"
        return f"gave up after {tries}: {answer.detail}"
    if answer.outcome is Outcome.SPLIT:
        return "a single row is larger than Amplitude's request limit"
    return answer.detail
