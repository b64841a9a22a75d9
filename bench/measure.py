"""Clocks and meters: wall time of a call, and wall time plus peak memory of a child process."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent  # the children import bench from here


def timed(call: Callable[[], T]) -> tuple[float, T]:
    """(seconds, result) of one call, on the monotonic clock."""
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def median(values: Sequence[float]) -> float:
    """The median; NaN for no values."""
    return statistics.median(values) if values else float("nan")


@dataclass(frozen=True, slots=True)
class ChildRun:
    """One finished child process: exit status, wall time, peak RSS, and its --json report."""

    status: int
    seconds: float
    peak_rss_bytes: int
    report: dict[str, Any]
    stderr: str


def run_cli(args: Sequence[str], env: Mapping[str, str], folder: Path) -> ChildRun:
    """Run `amp-sync ARGS` as a child process (through bench.peak, which reports its peak RSS)."""
    out, err, peak = folder / "child.out", folder / "child.err", folder / "child.peak"
    peak.unlink(missing_ok=True)
    command = [sys.executable, "-m", "bench.peak", str(peak), *args]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        started = time.perf_counter()
        status = subprocess.run(
            command, stdout=stdout, stderr=stderr, env={**os.environ, **env}, cwd=REPO
        ).returncode
        seconds = time.perf_counter() - started
    text = out.read_text(encoding="utf-8").strip()
    report = json.loads(text) if text.startswith("{") else {}
    peak_bytes = int(peak.read_text(encoding="utf-8")) if peak.exists() else 0
    return ChildRun(status, seconds, peak_bytes, report, err.read_text(encoding="utf-8"))
