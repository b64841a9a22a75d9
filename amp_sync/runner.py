"""Preview and run a sync: the one path from sync file to report shared by the CLI and the app."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from amp_sync.amplitude import Channel, RetryPolicy
from amp_sync.config import SyncConfig, SyncObject
from amp_sync.errors import AmpSyncError, ConfigError, FatalError, StateError
from amp_sync.events import EventPlanner
from amp_sync.outbox import Outbox, Scope, Stale, Summary
from amp_sync.plan import SAMPLE_LIMIT, FieldChange, Plan, Planner, Rejection
from amp_sync.revert import check_revertible, last_run, plan_revert
from amp_sync.sender import Delivery, Sender
from amp_sync.snapshot import SnapshotIndex
from amp_sync.state import DestinationRef, KnownDestination, StateStore, known_destinations, run_lock, writers
from amp_sync.warehouse import CHUNK_ROWS, read_model


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a preview or run is: rows read so far, then rows delivered."""

    phase: str  # "resending" (in doubt from earlier runs), "reading" or "sending"
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
    stale: Stale = Stale.HOLD  # in-doubt items Amplitude can no longer de-duplicate
    every_change: bool = False  # keep every field-level change in the plan, not only the sample
    keys: frozenset[str] | None = None  # a test send: only the rows of these keys (see send_test)


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
    in_doubt: int = 0  # preview: items the run resends first; run: items still in doubt after it
    resent: int = 0  # in-doubt items of earlier runs that this run resent and got acknowledged
    stale: int = 0  # in doubt for longer than Amplitude de-duplicates: they wait for the user
    settled: int = 0  # stale items taken as delivered on the user's word
    destination: DestinationRef | None = None
    elsewhere: list[KnownDestination] = field(default_factory=list)  # state kept for others
    overlaps: dict[str, list[str]] = field(default_factory=dict)  # other sync -> shared properties
    not_found: list[str] = field(default_factory=list)  # a test send: keys the model did not return

    @property
    def ok(self) -> bool:
        """Every valid new or changed row (and its synthetic event) was delivered."""
        settled = not (self.in_doubt or self.stale or self.plan.held) or self.is_preview
        return self.error is None and self.failed == 0 and self.synthetic_failed == 0 and settled

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
        counts |= {"in_doubt": self.in_doubt, "held": p.held, "stale": self.stale}
        if not self.is_preview:
            counts |= {"resent": self.resent, "settled": self.settled}
        return counts

    def to_json(self) -> dict[str, Any]:
        """The documented --json object: counts plus the rejections."""
        rejections = [{"key": r.key, "reason": r.reason} for r in self.plan.rejections]
        sent = {} if self.is_preview else {"run_id": self.run_id, "failure_reasons": self.failure_reasons}
        return {**self.counts(), **sent, "rejections": rejections}

    def status(self) -> str:
        """ok, failed (some rows or synthetic events not delivered) or error (the run stopped)."""
        return "error" if self.error else "ok" if self.ok else "failed"


def preview(
    config: SyncConfig,
    home: Path,
    progress: ProgressFn | None = None,
    chunk_rows: int = CHUNK_ROWS,
    stale: Stale = Stale.HOLD,
    *,
    every_change: bool = False,
) -> Report:
    """Read, validate and diff the model; nothing is sent and nothing is written.

    Updates in doubt from earlier runs count as delivered, as they will be once the run has
    resent them; stale ones the user has not decided about hold their keys, as in a run.
    With `every_change` the plan's sample holds every field-level change, not the first few thousand.
    """
    started = time.monotonic()
    ref = DestinationRef.of(config.destination)
    store = StateStore.open_read_only(home, config.sync.name, ref)
    report = Report("preview", Plan(), destination=ref)
    if store is None:
        report.plan = _plan(config, None, (), None, chunk_rows, progress, started, every=every_change)
        _describe_state(config, home, None, report)
        report.seconds = time.monotonic() - started
        return report
    try:
        outbox = Outbox(store)
        summary = outbox.summary()
        held = outbox.held_keys(stale_only=True) if stale is Stale.HOLD else []
        report.plan = _plan(
            config, store, held, None, chunk_rows, progress, started, preview=True, every=every_change
        )
        report.in_doubt = summary.in_doubt + (summary.stale if stale is Stale.RESEND else 0)
        report.stale = summary.stale if stale is Stale.HOLD else 0
        report.settled = summary.stale if stale is Stale.DELIVERED else 0
        _describe_state(config, home, store, report)
    finally:
        store.close()
    report.seconds = time.monotonic() - started
    return report


def run(
    config: SyncConfig,
    home: Path,
    options: RunOptions | None = None,
    progress: ProgressFn | None = None,
) -> Report:
    """Resend what is in doubt, then plan, send and commit; every acknowledged batch is saved at once."""
    return _locked(config, home, options or RunOptions(), progress, "run")


def send_test(
    config: SyncConfig,
    home: Path,
    keys: Iterable[str],
    options: RunOptions | None = None,
    progress: ProgressFn | None = None,
) -> Report:
    """A run of only the rows of `keys` ("send a test record"): committed like a run, kind "test"."""
    chosen = frozenset(keys)
    if not chosen:
        raise ConfigError("a test send needs at least one key")
    return _locked(config, home, replace(options or RunOptions(), keys=chosen), progress, "test")


def preview_revert(config: SyncConfig, home: Path) -> Report:
    """What reverting the last run would send; nothing is sent and nothing is written."""
    started = time.monotonic()
    check_revertible(config)
    ref = DestinationRef.of(config.destination)
    store = StateStore.open_read_only(home, config.sync.name, ref)
    run_id = last_run(store)  # says so when there is nothing to revert
    assert store is not None
    report = Report("revert preview", Plan(), destination=ref)
    try:
        outbox = Outbox(store)
        report.plan = plan_revert(config, store, run_id, None, outbox.held_keys(stale_only=True))
        summary = outbox.summary()
        report.in_doubt, report.stale = summary.in_doubt, summary.stale
    finally:
        store.close()
    report.seconds = time.monotonic() - started
    return report


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
        store = StateStore.open(home, config.sync.name, DestinationRef.of(config.destination))
        try:
            # A revert says so, before any history entry, when there is nothing to revert.
            reverting = last_run(store) if kind == "revert" else None
            report = _run(config, store, options, progress, kind, reverting)
            _describe_state(config, home, store, report)
            return report
        finally:
            store.close()


def _run(
    config: SyncConfig,
    store: StateStore,
    options: RunOptions,
    progress: ProgressFn | None,
    kind: str = "run",
    reverting: int | None = None,
) -> Report:
    """A run, a test send, or with `reverting` the revert of that run; recorded in the history."""
    started = time.monotonic()
    run_id = store.start_run(kind)
    store.record_writes(config.writes())
    report = Report(kind, Plan(), run_id=run_id, destination=store.destination)
    outbox = Outbox(store, run_id, lanes=options.concurrency)
    try:
        _resend(config, store, outbox, options, report, progress, started)
        held = outbox.held_keys()
        if reverting is not None:
            # Resent items count under the run that planned them, which may be the last run now.
            reverting = last_run(store)
            report.plan = plan_revert(config, store, reverting, outbox, held)
        else:
            report.plan = _run_plan(config, store, held, outbox, options, progress, started, report)
        total = outbox.seal(follow_ups=(Channel.SYNTHETIC,))
        _send(config, store, outbox, Scope(run_id=run_id), total, options, report, progress, started)
    except AmpSyncError as exc:
        report.error = str(exc)
        _record(store, outbox, report, started)
        raise
    except BaseException:
        report.error = "interrupted"
        _record(store, outbox, report, started)
        raise
    _record(store, outbox, report, started)
    return report


def _resend(
    config: SyncConfig,
    store: StateStore,
    outbox: Outbox,
    options: RunOptions,
    report: Report,
    progress: ProgressFn | None,
    started: float,
) -> None:
    """Resend, exactly as they were, the items earlier runs left in doubt (before any diff)."""
    outbox.reclaim_unsent()
    report.settled = outbox.settle_stale(options.stale)
    summary = outbox.summary()
    resend = summary.in_doubt + (summary.stale if options.stale is Stale.RESEND else 0)
    if not resend:
        return
    cutoff = None if options.stale is Stale.RESEND else outbox.stale_before()
    scope = Scope(before_run=report.run_id, stale_before=cutoff)
    earlier = Report("resend", Plan())
    _send(config, store, outbox, scope, resend, options, earlier, progress, started, phase="resending")
    report.resent, report.failed = earlier.sent, earlier.failed  # resends not answered count as failed
    report.requests += earlier.requests
    report.failure_reasons = dict(earlier.failure_reasons)


def _run_plan(
    config: SyncConfig,
    store: StateStore,
    held: list[str],
    outbox: Outbox,
    options: RunOptions,
    progress: ProgressFn | None,
    started: float,
    report: Report,
) -> Plan:
    """A run's plan: of every row, or of the chosen keys' rows only (a test send)."""
    keys = KeyFilter(options.keys) if options.keys is not None else None
    plan = _plan(
        config,
        store,
        held,
        outbox,
        options.chunk_rows,
        progress,
        started,
        keys=keys,
        every=options.every_change,
    )
    if keys is not None:
        report.not_found = sorted(keys.keys - keys.seen)
        plan.removed = 0  # a test reads a few rows: the others are not gone from the model
    return plan


def unclipped_chunk(config: SyncConfig, chunk_rows: int) -> int:
    """Rows a chunk may hold so that its changes (a row has at most one per field) fit the sample."""
    fields = len(config.sync.mappings) + 1  # the mapped properties and the user link
    return max(1, min(chunk_rows, SAMPLE_LIMIT // fields))


class KeyFilter:
    """The rows of the chosen keys (a test send), noting which keys the model returned."""

    def __init__(self, keys: frozenset[str]) -> None:
        self.keys = keys
        self.seen: set[str] = set()

    def rows(self, rows: Sequence[Sequence[Any]], at: int) -> list[Sequence[Any]]:
        """The rows whose key, as text, is one of the chosen keys."""
        kept = [r for r in rows if r[at] is not None and str(r[at]) in self.keys]
        self.seen.update(str(r[at]) for r in kept)
        return kept


def _plan(
    config: SyncConfig,
    store: StateStore | None,
    held: list[str] | tuple[str, ...],
    outbox: Outbox | None,
    chunk_rows: int,
    progress: ProgressFn | None,
    started: float,
    preview: bool = False,
    *,
    keys: KeyFilter | None = None,
    every: bool = False,
) -> Plan:
    """Read the model and diff it against the store (with `preview`, what the outbox carries too).

    `keys` keeps only the chosen keys' rows; `every` keeps every change, draining the planner's
    sample after each chunk (chunks small enough, see unclipped_chunk, that none is cut).
    """
    url, files = config.source.url.reveal(), config.source.read_files
    chunk_rows = unclipped_chunk(config, chunk_rows) if every else chunk_rows
    with read_model(url, config.model.sql, chunk_rows, read_files=files) as stream:
        problems = config.missing_columns(stream.columns)
        if problems:
            raise ConfigError(problems)
        kind = EventPlanner if config.sync.object is SyncObject.EVENT else Planner
        if store is None:
            planner = kind(config, stream.columns, SnapshotIndex.build([]), lambda keys: {}, None)
        else:
            docs = functools.partial(store.docs, outbox=preview)
            refresh = None if preview else store.refresh_raw
            index = store.index(outbox=preview)
            planner = kind(config, stream.columns, index, docs, outbox, refresh, held)
        at = list(stream.columns).index(config.sync.key) if keys is not None else 0
        changes: list[FieldChange] = []
        for chunk in stream.chunks:
            planner.add(chunk if keys is None else keys.rows(chunk, at))
            if every:
                changes += planner.plan.sample
                planner.plan.sample.clear()
            if progress:
                progress(Progress("reading", planner.plan.rows_read, elapsed=time.monotonic() - started))
        planner.plan.sample[:0] = changes  # finish() drops those of keys the model repeats
    return planner.finish()


def _send(
    config: SyncConfig,
    store: StateStore,
    outbox: Outbox,
    scope: Scope,
    total: int,
    options: RunOptions,
    report: Report,
    progress: ProgressFn | None,
    started: float,
    phase: str = "sending",
) -> None:
    def on_progress(d: Delivery) -> None:
        if progress:
            elapsed = time.monotonic() - started
            progress(Progress(phase, report.plan.rows_read, total, d.sent, 0, d.batches, elapsed))

    sender = Sender(
        config.destination,
        store,
        outbox,
        scope,
        options.concurrency,
        options.policy,
        options.sleep,
        on_progress,
    )
    delivery = sender.run(total)
    report.sent, report.failed = delivery.sent, report.failed + delivery.failed
    report.synthetic_sent += delivery.synthetic_sent
    report.synthetic_failed += delivery.synthetic_failed
    report.requests += delivery.requests
    report.batches = delivery.batches
    for reason, n in delivery.reasons.items():
        report.failure_reasons[reason] = report.failure_reasons.get(reason, 0) + n
    if delivery.fatal:
        raise FatalError(delivery.fatal)


def _record(store: StateStore, outbox: Outbox, report: Report, started: float) -> None:
    report.seconds = time.monotonic() - started
    summary: Summary = outbox.summary()
    report.in_doubt, report.stale = summary.in_doubt, summary.stale
    message = report.error or "; ".join(f"{n} rows: {r}" for r, n in report.failure_reasons.items())
    if report.plan.reverts_run is not None and not message:
        message = f"reverted run #{report.plan.reverts_run}"
    if report.not_found and not message:
        message = f"keys not in the model: {', '.join(report.not_found)}"
    rejections = ((r.key, r.reason) for r in report.plan.rejections)
    if report.run_id is not None:
        store.finish_run(report.run_id, report.status(), report.counts(), message, rejections)


def _describe_state(config: SyncConfig, home: Path, store: StateStore | None, report: Report) -> None:
    """Where else this sync has state, and which other syncs write the same properties here."""
    ref = report.destination or DestinationRef.of(config.destination)
    known = store.known_destinations() if store is not None else []
    here = next((k for k in known if k.ref.ident == ref.ident), None)
    if here is None or here.rows == 0:
        report.elsewhere = [k for k in known if k.ref.ident != ref.ident and k.rows]
    report.overlaps = writers(home, ref, config.writes(), config.sync.name)


def rekey(config: SyncConfig, home: Path, source: str | None = None) -> str:
    """Same Amplitude project, new API key: give the sync's state under the old key to the new one.

    The old state is the one at the same endpoint under another key (`source` names it when
    there are several). Returns what was done, in words.
    """
    ref = DestinationRef.of(config.destination)
    if not known_destinations(home, config.sync.name):
        raise StateError(
            f"the sync {config.sync.name!r} has no state at {ref.endpoint} under another API key: "
            "nothing to carry over (it has never run)"
        )
    with run_lock(home, config.sync.name):
        store = StateStore.open(home, config.sync.name, ref)
        try:
            known = store.known_destinations()
            here = next(k for k in known if k.ref.ident == ref.ident)
            if here.rows:
                raise StateError(
                    f"the sync {config.sync.name!r} already has state for {ref.describe()} with this "
                    f"API key ({here.rows:,} keys): there is nothing to carry over"
                )
            same = [k for k in known if k.ref.endpoint == ref.endpoint and k.ref.ident != ref.ident]
            picked = _pick_source(config.sync.name, ref, same, source)
            store.move_destination(picked.id)
        finally:
            store.close()
    return (
        f"kept the state of {picked.ref.describe()} ({picked.rows:,} keys) for the new API key of "
        f"{ref.describe()}: the next run sends only what changed"
    )


def _pick_source(
    sync: str, ref: DestinationRef, same: list[KnownDestination], source: str | None
) -> KnownDestination:
    if source is not None:
        same = [k for k in same if k.ref.name == source]
    if len(same) == 1:
        return same[0]
    if not same:
        named = f" named {source!r}" if source is not None else ""
        raise StateError(
            f"the sync {sync!r} has no state{named} at {ref.endpoint} under another API key: nothing "
            "to carry over (a sync pointed at another endpoint starts afresh there)"
        )
    names = ", ".join(repr(k.ref.name) for k in same)
    raise StateError(
        f"the sync {sync!r} has state under several other API keys ({names}): name one with --from"
    )
