"""The outbox and per-destination state, in process: stale items, rekeying, overlaps, old files."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from amp_sync.amplitude import RetryPolicy
from amp_sync.config import load_config
from amp_sync.errors import StateError
from amp_sync.outbox import Stale
from amp_sync.runner import RunOptions, preview, rekey, run
from amp_sync.sandbox import Faults, Sandbox
from amp_sync.state import DestinationRef, StateStore, known_destinations, state_path
from amp_sync.views import state_notes

ROWS = 40
FAST = RunOptions(sleep=lambda s: None, policy=RetryPolicy(attempts=1, throttle_delay=0))
TOTALS = (("plan", "plan", "$set"), ("ltv", "lifetime_value", "$add"))


def users(path: Path, plan: str = "pro", ltv: int = 1) -> str:
    db = sqlite3.connect(path)
    db.execute("drop table if exists users")
    db.execute("create table users (user_id text, plan text, ltv integer)")
    db.executemany(
        "insert into users values (?, ?, ?)", [(f"user-{i:04d}", plan, ltv + i) for i in range(ROWS)]
    )
    db.commit()
    db.close()
    return f"sqlite:///{path}"


def profiles(sandbox: Sandbox) -> dict[str, dict]:
    return {p["user_id"]: p["user_properties"] for p in sandbox.store.profiles()}


def age_outbox(home: Path, sync: str, days: float) -> None:
    """Make every item in the sync's outbox look first sent `days` ago."""
    db = sqlite3.connect(state_path(home, sync))
    db.execute("UPDATE outbox SET sent_at = ?", (time.time() - days * 86_400,))
    db.commit()
    db.close()


@pytest.fixture
def lost_totals(tmp_path, home, write_sync):
    """A sync of running totals whose first run's answers were all lost (ingested, then 500)."""
    url = users(tmp_path / "w.db")
    with Sandbox(faults=Faults(ingest_then_500=1.0)) as sandbox:
        config = load_config(write_sync(url, sandbox.url, mappings=TOTALS))
        report = run(config, home, FAST)
        assert (report.sent, report.in_doubt) == (0, ROWS)
        sandbox.set_faults(Faults())
        yield config, sandbox


def test_an_in_doubt_item_older_than_amplitudes_window_is_not_resent_blindly(lost_totals, home) -> None:
    config, sandbox = lost_totals
    age_outbox(home, config.sync.name, days=8)
    before = len(sandbox.store.requests())

    seen = preview(config, home)
    assert (seen.stale, seen.in_doubt, seen.plan.held) == (ROWS, 0, ROWS)
    words = " ".join(state_notes(seen))
    assert "older than 7 days" in words and "--stale-in-doubt delivered" in words

    report = run(config, home, FAST)
    assert (report.stale, report.plan.held, report.sent) == (ROWS, ROWS, 0) and not report.ok
    assert len(sandbox.store.requests()) == before  # nothing was resent without the user's word


def test_stale_items_taken_as_delivered_enter_the_snapshot_and_nothing_is_sent(lost_totals, home) -> None:
    config, sandbox = lost_totals
    age_outbox(home, config.sync.name, days=8)
    before = len(sandbox.store.requests())
    report = run(config, home, RunOptions(sleep=lambda s: None, stale=Stale.DELIVERED))
    assert report.ok and (report.sent, report.plan.unchanged, report.stale) == (0, ROWS, 0)
    assert len(sandbox.store.requests()) == before
    # Amplitude had ingested them (the answer was lost): the totals are right and not doubled.
    assert profiles(sandbox)["user-0003"] == {"plan": "pro", "lifetime_value": 4}


def test_stale_items_resent_on_the_users_word_arrive(tmp_path, home, write_sync) -> None:
    url = users(tmp_path / "w.db")
    with Sandbox(faults=Faults(error_500=1.0)) as sandbox:  # refused before ingesting, as a 500 may be
        config = load_config(write_sync(url, sandbox.url, mappings=TOTALS))
        assert run(config, home, FAST).in_doubt == ROWS
        sandbox.set_faults(Faults())
        age_outbox(home, config.sync.name, days=8)
        assert preview(config, home, stale=Stale.RESEND).in_doubt == ROWS
        report = run(config, home, RunOptions(sleep=lambda s: None, stale=Stale.RESEND))
        assert report.ok and report.resent == ROWS
        assert profiles(sandbox)["user-0003"] == {"plan": "pro", "lifetime_value": 4}


def test_items_never_answered_but_never_ingested_are_not_in_doubt(tmp_path, home, write_sync) -> None:
    url = users(tmp_path / "w.db")
    with Sandbox(faults=Faults(error_503=1.0)) as sandbox:  # 503: Amplitude did not take it
        config = load_config(write_sync(url, sandbox.url))
        report = run(config, home, FAST)
        assert (report.failed, report.in_doubt) == (ROWS, 0)
        sandbox.set_faults(Faults())
        report = run(config, home, FAST)
        assert (report.resent, report.plan.new, report.sent) == (0, ROWS, ROWS)


def test_rekey_carries_the_state_over_and_refuses_in_words(tmp_path, home, write_sync) -> None:
    url = users(tmp_path / "w.db")
    with Sandbox(api_keys={"old-key-0001": None, "new-key-0002": None}) as sandbox:
        old = load_config(write_sync(url, sandbox.url, api_key="old-key-0001"))
        assert run(old, home, FAST).sent == ROWS
        new = load_config(write_sync(url, sandbox.url, api_key="new-key-0002", filename="new.toml"))
        seen = preview(new, home)
        assert seen.plan.new == ROWS and any("amp-sync rekey" in n for n in state_notes(seen))
        said = rekey(new, home)
        assert "kept the state" in said and "new-key" not in said and "old-key" not in said
        assert preview(new, home).plan.unchanged == ROWS
        with pytest.raises(StateError, match="already has state"):
            rekey(new, home)
        never = load_config(write_sync(url, sandbox.url, name="never-ran", filename="never.toml"))
        with pytest.raises(StateError, match="has no state at"):
            rekey(never, home)
        stored = state_path(home, old.sync.name).read_bytes()
        assert b"old-key-0001" not in stored and b"new-key-0002" not in stored  # only hashes are kept


def test_two_syncs_writing_one_property_of_one_destination_are_flagged_in_both(
    tmp_path, home, write_sync
) -> None:
    url = users(tmp_path / "w.db")
    with Sandbox() as sandbox:
        first = load_config(write_sync(url, sandbox.url, name="plans"))
        second = load_config(
            write_sync(
                url, sandbox.url, name="plans-again", filename="b.toml", mappings=(("plan", "plan", "$set"),)
            )
        )
        run(first, home, FAST)
        run(second, home, FAST)
        for config, other in ((first, "plans-again"), (second, "plans")):
            notes = state_notes(preview(config, home))
            assert any(f"the sync {other!r} also writes plan" in n for n in notes), notes
        elsewhere = load_config(write_sync(url, "http://127.0.0.1:9", name="plans", filename="c.toml"))
        assert not preview(elsewhere, home).overlaps  # another destination: no overlap


def test_a_format_3_state_file_is_adopted_by_the_destination_its_sync_sends_to(
    tmp_path, home, write_sync
) -> None:
    url = users(tmp_path / "w.db")
    path = state_path(home, "ltv-to-amplitude")
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '3');
        CREATE TABLE snapshot (key TEXT PRIMARY KEY, digest BLOB NOT NULL, doc TEXT NOT NULL,
            key_hash INTEGER, raw INTEGER, seq INTEGER, prev TEXT, run_id INTEGER) WITHOUT ROWID;
        CREATE TABLE runs (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, started_at REAL NOT NULL,
            finished_at REAL, status TEXT NOT NULL, counts TEXT NOT NULL DEFAULT '{}',
            message TEXT NOT NULL DEFAULT '');
        CREATE TABLE rejections (run_id INTEGER NOT NULL, key TEXT NOT NULL, reason TEXT NOT NULL);
        INSERT INTO runs VALUES (1, 'run', 1.0, 2.0, 'ok', '{"sent": 40}', '');
        """
    )
    db.close()
    with Sandbox() as sandbox:
        config = load_config(write_sync(url, sandbox.url))
        # Fill the old file as the old version would have: run once, then rewrite it as format 3.
        scratch = tmp_path / "scratch"
        run(config, scratch, FAST)
        fresh = sqlite3.connect(state_path(scratch, config.sync.name))
        rows = fresh.execute(
            "SELECT key, digest, doc, key_hash, raw, seq, prev, run_id FROM snapshot"
        ).fetchall()
        fresh.close()
        db = sqlite3.connect(path)
        db.executemany("INSERT INTO snapshot VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        db.commit()
        db.close()
        before = len(sandbox.store.requests())
        report = run(config, home, FAST)  # migrates, then adopts the old rows for this destination
        assert (report.plan.unchanged, report.sent) == (ROWS, 0)
        assert len(sandbox.store.requests()) == before
        (known,) = known_destinations(home, config.sync.name)
        assert known.ref == DestinationRef.of(config.destination) and known.rows == ROWS
        assert [r.kind for r in StateStore.open_read_only(home, config.sync.name).runs(True)] == [
            "run",
            "run",
        ]


@pytest.mark.parametrize(("first", "then"), [(2, 1), (1, 4), (4, 3)])
def test_items_in_doubt_are_all_resent_by_a_run_with_other_senders(
    tmp_path, home, write_sync, first: int, then: int
) -> None:
    url = users(tmp_path / "w.db")
    with Sandbox(faults=Faults(ingest_then_500=1.0)) as sandbox:
        config = load_config(write_sync(url, sandbox.url, mappings=TOTALS))
        lost = RunOptions(concurrency=first, sleep=lambda s: None, policy=RetryPolicy(attempts=1))
        assert run(config, home, lost).in_doubt == ROWS
        sandbox.set_faults(Faults())
        report = run(config, home, RunOptions(concurrency=then, sleep=lambda s: None))
        assert report.ok and (report.resent, report.in_doubt) == (ROWS, 0)
        assert profiles(sandbox)["user-0003"] == {"plan": "pro", "lifetime_value": 4}
