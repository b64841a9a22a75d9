"""The `amp-sync` command: list, preview, run and check syncs, serve the sandbox, build the demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from amp_sync import __version__
from amp_sync.amplitude import DEFAULT_ATTEMPTS, RetryPolicy
from amp_sync.api import check_saved, is_sync_file, load_sync
from amp_sync.config import SyncConfig, load_config
from amp_sync.credentials import check_keys, event_activity
from amp_sync.errors import AmpSyncError, ConfigError
from amp_sync.home import adopt_legacy, find_home, home_dir, import_state, legacy_folder
from amp_sync.outbox import Stale
from amp_sync.runner import Progress, Report, RunOptions, preview, preview_revert, rekey, revert, run
from amp_sync.state import RunRecord, history
from amp_sync.views import local_time, report_notes
from amp_sync.workspace import SavedSync, Workspace

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 rows not delivered, 2 error)."""
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        return _fail("the sync file has problems:\n" + "\n".join(f"  - {p}" for p in exc.problems))
    except AmpSyncError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted; acknowledged batches are saved and the next run resumes")
    except BrokenPipeError:
        # The reader of our output went away (`| head`): stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _fail(message: str) -> int:
    print(f"amp-sync: {message}", file=sys.stderr)
    return EXIT_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amp-sync",
        description="Sync a warehouse SQL model to Amplitude, sending only what changed.",
    )
    parser.add_argument("--version", action="version", version=f"amp-sync {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, handler, text in (
        ("preview", _preview, "read, validate and diff the model; send and write nothing"),
        ("run", _run, "send new and changed rows to Amplitude and save what it acknowledged"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("file", metavar="FILE|NAME", help=_TARGET)
        cmd.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        cmd.set_defaults(handler=handler)
    text = "undo the last run that changed anything: send back the values it replaced"
    cmd = sub.add_parser("revert", help=text, description=text)
    cmd.add_argument("file", metavar="FILE|NAME", help=_TARGET)
    cmd.add_argument("--preview", action="store_true", help="show what the revert would send; send nothing")
    cmd.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    cmd.set_defaults(handler=_revert)
    for name in ("preview", "run", "revert"):
        sub.choices[name].add_argument(
            "--stale-in-doubt", choices=[str(Stale.RESEND), str(Stale.DELIVERED)], default=None,
            help="updates in doubt for longer than Amplitude de-duplicates (7 days): resend them, "
            "or take them as delivered (by default they and their keys wait)",
        )  # fmt: skip
    text = "same Amplitude project, new API key: keep the state the sync has under the old key"
    cmd = sub.add_parser("rekey", help=text, description=text)
    cmd.add_argument("file", type=Path, help="the sync file (TOML), with the new key")
    cmd.add_argument("--from", dest="source", metavar="NAME", help="the old destination's name, if several")
    cmd.set_defaults(handler=_rekey)
    for name in ("run", "revert"):
        sending = sub.choices[name]
        sending.add_argument("--concurrency", type=_positive, default=4, help="requests in flight (4)")
        sending.add_argument(
            "--attempts", type=_positive, default=DEFAULT_ATTEMPTS,
            help=f"tries per request before its rows count as failed ({DEFAULT_ATTEMPTS})",
        )  # fmt: skip
    check = sub.add_parser("check", help="check the destination's keys; ingests nothing")
    check.add_argument("file", metavar="FILE|NAME", help=_TARGET)
    check.set_defaults(handler=_check)
    _saved_parsers(sub)
    _sandbox_parser(sub)
    text = "say which folder amp_sync keeps its state in, or move an older folder's state into it"
    home = sub.add_parser("home", help=text, description=text)
    home.add_argument(
        "--import", dest="import_from", type=Path, metavar="PATH",
        help="move the state saved in PATH (e.g. an old ./.amp_sync) into the home, file by file",
    )  # fmt: skip
    home.set_defaults(handler=_home_command)
    demo = sub.add_parser("demo", help="build the demo DuckDB warehouse")
    demo.add_argument("--path", type=Path, default=None, help="where to write it")
    demo.add_argument("--force", action="store_true", help="rebuild even if it exists")
    demo.set_defaults(handler=_demo)
    return parser


_TARGET = "a sync file (a path that exists or ends in .toml), or the name of a sync saved in the app"


def _saved_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "list the syncs saved in the app, with their destination and last run"
    cmd = sub.add_parser("list", help=text, description=text)
    cmd.add_argument("--json", action="store_true", help="print one JSON array on stdout")
    cmd.set_defaults(handler=_list)
    text = "show a sync's runs, newest first: kind, start, counts, status and why rows failed"
    cmd = sub.add_parser("history", help=text, description=text)
    cmd.add_argument("file", metavar="FILE|NAME", help=_TARGET)
    cmd.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    cmd.set_defaults(handler=_history)


def _sandbox_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from amp_sync import sandbox

    cmd = sub.add_parser("sandbox", help="serve a local Amplitude-compatible sandbox")
    cmd.add_argument("--host", default="127.0.0.1")
    cmd.add_argument("--port", type=int, default=sandbox.DEFAULT_PORT)
    cmd.add_argument(
        "--api-key", action="append", dest="api_keys", metavar="KEY",
        help=f"an API key to accept (repeatable; default {sandbox.SANDBOX_API_KEY})",
    )  # fmt: skip
    faults = cmd.add_argument_group(
        "simulated Amplitude failures",
        "P is a chance per ingestion request, from 0 to 1; the --fail-* chances add up to 1 or less.",
    )
    flags = (  # (flag, Faults field, metavar, help)
        ("--fail-429", "throttle", "P", "answer 429 Too Many Requests"),
        ("--fail-500", "error_500", "P", "answer 500 without applying the request"),
        ("--fail-503", "error_503", "P", "answer 503 without applying the request"),
        ("--fail-ingest-500", "ingest_then_500", "P", "apply the request, then answer 500"),
        ("--fail-drop", "drop", "P", "close the connection without answering"),
        ("--slow", "slow", "P", "answer only after --slow-seconds"),
        ("--slow-seconds", "slow_seconds", "S", "how late a slow answer comes (1)"),
        ("--max-body-bytes", "max_body_bytes", "N", "answer 413 to larger request bodies"),
        ("--seed", "seed", "N", "seed the draws, to repeat the same failures"),
        ("--daily-quota", "daily_quota", "N", "answer 429 to events of ids with N events in 24 h (off)"),
    )
    for flag, field, metavar, text in flags:
        faults.add_argument(flag, dest=f"fault_{field}", metavar=metavar, help=text)
    cmd.set_defaults(handler=_sandbox, fault_flags={field: flag for flag, field, _, _ in flags})


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _home() -> Path:
    """The home folder, once an old ./.amp_sync has been moved into it (said on stderr)."""
    said = adopt_legacy(Path.cwd())
    if said:
        print(f"amp-sync: {said}", file=sys.stderr)
    return home_dir()


def _home_command(args: argparse.Namespace) -> int:
    home = find_home()
    if args.import_from is not None:
        moved = import_state(args.import_from.absolute(), home.path.absolute())
        for line in moved.lines():
            print(line)
        return EXIT_FAILED if moved.refused else EXIT_OK
    print(home.path.absolute())
    print(f"  {home.origin}")
    old = legacy_folder(Path.cwd())
    if old is not None:
        print(f"  {old} holds state saved by an earlier amp_sync: amp-sync home --import {old} moves it here")
    return EXIT_OK


def _config(args: argparse.Namespace, home: Path) -> SyncConfig:
    """The sync the command line names: a sync file, or a sync saved in the app."""
    return load_sync(args.file, home=home)


def _preview(args: argparse.Namespace) -> int:
    home = _home()
    config = _config(args, home)
    line = ProgressLine(args.json)
    try:
        report = preview(config, home, progress=line, stale=_stale(args))
    finally:
        line.close()
    _print_report(report, config, args.json)
    synthetic = config.sync.options.synthetic_event
    if synthetic and not args.json:
        print(f"  {event_activity(config.destination, synthetic).message}")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    return _send(args, run, "run again to retry them")


def _revert(args: argparse.Namespace) -> int:
    if args.preview:
        home = _home()
        config = _config(args, home)
        _print_report(preview_revert(config, home), config, args.json)
        return EXIT_OK
    return _send(args, revert, "revert again to retry them")


def _send(args: argparse.Namespace, action: Callable[..., Report], retry: str) -> int:
    """Run or revert with the command line's options; the exit status says what was delivered."""
    home = _home()
    config = _config(args, home)
    policy = RetryPolicy(attempts=args.attempts)
    options = RunOptions(concurrency=args.concurrency, policy=policy, stale=_stale(args))
    line = ProgressLine(args.json)
    try:
        report = action(config, home, options, progress=line)
    finally:
        line.close()
    _print_report(report, config, args.json)
    return _delivery_status(report, retry)


def _stale(args: argparse.Namespace) -> Stale:
    return Stale(args.stale_in_doubt) if getattr(args, "stale_in_doubt", None) else Stale.HOLD


def _rekey(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    print(rekey(config, _home(), args.source))
    return EXIT_OK


def _delivery_status(report: Report, retry: str) -> int:
    reasons = report.failure_reasons
    if report.plan.held or report.stale or (report.in_doubt and not report.failed):
        waiting = report.in_doubt + report.stale
        print(
            f"amp-sync: {waiting:,} updates in doubt and {report.plan.held:,} rows waiting for them; "
            "see the notes above",
            file=sys.stderr,
        )
    if report.failed:
        said = "; ".join(f"{_rows(n, verb=False)}: {r}" for r, n in reasons.items() if "synthetic" not in r)
        print(
            f"amp-sync: {_rows(report.failed)} not delivered ({said or 'stopped'}); {retry}", file=sys.stderr
        )
    if report.synthetic_failed:
        said = "; ".join(r for r in reasons if "synthetic" in r)
        print(f"amp-sync: {report.synthetic_failed:,} synthetic events not delivered ({said}); their "
              "profiles were updated and show on the users' next events", file=sys.stderr)  # fmt: skip
    return EXIT_OK if report.ok else EXIT_FAILED


def _check(args: argparse.Namespace) -> int:
    config = _config(args, _home())
    verdict = check_keys(config.destination)
    print(verdict.message if verdict.ok else f"not ok: {verdict.message}")
    return EXIT_OK if verdict.ok else EXIT_FAILED


def _list(args: argparse.Namespace) -> int:
    home = _home()
    rows = [_listed(s, home) for s in Workspace(home).listing(SavedSync)]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return EXIT_OK
    if not rows:
        print(f"no syncs are saved in the app (at {home}); `amp-sync run FILE` runs a sync file")
        return EXIT_OK
    table = [(r["name"], r["destination"], _last_run_words(r["last_run"])) for r in rows]
    _print_table(("SYNC", "DESTINATION", "LAST RUN"), table)
    return EXIT_OK


def _listed(sync: SavedSync, home: Path) -> dict[str, Any]:
    runs = history(home, sync.name)
    last = _run_json(runs[0]) if runs else None
    return {"name": sync.name, "destination": sync.destination, "model": sync.model,
            "object": str(sync.object), "last_run": last}  # fmt: skip


def _last_run_words(run: dict[str, Any] | None) -> str:
    if run is None:
        return "never run"
    return (
        f"#{run['id']} {run['kind']} {run['started']}: {run['status']}, sent {run['counts'].get('sent', 0):,}"
    )


def _print_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _history(args: argparse.Namespace) -> int:
    home = _home()
    name = _history_name(args.file, home)
    runs = history(home, name)
    if args.json:
        print(json.dumps({"sync": name, "runs": [_run_json(r) for r in runs]}, ensure_ascii=False))
        return EXIT_OK
    if not runs:
        print(f"{name}: no runs yet")
        return EXIT_OK
    print(f"{name}: {len(runs):,} runs, newest first")
    for r in runs:
        counts = "  ".join(f"{k} {r.counts.get(k, 0):,}" for k in _HISTORY_COUNTS)
        print(f"  #{r.id} {r.kind} {local_time(r.started_at)} {r.status}  {counts}")
        if r.message:
            print(f"      {r.message}")
    return EXIT_OK


_HISTORY_COUNTS = ("new", "changed", "rejected", "sent", "failed")


def _history_name(target: str, home: Path) -> str:
    """The sync name whose state to read: a file's sync, a saved sync, or one that has run."""
    if is_sync_file(target):
        return load_config(Path(target)).sync.name
    if not history(home, target):
        check_saved(target, Workspace(home).names(SavedSync), home)
    return target


def _run_json(r: RunRecord) -> dict[str, Any]:
    """One history entry; `message` says why rows failed or the run stopped (empty when ok)."""
    took = r.finished_at - r.started_at if r.finished_at is not None else None
    return {"id": r.id, "kind": r.kind, "started": local_time(r.started_at), "seconds": took,
            "destination": r.destination, "status": r.status, "counts": r.counts,
            "message": r.message}  # fmt: skip


def _sandbox(args: argparse.Namespace) -> int:
    from amp_sync import sandbox

    keys = args.api_keys or [sandbox.SANDBOX_API_KEY]
    api_keys: dict[str, str | None] = {
        k: sandbox.SANDBOX_SECRET_KEY if k == sandbox.SANDBOX_API_KEY else None for k in keys
    }
    flags: dict[str, str] = args.fault_flags
    given = {field: text for field in flags if (text := getattr(args, f"fault_{field}")) is not None}
    try:
        faults = sandbox.parse_faults(given, names=flags)
    except ValueError as exc:
        return _fail(str(exc))
    try:
        sandbox.serve(args.host, args.port, api_keys, faults)
    except OSError as exc:
        return _fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from amp_sync import demo

    path = args.path or demo.DEFAULT_DEMO_PATH
    if path.exists() and not args.force:
        print(f"demo warehouse already at {path} (use --force to rebuild)")
        return EXIT_OK
    started = time.monotonic()
    demo.build_demo_warehouse(path)
    print(f"demo warehouse written to {path} in {time.monotonic() - started:.1f} s")
    return EXIT_OK


def _print_report(report: Report, config: SyncConfig, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
        return
    counts = report.counts()
    plan = report.plan
    what = "events" if not config.sync.is_profile else "rows"
    if plan.reverts_run is not None:
        print(f"{config.sync.name}: reverting run #{plan.reverts_run}, which changed {plan.rows_read:,} keys")
    else:
        print(f"{config.sync.name}: {plan.rows_read:,} rows read in {report.seconds:.1f} s")
    hidden = ("sent", "failed", "synthetic_sent", "synthetic_failed", "reverts_run")
    shown = {k: v for k, v in counts.items() if k not in hidden and (v or k not in _WHEN_ANY)}
    print("  " + "  ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in shown.items()))
    if report.is_preview:
        print(f"  would send {plan.to_send:,} {what}; nothing was sent")
    else:
        print(f"  sent {report.sent:,} {what} in {report.requests:,} requests; failed {report.failed:,}")
    for line in report_notes(report, config):
        print(f"  {line}")
    _print_rejections(report, sys.stdout)


_WHEN_ANY = ("in_doubt", "held", "stale", "resent", "settled")  # counts shown only when there are some


def _rows(n: int, verb: bool = True) -> str:
    words = f"{n:,} row" if n == 1 else f"{n:,} rows"
    return f"{words} {'was' if n == 1 else 'were'}" if verb else words


def _shown_key(key: str) -> str:
    """A key as a terminal line can show it: blank ones quoted, long ones cut."""
    if not key:
        return "(no id)"
    if not key.strip():
        return repr(key)
    return key if len(key) <= 80 else f"{key[:77]}…"


def _print_rejections(report: Report, out: TextIO, limit: int = 20) -> None:
    rejections = report.rejections
    if not rejections:
        return
    print(f"  rejected rows ({len(rejections):,}), never sent:", file=out)
    for r in rejections[:limit]:
        print(f"    {_shown_key(r.key)}: {r.reason}", file=out)
    if len(rejections) > limit:
        print(f"    ... and {len(rejections) - limit:,} more (use --json for all)", file=out)


class ProgressLine:
    """A one-line progress display on a terminal's stderr; silent when piped or with --json."""

    def __init__(self, quiet: bool) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self.shown = False
        self.last = 0.0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.2:
            return
        self.last, self.shown = now, True
        print(f"\r{_progress_text(p)}\033[K", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        """End the line so later output starts on a fresh one."""
        if self.shown:
            print(file=sys.stderr)


def _progress_text(p: Progress) -> str:
    if p.phase == "reading":
        return f"reading: {p.rows_read:,} rows"
    done = p.sent / p.to_send if p.to_send else 1.0
    rate = p.sent / p.elapsed if p.elapsed else 0.0
    left = (p.to_send - p.sent) / rate if rate else 0.0
    bar = "#" * int(done * 30)
    return f"sending [{bar:<30}] {p.sent:,}/{p.to_send:,} rows, {rate:,.0f} rows/s, {left:,.0f} s left"
