"""The snapshot store: owner-only files, atomic commits, one run at a time, clear errors."""

from __future__ import annotations

import sqlite3
import stat

import numpy as np
import pytest
from support import TEST_DESTINATION as DEST

from amp_sync.errors import StateError
from amp_sync.state import SCHEMA_VERSION, StateStore, run_lock, state_path


def test_commit_and_read_back(tmp_path) -> None:
    store = StateStore.open(tmp_path, "s", DEST)
    store.commit([("alice", b"1" * 16, '{"plan":["$set","pro"]}'), ("bobby", b"2" * 16, "{}")])
    assert store.digests() == {"alice": b"1" * 16, "bobby": b"2" * 16}
    assert store.docs(["alice", "nobody"]) == {"alice": {"plan": ["$set", "pro"], "$seq": 0}}
    store.close()
    reader = StateStore.open_read_only(tmp_path, "s", DEST)
    assert reader is not None and len(reader.index()) == 2
    reader.close()


def test_preview_of_a_new_sync_creates_nothing(tmp_path) -> None:
    assert StateStore.open_read_only(tmp_path, "never-ran", DEST) is None
    assert not (tmp_path / "state").exists()


def test_files_are_readable_by_their_owner_only(tmp_path) -> None:
    StateStore.open(tmp_path, "s", DEST).close()
    path = state_path(tmp_path, "s")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_many_docs_are_read_in_pieces(tmp_path) -> None:
    store = StateStore.open(tmp_path, "s", DEST)
    store.commit((f"user{i:05d}", b"x", "{}") for i in range(1_200))
    assert len(store.docs([f"user{i:05d}" for i in range(1_200)])) == 1_200
    store.close()


def test_a_second_run_of_the_same_sync_is_refused(tmp_path) -> None:
    with run_lock(tmp_path, "s"):
        with (
            pytest.raises(StateError, match="another run of the sync 's' is in progress"),
            run_lock(tmp_path, "s"),
        ):
            pass
        with run_lock(tmp_path, "other"):
            pass
    with run_lock(tmp_path, "s"):
        pass


def test_run_history(tmp_path) -> None:
    store = StateStore.open(tmp_path, "s", DEST)
    run_id = store.start_run("run")
    store.finish_run(run_id, "ok", {"sent": 3}, "", [("abc", "too short")])
    (record,) = store.runs()
    assert (record.status, record.counts, record.finished_at is not None) == ("ok", {"sent": 3}, True)
    assert store.rejections(run_id) == [("abc", "too short")]
    store.close()


def test_a_newer_format_is_refused_with_advice(tmp_path) -> None:
    StateStore.open(tmp_path, "s", DEST).close()
    db = sqlite3.connect(state_path(tmp_path, "s"))
    db.execute("update meta set value = ? where name = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(StateError, match="newer amp_sync"):
        StateStore.open(tmp_path, "s", DEST)


def test_a_file_that_is_not_a_state_file(tmp_path) -> None:
    path = state_path(tmp_path, "s")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match="cannot use the state file"):
        StateStore.open(tmp_path, "s", DEST)
    with pytest.raises(StateError, match="cannot use the state file"):
        StateStore.open_read_only(tmp_path, "s", DEST)


def test_an_unwritable_home_is_a_clear_error(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError, match="AMP_SYNC_HOME"):
        StateStore.open(blocker, "s", DEST)


def test_a_format_1_state_file_is_migrated_and_keeps_what_was_acknowledged(tmp_path) -> None:
    from amp_sync.plan import canonical
    from amp_sync.snapshot import digest, key_hash

    path = state_path(tmp_path, "old")
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE snapshot (key TEXT PRIMARY KEY, digest BLOB NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE runs (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, started_at REAL NOT NULL,
            finished_at REAL, status TEXT NOT NULL, counts TEXT NOT NULL DEFAULT '{}',
            message TEXT NOT NULL DEFAULT '');
        CREATE TABLE rejections (run_id INTEGER NOT NULL, key TEXT NOT NULL, reason TEXT NOT NULL);
        """
    )
    doc = {"plan": ["$set", "pro"]}
    db.executemany(
        "INSERT INTO snapshot VALUES (?, ?, ?)",
        [(f"user-{i:05d}", b"v1digest" * 2, canonical(doc)) for i in range(30_000)],
    )
    db.commit()
    db.close()

    with pytest.raises(StateError, match="older format 1: run the sync once"):
        StateStore.open_read_only(tmp_path, "old", DEST)  # a preview never writes, so it cannot upgrade
    store = StateStore.open(tmp_path, "old", DEST)
    index = store.index()
    assert len(index) == 30_000
    pos = index.find(np.array([key_hash("user-00042")]))[0]
    assert index.digests[pos] == digest("user-00042", canonical(doc))
    assert store.docs(["user-00042"]) == {"user-00042": {**doc, "$seq": 0}}
    store.close()
    reader = StateStore.open_read_only(tmp_path, "old", DEST)
    assert reader is not None and len(reader.index()) == 30_000
    reader.close()


def test_a_format_2_state_file_gains_revert_tracking_and_older_rows_are_never_reverted(tmp_path) -> None:
    path = state_path(tmp_path, "two")
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '2');
        CREATE TABLE snapshot (key TEXT PRIMARY KEY, digest BLOB NOT NULL, doc TEXT NOT NULL,
            key_hash INTEGER, raw INTEGER, seq INTEGER) WITHOUT ROWID;
        CREATE TABLE runs (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, started_at REAL NOT NULL,
            finished_at REAL, status TEXT NOT NULL, counts TEXT NOT NULL DEFAULT '{}',
            message TEXT NOT NULL DEFAULT '');
        CREATE TABLE rejections (run_id INTEGER NOT NULL, key TEXT NOT NULL, reason TEXT NOT NULL);
        INSERT INTO snapshot VALUES ('alice', x'00', '{"plan":["$set","pro"]}', 1, 2, 3);
        """
    )
    db.commit()
    db.close()

    store = StateStore.open(tmp_path, "two", DEST)
    assert store.docs(["alice"]) == {"alice": {"plan": ["$set", "pro"], "$seq": 3}}
    assert store.last_changed_run() is None  # rows from before format 3 belong to no run
    store.commit([("bobby", b"d", "{}", 5, 1, None)], run_id=7)
    assert store.last_changed_run() == 7
    assert [row for piece in store.touched(7) for row in piece] == [("bobby", "{}", None, 1)]
    store.close()
