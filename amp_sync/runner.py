"""Preview and run a sync: the one path from sync file to report shared by the CLI and the app."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amp_sync.amplitude import Channel, RetryPolicy
from amp_sync.config import SyncConfig, SyncObject
from amp_sync.errors import AmpSyncError, ConfigError, FatalError
from amp_sync.events import EventPlanner
from amp_sync.plan import FieldChange, Plan, Planner, Rejection
from amp_sync.revert import check_revertible, last_run, plan_revert
from amp_sync.sender import Delivery, Sender
from amp_sync.snapshot import SnapshotIndex
from amp_sync.spool import Spool
from amp_sync.state import StateStore, run_lock
from amp_sync.warehouse import CHUNK_ROWS, read_model


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a preview or run is: rows read so far, then rows delivered."""

    phase: str  # "reading" or "sending"
    rows_read: int
    to_send: int = 0
    sent: int = 0
    failed: int = 0
    batches: int = 0
    elapsed: float = 0.0


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How a run sends: parallel requests, retry policy, and the injected sleep for tests."""

    concurrency: int = 4
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    chunk_rows: int = CHUNK_ROWS


@dataclass(slots=True)
class Report:
    """The outcome of a preview or a run."""

    kind: str
    plan: Plan
    sent: int = 0
    failed: int = 0
    requests: int = 0
    batches: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    run_id: int | None = None
    synthetic_sent: int = 0
    synthetic_failed: int = 0

    @property
    def ok(self) -> bool:
        """Every valid new or changed row (and its synthetic event) was delivered."""
        return self.error is None and self.failed == 0 and self.synthetic_failed == 0

    @property
    def is_preview(self) -> bool:
        """A preview (of a run or of a revert): nothing was sent."""
        return self.kind.endswith("preview")

    @property
    def rejections(self) -> list[Rejection]:
        """Rows not sent, each with its key and reason."""
        return self.plan.rejections

    @property
    def sample(self) -> list[FieldChange]:
        """Field-level changes (the first few thousand)."""
        return self.plan.sample

    def counts(self) -> dict[str, int]:
        """The headline numbers."""
        p = self.plan
        counts = {
            "new": p.new, "changed": p.changed, "unchanged": p.unchanged, "removed": p.removed,
            "rejected": p.rejected, "sent": self.sent, "failed": self.failed,
        }  # fmt: skip
        if p.synthetic:
            counts |= {"synthetic": p.synthetic, "synthetic_sent": self.synthetic_sent}
            counts["synthetic_failed"] = self.synthetic_failed
        if p.reverts_run is not None:
            counts["reverts_run"] = p.reverts_run
        return counts

    def to_json(self) -> dict[str, Any]:
        """The documented --json object: counts plus the rejections."""
        rejections = [{"key": r.key, "reason": r.reason} for r in self.plan.rejections]
        return {**self.counts(), "rejections": rejections}

    def status(self) -> str:
        """ok, failed (some rows or synthetic events not delivered) or error (the run stopped)."""
        return "error" if self.error else "ok" if self.ok else "failed"


def preview(
    config: SyncConfig, home: Path, progress: ProgressFn | None = None, chunk_rows: int = CHUNK_ROWS
) -> Report:
    """Read, validate and diff the model; nothing is sent and nothing is written."""
    started = time.monotonic()
    store = StateStore.open_read_only(home, config.sync.name)
    try:
        index = store.index() if store else SnapshotIndex.build([])
        docs = store.docs if store else (lambda keys: {})
        plan = _plan(config, index, docs, None, 1, chunk_rows, progress, started)
    finally:
        if store:
            store.close()
    return Report("preview", plan, seconds=time.monotonic() - started)


def run(
    config: SyncConfig,
    home: Path,
    options: RunOptions | None = None,
    progress: ProgressFn | None = None,
) -> Report:
    """Plan, send and commit; every acknowledged batch enters the snapshot at once."""
    return _locked(config, home, options or RunOptions(), progress, "run")


def preview_revert(config: SyncConfig, home: Path) -> Report:
    """What reverting the last run would send; nothing is sent and nothing is written."""
    started = time.monotonic()
    check_revertible(config)
    store = StateStore.open_read_only(home, config.sync.name)
    run_id = last_run(store)  # says so when there is nothing to revert
    assert store is not None
    try:
        plan = plan_revert(config, store, run_id, None)
    finally:
        store.close()
    return Report("revert preview", plan, seconds=time.monotonic() - started)


def revert(
    config: SyncConfig,
    home: Path,
    options: RunOptions | None = None,
    progress: ProgressFn | None = None,
) -> Report:
    """Send back what the last run replaced, and record the revert in the history."""
    check_revertible(config)
    return _locked(config, home, options or RunOptions(), progress, "revert")


def _locked(
    config: SyncConfig, home: Path, options: RunOptions, progress: ProgressFn | None, kind: str
) -> Report:
    """A run or a revert, holding the sync's lock: one at a time per sync."""
    with run_lock(home, config.sync.name):
        store = StateStore.open(home, config.sync.name)
        try:
            # A revert says so, before any history entry, when there is nothing to revert.
            reverting = last_run(store) if kind == "revert" else None
            return _run(config, store, options, progress, reverting)
        finally:
            store.close()


def _run(
    config: SyncConfig,
    store: StateStore,
    options: RunOptions,
    progress: ProgressFn | None,
    reverting: int | None = None,
) -> Report:
    """A run, or with `reverting` the revert of that run; recorded in the history either way."""
    started = time.monotonic()
    kind = "run" if reverting is None else "revert"
    run_id = store.start_run(kind)
    report = Report(kind, Plan(), run_id=run_id)
    try:
        with Spool() as spool:
            if reverting is not None:
                report.plan = plan_revert(config, store, reverting, spool, options.concurrency)
            else:
                report.plan = _plan(
                    config, store.index(), store.docs, spool, options.concurrency,
                    options.chunk_rows, progress, started, store.refresh_raw,
                )  # fmt: skip
            _send(config, store, spool, options, report, progress, started)
    except AmpSyncError as exc:
        report.error = str(exc)
        _record(store, report, started)
        raise
    except BaseException:
        report.error = "interrupted"
        _record(store, report, started)
        raise
    _record(store, report, started)
    return report


def _plan(
    config: SyncConfig,
    index: SnapshotIndex,
    docs: Callable[[list[str]], dict[str, Any]],
    spool: Spool | None,
    partitions: int,
    chunk_rows: int,
    progress: ProgressFn | None,
    started: float,
    refresh: Callable[[list[tuple[int, str]]], None] | None = None,
) -> Plan:
    with read_model(config.source.url.reveal(), config.model.sql, chunk_rows) as stream:
        problems = config.missing_columns(stream.columns)
        if problems:
            raise ConfigError(problems)
        kind = EventPlanner if config.sync.object is SyncObject.EVENT else Planner
        planner = kind(config, stream.columns, index, docs, spool, partitions, refresh)
        for chunk in stream.chunks:
            planner.add(chunk)
            if progress:
                progress(Progress("reading", planner.plan.rows_read, elapsed=time.monotonic() - started))
    return planner.finish()


def _send(
    config: SyncConfig,
    store: StateStore,
    spool: Spool,
    options: RunOptions,
    report: Report,
    progress: ProgressFn | None,
    started: float,
) -> None:
    total = spool.seal(follow_ups=(Channel.SYNTHETIC,))

    def on_progress(d: Delivery) -> None:
        if progress:
            elapsed = time.monotonic() - started
            progress(Progress("sending", report.plan.rows_read, total, d.sent, 0, d.batches, elapsed))

    sender = Sender(
        config.destination,
        store,
        spool,
        options.concurrency,
        options.policy,
        options.sleep,
        on_progress,
        report.run_id,
    )
    delivery = sender.run(total)
    report.sent, report.failed = delivery.sent, delivery.failed
    report.synthetic_sent, report.synthetic_failed = delivery.synthetic_sent, delivery.synthetic_failed
    report.requests, report.batches = delivery.requests, delivery.batches
    report.failure_reasons = delivery.reasons
    if delivery.fatal:
        raise FatalError(delivery.fatal)


def _record(store: StateStore, report: Report, started: float) -> None:
    report.seconds = time.monotonic() - started
    message = report.error or "; ".join(f"{n} rows: {r}" for r, n in report.failure_reasons.items())
    if report.plan.reverts_run is not None and not message:
        message = f"reverted run #{report.plan.reverts_run}"
    rejections = ((r.key, r.reason) for r in report.plan.rejections)
    if report.run_id is not None:
        store.finish_run(report.run_id, report.status(), report.counts(), message, rejections)
