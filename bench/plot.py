"""A PNG of (a) throughput against the SDK and (b) incremental run against a bare read."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench.measure import median
from bench.report import RATIO_TARGET, rate
from bench.scenarios import Results

AMP, BASE, TARGET = "#1f77b4", "#999999", "#d62728"


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
    b = results.backfill
    assert b is not None
    series = [("amp_sync run", b.amp_seconds, AMP), ("official SDK", b.sdk_seconds, BASE)]
    for x, (name, seconds, colour) in enumerate(series):
        value = rate(b.rows, seconds)
        ax.bar(x, value, color=colour, label=name)
        ax.scatter([x] * len(seconds), [b.rows / s for s in seconds], color="black", s=12, zorder=3)
        _label(ax, x, value, f"{value:,.0f}")
    ax.set_xticks(range(len(series)), [name for name, _, _ in series])
    ax.set_ylabel("rows/s, median; dots: repetitions (higher is better)")
    ax.set_title(f"(a) full backfill of {b.rows:,} users ({b.backend})")
    ax.margins(y=0.1)


def _incremental(results: Results, ax: Axes) -> None:
    done = [i for i in results.incrementals if i.run_seconds]
    w = 0.38
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
