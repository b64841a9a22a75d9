"""A sync's saved state in SQLite: per destination, what Amplitude acknowledged, the outbox, the runs.

One file per sync (AMP_SYNC_HOME/state/<sync>.sqlite). Inside it, everything belongs to one
destination: the snapshot of acknowledged values, the outbox of items sent or about to be sent
whose answer is not known yet (outbox.py), and the run history. A destination is known by its
endpoint and a hash of its API key, never the key itself, so pointing a sync at another
Amplitude project starts from nothing there and leaves the first project's state untouched.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from amp_sync.errors import StateError
from amp_sync.snapshot import NO_RAW, SnapshotIndex, digest, key_hash

if TYPE_CHECKING:
    from amp_sync.config import Destination

SCHEMA_VERSION = 4
SEQ = "$seq"  # in docs read back: how many updates of the key Amplitude acknowledged
LEGACY = 0  # the destination of rows saved before state belonged to a destination (format < 4)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS destinations (
    id INTEGER PRIMARY KEY, ident TEXT UNIQUE NOT NULL, name TEXT NOT NULL, endpoint TEXT NOT NULL,
    key_hash TEXT NOT NULL, writes TEXT NOT NULL DEFAULT '[]', first_used REAL, last_used REAL);
CREATE TABLE IF NOT EXISTS snapshot (
    dest INTEGER NOT NULL, key TEXT NOT NULL, digest BLOB NOT NULL, doc TEXT NOT NULL,
    key_hash INTEGER, raw INTEGER, seq INTEGER, prev TEXT, run_id INTEGER,
    PRIMARY KEY (dest, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, dest INTEGER NOT NULL DEFAULT 0, kind TEXT NOT NULL,
    started_at REAL NOT NULL, finished_at REAL, status TEXT NOT NULL,
    counts TEXT NOT NULL DEFAULT '{}', message TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS rejections (
    run_id INTEGER NOT NULL, key TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, dest INTEGER NOT NULL, run_id INTEGER, key TEXT NOT NULL,
    part INTEGER NOT NULL, channel TEXT NOT NULL, item BLOB NOT NULL, doc TEXT NOT NULL,
    digest BLOB NOT NULL, raw INTEGER NOT NULL, seq INTEGER NOT NULL, before TEXT,
    planned_at REAL NOT NULL, sent_at REAL);
CREATE INDEX IF NOT EXISTS outbox_send ON outbox (dest, channel, part, id);
CREATE INDEX IF NOT EXISTS outbox_key ON outbox (dest, key);
"""


def state_path(home: Path, sync_name: str) -> Path:
    """Where the state of one sync lives (every destination's)."""
    return home / "state" / f"{sync_name}.sqlite"


@dataclass(frozen=True, slots=True)
class DestinationRef:
    """An Amplitude project as the state knows it: endpoint and a hash of the API key."""

    name: str
    endpoint: str
    key_hash: str

    @property
    def ident(self) -> str:
        """The destination's identity: same endpoint and same key give the same identity."""
        return hashlib.blake2b(f"{self.endpoint}\x00{self.key_hash}".encode(), digest_size=12).hexdigest()

    @classmethod
    def of(cls, destination: Destination) -> DestinationRef:
        """The reference of a configured destination; the key itself is never kept."""
        endpoint = destination.ingest_url.rstrip("/").lower()
        return cls(destination.name, endpoint, api_key_hash(destination.api_key.reveal()))

    def describe(self) -> str:
        """The destination in words: its name and where it is."""
        return f"{self.name!r} ({self.endpoint})"


def api_key_hash(api_key: str) -> str:
    """A one-way fingerprint of an API key: tells keys apart without keeping them."""
    return hashlib.blake2b(api_key.encode(), digest_size=16, person=b"amp_sync-apikey").hexdigest()


@dataclass(frozen=True, slots=True)
class KnownDestination:
    """A destination a sync's state holds values for."""

    id: int
    ref: DestinationRef
    rows: int
    last_used: float | None
    writes: tuple[str, ...]  # "<profile kind>:<property>" the sync last wrote there


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
    destination: str = ""


class StateStore:
    """The state of one sync at one destination: snapshot, outbox rows and history."""

    def __init__(self, db: sqlite3.Connection, path: Path, read_only: bool) -> None:
        self._db, self.path, self.read_only = db, path, read_only
        self._lock = threading.RLock()  # senders commit from several threads on one connection
        self.dest: int | None = None  # this store's destination id; None: never sent there
        self.destination: DestinationRef | None = None

    @classmethod
    def open(cls, home: Path, sync_name: str, destination: DestinationRef) -> StateStore:
        """Open for writing, creating the store (owner-only) if it is missing."""
        path = state_path(home, sync_name)
        _refuse_case_twin(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            _create_or_check(db, path)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(_cannot(path, exc)) from None
        store = cls(db, path, read_only=False)
        store._check_version(create=True)
        store._bind(destination, create=True)
        return store

    @classmethod
    def open_read_only(
        cls, home: Path, sync_name: str, destination: DestinationRef | None = None
    ) -> StateStore | None:
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
        if destination is not None:
            store._bind(destination, create=False)
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
                if version < 4:
                    _migrate_3_to_4(self._db)
                self._db.execute(
                    "UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),)
                )
        except sqlite3.Error as exc:
            raise StateError(_cannot(self.path, exc)) from None

    def _bind(self, ref: DestinationRef, create: bool) -> None:
        """Use `ref`'s rows; state from before destinations were kept is adopted by the first one."""
        self.destination = ref
        row = self._query("SELECT id FROM destinations WHERE ident = ?", (ref.ident,))
        if row:
            self.dest = int(row[0][0])
            if create:
                self._execute("UPDATE destinations SET name = ? WHERE id = ?", (ref.name, self.dest))
            return
        adopt = self._has_legacy_rows()
        if not create:
            self.dest = LEGACY if adopt else None
            return
        with self._transaction():
            cur = self._db.execute(
                "INSERT INTO destinations (ident, name, endpoint, key_hash, first_used) "
                "VALUES (?, ?, ?, ?, ?)",
                (ref.ident, ref.name, ref.endpoint, ref.key_hash, time.time()),
            )
            self.dest = int(cur.lastrowid or 0)
            if adopt:
                for table in ("snapshot", "runs", "outbox"):
                    self._db.execute(f"UPDATE {table} SET dest = ? WHERE dest = ?", (self.dest, LEGACY))

    def _has_legacy_rows(self) -> bool:
        known = self._query("SELECT count(*) FROM destinations")[0][0]
        if known:
            return False
        return bool(self._query("SELECT 1 FROM snapshot WHERE dest = ? LIMIT 1", (LEGACY,)))

    @property
    def bound(self) -> bool:
        """Whether this destination has any state (a read-only store may have none)."""
        return self.dest is not None

    def index(self, outbox: bool = False) -> SnapshotIndex:
        """Every acknowledged key as compact arrays, read in pieces so memory stays flat.

        With `outbox`, each key's newest update waiting in the outbox counts as acknowledged:
        what the state will hold once the run's resend of it is answered.
        """
        if self.dest is None:
            return SnapshotIndex.build([])
        count = int(self._query("SELECT count(*) FROM snapshot WHERE dest = ?", (self.dest,))[0][0])
        hashes = np.empty(count, dtype=np.int64)
        raws = np.empty(count, dtype=np.int64)
        digests = np.empty(count, dtype="S16")
        at = 0
        with self._lock:
            cursor = self._db.execute(
                "SELECT key_hash, raw, digest FROM snapshot WHERE dest = ?", (self.dest,)
            )
            while at < count and (rows := cursor.fetchmany(50_000)):
                end = at + len(rows)
                hashes[at:end] = [r[0] for r in rows]
                raws[at:end] = [r[1] or NO_RAW for r in rows]
                digests[at:end] = [r[2] for r in rows]
                at = end
        index = SnapshotIndex.from_parts(hashes[:at], raws[:at], digests[:at])
        return index.overlaid(self._carried()) if outbox else index

    def _carried(self) -> list[tuple[int, int, bytes]]:
        """(key hash, raw hash, digest) of each key's newest profile update in the outbox."""
        rows = self._query(
            "SELECT key, raw, digest FROM outbox WHERE id IN (SELECT max(id) FROM outbox "
            "WHERE dest = ? AND channel != 'synthetic' AND sent_at IS NOT NULL GROUP BY key)",
            (self.dest,),
        )
        return [(key_hash(k), r or NO_RAW, d) for k, r, d in rows]

    def digests(self) -> dict[str, bytes]:
        """Every acknowledged key with its digest (for small stores and tests)."""
        if self.dest is None:
            return {}
        return dict(self._query("SELECT key, digest FROM snapshot WHERE dest = ?", (self.dest,)))

    def docs(self, keys: list[str], outbox: bool = False) -> dict[str, dict[str, Any]]:
        """The acknowledged fields of `keys` (those present), with their update count as "$seq".

        With `outbox`, a key's newest update waiting in the outbox counts as acknowledged.
        """
        rows = self._of_keys("snapshot", "doc, seq", keys)
        if outbox:
            rows += self._of_keys(
                "outbox", "doc, seq", keys, "AND channel != 'synthetic' AND sent_at IS NOT NULL ORDER BY id"
            )  # later rows win
        return {k: {**json.loads(d), SEQ: seq or 0} for k, d, seq in rows}

    def commit(self, rows: Iterable[tuple[Any, ...]], run_id: int | None = None) -> None:
        """Record acknowledged rows atomically (see acknowledge for rows sent from the outbox).

        A row is (key, digest, doc[, raw hash[, update count[, previous doc]]]); the previous doc
        (None for a key new to this run) and `run_id` are what a revert of that run restores.
        """
        self.acknowledge(rows, run_id, ())

    def acknowledge(self, rows: Iterable[tuple[Any, ...]], run_id: int | None, sent: Iterable[int]) -> None:
        """Record rows Amplitude acknowledged and take their items out of the outbox, atomically."""
        dest = self._writable()
        values = (
            (
                dest, r[0], r[1], r[2], key_hash(r[0]), r[3] if len(r) > 3 else None,
                r[4] if len(r) > 4 else None, r[5] if len(r) > 5 else None, run_id,
            )
            for r in rows
        )  # fmt: skip
        try:
            with self._transaction():
                self._db.executemany(
                    "INSERT OR REPLACE INTO snapshot (dest, key, digest, doc, key_hash, raw, seq, "
                    "prev, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
                for start in range(0, len(ids := list(sent)), 10_000):  # one statement per 10,000
                    part = ids[start : start + 10_000]
                    self._db.execute(f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(part))})", part)
        except sqlite3.Error as exc:
            raise StateError(_cannot(self.path, exc)) from None

    def acknowledged(self, pairs: list[tuple[str, bytes]]) -> set[str]:
        """Those of (key, digest) that the snapshot holds as they are: committed by now."""
        stored = dict(self._of_keys("snapshot", "digest", [k for k, _ in pairs]))
        return {k for k, d in pairs if stored.get(k) == d}

    def _of_keys(self, table: str, columns: str, keys: list[str], tail: str = "") -> list[Any]:
        """(key, *columns) of those `keys` that `table` holds for this destination."""
        if self.dest is None:
            return []
        out: list[Any] = []
        for start in range(0, len(keys), 500):  # stays under SQLite's bound-variable limit
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            sql = f"SELECT key, {columns} FROM {table} WHERE dest = ? AND key IN ({marks}) {tail}"
            out += self._query(sql, [self.dest, *part])
        return out

    def last_changed_run(self) -> int | None:
        """The newest run that changed any key in Amplitude (what "revert last run" undoes)."""
        if self.dest is None:
            return None
        row = self._query("SELECT max(run_id) FROM snapshot WHERE dest = ?", (self.dest,))
        return int(row[0][0]) if row and row[0][0] is not None else None

    def touched(self, run_id: int, piece: int = 20_000) -> Iterator[list[tuple[str, str, str | None, int]]]:
        """The keys `run_id` changed, in pieces: (key, doc now, doc before that run, update count)."""
        last = ""
        while rows := self._query(
            "SELECT key, doc, prev, seq FROM snapshot WHERE dest = ? AND run_id = ? AND key > ? "
            "ORDER BY key LIMIT ?",
            (self.dest, run_id, last, piece),
        ):
            yield [(k, d, p, int(s or 0)) for k, d, p, s in rows]
            last = rows[-1][0]

    def refresh_raw(self, pairs: Iterable[tuple[int, str]]) -> None:
        """Remember the raw hash of rows found unchanged the slow way, so next time is fast."""
        dest = self._writable()
        try:
            with self._transaction():
                self._db.executemany(
                    "UPDATE snapshot SET raw = ? WHERE dest = ? AND key = ?", ((r, dest, k) for r, k in pairs)
                )
        except sqlite3.Error as exc:
            raise StateError(_cannot(self.path, exc)) from None

    def start_run(self, kind: str) -> int:
        """Open a history entry for a run; returns its id."""
        dest = self._writable()
        with self._transaction():
            cur = self._db.execute(
                "INSERT INTO runs (dest, kind, started_at, status) VALUES (?, ?, ?, 'running')",
                (dest, kind, time.time()),
            )
            self._db.execute("UPDATE destinations SET last_used = ? WHERE id = ?", (time.time(), dest))
        return int(cur.lastrowid or 0)

    def record_writes(self, writes: Iterable[str]) -> None:
        """Remember which properties the sync writes at this destination (for overlap warnings)."""
        self._execute(
            "UPDATE destinations SET writes = ? WHERE id = ?",
            (json.dumps(sorted(set(writes))), self._writable()),
        )

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

    def runs(self, every_destination: bool = False) -> list[RunRecord]:
        """The history at this destination (or at all of them), newest first."""
        where = "" if every_destination else "WHERE r.dest = ?"
        params = () if every_destination else (self.dest if self.dest is not None else -1,)
        rows = self._query(
            "SELECT r.id, r.kind, r.started_at, r.finished_at, r.status, r.counts, r.message, "
            f"coalesce(d.name, '') FROM runs r LEFT JOIN destinations d ON d.id = r.dest {where} "
            "ORDER BY r.id DESC",
            params,
        )
        return [RunRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7]) for r in rows]

    def run(self, run_id: int) -> RunRecord | None:
        """One run of the history, or None."""
        rows = self._query(
            "SELECT id, kind, started_at, finished_at, status, counts, message FROM runs WHERE id = ?",
            (run_id,),
        )
        if not rows:
            return None
        i, kind, started, finished, status, counts, message = rows[0]
        return RunRecord(i, kind, started, finished, status, json.loads(counts), message)

    def rejections(self, run_id: int) -> list[tuple[str, str]]:
        """The rows a run rejected, as (key, reason)."""
        return self._query("SELECT key, reason FROM rejections WHERE run_id = ?", (run_id,))

    def known_destinations(self) -> list[KnownDestination]:
        """Every destination this sync has state for, with how many acknowledged keys each holds."""
        rows = self._query(
            "SELECT d.id, d.name, d.endpoint, d.key_hash, d.last_used, d.writes, "
            "(SELECT count(*) FROM snapshot s WHERE s.dest = d.id) FROM destinations d ORDER BY d.id"
        )
        return [
            KnownDestination(i, DestinationRef(n, e, k), int(c), last, tuple(json.loads(w)))
            for i, n, e, k, last, w, c in rows
        ]

    def move_destination(self, source: int) -> None:
        """Give destination `source`'s state to this one (same project, new key), atomically."""
        dest = self._writable()
        with self._transaction():
            for table in ("snapshot", "runs", "outbox"):
                self._db.execute(f"UPDATE {table} SET dest = ? WHERE dest = ?", (dest, source))
            self._db.execute(
                "UPDATE destinations SET writes = (SELECT writes FROM destinations WHERE id = ?) "
                "WHERE id = ?",
                (source, dest),
            )
            self._db.execute("DELETE FROM destinations WHERE id = ?", (source,))

    # -- plumbing shared with the outbox (outbox.py), which lives in the same file -------------

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        """Rows of one statement on this sync's state file."""
        return self._query(sql, params)

    def write(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        """One statement for each of `rows`, in one durable transaction."""
        self._writable()
        try:
            with self._transaction():
                self._db.executemany(sql, (tuple(r) for r in rows))
        except sqlite3.Error as exc:
            raise StateError(_cannot(self.path, exc)) from None

    def writable_dest(self) -> int:
        """This store's destination id; StateError when it was opened read-only."""
        return self._writable()

    def _writable(self) -> int:
        if self.read_only or self.dest is None:
            raise StateError(f"the state file {self.path} was opened read-only")
        return self.dest

    def _execute(self, sql: str, params: Iterable[Any] = ()) -> None:
        try:
            with self._lock:
                self._db.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise StateError(_cannot(self.path, exc)) from None

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


def _create_or_check(db: sqlite3.Connection, path: Path) -> None:
    """Create the tables of a new file; an older file keeps its tables until it is migrated."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "snapshot" not in tables:
        _create_tables(db)


def _create_tables(db: sqlite3.Connection) -> None:
    # One statement at a time: executescript would commit an open migration transaction.
    for statement in filter(str.strip, _SCHEMA.split(";")):
        db.execute(statement)


def _refuse_case_twin(path: Path) -> None:
    """Refuse a state file whose name differs from another's only in case.

    macOS and Windows would open the other sync's file, and the two syncs would share one snapshot.
    """
    twin = next(
        (
            p
            for p in path.parent.glob("*.sqlite")
            if p.name != path.name and p.name.casefold() == path.name.casefold()
        ),
        None,
    )
    if twin is not None:
        raise StateError(
            f"the state of the sync {twin.stem!r} is at {twin}: sync names that differ only in case "
            "would share one state file on macOS and Windows, so rename one of the syncs"
        )


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


def _migrate_3_to_4(db: sqlite3.Connection) -> None:
    # Format 4 keeps state per destination and adds the outbox. Older rows were saved without
    # saying where they went: they belong to LEGACY until the sync's next run adopts them for
    # the destination its file names (the one it had been sending to).
    db.execute("ALTER TABLE snapshot RENAME TO snapshot_3")
    db.execute("ALTER TABLE runs ADD COLUMN dest INTEGER NOT NULL DEFAULT 0")
    _create_tables(db)  # the new tables; those that exist (runs, rejections) are kept
    db.execute(
        "INSERT INTO snapshot (dest, key, digest, doc, key_hash, raw, seq, prev, run_id) "
        "SELECT ?, key, digest, doc, key_hash, raw, seq, prev, run_id FROM snapshot_3",
        (LEGACY,),
    )
    db.execute("DROP TABLE snapshot_3")


def _cannot(path: Path, exc: Exception) -> str:
    return (
        f"cannot use the state file {path}: {exc}. Check that AMP_SYNC_HOME "
        "points to a writable folder and that the file is an amp_sync state file"
    )


def history(home: Path, sync_name: str) -> list[RunRecord]:
    """A sync's runs at every destination, newest first; empty when it never ran. Writes nothing."""
    store = StateStore.open_read_only(home, sync_name)
    if store is None:
        return []
    try:
        return store.runs(every_destination=True)
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


def known_destinations(home: Path, sync_name: str) -> list[KnownDestination]:
    """The destinations a sync has state for (none when it never ran). Writes nothing."""
    store = StateStore.open_read_only(home, sync_name)
    if store is None:
        return []
    try:
        return store.known_destinations()
    finally:
        store.close()


def writers(home: Path, ref: DestinationRef, writes: set[str], skip: str) -> dict[str, list[str]]:
    """Other syncs that write any of `writes` at destination `ref`: sync name -> those properties."""
    found: dict[str, list[str]] = {}
    for path in sorted((home / "state").glob("*.sqlite")):
        name = path.stem
        if name == skip:
            continue
        try:
            others = known_destinations(home, name)
        except StateError:
            continue  # an unreadable or older file says nothing here; its own sync will say why
        for known in others:
            shared = sorted(writes.intersection(known.writes))
            if known.ref.ident == ref.ident and shared:
                found[name] = shared
    return found


def synced_names(home: Path) -> list[str]:
    """The names of every sync with saved state under `home`: from the app or from a sync file."""
    return sorted((p.stem for p in (home / "state").glob("*.sqlite") if p.is_file()), key=str.lower)
