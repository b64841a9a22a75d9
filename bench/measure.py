"""Clocks and meters: wall time of a call (with the CPU time of the client and of a server), and
wall time plus peak memory of a child process."""

from __future__ import annotations

import json
import os
import resource
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


@dataclass(frozen=True, slots=True)
class Clocks:
    """One timed call: wall seconds, and CPU seconds used meanwhile by this process (the client,
    every thread of it) and by a server process."""

    seconds: float
    client_cpu: float
    server_cpu: float


def timed_cpu(call: Callable[[], T], server_pid: int) -> tuple[Clocks, T]:
    """(clocks, result) of one call made to the server process `server_pid`."""
    client, server, started = _own_cpu(), process_cpu(server_pid), time.perf_counter()
    result = call()
    seconds = time.perf_counter() - started
    return Clocks(seconds, _own_cpu() - client, process_cpu(server_pid) - server), result


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used so far; 0.0 where /proc is missing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


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
