"""No update is lost or applied twice, whatever happens between a run and Amplitude.

Each test drives `amp-sync` (as `python -m amp_sync`, in a subprocess) against the sandbox on a
loopback port and a SQLite warehouse in the test's folder, breaks something on the way (an answer
lost after Amplitude applied the request, a run killed in its retry wait, a value that flips back,
another destination or API key), then runs cleanly and checks what a user would check: Amplitude's
profiles equal the warehouse, no event arrived twice, and the preview plans nothing more.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from amp_sync.sandbox import Faults, Sandbox

ROOT = Path(__file__).resolve().parents[1]
ROWS = 200
# Amplitude applies every request and then answers 500: the answer is lost, not the update.
LOST = Faults(ingest_then_500=1.0)
TOTALS = (("plan", "plan", "$set"), ("ltv", "lifetime_value", "$add"))
USERS_SQL = "select user_id, plan, ltv from users"
SYNTHETIC = "Updated by amp_sync"
STAMPS = frozenset({"insert_id", "time", "server_received_time"})  # not an event's content


# --- the command, as a user runs it -------------------------------------------------------------


class Amp:
    """`amp-sync` with this test's AMP_SYNC_HOME and an empty TMPDIR of its own."""

    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "home"
        self.tmp = tmp_path / "tmp"
        self.tmp.mkdir()

    def start(self, *args: str | Path) -> subprocess.Popen[str]:
        env = {**os.environ, "AMP_SYNC_HOME": str(self.home), "TMPDIR": str(self.tmp)}
        return subprocess.Popen(
            [sys.executable, "-m", "amp_sync", *map(str, args)], cwd=ROOT, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    def __call__(self, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = self.start(*args)
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def report(self, *args: str | Path, status: int = 0) -> dict[str, Any]:
        """The --json object of a preview or run that must end with `status`."""
        done = self(*args, "--json")
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode == status, f"exit {done.returncode}, not {status}: {done.stderr}"
        return json.loads(done.stdout)

    def run(self, path: Path, *args: str, status: int = 0) -> dict[str, Any]:
        return self.report("run", path, *args, status=status)

    def preview(self, path: Path) -> dict[str, Any]:
        return self.report("preview", path)

    def preview_text(self, path: Path) -> str:
        """The preview as a terminal shows it; it never claims what Amplitude holds."""
        done = self("preview", path)
        assert done.returncode == 0, done.stderr
        # Only acknowledged values are known: an answer may have been lost, or someone else may
        # have changed the profile since.
        assert "already has" not in done.stdout, done.stdout
        return done.stdout


@pytest.fixture
def amp(tmp_path: Path) -> Amp:
    return Amp(tmp_path)


def wait_for(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)  # polling another process, not waiting for our own work


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


# --- the warehouse ------------------------------------------------------------------------------


def warehouse(path: Path, table: str, columns: str, rows: Iterable[tuple[Any, ...]]) -> str:
    """A SQLite file with one table filled with `rows`; returns its URL."""
    db = sqlite3.connect(path)
    db.execute(f"create table {table} ({columns})")
    rows = list(rows)
    db.executemany(f"insert into {table} values ({', '.join('?' * len(rows[0]))})", rows)
    db.commit()
    db.close()
    return f"sqlite:///{path}"


def execute(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path)
    for sql in statements:
        db.execute(sql)
    db.commit()
    db.close()


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def users_db(path: Path, rows: int = ROWS) -> str:
    """users(user_id, n, plan, ltv, tag): n is the row number, for picking rows to change."""
    return warehouse(
        path,
        "users",
        "user_id text, n integer, plan text, ltv integer, tag text",
        ((f"user-{i:04d}", i, f"plan{i % 3}", i, f"t{i % 4}") for i in range(rows)),
    )


def expected(path: Path, sql: str = USERS_SQL, names: tuple[str, ...] = ("plan", "lifetime_value")) -> dict:
    """The warehouse as Amplitude should show it: key -> properties, NULLs absent."""
    return {
        key: {n: v for n, v in zip(names, values, strict=True) if v is not None}
        for key, *values in query(path, sql)
    }


# --- Amplitude, as the sandbox holds it ---------------------------------------------------------


def profiles(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {p["user_id"]: p["user_properties"] for p in sandbox.store.profiles()}


def groups(sandbox: Sandbox, group_type: str = "company") -> dict[str, dict[str, Any]]:
    return {
        g["group_value"]: g["group_properties"]
        for g in sandbox.store.groups()
        if g["group_type"] == group_type
    }


def assert_same(amplitude: dict[str, Any], wanted: dict[str, Any]) -> None:
    """Amplitude equals the warehouse; the message names a few keys that differ."""
    keys = sorted(set(amplitude) | set(wanted))
    wrong = [k for k in keys if amplitude.get(k) != wanted.get(k)]
    shown = "; ".join(f"{k}: Amplitude {amplitude.get(k)}, warehouse {wanted.get(k)}" for k in wrong[:3])
    assert not wrong, f"{len(wrong)} of {len(keys)} keys differ from the warehouse, e.g. {shown}"


def assert_no_event_twice(sandbox: Sandbox) -> None:
    """No update arrived twice.

    The sandbox keeps one event per insert_id, as Amplitude does, so a doubled update shows as the
    same content for the same key under another insert_id.
    """
    ids = Counter(e["insert_id"] for e in sandbox.store.events() if e.get("insert_id"))
    assert not [i for i, n in ids.items() if n > 1], "two events share an insert_id"
    content = Counter(
        json.dumps({k: v for k, v in e.items() if k not in STAMPS}, sort_keys=True)
        for e in sandbox.store.events()
    )
    twice = [c for c, n in content.items() if n > 1]
    assert not twice, f"{len(twice)} updates arrived twice under different insert_ids, e.g. {twice[:2]}"


def assert_nothing_planned(amp: Amp, path: Path, outbox: bool = False) -> None:
    """The preview plans no new or changed row, and no in-doubt item to resend.

    With `outbox`, the preview must say how many items are in doubt (`in_doubt`), and none is.
    """
    report = amp.preview(path)
    if outbox:
        assert "in_doubt" in report, f"preview --json has no in_doubt: {report}"
    planned = {k: report[k] for k in ("new", "changed", "in_doubt") if k in report}
    assert planned == dict.fromkeys(planned, 0), f"after clean runs the preview still plans {planned}"


# --- 1. a lost answer, then any change ----------------------------------------------------------


def lose_the_answer(amp: Amp, path: Path, sandbox: Sandbox, attempts: str = "1") -> None:
    """A run whose requests Amplitude applied, every answer lost; then no more faults."""
    sandbox.set_faults(LOST)
    amp.run(path, "--attempts", attempts, status=1)
    assert sandbox.store.requests(), "the run sent nothing"
    sandbox.set_faults(Faults())


def test_an_update_after_a_lost_answer_of_a_running_total_reaches_amplitude(
    tmp_path, amp, write_sync
) -> None:
    db = tmp_path / "w.db"
    with Sandbox() as sandbox:
        path = write_sync(users_db(db), sandbox.url, mappings=TOTALS)
        lose_the_answer(amp, path, sandbox)
        assert len(profiles(sandbox)) == ROWS  # applied, though no answer said so
        execute(
            db,
            "update users set plan = 'gold', ltv = ltv + 7 where n % 2 = 0",
            "update users set ltv = ltv + 1 where n % 5 = 0",
        )
        amp.run(path)
        amp.run(path)
        assert_same(profiles(sandbox), expected(db))
        assert_no_event_twice(sandbox)
        assert_nothing_planned(amp, path)


def test_an_append_after_a_lost_answer_is_appended_once(tmp_path, amp, write_sync) -> None:
    db = tmp_path / "w.db"
    mappings = (("plan", "plan", "$set"), ("tag", "tags", "$append"))
    with Sandbox() as sandbox:
        path = write_sync(
            users_db(db), sandbox.url, sql="select user_id, plan, tag from users", mappings=mappings
        )
        lose_the_answer(amp, path, sandbox, attempts="2")
        first = dict(query(db, "select user_id, tag from users"))
        execute(db, "update users set plan = 'gold', tag = 'new' where n % 2 = 0")
        amp.run(path)
        amp.run(path)
        wanted = {
            key: {"plan": plan, "tags": [first[key]] if tag == first[key] else [first[key], tag]}
            for key, plan, tag in query(db, "select user_id, plan, tag from users")
        }
        assert_same(profiles(sandbox), wanted)
        assert_no_event_twice(sandbox)
        assert_nothing_planned(amp, path)


def test_a_group_running_total_after_a_lost_answer_reaches_amplitude(tmp_path, amp, write_sync) -> None:
    db = tmp_path / "w.db"
    url = warehouse(
        db,
        "orgs",
        "org_id text, n integer, tier text, seats integer",
        ((f"org-{i:04d}", i, f"tier{i % 3}", i % 40) for i in range(ROWS)),
    )
    mappings = (("tier", "tier", "$set"), ("seats", "seats", "$add"))
    with Sandbox() as sandbox:
        path = write_sync(
            url, sandbox.url, sql="select org_id, tier, seats from orgs", mappings=mappings,
            name="orgs", object_="group", key="org_id", extra_sync='group_type = "company"',
        )  # fmt: skip
        lose_the_answer(amp, path, sandbox)
        assert len(groups(sandbox)) == ROWS
        execute(db, "update orgs set tier = 'gold', seats = seats + 3 where n % 2 = 0")
        amp.run(path)
        amp.run(path)
        assert_same(groups(sandbox), expected(db, "select org_id, tier, seats from orgs", ("tier", "seats")))
        assert_no_event_twice(sandbox)
        assert_nothing_planned(amp, path)


def test_synthetic_events_after_a_lost_answer_are_not_doubled_and_profiles_are_right(
    tmp_path, amp, write_sync
) -> None:
    db = tmp_path / "w.db"
    with Sandbox() as sandbox:
        extra = f'synthetic_event = "{SYNTHETIC}"'
        path = write_sync(users_db(db), sandbox.url, mappings=TOTALS, extra_sync=extra)
        lose_the_answer(amp, path, sandbox)
        execute(db, "update users set plan = 'gold', ltv = ltv + 7 where n % 2 = 0")
        amp.run(path)
        amp.run(path)
        assert_same(profiles(sandbox), expected(db))
        assert_no_event_twice(sandbox)
        per_user = Counter(e["user_id"] for e in sandbox.store.events() if e["event_type"] == SYNTHETIC)
        for key, n in query(db, "select user_id, n from users"):
            updates = 2 if n % 2 == 0 else 1  # one event per acknowledged update, at most
            assert per_user[key] <= updates, (
                f"{key}: {per_user[key]} {SYNTHETIC!r} events for {updates} updates"
            )
            if n % 2 == 0:  # the change was acknowledged by a clean run: its event follows
                assert per_user[key] >= 1, f"{key}: no {SYNTHETIC!r} event for its acknowledged update"
        assert_nothing_planned(amp, path)


def test_a_run_killed_in_its_retry_wait_then_a_change_reaches_amplitude(tmp_path, amp, write_sync) -> None:
    db = tmp_path / "w.db"
    with Sandbox(faults=LOST) as sandbox:
        path = write_sync(users_db(db), sandbox.url, mappings=TOTALS)
        # One request at a time and the default tries: after the second 500 it waits 0.5 to 1 s.
        proc = amp.start("run", path, "--concurrency", "1")
        wait_for(lambda: len(sandbox.store.requests()) >= 2)
        kill(proc)
        assert len(profiles(sandbox)) == ROWS
        execute(db, "update users set plan = 'gold', ltv = ltv + 7 where n % 2 = 0")
        sandbox.set_faults(Faults())
        amp.run(path)
        amp.run(path)
        assert_same(profiles(sandbox), expected(db))
        assert_no_event_twice(sandbox)
        assert_nothing_planned(amp, path)


# --- 2. a value that flips back -----------------------------------------------------------------


def test_a_value_sent_with_its_answer_lost_then_flipped_back_ends_as_the_warehouse(
    tmp_path, amp, write_sync
) -> None:
    db = tmp_path / "w.db"
    with Sandbox() as sandbox:
        path = write_sync(users_db(db), sandbox.url)  # plan and ltv, both $set
        amp.run(path)
        execute(db, "update users set plan = 'B' where n % 2 = 0")
        lose_the_answer(amp, path, sandbox)
        assert profiles(sandbox)["user-0000"]["plan"] == "B"
        execute(db, "update users set plan = 'plan' || (n % 3)")  # back to A
        amp.run(path)
        assert_same(profiles(sandbox), expected(db, names=("plan", "lifetime_value")))
        assert_nothing_planned(amp, path)


def test_a_revert_whose_answer_was_lost_then_a_run_ends_as_the_warehouse(tmp_path, amp, write_sync) -> None:
    db = tmp_path / "w.db"
    with Sandbox() as sandbox:
        path = write_sync(users_db(db), sandbox.url)
        amp.run(path)
        execute(db, "update users set plan = 'B' where n % 2 = 0")
        amp.run(path)
        sandbox.set_faults(LOST)
        reverted = amp("revert", path, "--attempts", "1")
        assert reverted.returncode == 1, reverted.stderr
        assert profiles(sandbox)["user-0000"]["plan"] == "plan0"  # the revert was applied
        sandbox.set_faults(Faults())
        amp.run(path)
        assert_same(profiles(sandbox), expected(db))
        assert_nothing_planned(amp, path)


# --- 3. $add through NULL -----------------------------------------------------------------------


def test_a_running_total_through_null_starts_again(tmp_path, amp, write_sync) -> None:
    db = tmp_path / "w.db"
    url = users_db(db, rows=50)
    execute(db, "update users set ltv = 10")
    with Sandbox() as sandbox:
        path = write_sync(url, sandbox.url, mappings=TOTALS)
        amp.run(path)
        execute(db, "update users set ltv = null where n % 2 = 0")
        amp.run(path)
        nulls = [k for (k,) in query(db, "select user_id from users where ltv is null")]
        held = {k: p["lifetime_value"] for k, p in profiles(sandbox).items() if "lifetime_value" in p}
        still = [f"{k}={held[k]}" for k in nulls if k in held]
        assert not still, f"{len(still)} totals still set where the column is NULL, e.g. {still[:3]}"
        execute(db, "update users set ltv = 5 where n % 2 = 0")
        amp.run(path)
        assert_same(profiles(sandbox), expected(db))
        assert profiles(sandbox)["user-0000"]["lifetime_value"] == 5
        assert_no_event_twice(sandbox)
        assert_nothing_planned(amp, path)


# --- 4. $add of something that is not a number --------------------------------------------------


def test_a_running_total_that_is_not_a_number_is_a_rejected_row(tmp_path, amp, write_sync) -> None:
    db = tmp_path / "w.db"
    # An untyped SQLite column holds what it is given: numbers, and one text value.
    url = warehouse(
        db,
        "users",
        "user_id text, plan text, score",
        ((f"user-{i:04d}", f"plan{i % 3}", "abc" if i == 7 else i) for i in range(ROWS)),
    )
    mappings = (("plan", "plan", "$set"), ("score", "score", "$add"))
    sql = "select user_id, plan, score from users"
    with Sandbox() as sandbox:
        path = write_sync(url, sandbox.url, sql=sql, mappings=mappings)
        planned = amp.preview(path)
        reasons = [r["reason"] for r in planned["rejections"] if r["key"] == "user-0007"]
        assert reasons, (
            f"user-0007 ('abc' for $add) is not among the preview's rejections: {planned['rejections']}"
        )
        assert "$add" in reasons[0] and "number" in reasons[0], reasons[0]
        sent = amp.run(path)  # exit 0: every other row was delivered
        assert [r["key"] for r in sent["rejections"]] == ["user-0007"]
        amp.run(path)
        wanted = expected(db, sql, ("plan", "score"))
        del wanted["user-0007"]
        assert_same(profiles(sandbox), wanted)
        assert_no_event_twice(sandbox)
        assert_nothing_planned(amp, path)


# --- 5. another destination, another API key ----------------------------------------------------


def host(url: str) -> str:
    return urlsplit(url).netloc


def test_a_sync_pointed_at_another_destination_sends_everything_there_and_back(
    tmp_path, amp, write_sync
) -> None:
    db = tmp_path / "w.db"
    url = users_db(db)
    with Sandbox() as a, Sandbox() as b:
        path = write_sync(url, a.url)
        amp.run(path)
        assert len(profiles(a)) == ROWS
        write_sync(url, b.url)
        planned = amp.preview(path)
        assert (planned["new"], planned["changed"]) == (ROWS, 0), f"into a new destination: {planned}"
        text = amp.preview_text(path)
        assert host(a.url) in text and host(b.url) in text, f"the preview names neither destination:\n{text}"
        amp.run(path)
        assert_same(profiles(b), expected(db))

        write_sync(url, a.url)
        assert_nothing_planned(amp, path)  # its snapshot of A is untouched
        before = len(a.store.requests())
        amp.run(path)
        assert len(a.store.requests()) == before
        assert_same(profiles(a), expected(db))


def test_a_new_api_key_of_the_same_project_is_taken_over_by_rekey(tmp_path, amp, write_sync) -> None:
    db = tmp_path / "w.db"
    url = users_db(db)
    old, new = "project-key-old-0001", "project-key-new-0002"
    with Sandbox(api_keys={old: None, new: None}) as sandbox:
        path = write_sync(url, sandbox.url, api_key=old)
        amp.run(path)
        write_sync(url, sandbox.url, api_key=new)
        planned = amp.preview(path)
        assert (planned["new"], planned["changed"]) == (ROWS, 0), f"under a new API key: {planned}"
        text = amp.preview_text(path)
        assert "amp-sync rekey" in text, f"the preview does not tell about `amp-sync rekey`:\n{text}"
        assert old not in text and new not in text, "the preview shows an API key"
        rekey = amp("rekey", path)
        assert rekey.returncode == 0, rekey.stderr
        assert_nothing_planned(amp, path)
        before = len(sandbox.store.requests())
        amp.run(path)
        assert len(sandbox.store.requests()) == before
        assert_same(profiles(sandbox), expected(db))


# --- 7. a killed run leaves nothing behind ------------------------------------------------------


def test_a_killed_run_leaves_nothing_in_the_temp_folder_and_the_next_run_delivers(
    tmp_path, amp, write_sync
) -> None:
    db = tmp_path / "w.db"
    url = users_db(db, rows=2_500)  # three requests of up to 1,000 rows
    with Sandbox(faults=Faults(slow=1.0, slow_seconds=1.0)) as sandbox:
        path = write_sync(url, sandbox.url)
        proc = amp.start("run", path, "--concurrency", "1")
        wait_for(lambda: len(sandbox.store.requests()) >= 1)
        kill(proc)
        assert len(profiles(sandbox)) < 2_500  # it really died midway
        left = sorted(p.name for p in amp.tmp.iterdir())
        assert not left, f"the killed run left {left} in TMPDIR"
        sandbox.set_faults(Faults())
        amp.run(path)
        assert_same(profiles(sandbox), expected(db))
        assert_nothing_planned(amp, path, outbox=True)
        assert not list(amp.tmp.iterdir())


# --- the preview of in-doubt items --------------------------------------------------------------


def test_the_preview_says_in_doubt_items_are_resent_first(tmp_path, amp, write_sync) -> None:
    db = tmp_path / "w.db"
    with Sandbox() as sandbox:
        path = write_sync(users_db(db), sandbox.url, mappings=TOTALS)
        lose_the_answer(amp, path, sandbox)
        planned = amp.preview(path)
        assert planned.get("in_doubt", 0) > 0, (
            f"after lost answers the preview has no in-doubt items: {planned}"
        )
        text = amp.preview_text(path).lower().replace("-", " ")
        assert "in doubt" in text and "resen" in text, f"the preview does not say what is resent:\n{text}"
        amp.run(path)
        assert_same(profiles(sandbox), expected(db))
        assert_no_event_twice(sandbox)
        assert_nothing_planned(amp, path)
