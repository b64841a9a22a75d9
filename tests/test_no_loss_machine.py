"""Random edits, lost answers, killed runs and reverts: in the end Amplitude holds the warehouse.

A hypothesis state machine drives one real SQLite warehouse (6 to 12 users, a few events), a user
sync ($set, $setOnce, a running total as $add, $append) and an event sync, against the sandbox on
a loopback port. Its steps edit the warehouse, run a sync while Amplitude loses answers (applied
then 500, 500 before applying, a dropped connection, a timeout), run `python -m amp_sync` in a
subprocess and SIGKILL it mid-run, revert, or run cleanly. At the end, with the failures off, clean
runs go until one sends nothing, and then what Amplitude holds must follow from the warehouse:
https://amplitude.com/docs/apis/analytics/identify for the profile operations and
https://amplitude.com/docs/apis/analytics/http-v2 for insert_id de-duplication.

The sequences are the same on every run (seeded). A failure prints its steps as Python,
with what the warehouse, the faults and each run's counts were; pasted into a test function, as
the last test of this file is, the steps replay without hypothesis.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, currently_in_test_context, event, note, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from amp_sync.amplitude import RetryPolicy
from amp_sync.config import SyncConfig, load_config
from amp_sync.revert import NothingToRevert
from amp_sync.runner import Report, RunOptions, preview, revert, run
from amp_sync.sandbox import INGESTION_PATHS, SANDBOX_API_KEY, Faults, Sandbox

ROOT = Path(__file__).resolve().parents[1]
KEYS = [f"user-{i:02d}" for i in range(12)]
PLANS = st.sampled_from(["free", "pro", "team"]) | st.none()
DATES = st.sampled_from(["2024-01-01", "2024-02-01", "2024-03-01"]) | st.none()
TOTALS = st.integers(0, 50) | st.none()
# A tag is either NULL or a value never written before ("new"): see _check_append for why.
TAGS = st.sampled_from(["new", None])
CHANGES = st.one_of(
    st.tuples(st.just("plan"), PLANS),
    st.tuples(st.just("first_seen"), DATES),
    st.tuples(st.just("ltv"), TOTALS),
    st.tuples(st.just("tag"), TAGS),
)
# Half the runs and reverts are clean; the others lose answers in one of four ways.
FAULTS = st.just("none") | st.sampled_from(["ingest_then_500", "error_500", "drop", "timeout"])
LOST = Faults(ingest_then_500=1.0)  # applied, then answered 500: the answer is lost, not the update
CHANCES = st.sampled_from([1.0, 0.5])
SLOW_SECONDS = 0.4  # a slow answer: applied this long after the request arrived
CLIENT_TIMEOUT = 0.15  # the client gives up on a slow answer long before it comes
DEFAULT_TIMEOUT = RetryPolicy().timeout
KILL_SLOW_SECONDS = 0.3
ABSENT = "<absent>"  # how a property missing from a profile shows in messages
EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

USER_SYNC = "users"
EVENT_SYNC = "events"
MAPPINGS = (("plan", "plan", "$set"), ("first_seen", "first_seen", "$setOnce"),
            ("ltv", "ltv", "$add"), ("tag", "tags", "$append"))  # fmt: skip
USER_SYNC_TEXT = f"""
[model]
name = "users"
sql = "select user_id, plan, first_seen, ltv, tag from users"

[sync]
name = "{USER_SYNC}"
object = "user"
key = "user_id"
""" + "".join(f'\n[[sync.mappings]]\ncolumn = "{c}"\nproperty = "{p}"\nop = "{o}"\n' for c, p, o in MAPPINGS)
EVENT_SYNC_TEXT = f"""
[model]
name = "events"
sql = "select event_id, user_id, name, at, amount from events"

[sync]
name = "{EVENT_SYNC}"
object = "event"
key = "user_id"
event_type_column = "name"
time_column = "at"
insert_id_column = "event_id"

[[sync.mappings]]
column = "amount"
property = "amount"
"""


def sync_file(warehouse: Path, endpoint: str, name: str) -> str:
    """The sync file of the user sync or of the event sync, pointed at the sandbox."""
    head = f"""
[source]
url = "sqlite:///{warehouse}"

[destination]
name = "Sandbox"
api_key = "{SANDBOX_API_KEY}"
region = "us"
endpoint = "{endpoint}"
"""
    return head + (EVENT_SYNC_TEXT if name == EVENT_SYNC else USER_SYNC_TEXT)


def lost_answers(fault: str, chance: float, seed: int, attempts: int) -> tuple[Faults, RunOptions]:
    """The sandbox's faults for one way of losing answers, and the run's options with them."""
    if fault == "none":
        return Faults(), options(attempts)
    if fault != "timeout":
        return Faults(**{fault: chance}, seed=seed), options(attempts)
    # A retry answered at once while the timed-out copy is still on its way lets that copy land
    # after a later update of the same key in the same run (a resend, then the new diff): real
    # networks do that too, and no client can stop it. So an uncertain timeout gets one try.
    tries = attempts if chance == 1.0 else 1
    return Faults(slow=chance, slow_seconds=SLOW_SECONDS, seed=seed), options(tries, CLIENT_TIMEOUT)


def options(attempts: int = 3, timeout: float = DEFAULT_TIMEOUT) -> RunOptions:
    """One sender, so that the sandbox's seeded draws meet the requests in the same order each time."""
    policy = RetryPolicy(attempts=attempts, base_delay=0, max_delay=0, throttle_delay=0, timeout=timeout)
    return RunOptions(concurrency=1, policy=policy, sleep=lambda s: None)


def event_time(minute: int) -> str:
    """An event row's time: text without a time zone, which amp_sync reads as UTC."""
    return (EPOCH + dt.timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%S")


def event_ms(at: str) -> int:
    """The `time` Amplitude must get for an event row's time: milliseconds since the epoch."""
    return int(dt.datetime.fromisoformat(at).replace(tzinfo=dt.UTC).timestamp() * 1000)


def summary_of(data: dict[str, Any]) -> dict[str, Any]:
    """A --json object with only the counts (the contract's outbox counts among them) kept."""
    keep = ("new", "changed", "removed", "sent", "failed", "resent", "in_doubt", "held", "stale")
    return {k: data[k] for k in keep if k in data}


def summary(report: Report) -> dict[str, Any]:
    """What `amp-sync run --json` would print for this report, counts only."""
    return summary_of(report.to_json())


def quiet(data: dict[str, Any]) -> bool:
    """A run that sent, resent and left in doubt nothing."""
    return not any(data.get(k, 0) for k in ("sent", "failed", "resent", "in_doubt", "held", "stale"))


def say(text: str) -> None:
    """note() in a hypothesis run; print() when a printed failing sequence is replayed by hand."""
    if currently_in_test_context():
        note(text)
    else:
        print(text)


def tally(what: str) -> None:
    """Count a kind of step for --hypothesis-show-statistics."""
    if currently_in_test_context():
        event(what)


@seed(20251202)  # the same sequences on every run (and after edits to words only): CI failures reproduce
class NoLossMachine(RuleBasedStateMachine):
    """The warehouse, Amplitude and amp_sync's state, driven step by step."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="amp_sync_machine_"))
        self.home = self.dir / "home"
        self.db_path = self.dir / "warehouse.db"
        self.sandbox = Sandbox().start()
        self.paths = {name: self.dir / f"{name}.toml" for name in (USER_SYNC, EVENT_SYNC)}
        for name, path in self.paths.items():
            path.write_text(sync_file(self.db_path, self.sandbox.url, name))
        self.configs: dict[str, SyncConfig] = {n: load_config(p) for n, p in self.paths.items()}
        self.users: dict[str, dict[str, Any]] = {}  # the warehouse's users table, as this test wrote it
        self.events: dict[str, tuple[str, str, str, int | None]] = {}  # event_id -> user, name, at, amount
        self.first_seen_ever: dict[str, set[str]] = {}  # every non-null first_seen a key ever had
        self.tags_ever: dict[str, set[str]] = {}  # every tag a key ever had
        self.written = 0  # tags and event ids written so far: each new one is unique
        self.completed = False  # False while a step runs: a step that raised skips the final check

    @contextlib.contextmanager
    def _step(self, text: str) -> Iterator[None]:
        """One step, said in words; the final check runs only if every step ran to its end."""
        self.completed = False
        say(f"> {text}")
        yield
        self.completed = True

    # --- the warehouse ------------------------------------------------------------------------

    def _sql(self, statement: str, *params: Any) -> None:
        db = sqlite3.connect(self.db_path)
        try:
            db.execute(statement, params)
            db.commit()
        finally:
            db.close()

    def _fresh(self, prefix: str) -> str:
        self.written += 1
        return f"{prefix}-{self.written:03d}"

    def _insert_user(
        self, key: str, plan: str | None, first_seen: str | None, ltv: int | None, tag: bool
    ) -> None:
        row = {"plan": plan, "first_seen": first_seen, "ltv": ltv, "tag": self._fresh("tag") if tag else None}
        self._sql("insert into users values (?, ?, ?, ?, ?)", key, *row.values())
        self.users[key] = row
        self._remember(key)

    def _remember(self, key: str) -> None:
        row = self.users[key]
        if row["first_seen"] is not None:
            self.first_seen_ever.setdefault(key, set()).add(row["first_seen"])
        if row["tag"] is not None:
            self.tags_ever.setdefault(key, set()).add(row["tag"])

    def _insert_event(self, user: str, name: str, amount: int | None) -> None:
        event_id = self._fresh("evt")
        at = event_time(self.written)
        self._sql("insert into events values (?, ?, ?, ?, ?)", event_id, user, name, at, amount)
        self.events[event_id] = (user, name, at, amount)

    def _say_warehouse(self) -> None:
        users = " ".join(
            f"{k}({r['plan']},{r['first_seen']},{r['ltv']},{r['tag']})" for k, r in sorted(self.users.items())
        )
        say(f"  warehouse users (plan,first_seen,ltv,tag): {users or 'none'}")
        say(f"  warehouse events: {' '.join(sorted(self.events)) or 'none'}")

    @initialize(
        rows=st.lists(st.tuples(PLANS, DATES, TOTALS, st.booleans()), min_size=6, max_size=len(KEYS)),
        events=st.integers(0, 4),
    )
    def fill_warehouse(
        self, rows: list[tuple[str | None, str | None, int | None, bool]], events: int
    ) -> None:
        """Users user-00, user-01, ... with these (plan, first_seen, ltv, has a tag), and some events."""
        with self._step(f"fill the warehouse: {len(rows)} users, {events} events"):
            self._sql("create table users (user_id text, plan text, first_seen text, ltv integer, tag text)")
            self._sql("create table events (event_id text, user_id text, name text, at text, amount integer)")
            for key, (plan, first_seen, ltv, tag) in zip(KEYS, rows, strict=False):
                self._insert_user(key, plan, first_seen, ltv, tag)
            for i in range(events):
                self._insert_event(KEYS[i % len(rows)], "Paid", 10 * (i + 1))
            self._say_warehouse()

    @rule(user=st.sampled_from(KEYS), change=CHANGES)
    def edit(self, user: str, change: tuple[str, Any]) -> None:
        """Set one column of one user; a user not in the warehouse is added first, with NULLs."""
        column, value = change
        with self._step(f"edit {user}.{column} = {value!r}"):
            if user not in self.users:
                say(f"  {user} was not in the warehouse: added, with NULLs")
                self._insert_user(user, None, None, None, False)
            if column == "tag" and value is not None:
                value = self._fresh("tag")
            self._sql(f"update users set {column} = ? where user_id = ?", value, user)  # column: CHANGES
            self.users[user][column] = value
            self._remember(user)
            self._say_warehouse()

    @rule(user=st.sampled_from(KEYS))
    def remove_user(self, user: str) -> None:
        with self._step(f"remove {user}"):
            if self.users.pop(user, None) is not None:
                self._sql("delete from users where user_id = ?", user)
            self._say_warehouse()

    @rule(user=st.sampled_from(KEYS), name=st.sampled_from(["Paid", "Refunded"]), amount=TOTALS)
    def add_event(self, user: str, name: str, amount: int | None) -> None:
        with self._step(f"add event {name} of {user}, amount {amount}"):
            self._insert_event(user, name, amount)
            self._say_warehouse()

    @rule(which=st.integers(0, 20))
    def remove_event(self, which: int) -> None:
        """Remove the event row at `which` (modulo their number), if there is any."""
        with self._step(f"remove event #{which}"):
            if self.events:
                event_id = sorted(self.events)[which % len(self.events)]
                self._sql("delete from events where event_id = ?", event_id)
                del self.events[event_id]
            self._say_warehouse()

    # --- runs and reverts in this process -----------------------------------------------------

    def _settle(self, faults: Faults) -> None:
        """Wait until a slow answer given up on has been applied: the sandbox's log stops growing.

        A request the client gave up on (timeout, killed process) is still applied once its slow
        answer is due. Each step waits for that, so that an old request never lands in the middle
        of a later step: Amplitude reordering requests across runs is not what this test is about.
        """
        if not faults.slow:
            return
        window = faults.slow_seconds + 0.15
        seen, since = len(self.sandbox.store.requests()), time.monotonic()
        while time.monotonic() - since < window:
            time.sleep(0.02)  # polling the sandbox's handler threads, not our own work
            now = len(self.sandbox.store.requests())
            if now != seen:
                seen, since = now, time.monotonic()

    @rule(fault=FAULTS, chance=CHANCES, attempts=st.integers(1, 2), seed=st.integers(0, 3))
    def run_syncs(self, fault: str, chance: float, attempts: int, seed: int) -> None:
        """Run the user sync, then the event sync, in this process; `chance` of requests meet the fault."""
        faults, how = lost_answers(fault, chance, seed, attempts)
        with self._step(
            f"run both syncs, {how.policy.attempts} tries per request, faults: {faults.describe()}"
        ):
            for sync in (USER_SYNC, EVENT_SYNC):
                self.sandbox.set_faults(faults)  # each sync meets the same draws
                try:
                    report = run(self.configs[sync], self.home, how)
                finally:
                    self.sandbox.set_faults(Faults())
                    self._settle(faults)
                say(f"  {sync}: {summary(report)}")

    @rule(fault=FAULTS, chance=CHANCES, attempts=st.integers(1, 2), times=st.integers(1, 2))
    def revert_last_run(self, fault: str, chance: float, attempts: int, times: int) -> None:
        """Revert the last run that changed anything; a second time, the revert itself is undone."""
        faults, how = lost_answers(fault, chance, 0, attempts)
        tries = how.policy.attempts
        with self._step(
            f"revert {USER_SYNC} {times}x, {tries} tries per request, faults: {faults.describe()}"
        ):
            self.sandbox.set_faults(faults)
            try:
                for _ in range(times):
                    say(f"  {summary(revert(self.configs[USER_SYNC], self.home, how))}")
                    self._settle(faults)  # the first revert's late answers land before the second
            except NothingToRevert as exc:
                say(f"  {exc}")
                tally("revert: nothing to revert")
            finally:
                self.sandbox.set_faults(Faults())

    # --- `amp-sync` in a subprocess, killed mid-run -------------------------------------------

    def _answers(self) -> int:
        return sum(1 for r in self.sandbox.store.requests() if r["path"] in INGESTION_PATHS)

    def _cli(self, *args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "AMP_SYNC_HOME": str(self.home)}
        return subprocess.Popen(
            [sys.executable, "-m", "amp_sync", *args], cwd=ROOT, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    @rule(
        command=st.sampled_from(["run users", "run events", "revert users"]),
        answers=st.sampled_from(["lost", "slow"]), after=st.integers(1, 4), wait_ms=st.sampled_from([150, 0]),
        concurrency=st.integers(1, 2),
    )  # fmt: skip
    def kill_cli(self, command: str, answers: str, after: int, wait_ms: int, concurrency: int) -> None:
        """SIGKILL `amp-sync` `wait_ms` after the sandbox's `after`-th answer.

        "lost": every request is applied and answered 500; the process is in its retry wait (with
        --attempts 2 it gives up after its second 500 on a batch, leaving its items in doubt).
        "slow": every answer is OK and comes 0.3 s late; 150 ms after an answer the process is in
        its next request, which the sandbox applies after the process died; killed at once, it is
        between an acknowledgement and its commit. That kill races the commit (either outcome must
        end well), so a failure that needs it may not replay: hypothesis then calls the test flaky.
        The choices are listed deterministic first, as the shrinker prefers the first ones.
        """
        verb, sync = command.split()
        faults = Faults(slow=1.0, slow_seconds=KILL_SLOW_SECONDS) if answers == "slow" else LOST
        with self._step(
            f"amp-sync {command} --concurrency {concurrency}, faults: {faults.describe()}; "
            f"SIGKILL {wait_ms} ms after answer {after}"
        ):
            self.sandbox.set_faults(faults)
            start = self._answers()
            args = ("--json", "--concurrency", str(concurrency), "--attempts", "2")
            proc = self._cli(verb, str(self.paths[sync]), *args)
            try:
                killed = self._kill_after(proc, start + after, wait_ms / 1000)
                out, err = proc.communicate(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                self.sandbox.set_faults(Faults())
                self._settle(faults)
            say(f"  {self._answers() - start} requests answered; {'killed' if killed else 'it ended first'}")
            tally(f"amp-sync {command} under {answers} answers: {'killed' if killed else 'ended first'}")
            if not killed:
                self._ended(verb, proc.returncode, out, err)

    def _kill_after(self, proc: subprocess.Popen[str], answers: int, wait: float) -> bool:
        """SIGKILL the process `wait` s after the sandbox's log reaches `answers`; False if it ended first."""
        deadline = time.monotonic() + 60
        while self._answers() < answers:
            if proc.poll() is not None:
                return False
            assert time.monotonic() < deadline, "amp-sync neither sent nor ended in 60 s"
            time.sleep(0.002)  # polling another process: the kill must come right after the answer
        if wait:
            time.sleep(wait)  # let it go on into its next request or its retry wait
        if proc.poll() is not None:
            return False
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        return True

    def _ended(self, verb: str, status: int, out: str, err: str) -> None:
        """A process that ended before its kill: one JSON object, and the exit status it implies.

        0 when everything was delivered; 1 when something was not, is in doubt, held or stale.
        """
        if verb == "revert" and status == 2 and "nothing to revert" in err:
            say("  nothing to revert")
            return
        data = json.loads(out)
        say(f"  exit {status}: {summary_of(data)}")
        unsettled = any(data.get(k, 0) for k in ("failed", "in_doubt", "held", "stale"))
        assert status == (1 if unsettled else 0), f"amp-sync {verb} exited {status} after {data}: {err}"

    # --- the end: no faults, clean runs, then Amplitude must hold the warehouse ---------------

    def teardown(self) -> None:
        """The final check (unless a step failed), then the sandbox and the folder go."""
        try:
            if self.completed:
                self._converge()
                self._check_events()
                for key, row in sorted(self.users.items()):
                    profile = self.sandbox.store.profile(user_id=key)
                    props = profile["user_properties"] if profile else {}
                    self._check_append(key, row, props)
                    self._check_set_once(key, row, props)
                    self._check_set(key, row, props)
                    self._check_add(key, row, props)
        finally:
            self.sandbox.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _converge(self) -> None:
        """Clean runs of each sync until one sends nothing (at most 3), then a preview plans nothing."""
        self.sandbox.set_faults(Faults())
        self._say_warehouse()
        for sync in (USER_SYNC, EVENT_SYNC):
            runs = []
            for _ in range(3):
                runs.append(summary(run(self.configs[sync], self.home, options())))
                if quiet(runs[-1]):
                    break
            say(f"final clean runs of {sync}: {runs}")
            tally(f"final clean runs of {sync}: {len(runs)}")
            assert quiet(runs[-1]), f"{sync}: 3 clean runs and still sending: {runs}"
            planned = preview(self.configs[sync], self.home).to_json()
            outstanding = {k: planned.get(k, 0) for k in ("new", "changed", "in_doubt", "held", "stale")}
            assert not any(outstanding.values()), f"{sync}: the preview after clean runs plans {outstanding}"
        profiles = {p["user_id"]: p["user_properties"] for p in self.sandbox.store.profiles()}
        say(f"Amplitude's profiles: {profiles}")

    def _check_events(self) -> None:
        """Every event row of the warehouse arrived exactly once, as it is; none arrived twice."""
        arrived = self.sandbox.store.events()
        twice = [i for i, n in Counter(e.get("insert_id") for e in arrived).items() if n > 1]
        assert not twice, f"insert_ids that arrived twice: {twice}"
        found = {e["insert_id"]: e for e in arrived if not e["event_type"].startswith("$")}
        for event_id, (user, name, at, amount) in sorted(self.events.items()):
            one = found.get(event_id)
            assert one is not None, f"event {event_id} of the warehouse never arrived"
            got = (one.get("user_id"), one["event_type"], one["time"], one.get("event_properties"))
            want = (user, name, event_ms(at), None if amount is None else {"amount": amount})
            assert got == want, f"event {event_id} arrived as {got}, the warehouse has {want}"

    def _check_append(self, key: str, row: dict[str, Any], props: dict[str, Any]) -> None:
        """$append: the list ends with the current tag, and no delivery of a tag is in it twice.

        Every tag the warehouse ever holds is written once (a fresh value, never reused, even by
        another key), and the only thing that appends to the list is a delivery of the key's tag at
        that moment. So each element names one warehouse write, and an element found twice is one
        update applied twice: a resend that Amplitude did not recognise as a resend. (A revert
        takes a tag out with $remove, and the next run appends it again: still once.)
        """
        tags, now = props.get("tags", ABSENT), row["tag"]
        if tags == ABSENT and now is None:
            return
        doubled = [t for t, n in Counter(tags).items() if n > 1] if isinstance(tags, list) else []
        foreign = set(tags) - self.tags_ever.get(key, set()) if isinstance(tags, list) else set()
        last = tags[-1] if isinstance(tags, list) and tags else ABSENT
        assert isinstance(tags, list) and not doubled and not foreign and (now is None or last == now), (
            f"{key}: Amplitude's tags are {tags!r} (appended twice: {doubled}, never in the warehouse: "
            f"{sorted(foreign)}); the warehouse's tag is {now!r}"
        )

    def _check_set_once(self, key: str, row: dict[str, Any], props: dict[str, Any]) -> None:
        """$setOnce: a value the key had at some point; present whenever the warehouse has one now.

        A NULL may or may not clear it (the contract does not say): when the warehouse holds NULL
        now, Amplitude may hold nothing or an earlier value.
        """
        got, ever, now = (
            props.get("first_seen", ABSENT),
            self.first_seen_ever.get(key, set()),
            row["first_seen"],
        )
        assert got in ever or (got == ABSENT and now is None), (
            f"{key}: Amplitude's first_seen is {got!r}; the warehouse had {sorted(ever)} and has {now!r}"
        )

    def _check_set(self, key: str, row: dict[str, Any], props: dict[str, Any]) -> None:
        """$set: exactly the warehouse's value; NULL is no property."""
        want = ABSENT if row["plan"] is None else row["plan"]
        got = props.get("plan", ABSENT)
        assert got == want, f"{key}: Amplitude's plan is {got!r}, the warehouse's {want!r}"

    def _check_add(self, key: str, row: dict[str, Any], props: dict[str, Any]) -> None:
        """$add of a running total: Amplitude's total is the column's; NULL is no property."""
        want = ABSENT if row["ltv"] is None else row["ltv"]
        got = props.get("ltv", ABSENT)
        assert got == want, f"{key}: Amplitude's ltv is {got!r}, the warehouse's {want!r}"


NoLossMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=10,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestNoLossMachine = NoLossMachine.TestCase


def test_undoing_a_revert_appends_the_reverted_list_value_again() -> None:
    """A sequence the machine rarely draws, replayed as printed: revert a change, then the revert.

    The revert takes the new tag out of the $append list; reverting that revert must put it
    back, or Amplitude never holds the tag that amp_sync's state says it delivered.
    """
    state = NoLossMachine()
    try:
        state.fill_warehouse(rows=[("pro", None, 5, True)] * 6, events=0)
        state.run_syncs(fault="none", chance=1.0, attempts=1, seed=0)
        state.edit(user="user-00", change=("tag", "new"))
        state.run_syncs(fault="none", chance=1.0, attempts=1, seed=0)
        state.revert_last_run(fault="none", chance=1.0, attempts=1, times=2)
    finally:
        state.teardown()  # the final check, if every step ran to its end
