"""`make bench`: measure amp_sync against its baselines and print a results table.

(a) full backfill against the official Amplitude SDK (and, as each client's ceiling, the same against
an endpoint that does nothing), (b) an incremental run against a bare read of the same model, (c)
peak memory of a run, (d) requests of a run with nothing changed. The servers run as child
processes. Figures go to stdout and bench/results/latest.md, a plot to latest.png.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench import machine
from bench.plot import plot
from bench.report import details, lines, markdown
from bench.scenarios import Results, Settings, backfill, scale
from bench.warehouses import BACKENDS

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
MEASUREMENTS = ("a", "b", "c", "d")
# rows for (a), rows for (b), sizes for (c) and (d)
FULL = (200_000, 1_000_000, (1_000_000, 5_000_000))
QUICK = (20_000, 100_000, (100_000, 200_000))


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the table, write latest.md and latest.png; 0 when every measurement ran."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    started, load = time.perf_counter(), os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="amp-sync-bench-", dir=args.workdir)).resolve()
    settings = _settings(args, folder, started)
    results = Results(frozenset(args.only))
    stopped = None
    try:
        _measure(settings, results)
    except BaseException as exc:  # the table of what did run is still written, then it re-raises
        stopped = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        took = time.perf_counter() - started
        _publish(results, argv, args.out, took, (load, os.getloadavg()[0]), stopped)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run (20k/100k/200k)")
    parser.add_argument("--reps", type=_positive, default=3, help="repetitions of (a) and rounds of (b) (3)")
    parser.add_argument("--only", type=_only, default=list(MEASUREMENTS), help="e.g. a,b (default a,b,c,d)")
    parser.add_argument("--rows-a", type=_positive, help=f"rows for (a) ({FULL[0]:,}; quick {QUICK[0]:,})")
    parser.add_argument("--rows-b", type=_positive, help=f"rows for (b) ({FULL[1]:,}; quick {QUICK[1]:,})")
    parser.add_argument("--rows-c", type=_sizes, help="sizes for (c) and (d) (1000000,5000000)")
    parser.add_argument("--backfill-backend", choices=BACKENDS, default="sqlite", help="engine of (a)")
    parser.add_argument(
        "--memory-backend", choices=BACKENDS, default="duckdb",
        help="engine of (c)/(d) at sizes other than (b)'s, where both engines are measured (duckdb)",
    )  # fmt: skip
    parser.add_argument("--workdir", type=Path, help="where warehouses and state go (system temp)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of latest.md and latest.png")
    return parser


def _positive(text: str) -> int:
    value = int(text.replace("_", ""))
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(_positive(part) for part in text.split(",") if part.strip())


def _only(text: str) -> list[str]:
    chosen = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [c for c in chosen if c not in MEASUREMENTS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {','.join(MEASUREMENTS)}, not {text!r}")
    return chosen


def _settings(args: argparse.Namespace, folder: Path, started: float) -> Settings:
    rows_a, rows_b, rows_c = QUICK if args.quick else FULL
    return Settings(
        rows_a=args.rows_a or rows_a,
        rows_b=args.rows_b or rows_b,
        rows_c=args.rows_c or rows_c,
        reps=args.reps,
        backfill_backend=args.backfill_backend,
        memory_backend=args.memory_backend,
        folder=folder,
        log=lambda text: print(f"[{_clock(time.perf_counter() - started)}] {text}", file=sys.stderr),
    )


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60):02d}:{int(seconds % 60):02d}"


def _measure(settings: Settings, results: Results) -> None:
    if "a" in results.wanted:
        backfill(settings, results)
    for backend, rows, rounds in _warehouses(settings, results.wanted):
        settings.log(f"{backend}, {rows:,} rows: " + ("(b), (c), (d)" if rounds else "(c), (d)"))
        scale(settings, results, backend, rows, rounds)


def _warehouses(settings: Settings, wanted: frozenset[str]) -> Iterator[tuple[str, int, int]]:
    """(engine, rows, rounds of (b)) to prepare: (b)'s size on both engines, other sizes on one."""
    rounds = settings.reps if "b" in wanted else 0
    sizes = settings.rows_c if wanted & {"c", "d"} else ()
    if rounds or settings.rows_b in sizes:
        for backend in BACKENDS:
            yield backend, settings.rows_b, rounds
    for rows in sizes:
        if rows != settings.rows_b:
            yield settings.memory_backend, rows, 0


def _publish(
    results: Results, argv: list[str], out: Path, took: float, load: tuple[float, float], stopped: str | None
) -> None:
    sdk = _version("amplitude-analytics")
    command = shlex.join(["python", "-m", "bench.run", *argv])
    header = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {took / 60:.1f} min by `{command}`.",
        f"Load average (1 min) {load[0]:.1f} at the start, {load[1]:.1f} at the end, on {os.cpu_count()} "
        "cores: anything above what the bench itself uses means other work shared the machine.",
        *([f"**Stopped early** ({stopped}): the table holds what had finished."] if stopped else []),
        "",
        *_method(),
    ]
    table = lines(results, sdk)
    text = markdown(header, table, machine.describe(REPO), details(results))
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(text, encoding="utf-8")
    if plot(results, out / "latest.png"):
        print(f"written: {out / 'latest.md'}, {out / 'latest.png'}", file=sys.stderr)


def _method() -> list[str]:
    return [
        "How: the sandbox runs as its own process (`python -m amp_sync sandbox`); each figure is the",
        "median of the repetitions listed under Details. (a) times `amp_sync.runner.run` into an empty",
        "sandbox with a fresh AMP_SYNC_HOME against a script sending one identify per row through the",
        "official SDK (default settings, `/2/httpapi`); both read with the same SQLAlchemy driver.",
        "The (a) ceiling rows repeat that backfill against an endpoint that does nothing",
        "(`bench/null_endpoint.py`: reads each request, answers Amplitude's success body, keeps",
        "nothing): each client's own limit, what it reaches when the server costs nothing. Not a",
        "target. CPU per row: the benchmark process (the client, all its threads) and the server",
        "process, each over the timed call, at the median.",
        "(b) changes 1% of rows (UPDATE), then times `run` against a bare `SELECT` fetched to the end.",
        "(c) is the peak RSS (VmHWM) of `amp-sync run --json` as a child process: a first full run into",
        "an empty sandbox, then a second run with nothing changed, whose requests are (d).",
    ]


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
