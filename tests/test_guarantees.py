"""What amp_sync guarantees when things go wrong: crashes, dead endpoints, parallel runs, torn commits."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import open_state

from amp_sync.config import load_config
from amp_sync.errors import StateError
from amp_sync.runner import RunOptions, run
from amp_sync.sandbox import Faults, Sandbox
from amp_sync.state import state_path

ROOT = Path(__file__).resolve().parents[1]
ROWS = 5_000


def users_db(path: Path, rows: int = ROWS) -> str:
    db = sqlite3.connect(path)
    db.execute("create table users (user_id text, plan text, ltv integer)")
    db.executemany(
        "insert into users values (?, ?, ?)", [(f"user-{i:06d}", f"plan{i % 7}", i) for i in range(rows)]
    )
    db.commit()
    db.close()
    return f"sqlite:///{path}"


def cli(*args: str, home: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "AMP_SYNC_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-m", "amp_sync", *args], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def committed(home: Path) -> int:
    """Rows the state of the test sync holds, read without writing."""
    try:
        store = open_state(home, "ltv-to-amplitude", read_only=True)
    except StateError:  # created but not yet initialised by the run
        return 0
    if store is None:
        return 0
    try:
        return len(store.digests())
    except StateError:
        return 0
    finally:
        store.close()


def wait_for(condition, seconds: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)  # polling another process, not waiting for our own work


def expected_profiles(rows: int = ROWS) -> dict[str, dict]:
    return {f"user-{i:06d}": {"plan": f"plan{i % 7}", "lifetime_value": i} for i in range(rows)}


def test_guarantee_sigkill_mid_run_then_rerun_delivers_everything(tmp_path, write_sync) -> None:
    url = users_db(tmp_path / "w.db")
    home = tmp_path / "home"
    with Sandbox(faults=Faults(slow=1.0, slow_seconds=0.4)) as sandbox:
        path = write_sync(url, sandbox.url)
        proc = cli("run", str(path), "--concurrency", "2", home=home)
        wait_for(lambda: committed(home) >= 1000)  # at least one batch acknowledged and saved
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

        store = open_state(home, "ltv-to-amplitude")
        claimed = set(store.digests())
        store.close()
        arrived = {p["user_id"] for p in sandbox.store.profiles()}
        assert claimed and claimed <= arrived  # the state never claims a row Amplitude did not take
        assert len(arrived) < ROWS  # it really died midway

        sandbox.set_faults(Faults())
        report = run(load_config(path), home, RunOptions(concurrency=2))
        # What was in flight at the kill is in doubt: resent first, exactly as it was.
        assert report.failed == 0 and report.resent <= 2 * 1000
        assert report.plan.unchanged == len(claimed) + report.resent
        assert report.sent == ROWS - len(claimed) - report.resent
        profiles = {p["user_id"]: p["user_properties"] for p in sandbox.store.profiles()}
        assert profiles == expected_profiles()
        sent_items = sum(r["items"] for r in sandbox.store.requests() if r["path"] == "/identify")
        in_flight = 2 * 1000  # at most one batch per sender was in flight at the kill
        assert ROWS <= sent_items <= ROWS + in_flight


def test_guarantee_endpoint_down_for_good_fails_loudly_and_next_run_sends(tmp_path, write_sync) -> None:
    url = users_db(tmp_path / "w.db", rows=1_500)
    home = tmp_path / "home"
    down = write_sync(url, "http://127.0.0.1:9", filename="down.toml")
    proc = cli("run", str(down), "--attempts", "2", home=home)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "amp-sync: 1,500 rows were not delivered" in err and "run again to retry them" in err
    assert "Traceback" not in err
    with Sandbox() as sandbox:
        up = write_sync(url, sandbox.url, filename="up.toml")
        proc = cli("run", str(up), "--json", home=home)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert (json.loads(out)["sent"], len(sandbox.store.profiles())) == (1_500, 1_500)


def test_guarantee_two_runs_of_one_sync_the_second_refuses(tmp_path, write_sync) -> None:
    url = users_db(tmp_path / "w.db", rows=6_000)
    home = tmp_path / "home"
    # Six slow requests one after another keep the first run busy for several seconds.
    with Sandbox(faults=Faults(slow=1.0, slow_seconds=1.5)) as sandbox:
        path = write_sync(url, sandbox.url)
        first = cli("run", str(path), "--concurrency", "1", home=home)
        wait_for(lambda: len(sandbox.store.requests()) >= 1)
        second = cli("run", str(path), home=home)
        _out, err = second.communicate(timeout=60)
        assert second.returncode == 2
        assert (
            err.strip()
            == "amp-sync: another run of the sync 'ltv-to-amplitude' is in progress; wait for it to finish"
        )
        _out, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
        assert len(sandbox.store.profiles()) == 6_000


COMMITTER = """
import sys
from pathlib import Path
from amp_sync.state import DestinationRef, StateStore
where = DestinationRef("Sandbox", "http://127.0.0.1:8766", "0" * 32)
store = StateStore.open(Path(sys.argv[1]), "torn", where)
n = 0
while True:
    store.commit((f"user-{n + i:08d}", b"d" * 16, '{"plan":["$set","x"]}') for i in range(1000))
    n += 1000
    print(n, flush=True)
"""


def test_guarantee_the_state_survives_a_crash_in_the_middle_of_a_commit(tmp_path) -> None:
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [sys.executable, "-c", COMMITTER, str(home)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    for _ in range(25):  # let it commit a while, then kill it wherever it is
        proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    db = sqlite3.connect(state_path(home, "torn"))
    assert db.execute("pragma integrity_check").fetchone() == ("ok",)
    db.close()
    store = open_state(home, "torn")
    count = len(store.index())
    store.close()
    assert count >= 25_000 and count % 1000 == 0  # whole batches only: no torn commit


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"SQLite format 3\x00" + b"\x00" * 200, "cannot use the state file"),
        (b"garbage" * 500, "cannot use the state file"),
    ],
)
def test_an_unreadable_state_file_is_a_message_not_a_traceback(tmp_path, write_sync, content, words) -> None:
    url = users_db(tmp_path / "w.db", rows=10)
    home = tmp_path / "home"
    path = state_path(home, "ltv-to-amplitude")
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    for command in ("preview", "run"):
        proc = cli(command, str(write_sync(url, "http://127.0.0.1:9")), home=home)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2 and words in err and "Traceback" not in err, err


def test_guarantee_add_operations_never_count_twice_when_an_answer_is_lost(tmp_path, write_sync) -> None:
    from amp_sync.amplitude import RetryPolicy

    url = users_db(tmp_path / "w.db", rows=3_000)
    home = tmp_path / "home"
    mappings = (("plan", "plan", "$set"), ("ltv", "lifetime_value", "$add"))
    options = RunOptions(
        concurrency=2, policy=RetryPolicy(attempts=30, base_delay=0, max_delay=0), sleep=lambda s: None
    )
    # Half of all requests are applied and then answered 500: the client must resend them.
    with Sandbox(faults=Faults(ingest_then_500=0.5, seed=11), max_identifications=300) as sandbox:
        config = load_config(write_sync(url, sandbox.url, mappings=mappings))
        report = run(config, home, options)
        assert (report.sent, report.failed) == (3_000, 0)
        lost_answers = [r for r in sandbox.store.requests() if r.get("fault") == "ingest_then_500"]
        assert len(lost_answers) >= 3
        assert {p["user_id"]: p["user_properties"] for p in sandbox.store.profiles()} == expected_profiles(
            3_000
        )

        db = sqlite3.connect(tmp_path / "w.db")
        db.execute("update users set ltv = ltv + 5 where ltv % 3 = 0")
        db.commit()
        db.close()
        report = run(config, home, options)
        assert (report.plan.changed, report.failed) == (1_000, 0)
        expected = {
            k: {**v, "lifetime_value": v["lifetime_value"] + (5 if v["lifetime_value"] % 3 == 0 else 0)}
            for k, v in expected_profiles(3_000).items()
        }
        assert {p["user_id"]: p["user_properties"] for p in sandbox.store.profiles()} == expected
        assert any(r["path"] == "/2/httpapi" for r in sandbox.store.requests())
