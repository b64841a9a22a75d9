"""A temporary on-disk queue of the identifications a run will send, so memory stays flat."""

from __future__ import annotations

import json
import sqlite3
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Pending:
    """One row waiting to be sent: its request item and what to commit once acknowledged."""

    key: str
    item: bytes  # the identification, JSON-encoded once
    doc: str  # canonical fields for the snapshot
    digest: bytes
    raw: int  # the row's raw hash, stored with it so the next run can skip it cheaply
    seq: int  # the key's update count once this one is acknowledged
    before: str | None = None  # the fields this row replaces (None: new), kept so a run can be reverted


class Spool:
    """Spooled rows in a throwaway SQLite file; read back per sender partition in row order."""

    def __init__(self, directory: Path | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="amp_sync_spool_", dir=directory)
        self._path = Path(self._dir.name) / "spool.sqlite"
        self._db = self._connect()
        self._db.executescript(
            """
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            CREATE TABLE pending (
                rowid INTEGER PRIMARY KEY, key TEXT NOT NULL, part INTEGER NOT NULL,
                item BLOB NOT NULL, doc TEXT NOT NULL, digest BLOB NOT NULL, raw INTEGER NOT NULL,
                seq INTEGER NOT NULL, channel TEXT NOT NULL, before TEXT);
            CREATE TABLE dropped (key TEXT PRIMARY KEY);
            """
        )
        self._lock = threading.Lock()
        self._buffer: list[tuple[str, int, bytes, str, bytes, int, int, str, str | None]] = []

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)

    def add(
        self,
        key: str,
        part: int,
        item: dict[str, Any],
        doc: str,
        digest: bytes,
        raw: int,
        seq: int,
        channel: str,
        before: str | None = None,
    ) -> None:
        """Queue one request item for partition `part` and `channel`."""
        encoded = json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        self._buffer.append((key, part, encoded, doc, digest, raw, seq, channel, before))
        if len(self._buffer) >= 5000:
            self.flush()

    def drop(self, key: str) -> None:
        """Never send `key` (all its rows were rejected after it was spooled)."""
        self._db.execute("INSERT OR IGNORE INTO dropped VALUES (?)", (key,))

    def keep_first(self, keys: Iterable[str]) -> None:
        """Send only the first row spooled for each of `keys` (the others repeat it exactly)."""
        self.flush()
        with self._lock:
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS once (key TEXT PRIMARY KEY)")
            self._db.executemany("INSERT OR IGNORE INTO once VALUES (?)", ((k,) for k in keys))
            self._db.execute(
                "DELETE FROM pending WHERE key IN (SELECT key FROM once) AND rowid NOT IN "
                "(SELECT min(rowid) FROM pending WHERE key IN (SELECT key FROM once) GROUP BY key)"
            )

    def flush(self) -> None:
        """Write buffered rows to disk."""
        with self._lock:
            if self._buffer:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT INTO pending (key, part, item, doc, digest, raw, seq, channel, before) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    self._buffer,
                )
                self._db.execute("COMMIT")
                self._buffer.clear()

    def seal(self, follow_ups: tuple[str, ...] = ()) -> int:
        """Finish writing and index by partition; returns how many rows will be sent.

        Items on the `follow_ups` channels (sent only after their row is acknowledged) are not
        rows of their own and are not counted.
        """
        self.flush()
        self._db.execute("CREATE INDEX IF NOT EXISTS pending_part ON pending (part, channel, rowid)")
        marks = ",".join("?" * len(follow_ups))
        sql = (
            "SELECT count(*) FROM pending WHERE key NOT IN (SELECT key FROM dropped) "
            f"AND channel NOT IN ({marks})"
        )
        return int(self._db.execute(sql, follow_ups).fetchone()[0])

    def partition(self, part: int, channel: str) -> Iterator[Pending]:
        """One partition's rows in the order read, through a connection of its own."""
        db = self._connect()
        try:
            rows = db.execute(
                "SELECT key, item, doc, digest, raw, seq, before FROM pending WHERE part = ? AND channel = ? "
                "AND key NOT IN (SELECT key FROM dropped) ORDER BY rowid",
                (part, channel),
            )
            for key, item, doc, fp, raw, seq, before in rows:
                yield Pending(key, item, doc, fp, raw, seq, before)
        finally:
            db.close()

    def close(self) -> None:
        """Delete the spool file."""
        self._db.close()
        self._dir.cleanup()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
