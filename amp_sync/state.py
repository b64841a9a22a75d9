"""Per-sync snapshot of what Amplitude acknowledged, and the sync's run history, in SQLite."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from amp_sync.errors import StateError
from amp_sync.snapshot import NO_RAW, SnapshotIndex, digest, key_hash

SCHEMA_VERSION = 3
SEQ = "$seq"  # in docs read back: how many updates of the key Amplitude acknowledged
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS snapshot (
    key TEXT PRIMARY KEY, digest BLOB NOT NULL, doc TEXT NOT NULL,
    key_hash INTEGER, raw INTEGER, seq INTEGER, prev TEXT, run_id INTEGER) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, started_at REAL NOT NULL,
    finished_at REAL, status TEXT NOT NULL, counts TEXT NOT NULL DEFAULT '{}',
    message TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS rejections (
    run_id INTEGER NOT NULL, key TEXT NOT NULL, reason TEXT NOT NULL);
"""


def home_dir(env: dict[str, str] | None = None) -> Path:
    """AMP_SYNC_HOME, or .amp_sync in the working directory."""
    env = dict(os.environ) if env is None else env
    return Path(env.get("AMP_SYNC_HOME") or ".amp_sync")


def state_path(home: Path, sync_name: str) -> Path:
    """Where the snapshot of one sync lives."""
    return home / "state" / f"{sync_name}.sqlite"


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run in a sync's history."""

    id: int
    kind: str
    started_at: float
    finished_at: float | None
    status: str
    counts: dict[str, int]
    message: str


class StateStore:
    """The snapshot of one sync: key -> digest and fields of the last acknowledged values."""

    def __init__(self, db: sqlite3.Connection, path: Path, read_only: bool) -> None:
        self._db, self.path, self.read_only = db, path, read_only
        self._lock = threading.RLock()  # senders commit from several threads on one connection

    @classmethod
    def open(cls, home: Path, sync_name: str) -> StateStore:
        """Open for writing, creating the store (owner-only) if it is missing."""
        path = state_path(home, sync_name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(_cannot(path, exc)) from None
        store = cls(db, path, read_only=False)
        store._check_version(create=True)
        return store

    @classmethod
    def open_read_only(cls, home: Path, sync_name: str) -> StateStore | None:
        """Open without writing anything; None when the sync has never run."""
        path = state_path(home, sync_name)
        if not path.exists():
            return None
        try:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
            store = cls(db, path, read_only=True)
            store._check_version(create=False)
        except sqlite3.Error as exc:
            raise StateError(_cannot(path, exc)) from None
        return store

    def _check_version(self, create: bool) -> None:
        try:
            row = self._db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        except sqlite3.Error as exc:
            raise StateError(_cannot(self.path, exc)) from None
        version = int(row[0]) if row else None
        if version is None and create:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif version is not None and version > SCHEMA_VERSION:
            raise StateError(
                f"the state file {self.path} was written by a newer amp_sync "
                f"(format {version}, this one reads {SCHEMA_VERSION}); upgrade amp_sync"
            )
        elif version is not None and version < SCHEMA_VERSION:
            if self.read_only:
                raise StateError(
                    f"the state file {self.path} has the older format {version}: run the sync once "
                    "(or `amp-sync run`) to upgrade it; a preview never writes"
                )
            self._migrate(version)

    def _migrate(self, version: int) -> None:
        """Upgrade an older state file in one transaction; its acknowledged rows are kept."""
        try:
            with self._transaction():
                if version < 2:
                    _migrate_1_to_2(self._db)
                if version < 3:
                    _migrate_2_to_3(self._db)
                self._db.execute(
                    "UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),)
                )
        except sqlite3.Error as exc:
            raise StateError(_cannot(self.path, exc)) from None

    def index(self) -> SnapshotIndex:
        """Every acknowledged key as compact arrays, read in pieces so memory stays flat."""
        count = int(self._query("SELECT count(*) FROM snapshot")[0][0])
        hashes = np.empty(count, dtype=np.int64)
        raws = np.empty(count, dtype=np.int64)
        digests = np.empty(count, dtype="S16")
        at = 0
        with self._lock:
            cursor = self._db.execute("SELECT key_hash, raw, digest FROM snapshot")
            while at < count and (rows := cursor.fetchmany(50_000)):
                end = at + len(rows)
                hashes[at:end] = [r[0] for r in rows]
                raws[at:end] = [r[1] or NO_RAW for r in rows]
                digests[at:end] = [r[2] for r in rows]
                at = end
        return SnapshotIndex.from_parts(hashes[:at], raws[:at], digests[:at])

    def digests(self) -> dict[str, bytes]:
        """Every acknowledged key with its digest (for small stores and tests)."""
        return dict(self._query("SELECT key, digest FROM snapshot"))

    def docs(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The acknowledged fields of `keys` (those present), with their update count as "$seq"."""
        rows = self._of_keys("doc, seq", keys)
        return {k: {**json.loads(d), SEQ: seq or 0} for k, d, seq in rows}

    def commit(self, rows: Iterable[tuple[Any, ...]], run_id: int | None = None) -> None:
        """Record acknowledged rows atomically.

        A row is (key, digest, doc[, raw hash[, update count[, previous doc]]]); the previous doc
        (None for a key new to this run) and `run_id` are what a revert of that run restores.
        """
        values = (
            (
                r[0], r[1], r[2], key_hash(r[0]), r[3] if len(r) > 3 else None,
                r[4] if len(r) > 4 else None, r[5] if len(r) > 5 else None, run_id,
            )
            for r in rows
        )  # fmt: skip
        try:
            with self._transaction():
                self._db.executemany(
                    "INSERT OR REPLACE INTO snapshot (key, digest, doc, key_hash, raw, seq, prev, run_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
        except sqlite3.Error as exc:
            raise StateError(_cannot(self.path, exc)) from None

    def acknowledged(self, pairs: list[tuple[str, bytes]]) -> set[str]:
        """Those of (key, digest) that the snapshot holds as they are: committed by now."""
        stored = dict(self._of_keys("digest", [k for k, _ in pairs]))
        return {k for k, d in pairs if stored.get(k) == d}

    def _of_keys(self, columns: str, keys: list[str]) -> list[Any]:
        """(key, *columns) of those `keys` the snapshot holds."""
        out: list[Any] = []
        for start in range(0, len(keys), 500):  # stays under SQLite's bound-variable limit
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            out += self._query(f"SELECT key, {columns} FROM snapshot WHERE key IN ({marks})", part)
        return out

    def last_changed_run(self) -> int | None:
        """The newest run that changed any key in Amplitude (what "revert last run" undoes)."""
        row = self._query("SELECT max(run_id) FROM snapshot")
        return int(row[0][0]) if row and row[0][0] is not None else None

    def touched(self, run_id: int, piece: int = 20_000) -> Iterator[list[tuple[str, str, str | None, int]]]:
        """The keys `run_id` changed, in pieces: (key, doc now, doc before that run, update count)."""
        last = ""
        while rows := self._query(
            "SELECT key, doc, prev, seq FROM snapshot WHERE run_id = ? AND key > ? ORDER BY key LIMIT ?",
            (run_id, last, piece),
        ):
            yield [(k, d, p, int(s or 0)) for k, d, p, s in rows]
            last = rows[-1][0]

    def refresh_raw(self, pairs: Iterable[tuple[int, str]]) -> None:
        """Remember the raw hash of rows found unchanged the slow way, so next time is fast."""
        try:
            with self._transaction():
                self._db.executemany("UPDATE snapshot SET raw = ? WHERE key = ?", pairs)
        except sqlite3.Error as exc:
            raise StateError(_cannot(self.path, exc)) from None

    def start_run(self, kind: str) -> int:
        """Open a history entry for a run; returns its id."""
        cur = self._db.execute(
            "INSERT INTO runs (kind, started_at, status) VALUES (?, ?, 'running')",
            (kind, time.time()),
        )
        return int(cur.lastrowid or 0)

    def finish_run(
        self,
        run_id: int,
        status: str,
        counts: dict[str, int],
        message: str,
        rejections: Iterable[tuple[str, str]],
    ) -> None:
        """Close a history entry with its counts and rejected rows."""
        with self._transaction():
            self._db.execute(
                "UPDATE runs SET finished_at = ?, status = ?, counts = ?, message = ? WHERE id = ?",
                (time.time(), status, json.dumps(counts), message, run_id),
            )
            self._db.executemany(
                "INSERT INTO rejections VALUES (?, ?, ?)", ((run_id, k, r) for k, r in rejections)
            )

    def runs(self) -> list[RunRecord]:
        """The history, newest first."""
        rows = self._query(
            "SELECT id, kind, started_at, finished_at, status, counts, message FROM runs ORDER BY id DESC"
        )
        return [RunRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in rows]

    def rejections(self, run_id: int) -> list[tuple[str, str]]:
        """The rows a run rejected, as (key, reason)."""
        return self._query("SELECT key, reason FROM rejections WHERE run_id = ?", (run_id,))

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        try:
            with self._lock:
                return self._db.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StateError(_cannot(self.path, exc)) from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Release the database."""
        self._db.close()


@contextlib.contextmanager
def run_lock(home: Path, sync_name: str) -> Iterator[None]:
    """Hold the sync's lock for a run; a second run of the same sync is refused at once."""
    path = state_path(home, sync_name).with_suffix(".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    except OSError as exc:
        raise StateError(
            f"cannot keep the sync's state under {home}: {exc.strerror or exc}. "
            "Point AMP_SYNC_HOME at a folder you can write to"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StateError(
            f"another run of the sync {sync_name!r} is in progress; wait for it to finish"
        ) from None
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def rename_state(home: Path, old: str, new: str) -> None:
    """Move a sync's snapshot and history to its new name, so a rename does not resend everything."""
    source, target = state_path(home, old), state_path(home, new)
    if not source.exists():
        return
    if target.exists():
        raise StateError(f"a sync named {new!r} ran before and its saved state is still at {target}")
    with run_lock(home, old):
        for suffix in ("", "-wal", "-shm"):
            moved = Path(f"{source}{suffix}")
            if moved.exists():
                os.replace(moved, f"{target}{suffix}")


def _migrate_1_to_2(db: sqlite3.Connection) -> None:
    # Format 2 adds the key hash and raw hash behind the fast index, and folds the key into the
    # digest; both are recomputed from the stored fields, so nothing acknowledged is lost.
    columns = {row[1] for row in db.execute("PRAGMA table_info(snapshot)")}
    for column in ("key_hash", "raw", "seq"):
        if column not in columns:
            db.execute(f"ALTER TABLE snapshot ADD COLUMN {column} INTEGER")
    last = ""
    while rows := db.execute(  # in key order, a piece at a time: memory stays flat
        "SELECT key, doc FROM snapshot WHERE key > ? ORDER BY key LIMIT 20000", (last,)
    ).fetchall():
        db.executemany(
            "UPDATE snapshot SET key_hash = ?, digest = ?, raw = NULL WHERE key = ?",
            ((key_hash(k), digest(k, d), k) for k, d in rows),
        )
        last = rows[-1][0]


def _migrate_2_to_3(db: sqlite3.Connection) -> None:
    # Format 3 remembers, per key, the run that last changed it and the fields before that run,
    # so the last run can be reverted. Rows from older formats have neither: no run to revert.
    columns = {row[1] for row in db.execute("PRAGMA table_info(snapshot)")}
    for column, kind in (("prev", "TEXT"), ("run_id", "INTEGER")):
        if column not in columns:
            db.execute(f"ALTER TABLE snapshot ADD COLUMN {column} {kind}")


def _cannot(path: Path, exc: Exception) -> str:
    return (
        f"cannot use the state file {path}: {exc}. Check that AMP_SYNC_HOME "
        "points to a writable folder and that the file is an amp_sync state file"
    )


def history(home: Path, sync_name: str) -> list[RunRecord]:
    """A sync's runs, newest first; empty when it never ran. Writes nothing."""
    store = StateStore.open_read_only(home, sync_name)
    if store is None:
        return []
    try:
        return store.runs()
    finally:
        store.close()


def run_rejections(home: Path, sync_name: str, run_id: int) -> list[tuple[str, str]]:
    """The rows one run rejected, as (key, reason)."""
    store = StateStore.open_read_only(home, sync_name)
    if store is None:
        return []
    try:
        return store.rejections(run_id)
    finally:
        store.close()
