"""The results as a markdown table: figure, target, pass or miss; and every repetition's figures."""

from __future__ import annotations

from dataclasses import dataclass

from bench.measure import median
from bench.scenarios import Backfill, Incremental, Reps, Results, Scale

BACKFILL_TARGET = 10.0  # a full backfill at least 10x the rows/s of the official SDK's script
RATIO_TARGET = 3.0  # an incremental run at most 3x the time of merely reading the model
NULL_ENDPOINT = "against an endpoint that does nothing"
MEMORY_TARGET_BYTES = 1_000_000_000  # 1 GB (decimal) of peak resident memory


@dataclass(frozen=True, slots=True)
class Line:
    """One row of the results table."""

    measure: str
    figure: str
    target: str
    verdict: str


def lines(results: Results, sdk_version: str) -> list[Line]:
    """The table rows for the measurements asked for, in order a, b, c, d."""
    out: list[Line] = []
    if results.backfill and "a" in results.wanted:
        out += _backfill_lines(results.backfill, sdk_version)
    if results.ceiling and results.ceiling.sdk.seconds:
        out += _ceiling_lines(results.ceiling)
    if "b" in results.wanted:
        out += [_incremental_line(i) for i in results.incrementals if i.run_seconds]
    if "c" in results.wanted:
        out += [_memory_line(s) for s in results.scales]
    if "d" in results.wanted:
        out += [_unchanged_line(s) for s in results.scales]
    return out


def _verdict(ok: bool) -> str:
    return "pass" if ok else "**miss**"


def rate(rows: int, seconds: list[float]) -> float:
    """Rows per second at the median time."""
    return rows / median(seconds)


def _backfill_lines(b: Backfill, sdk_version: str) -> list[Line]:
    where = f"(a) full backfill, {b.rows:,} users, {b.backend}"
    target = f"all {b.rows:,} profiles arrive"
    amp, sdk = rate(b.rows, b.amp.seconds), rate(b.rows, b.sdk.seconds)
    return [
        Line(f"{where}: amp_sync `run`", _rate_text(b.rows, b.amp, "sandbox"), target,
             _verdict(all(n == b.rows for n in b.amp.arrived))),
        Line(f"{where}: official SDK (amplitude-analytics {sdk_version})",
             _rate_text(b.rows, b.sdk, "sandbox"), target, _verdict(all(n == b.rows for n in b.sdk.arrived))),
        Line("(a) amp_sync ÷ SDK throughput", f"{amp / sdk:.2f}×", f"≥ {BACKFILL_TARGET:g}×",
             _verdict(amp / sdk >= BACKFILL_TARGET)),
    ]  # fmt: skip


def _ceiling_lines(c: Backfill) -> list[Line]:
    """Each client's ceiling: the same backfill where the server costs nothing. Not a target."""
    where = f"(a) ceiling, {NULL_ENDPOINT}, {c.rows:,} users, {c.backend}"
    amp, sdk = rate(c.rows, c.amp.seconds), rate(c.rows, c.sdk.seconds)
    target = "none: the client's own limit"
    return [
        Line(f"{where}: amp_sync `run`", _rate_text(c.rows, c.amp, "endpoint"), target, _sent(c.amp, c.rows)),
        Line(f"{where}: official SDK", _rate_text(c.rows, c.sdk, "endpoint"), target, _sent(c.sdk, c.rows)),
        Line(f"(a) ceiling amp_sync ÷ SDK throughput, {NULL_ENDPOINT}", f"{amp / sdk:.2f}×", target, "—"),
    ]


def _sent(reps: Reps, rows: int) -> str:
    """A dash when every repetition sent every row (a ceiling has no target); else what arrived."""
    return "—" if all(n == rows for n in reps.arrived) else f"**items received {reps.arrived} of {rows:,}**"


def _rate_text(rows: int, reps: Reps, server: str) -> str:
    """Rows/s and seconds at the median, and the CPU time per row of the client and the server."""
    client_us, server_us = (median(cpu) / rows * 1e6 for cpu in (reps.client_cpu, reps.server_cpu))
    return (
        f"{rate(rows, reps.seconds):,.0f} rows/s ({median(reps.seconds):.1f} s; CPU per row: "
        f"client {client_us:,.0f} µs, {server} {server_us:,.0f} µs)"
    )


def _incremental_line(i: Incremental) -> Line:
    run, read = median(i.run_seconds), median(i.read_seconds)
    ratio = run / read
    delivered = all(s == c for s, c in zip(i.sent, i.changed, strict=True))
    verdict = _verdict(ratio <= RATIO_TARGET and delivered)
    if not delivered:
        verdict += f" (sent {i.sent} for {i.changed} changed rows)"
    return Line(
        f"(b) incremental `run`, {i.rows:,} rows, 1% changed, {i.backend}",
        f"run {run:.2f} s ÷ bare read {read:.2f} s = {ratio:.2f}×",
        f"≤ {RATIO_TARGET:g}×",
        verdict,
    )


def _memory_line(s: Scale) -> Line:
    first, second = s.first.peak_rss_bytes, s.second.peak_rss_bytes
    return Line(
        f"(c) peak RSS of `amp-sync run` (CLI child), {s.rows:,} rows, {s.backend}",
        f"{max(first, second) / 1e6:,.0f} MB (first run {first / 1e6:,.0f}, second {second / 1e6:,.0f})",
        f"≤ {MEMORY_TARGET_BYTES / 1e9:g} GB",
        _verdict(max(first, second) <= MEMORY_TARGET_BYTES),
    )


def _unchanged_line(s: Scale) -> Line:
    return Line(
        f"(d) requests sent by a second `run` with nothing changed, {s.rows:,} rows, {s.backend}",
        f"{s.second_requests:,}",
        "0",
        _verdict(s.second_requests == 0),
    )


def markdown(header: list[str], table: list[Line], machine: list[tuple[str, str]], details: list[str]) -> str:
    """The whole report: header lines, the results table, the machine, per-repetition details."""
    rows = [f"| {x.measure} | {x.figure} | {x.target} | {x.verdict} |" for x in table]
    parts = [
        "# amp_sync benchmark",
        "",
        *header,
        "",
        "| measurement | figure | target | result |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        *(f"| {label} | {value} |" for label, value in machine),
        "",
        "## Details",
        "",
        *(f"- {d}" for d in details),
    ]
    return "\n".join(parts) + "\n"


def details(results: Results) -> list[str]:
    """Every repetition's raw figures, so the spread behind each median is visible."""
    out: list[str] = []
    if results.backfill:
        out += _backfill_details("(a)", results.backfill, "sandbox", "profiles")
        same = results.backfill.same_profile
        out.append("(a) the sample profile is the same from both: " + ("yes" if same else "**no**"))
    if results.ceiling:
        out += _backfill_details("(a) ceiling", results.ceiling, "endpoint", "items received")
    for i in results.incrementals:
        if i.run_seconds:
            out.append(
                f"(b) {i.backend} {i.rows:,}: run seconds {_list(i.run_seconds)}, bare read seconds "
                f"{_list(i.read_seconds)}; rows changed {i.changed}, sent {i.sent}, requests {i.requests}"
            )
    for s in results.scales:
        out.append(
            f"(c, d) {s.backend} {s.rows:,}: first run {s.first.seconds:.1f} s "
            f"({s.first_requests:,} requests, sent {s.first.report.get('sent')}), "
            f"second run {s.second.seconds:.1f} s ({s.second_requests:,} requests)"
        )
    return out


def _backfill_details(what: str, b: Backfill, server: str, arrived: str) -> list[str]:
    return [
        f"{what} {client} seconds per rep: {_list(reps.seconds)}; CPU seconds, client: "
        f"{_list(reps.client_cpu)}, {server}: {_list(reps.server_cpu)}; requests: {reps.requests}; "
        f"{arrived}: {reps.arrived}"
        for client, reps in (("amp_sync", b.amp), ("SDK", b.sdk))
    ]


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)
