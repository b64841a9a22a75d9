"""What the app shows about saved objects: setup progress, recent runs, forms checked, connections tested."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from amp_sync import health
from amp_sync.config import Destination, Region, read_file_paths
from amp_sync.errors import ConfigError, WarehouseError
from amp_sync.secret import Secret
from amp_sync.state import history
from amp_sync.warehouse import describe_url, list_tables, sample
from amp_sync.workspace import SavedModel, SavedSync, Warehouse, Workspace


@dataclass(frozen=True, slots=True)
class WarehouseExample:
    """A SQLAlchemy URL to copy; `bundled` drivers come with amp_sync, others need a pip install."""

    label: str
    url: str
    bundled: bool
    package: str = ""


WAREHOUSE_EXAMPLES = (
    WarehouseExample("DuckDB", "duckdb:///path/to/file.duckdb", True),
    WarehouseExample("SQLite", "sqlite:///path.db", True),
    WarehouseExample(
        "PostgreSQL", "postgresql+psycopg://user:password@host:5432/db", True, "psycopg[binary]"
    ),
    WarehouseExample(
        "Snowflake", "snowflake://user:password@account/db/schema?warehouse=WH", False, "snowflake-sqlalchemy"
    ),
    WarehouseExample("BigQuery", "bigquery://project/dataset", False, "sqlalchemy-bigquery"),
    WarehouseExample(
        "Redshift", "redshift+redshift_connector://user:password@host:5439/db", False, "sqlalchemy-redshift"
    ),
)


@dataclass(frozen=True, slots=True)
class SetupStep:
    """One step of getting started: how many objects of its kind are saved."""

    kind: str  # "destination", "warehouse", "model" or "sync"
    count: int

    @property
    def done(self) -> bool:
        """At least one object of this kind is saved."""
        return self.count > 0


def setup_steps(workspace: Workspace) -> list[SetupStep]:
    """Destination, warehouse, model, sync: in the order a user sets them up."""
    return [
        SetupStep("destination", len(workspace.names(Destination))),
        SetupStep("warehouse", len(workspace.names(Warehouse))),
        SetupStep("model", len(workspace.names(SavedModel))),
        SetupStep("sync", len(workspace.names(SavedSync))),
    ]


@dataclass(frozen=True, slots=True)
class RecentRun:
    """One run of one sync, for an overview across syncs."""

    sync: str
    started: datetime  # local time, naive
    seconds: float | None  # None while running, or when the run never finished
    status: str
    sent: int
    failed: int
    rejected: int
    message: str


def recent_runs(home: Path, sync_names: Iterable[str], limit: int = 20) -> list[RecentRun]:
    """The latest runs across the given syncs, newest first."""
    runs = [
        RecentRun(
            sync=name,
            started=datetime.fromtimestamp(r.started_at),
            seconds=None if r.finished_at is None else max(0.0, r.finished_at - r.started_at),
            status=r.status,
            sent=r.counts.get("sent", 0),
            failed=r.counts.get("failed", 0),
            rejected=r.counts.get("rejected", 0),
            message=r.message or "",
        )
        for name in sync_names
        for r in history(home, name)
    ]
    return sorted(runs, key=lambda run: run.started, reverse=True)[:limit]


def destination_from_form(
    name: str,
    api_key: str,
    secret_key: str,
    region: Region | str,
    endpoint: str,
    current: Destination | None = None,
) -> Destination:
    """A destination from form fields; an empty key field keeps `current`'s key. ConfigError lists problems.

    A sync file requires both keys' values at once; a form shows neither, so "empty" means "unchanged".
    """
    problems = []
    if not name.strip():
        problems.append("give the destination a name")
    if not api_key.strip() and current is None:
        problems.append("enter the project's API key (Amplitude: Settings → Projects → your project)")
    endpoint = endpoint.strip().rstrip("/")
    if endpoint and not re.match(r"^https?://[^\s/]+", endpoint):
        problems.append(f"the custom endpoint must be an http:// or https:// URL, not {endpoint!r}")
    if problems:
        raise ConfigError(problems)
    kept_secret = current.secret_key if current else None
    return Destination(
        name.strip(),
        Secret(api_key.strip()) if api_key.strip() else current.api_key,  # type: ignore[union-attr]
        Secret(secret_key.strip()) if secret_key.strip() else kept_secret,
        Region(region),
        endpoint or None,
    )


def warehouse_from_form(
    name: str, url: str, current: Warehouse | None = None, read_files: str = ""
) -> Warehouse:
    """A warehouse from form fields; an empty URL keeps `current`'s. ConfigError lists problems.

    `read_files` holds one file, folder/ or glob per line, relative ones read from the working
    directory as a relative file URL is.
    """
    problems = []
    if not name.strip():
        problems.append("give the warehouse a name")
    url = url.strip()
    if not url and current is None:
        problems.append("enter the warehouse's SQLAlchemy URL, e.g. sqlite:///path.db")
    elif url and _parse(url) is None:
        problems.append(
            "this is not a SQLAlchemy URL: write it as dialect+driver://user:password@host:port/database, "
            "e.g. duckdb:///path/to/file.duckdb or postgresql+psycopg://user:password@host:5432/db"
        )
    if problems:
        raise ConfigError(problems)
    files = read_file_paths([line.strip() for line in read_files.splitlines() if line.strip()], Path.cwd())
    return Warehouse(name.strip(), Secret(url) if url else current.url, files)  # type: ignore[union-attr]


@dataclass(frozen=True, slots=True)
class ConnectionCheck:
    """The verdict on a warehouse URL, in words for the user."""

    ok: bool
    message: str


def check_connection(url: str) -> ConnectionCheck:
    """Connect and run a trivial query; a missing SQLite/DuckDB file is reported, never created."""
    try:
        result = sample(url, "select 1")
    except WarehouseError as exc:
        return ConnectionCheck(False, str(exc))
    return ConnectionCheck(True, f"connected to {describe_url(url)} (answered in {result.seconds:.2f} s)")


Connection = type[Destination] | type[Warehouse]


def health_label(workspace: Workspace, kind: Connection, name: str, now: float | None = None) -> str:
    """`name` with its last check, for a selectbox's format_func: "Prod · Failed: <reason> · checked …"."""
    check = workspace.checks(kind).get(name)
    return f"{name} · {health.label(check, time.time() if now is None else now)}"


def health_labels(workspace: Workspace, kind: Connection, now: float | None = None) -> dict[str, str]:
    """Every saved `kind`'s name with its last check, read once (for lists that label many)."""
    now = time.time() if now is None else now
    return {name: f"{name} · {health.label(c, now)}" for name, c in workspace.checks(kind).items()}


def mark(check: health.Check | None, now: float) -> str:
    """The check as Streamlit Markdown: a coloured Material icon and its words, taken literally."""
    state = health.status(check)
    words = re.sub(r"([\\`*_{}\[\]()<>#+\-.!|~$:])", r"\\\1", health.label(check, now))
    return f":{health.COLORS[state]}[{health.ICONS[state]} {words}]"


def ranked(workspace: Workspace, kind: Connection, names: Iterable[str]) -> list[str]:
    """`names`, the working first, the never checked next, the failing last."""
    return health.ranked(names, workspace.checks(kind))


def default_choice(
    workspace: Workspace, kind: Connection, names: Iterable[str], preferred: str | None = None
) -> str | None:
    """The default among `names`: a working one (`preferred` if it is), else never checked, failing last."""
    return health.default_choice(names, workspace.checks(kind), preferred)


def schema(url: str) -> dict[str, list[tuple[str, str]]]:
    """Tables and views with columns and types."""
    return list_tables(url)


def _parse(url: str) -> URL | None:
    try:
        return make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return None


def widget_ids(names: Iterable[str]) -> dict[str, str]:
    """A distinct, CSS-friendly id per name, for widget keys (st-key-<key> classes)."""
    ids: dict[str, str] = {}
    for name in names:
        base = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-").lower() or "item"
        candidate, n = base, 2
        while candidate in ids.values():
            candidate, n = f"{base}-{n}", n + 1
        ids[name] = candidate
    return ids
