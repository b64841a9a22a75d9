"""The measurements: (a) backfill against the official SDK, (b) incremental run against a bare read,
(c) peak memory of a run, (d) requests of a run with nothing changed.

(a) runs twice: into the sandbox (the measurement), then against an endpoint that does nothing,
which shows each client's own ceiling, what it would reach if the server cost nothing.

(b), (c) and (d) share their preparation: one generated warehouse per (engine, size) gets a first
full run and a second, unchanged run as child processes (peak memory, and the requests of the
second), then the timed incremental rounds of (b) in this process.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from amp_sync.config import SyncConfig, load_config
from amp_sync.runner import Report, run
from bench import baseline
from bench.measure import ChildRun, Clocks, run_cli, timed, timed_cpu
from bench.sandbox_process import NullEndpoint, SandboxProcess, null_endpoint, sandbox
from bench.warehouses import MODEL_SQL, Warehouse, change_one_percent, generate, sync_file

Log = Callable[[str], None]
SAMPLE_USER = "user_000000001"  # compared between amp_sync's and the SDK's profiles


@dataclass(frozen=True, slots=True)
class Settings:
    """Sizes, repetitions and where to work."""

    rows_a: int
    rows_b: int
    rows_c: tuple[int, ...]
    reps: int
    backfill_backend: str
    memory_backend: str
    folder: Path
    log: Log


@dataclass(slots=True)
class Reps:
    """One client's repetitions of (a): wall seconds, CPU seconds of the client and of the server,
    requests, and rows that arrived (profiles in the sandbox, items at the endpoint)."""

    seconds: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    arrived: list[int] = field(default_factory=list)

    def add(self, clocks: Clocks, requests: int, arrived: int) -> None:
        """Record one repetition."""
        self.seconds.append(clocks.seconds)
        self.client_cpu.append(clocks.client_cpu)
        self.server_cpu.append(clocks.server_cpu)
        self.requests.append(requests)
        self.arrived.append(arrived)


@dataclass(slots=True)
class Backfill:
    """(a) into the sandbox, or its ceiling against the endpoint that does nothing: both clients.

    same_profile: whether one sample profile came out the same from both (None: not compared, as
    the endpoint keeps nothing).
    """

    backend: str
    rows: int
    amp: Reps = field(default_factory=Reps)
    sdk: Reps = field(default_factory=Reps)
    same_profile: bool | None = None


@dataclass(slots=True)
class Incremental:
    """(b): per round, rows changed, seconds of amp_sync's run and of a bare read, rows sent."""

    backend: str
    rows: int
    changed: list[int] = field(default_factory=list)
    run_seconds: list[float] = field(default_factory=list)
    read_seconds: list[float] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Scale:
    """(c) and (d): a first full `amp-sync run` and a second one with nothing changed."""

    backend: str
    rows: int
    first: ChildRun
    second: ChildRun
    first_requests: int
    second_requests: int


@dataclass(slots=True)
class Results:
    """Everything measured in one bench run, filled in as it goes, and the measurements asked for."""

    wanted: frozenset[str]
    backfill: Backfill | None = None
    ceiling: Backfill | None = None
    scales: list[Scale] = field(default_factory=list)
    incrementals: list[Incremental] = field(default_factory=list)


def backfill(settings: Settings, results: Results) -> None:
    """(a) Full backfill into an empty sandbox, amp_sync and the SDK alternating, `reps` times each;
    then the same against an endpoint that does nothing."""
    warehouse = _generate(settings, settings.backfill_backend, settings.rows_a)
    result = results.backfill = Backfill(warehouse.backend, warehouse.rows, same_profile=True)
    try:
        with sandbox(settings.folder / "sandbox.log") as box:
            config = load_config(sync_file(warehouse, box.url, settings.folder))
            for rep in range(settings.reps):
                amp_profile = _amp_backfill(settings, config, box, result, rep)
                sdk_profile = _sdk_backfill(settings, warehouse, box, result, rep)
                result.same_profile = bool(result.same_profile) and amp_profile == sdk_profile
        ceiling = results.ceiling = Backfill(warehouse.backend, warehouse.rows)
        with null_endpoint(settings.folder / "null_endpoint.log") as endpoint:
            config = load_config(sync_file(warehouse, endpoint.url, settings.folder))
            for rep in range(settings.reps):
                _amp_ceiling(settings, config, endpoint, ceiling, rep)
                _sdk_ceiling(settings, warehouse, endpoint, ceiling, rep)
    finally:
        warehouse.path.unlink(missing_ok=True)


def _amp_backfill(
    settings: Settings, config: SyncConfig, box: SandboxProcess, result: Backfill, rep: int
) -> dict[str, object] | None:
    box.reset()
    clocks, report = timed_cpu(partial(run, config, settings.folder / f"home-a-{rep}"), box.process.pid)
    _check(report)
    result.amp.add(clocks, len(box.requests()), box.profile_count())
    _log_rep(settings, "(a)", rep, "amp_sync", clocks, f"{result.amp.arrived[-1]:,} profiles")
    return box.profile(SAMPLE_USER)


def _sdk_backfill(
    settings: Settings, warehouse: Warehouse, box: SandboxProcess, result: Backfill, rep: int
) -> dict[str, object] | None:
    box.reset()
    send = partial(baseline.sdk_backfill, warehouse.url, MODEL_SQL, box.url)
    clocks, _ = timed_cpu(send, box.process.pid)
    result.sdk.add(clocks, len(box.requests()), box.profile_count())
    _log_rep(settings, "(a)", rep, "SDK", clocks, f"{result.sdk.arrived[-1]:,} profiles")
    return box.profile(SAMPLE_USER)


def _amp_ceiling(
    settings: Settings, config: SyncConfig, endpoint: NullEndpoint, result: Backfill, rep: int
) -> None:
    endpoint.reset()
    home = settings.folder / f"home-ceiling-{rep}"
    clocks, report = timed_cpu(partial(run, config, home), endpoint.process.pid)
    _check(report)
    result.amp.add(clocks, *endpoint.received())
    _log_rep(settings, "(a) ceiling", rep, "amp_sync", clocks, f"{result.amp.arrived[-1]:,} items received")


def _sdk_ceiling(
    settings: Settings, warehouse: Warehouse, endpoint: NullEndpoint, result: Backfill, rep: int
) -> None:
    endpoint.reset()
    send = partial(baseline.sdk_backfill, warehouse.url, MODEL_SQL, endpoint.url)
    clocks, _ = timed_cpu(send, endpoint.process.pid)
    result.sdk.add(clocks, *endpoint.received())
    _log_rep(settings, "(a) ceiling", rep, "SDK", clocks, f"{result.sdk.arrived[-1]:,} items received")


def _log_rep(settings: Settings, what: str, rep: int, client: str, clocks: Clocks, arrived: str) -> None:
    settings.log(
        f"{what} rep {rep + 1}: {client} {clocks.seconds:.1f} s (CPU: client {clocks.client_cpu:.1f} s, "
        f"server {clocks.server_cpu:.1f} s), {arrived}"
    )


def scale(settings: Settings, results: Results, backend: str, rows: int, rounds: int) -> None:
    """(c)+(d) at `rows`, then `rounds` timed incremental rounds of (b) on the same state."""
    warehouse = _generate(settings, backend, rows)
    home = settings.folder / f"home-{backend}-{rows}"
    try:
        with sandbox(settings.folder / "sandbox.log") as box:
            toml = sync_file(warehouse, box.url, settings.folder)
            first, first_requests = _cli_run(settings, toml, home, box, "first full run")
            second, second_requests = _cli_run(settings, toml, home, box, "second run, nothing changed")
            results.scales.append(Scale(backend, rows, first, second, first_requests, second_requests))
            incremental = Incremental(backend, rows)
            results.incrementals.append(incremental)
            for round_ in range(rounds):
                _incremental_round(settings, warehouse, load_config(toml), home, box, incremental, round_)
    finally:
        warehouse.path.unlink(missing_ok=True)
        shutil.rmtree(home, ignore_errors=True)


def _cli_run(
    settings: Settings, toml: Path, home: Path, box: SandboxProcess, what: str
) -> tuple[ChildRun, int]:
    before = len(box.requests())
    child = run_cli(["run", str(toml), "--json"], {"AMP_SYNC_HOME": str(home)}, settings.folder)
    if child.status != 0:
        raise RuntimeError(f"`amp-sync run` exited {child.status}: {child.stderr.strip()[-2000:]}")
    requests = len(box.requests()) - before
    settings.log(
        f"{what}: {child.seconds:.1f} s, peak RSS {child.peak_rss_bytes / 1e6:,.0f} MB, "
        f"sent {child.report.get('sent')}, {requests:,} requests"
    )
    return child, requests


def _incremental_round(
    settings: Settings,
    warehouse: Warehouse,
    config: SyncConfig,
    home: Path,
    box: SandboxProcess,
    result: Incremental,
    round_: int,
) -> None:
    changed = change_one_percent(warehouse, round_)
    before = len(box.requests())
    run_seconds, report = timed(partial(run, config, home))
    _check(report)
    requests = len(box.requests()) - before
    read_seconds, _ = timed(partial(baseline.bare_read, warehouse.url, MODEL_SQL))
    result.changed.append(changed)
    result.run_seconds.append(run_seconds)
    result.read_seconds.append(read_seconds)
    result.sent.append(report.sent)
    result.requests.append(requests)
    settings.log(
        f"(b) round {round_ + 1}: {changed:,} rows changed; run {run_seconds:.2f} s "
        f"(sent {report.sent:,} in {requests} requests), bare read {read_seconds:.2f} s"
    )


def _generate(settings: Settings, backend: str, rows: int) -> Warehouse:
    seconds, warehouse = timed(partial(generate, backend, rows, settings.folder))
    settings.log(f"{backend} warehouse of {rows:,} rows generated in {seconds:.1f} s")
    return warehouse


def _check(report: Report) -> None:
    if not report.ok:
        raise RuntimeError(f"amp_sync's run did not deliver every row: {report.counts()} {report.error}")
