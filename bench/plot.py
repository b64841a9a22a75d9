"""A PNG of (a) throughput against the SDK, into the sandbox and against an endpoint that does
nothing, and (b) incremental run against a bare read."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench.measure import median
from bench.report import BACKFILL_TARGET, RATIO_TARGET, rate
from bench.scenarios import Results

AMP, BASE, TARGET = "#1f77b4", "#999999", "#d62728"
WIDTH = 0.38  # of one bar; two bars side by side per group
CEILING_TICK = "against an endpoint that does\nnothing (each client's ceiling,\nnot a target)"


def plot(results: Results, path: Path) -> bool:
    """Write the PNG (one panel per measurement that ran); False when neither (a) nor (b) ran."""
    panels: list[Callable[[Results, Axes], None]] = []
    if results.backfill is not None and "a" in results.wanted:
        panels.append(_backfill)
    if "b" in results.wanted and any(i.run_seconds for i in results.incrementals):
        panels.append(_incremental)
    if not panels:
        return False
    # A bare Figure renders with Agg on savefig: no pyplot, no display needed.
    figure = Figure(figsize=(6.5 * len(panels), 5.2), layout="tight")
    for n, draw in enumerate(panels, start=1):
        draw(results, figure.add_subplot(1, len(panels), n))
    figure.savefig(path, dpi=120)
    return True


def _backfill(results: Results, ax: Axes) -> None:
    b, c = results.backfill, results.ceiling
    assert b is not None
    groups = [("into the sandbox", b.amp.seconds, b.sdk.seconds)]
    if c is not None and c.sdk.seconds:
        groups.append((CEILING_TICK, c.amp.seconds, c.sdk.seconds))
    for x, (_, amp_seconds, sdk_seconds) in enumerate(groups):
        first = x == 0  # label each series once in the legend
        amp = _bar(ax, x - WIDTH / 2, b.rows, amp_seconds, AMP, "amp_sync run" if first else None)
        sdk = _bar(ax, x + WIDTH / 2, b.rows, sdk_seconds, BASE, "official SDK" if first else None)
        if first:
            ax.hlines(BACKFILL_TARGET * sdk, x - WIDTH, x, colors=TARGET, linestyles="dashed",
                      label=f"target: {BACKFILL_TARGET:g}× the SDK")  # fmt: skip
        top = max(b.rows / s for s in [*amp_seconds, *sdk_seconds])  # above every repetition's dot
        ax.annotate(f"{amp / sdk:.2f}×", (x, top), xytext=(0, 6), textcoords="offset points",
                    ha="center", fontweight="bold")  # fmt: skip
    ax.set_xticks(range(len(groups)), [name for name, _, _ in groups])
    ax.set_ylabel("rows/s, median; dots: repetitions (higher is better)")
    ax.set_title(f"(a) full backfill of {b.rows:,} users ({b.backend}); amp_sync ÷ SDK above")
    ax.margins(y=0.12)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=3, frameon=False)


def _bar(ax: Axes, x: float, rows: int, seconds: list[float], colour: str, label: str | None) -> float:
    """A bar of rows/s at the median, a dot per repetition, the figure inside; returns the rate."""
    value = rate(rows, seconds)
    ax.bar(x, value, WIDTH, color=colour, label=label)
    ax.scatter([x] * len(seconds), [rows / s for s in seconds], color="black", s=12, zorder=3)
    _label(ax, x, value, f"{value:,.0f}")
    return value


def _incremental(results: Results, ax: Axes) -> None:
    done = [i for i in results.incrementals if i.run_seconds]
    w = WIDTH
    for x, i in enumerate(done):
        read, run = median(i.read_seconds), median(i.run_seconds)
        first = x == 0  # label each series once in the legend
        ax.bar(x - w / 2, read, w, color=BASE, label="bare read" if first else None)
        ax.bar(x + w / 2, run, w, color=AMP, label="amp_sync run" if first else None)
        ax.hlines(RATIO_TARGET * read, x - w, x + w, colors=TARGET, linestyles="dashed",
                  label=f"target: {RATIO_TARGET:g}× read" if first else None)  # fmt: skip
        ax.scatter([x + w / 2] * len(i.run_seconds), i.run_seconds, color="black", s=12, zorder=3)
        ax.scatter([x - w / 2] * len(i.read_seconds), i.read_seconds, color="black", s=12, zorder=3)
        _label(ax, x + w / 2, run, f"{run / read:.2f}×")
    ax.set_xticks(range(len(done)), [f"{i.backend}\n{i.rows:,} rows" for i in done])
    ax.set_ylabel("seconds, median; dots: repetitions (lower is better)")
    ax.set_title("(b) incremental run, 1% of rows changed")
    ax.margins(y=0.15)  # room above the bars for the ratios
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=3, frameon=False)


def _label(ax: Axes, x: float, top: float, text: str) -> None:
    """`text` inside the top of the bar at `x`, clear of the repetition dots around the top."""
    ax.annotate(text, (x, top), xytext=(0, -16), textcoords="offset points", ha="center",
                color="white", fontweight="bold")  # fmt: skip
