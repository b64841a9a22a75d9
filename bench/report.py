"""The results as a markdown table (figure, target, pass or miss) and a PNG of (a) and (b)."""

from __future__ import annotations

from dataclasses import dataclass

from bench.measure import median
from bench.scenarios import Backfill, Incremental, Results, Scale

RATIO_TARGET = 3.0  # an incremental run at most 3x the time of merely reading the model
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
    amp, sdk = rate(b.rows, b.amp_seconds), rate(b.rows, b.sdk_seconds)
    return [
        Line(f"{where}: amp_sync `run`", _rate_text(amp, b.amp_seconds), target,
             _verdict(all(n == b.rows for n in b.amp_arrived))),
        Line(f"{where}: official SDK (amplitude-analytics {sdk_version})", _rate_text(sdk, b.sdk_seconds),
             target, _verdict(all(n == b.rows for n in b.sdk_arrived))),
        Line("(a) amp_sync ÷ SDK throughput", f"{amp / sdk:.2f}×", "none set", "—"),
    ]  # fmt: skip


def _rate_text(rows_per_second: float, seconds: list[float]) -> str:
    return f"{rows_per_second:,.0f} rows/s ({median(seconds):.1f} s)"


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
    b = results.backfill
    if b:
        out += [
            f"(a) amp_sync seconds per rep: {_list(b.amp_seconds)}; requests: {b.amp_requests}; "
            f"profiles: {b.amp_arrived}",
            f"(a) SDK seconds per rep: {_list(b.sdk_seconds)}; requests: {b.sdk_requests}; "
            f"profiles: {b.sdk_arrived}",
            "(a) the sample profile is the same from both: " + ("yes" if b.same_profile else "**no**"),
        ]
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


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)
