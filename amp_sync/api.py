"""The notebook face of amp_sync: preview, test-send and run a sync; changes come back as DataFrames.

import amp_sync
plan = amp_sync.preview("examples/demo.toml")   # or a sync saved in the app, by name
plan.changes                                    # every field-level change: a pandas DataFrame
amp_sync.send_test("examples/demo.toml", keys=["u_000010"])
done = amp_sync.run("examples/demo.toml")       # done.sent, done.failed, done.run_id
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amp_sync import runner
from amp_sync.amplitude import DEFAULT_ATTEMPTS, RetryPolicy
from amp_sync.config import SyncConfig, load_config
from amp_sync.errors import AmpSyncError
from amp_sync.home import home_dir
from amp_sync.plan import FieldChange, Rejection
from amp_sync.runner import Progress, Report, RunOptions
from amp_sync.state import history as run_history
from amp_sync.workspace import SavedSync, Workspace

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "PreviewResult",
    "RunResult",
    "UnknownSyncError",
    "history",
    "load_sync",
    "preview",
    "run",
    "send_test",
]

SyncRef = str | os.PathLike[str] | SyncConfig
_SHOWN_ROWS = 10  # rows of changes and rejections a notebook shows under the counts


class UnknownSyncError(AmpSyncError):
    """No sync file at that path and no sync of that name saved in the app."""


def load_sync(sync: SyncRef, *, home: Path | None = None, endpoint: str | None = None) -> SyncConfig:
    """A sync file (a path that exists or ends in .toml) or the app's saved sync of that name.

    `endpoint` sends to another Amplitude-compatible URL than the sync's (e.g. a local sandbox).
    """
    config = sync if isinstance(sync, SyncConfig) else _read_sync(sync, home or home_dir())
    if endpoint is None:
        return config
    return replace(config, destination=replace(config.destination, endpoint=endpoint.rstrip("/")))


def is_sync_file(target: str | os.PathLike[str]) -> bool:
    """A command-line or API target names a file when the path exists or ends in .toml."""
    path = Path(target)
    return path.exists() or path.suffix.lower() == ".toml"


def _read_sync(target: str | os.PathLike[str], home: Path) -> SyncConfig:
    if is_sync_file(target):
        return load_config(Path(target))
    name = str(target)
    check_saved(name, Workspace(home).names(SavedSync), home)
    return Workspace(home).sync_config(name)


def check_saved(name: str, names: list[str], home: Path) -> None:
    """UnknownSyncError, naming the saved syncs, unless `name` is one of them."""
    if name in names:
        return
    if not names:
        raise UnknownSyncError(
            f"no sync file {name!r} and no syncs saved in the app (at {home}); give the path of a "
            "sync file (it must exist or end in .toml)"
        )
    raise UnknownSyncError(
        f"no sync file {name!r} and no sync of that name saved in the app (at {home}); "
        f"the saved syncs are: {', '.join(names)}"
    )


@dataclass(frozen=True, slots=True)
class PreviewResult:
    """What a sync would send: the counts, every field-level change and the rejected rows."""

    sync: str
    counts: dict[str, int]
    change_list: tuple[FieldChange, ...]
    rejection_list: tuple[Rejection, ...]
    seconds: float

    @property
    def changes(self) -> pd.DataFrame:
        """Every field-level change: key, property, op, before (last acknowledged) and after."""
        import pandas as pd

        rows = [(c.key, c.property, c.op, c.before, c.after) for c in self.change_list]
        return pd.DataFrame(rows, columns=["key", "property", "op", "before", "after"], dtype=object)

    @property
    def rejections(self) -> pd.DataFrame:
        """Rows that are not sent: key and reason."""
        import pandas as pd

        rows = [(r.key, r.reason) for r in self.rejection_list]
        return pd.DataFrame(rows, columns=["key", "reason"], dtype=object)

    @property
    def new(self) -> int:
        """Keys Amplitude has not acknowledged yet."""
        return self.counts["new"]

    @property
    def changed(self) -> int:
        """Keys with a value that differs from the one Amplitude last acknowledged."""
        return self.counts["changed"]

    @property
    def unchanged(self) -> int:
        """Keys with nothing to send."""
        return self.counts["unchanged"]

    @property
    def rejected(self) -> int:
        """Rows that are not sent (see `rejections`)."""
        return self.counts["rejected"]

    def _title(self) -> str:
        return f"preview of {self.sync}"

    def __repr__(self) -> str:
        shown = ", ".join(f"{k} {v:,}" for k, v in self.counts.items() if v or k in _HEADLINE)
        return f"<{type(self).__name__} {self._title()}: {shown}>"

    def _repr_html_(self) -> str:
        counts = "".join(f"<td>{v:,}</td>" for v in self.counts.values())
        names = "".join(f"<th>{html.escape(k.replace('_', ' '))}</th>" for k in self.counts)
        parts = [f"<b>{html.escape(self._title())}</b>", f"<table><tr>{names}</tr><tr>{counts}</tr></table>"]
        for label, frame in (("changes", self.changes), ("rejections", self.rejections)):
            if len(frame):
                parts.append(f"<p>{label} ({len(frame):,}; first {min(len(frame), _SHOWN_ROWS)}):</p>")
                parts.append(frame.head(_SHOWN_ROWS).to_html(index=False))
        return "\n".join(parts)


_HEADLINE = ("new", "changed", "unchanged", "rejected", "sent", "failed")


@dataclass(frozen=True, slots=True, repr=False)
class RunResult(PreviewResult):
    """A run or a test send: the plan, what Amplitude acknowledged, and its entry in the history."""

    kind: str  # "run" or "test"
    run_id: int | None
    sent: int
    failed: int
    failure_reasons: dict[str, int]
    status: str  # ok, failed (some rows not delivered: run again) or error
    not_found: tuple[str, ...]  # a test send: chosen keys the model did not return

    @property
    def ok(self) -> bool:
        """Every valid new or changed row was delivered."""
        return self.status == "ok"

    def _title(self) -> str:
        missing = f", keys not in the model: {', '.join(self.not_found)}" if self.not_found else ""
        return f"{self.kind} #{self.run_id} of {self.sync}, {self.status}{missing}"


def preview(sync: SyncRef, *, home: Path | None = None, endpoint: str | None = None) -> PreviewResult:
    """Read, validate and diff the sync's model: every change it would send. Sends and writes nothing."""
    home = home or home_dir()
    config = load_sync(sync, home=home, endpoint=endpoint)
    return _preview_result(config, runner.preview(config, home, every_change=True))


def run(
    sync: SyncRef,
    *,
    home: Path | None = None,
    endpoint: str | None = None,
    progress: bool = True,
    concurrency: int = 4,
    attempts: int = DEFAULT_ATTEMPTS,
) -> RunResult:
    """Send the new and changed rows, as `amp-sync run` does; each acknowledged batch is saved."""
    home = home or home_dir()
    config = load_sync(sync, home=home, endpoint=endpoint)
    options = _options(concurrency, attempts)
    with ProgressBar(enabled=progress) as bar:
        report = runner.run(config, home, options, progress=bar)
    return _run_result(config, report)


def send_test(
    sync: SyncRef,
    *,
    keys: Iterable[str],
    home: Path | None = None,
    endpoint: str | None = None,
    progress: bool = True,
) -> RunResult:
    """Send only the rows of `keys` (a test record): saved like a run, "test" in the history.

    A later run sends the other rows and, unless they changed again, not these.
    """
    home = home or home_dir()
    config = load_sync(sync, home=home, endpoint=endpoint)
    with ProgressBar(enabled=progress) as bar:
        report = runner.send_test(config, home, [str(k) for k in keys], _options(4, DEFAULT_ATTEMPTS), bar)
    return _run_result(config, report)


def history(sync: SyncRef, *, home: Path | None = None) -> pd.DataFrame:
    """The sync's runs, newest first: id, kind (run, test, revert), start, status, counts, message."""
    import pandas as pd

    home = home or home_dir()
    name = load_sync(sync, home=home).sync.name
    rows = [
        {"id": r.id, "kind": r.kind, "started": pd.Timestamp(r.started_at, unit="s", tz="UTC"),
         "status": r.status, **{k: r.counts.get(k, 0) for k in _HEADLINE}, "message": r.message}
        for r in run_history(home, name)
    ]  # fmt: skip
    columns = ["id", "kind", "started", "status", *_HEADLINE, "message"]
    return pd.DataFrame(rows, columns=columns)


def _options(concurrency: int, attempts: int) -> RunOptions:
    return RunOptions(concurrency=concurrency, policy=RetryPolicy(attempts=attempts), every_change=True)


def _preview_result(config: SyncConfig, report: Report) -> PreviewResult:
    plan = report.plan
    changes, rejections = tuple(plan.sample), tuple(plan.rejections)
    return PreviewResult(config.sync.name, report.counts(), changes, rejections, report.seconds)


def _run_result(config: SyncConfig, report: Report) -> RunResult:
    base = _preview_result(config, report)
    return RunResult(
        base.sync, base.counts, base.change_list, base.rejection_list, base.seconds,
        report.kind, report.run_id, report.sent, report.failed, dict(report.failure_reasons),
        report.status(), tuple(report.not_found),
    )  # fmt: skip


class ProgressBar:
    """A tqdm bar (a widget in Jupyter, text elsewhere) fed by the runner's progress."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.phase = ""
        self.bar: Any = None

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        if p.phase != self.phase:
            self._start(p)
        done = p.rows_read if p.phase == "reading" else p.sent
        if p.phase != "reading" and self.bar.total != p.to_send:
            self.bar.total = p.to_send
        self.bar.update(done - self.bar.n)

    def _start(self, p: Progress) -> None:
        from tqdm.auto import tqdm

        self.close()
        total = None if p.phase == "reading" else p.to_send
        self.phase, self.bar = p.phase, tqdm(total=total, desc=p.phase, unit=" rows", leave=True)

    def close(self) -> None:
        """Finish the current bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
