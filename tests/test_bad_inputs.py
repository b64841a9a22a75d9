"""A catalogue of bad inputs, each with the exact words the user reads in the CLI and in the app.

Every case goes through `amp-sync` (exit status, the line on stdout or stderr, never a traceback)
and through the page where the same problem shows up (an error, a warning or the table of
rejected rows; never an exception). Rows of odd kinds share one dirty model, read once by each
shell; every other case sets up its own sync.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from support import AppEnv, too_deep
from support import Warehouse as Database

from amp_sync.cli import main
from amp_sync.config import Destination, Mapping_, Region, SyncObject
from amp_sync.sandbox import SANDBOX_API_KEY, Sandbox, SandboxStore
from amp_sync.secret import Secret
from amp_sync.workspace import SavedModel, SavedSync, Warehouse, Workspace

ROOT = Path(__file__).resolve().parents[1]
SYNC, DESTINATION, WAREHOUSE, MODEL = "bad-inputs", "Target", "Test warehouse", "people"
USERS = "select user_id, plan from users"
WRONG_KEY = "not-a-project-key-0123"  # the sandbox knows only its own key


# --- one sync, written as a file for the CLI and saved in the workspace for the app -----------


@dataclass(frozen=True)
class Spec:
    """Everything a sync names: the same spec drives the CLI and the app."""

    url: str
    endpoint: str
    sql: str = USERS
    key: str = "user_id"
    mappings: tuple[str, ...] = ("plan",)
    api_key: str = SANDBOX_API_KEY
    region: str = "us"

    def toml(self) -> str:
        maps = "".join(f'\n[[sync.mappings]]\ncolumn = "{c}"\nproperty = "{c}"\n' for c in self.mappings)
        return f'''[source]
url = "{self.url}"

[destination]
name = "{DESTINATION}"
api_key = "{self.api_key}"
region = "{self.region}"
endpoint = "{self.endpoint}"

[model]
name = "{MODEL}"
sql = """{self.sql}"""

[sync]
name = "{SYNC}"
object = "user"
behavior = "update_or_create"
key = "{self.key}"
{maps}'''

    def write(self, folder: Path) -> str:
        path = folder / "sync.toml"
        path.write_text(self.toml(), encoding="utf-8")
        return str(path)

    def save(self, home: Path) -> None:
        ws = Workspace(home)
        region = Region(self.region)
        ws.save(Destination(DESTINATION, Secret(self.api_key), None, region, self.endpoint), DESTINATION)
        ws.save(Warehouse(WAREHOUSE, Secret(self.url)), WAREHOUSE)
        ws.save(SavedModel(MODEL, WAREHOUSE, self.sql), MODEL)
        mappings = tuple(Mapping_(c, c) for c in self.mappings)
        ws.save(SavedSync(SYNC, MODEL, DESTINATION, SyncObject.USER, self.key, mappings), SYNC)


def cli(*args: str) -> tuple[int, str, str]:
    """Run `amp-sync` in this process: exit status, stdout, stderr; never a traceback."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    assert "Traceback" not in out.getvalue() + err.getvalue()
    return code, out.getvalue(), err.getvalue()


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, at.exception
    return at


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def table(at: AppTest, *columns: str) -> pd.DataFrame:
    found = [df.value for df in at.dataframe if set(columns) <= set(df.value.columns)]
    assert len(found) == 1, f"{len(found)} tables with columns {columns}"
    return found[0]


def make_users(db: Database) -> None:
    db.execute("create table users (user_id text, plan text)")
    db.execute(
        "insert into users values (:u, :p)",
        rows=[{"u": "user_00001", "p": "pro"}, {"u": "user_00002", "p": "free"}],
    )


def user_count(db: Database) -> int:
    with contextlib.closing(sqlite3.connect(db.url.removeprefix("sqlite:///"))) as con:
        return int(con.execute("select count(*) from users").fetchone()[0])


# --- 1. models that cannot be read -------------------------------------------------------------

MISSING_FILE = f"sqlite:///{Path('no/such/warehouse.db').resolve()}"  # the same file for the CLI and app
EXAMPLES = (
    "Examples: duckdb:///warehouse.duckdb, sqlite:///data.db, postgresql+psycopg://user:password@host/db"
)
BAD_MODELS = [
    pytest.param(
        "select user_id, plan form users", None,
        "amp_sync cannot parse the model as sqlite SQL (Unexpected token at line 1, column 31, near "
        "'users'), so it will not run it: a model must be one query it can check", id="syntax-error",
    ),
    pytest.param(
        "select user_id, plan from users where", None,
        "amp_sync cannot parse the model as sqlite SQL (Required keyword: 'this' missing for Where at "
        "line 1, column 37, near 'where'), so it will not run it: a model must be one query it can check",
        id="sql-cut-short",
    ),
    pytest.param(
        "delete from users", None,
        "the model must be a SELECT or WITH query, not DELETE: models only read", id="dml-delete",
    ),
    pytest.param(
        "update users set plan = 'free'", None,
        "the model must be a SELECT or WITH query, not UPDATE: models only read", id="dml-update",
    ),
    pytest.param(
        "insert into users values ('user_00003', 'pro')", None,
        "the model must be a SELECT or WITH query, not INSERT: models only read", id="dml-insert",
    ),
    pytest.param(
        "with gone as (delete from users returning *) select * from gone", None,
        "the model contains DELETE, which can change data or settings: models only read",
        id="dml-inside-with",
    ),
    pytest.param(
        "drop table users", None,
        "the model must be a SELECT or WITH query, not DROP: models only read", id="ddl-drop",
    ),
    pytest.param(
        "create table copy as select * from users", None,
        "the model must be a SELECT or WITH query, not CREATE: models only read", id="ddl-create",
    ),
    pytest.param(
        "select user_id, plan from users; delete from users", None,
        "the model has 2 statements: a model is exactly one query (SELECT or WITH)", id="several-statements",
    ),
    pytest.param(
        "select user_id, plan from no_such_table", None,
        "the warehouse refused the model: no such table: no_such_table", id="unknown-table",
    ),
    pytest.param(
        "-- the model is still to write", None,
        "the model is empty: write one SELECT statement", id="only-a-comment",
    ),
    pytest.param(
        USERS, MISSING_FILE,
        f"there is no sqlite file at {Path('no/such/warehouse.db').resolve()}: check the path "
        "(three slashes then a relative path, four for an absolute one)",
        id="missing-warehouse-file",
    ),
    pytest.param(
        USERS, "nosuchdb://warehouse",
        "cannot use the warehouse URL nosuchdb://warehouse: Can't load plugin: "
        f"sqlalchemy.dialects:nosuchdb. {EXAMPLES}",
        id="unknown-driver",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "url", "message"), BAD_MODELS)
def test_a_model_that_cannot_be_read_is_refused_in_words(
    app_env: AppEnv, sqlite_warehouse: Database, tmp_path: Path, sql: str, url: str | None, message: str
) -> None:
    make_users(sqlite_warehouse)
    spec = Spec(url or sqlite_warehouse.url, app_env.sandbox.url, sql=sql)

    assert cli("run", spec.write(tmp_path)) == (2, "", f"amp-sync: {message}\n")

    spec.save(app_env.home)
    at = click(open_page("preview"), "preview_button")
    assert errors(at) == [message]
    assert not at.metric
    at.switch_page("app_pages/models.py").run()
    at.selectbox(key="model_pick").select(MODEL).run()  # loads the SQL into the editor and runs it
    assert not at.exception
    assert errors(at) == [message]
    assert not at.dataframe

    assert user_count(sqlite_warehouse) == 2  # nothing was written, by either shell
    assert app_env.sandbox.store.requests() == []


# --- 2. models that read, but not what a sync needs ------------------------------------------


def test_a_model_without_the_key_column_names_what_it_returns(
    app_env: AppEnv, sqlite_warehouse: Database, tmp_path: Path
) -> None:
    make_users(sqlite_warehouse)
    spec = Spec(sqlite_warehouse.url, app_env.sandbox.url, sql="select user_id as id, plan from users")
    problem = "the model does not return the column 'user_id' (it returns: id, plan)"

    listed = f"amp-sync: the sync file has problems:\n  - {problem}\n"
    assert cli("run", spec.write(tmp_path)) == (2, "", listed)

    spec.save(app_env.home)
    at = click(open_page("preview"), "preview_button")
    assert errors(at) == [problem]
    assert app_env.sandbox.store.requests() == []


def test_an_empty_result_says_so_with_zero_counts(
    app_env: AppEnv, sqlite_warehouse: Database, tmp_path: Path
) -> None:
    make_users(sqlite_warehouse)
    spec = Spec(sqlite_warehouse.url, app_env.sandbox.url, sql=f"{USERS} where plan = 'enterprise'")
    path = spec.write(tmp_path)

    code, out, err = cli("preview", path)
    lines = out.splitlines()
    assert (code, err, len(lines)) == (0, "", 3)
    assert lines[0].startswith(f"{SYNC}: 0 rows read in ")
    assert lines[1:] == [
        "  new 0  changed 0  unchanged 0  removed 0  rejected 0",
        "  would send 0 rows; nothing was sent",
    ]
    code, out, err = cli("run", path)
    assert (code, err, out.splitlines()[-1]) == (0, "", "  sent 0 rows in 0 requests; failed 0")

    spec.save(app_env.home)
    at = click(open_page("preview"), "preview_button")
    assert {m.label: m.value for m in at.metric} == {
        "New": "0", "Changed": "0", "Unchanged": "0", "Removed": "0", "Rejected": "0",
    }  # fmt: skip
    assert [w.value for w in at.warning] == [
        "The model returned no rows, so there is nothing to send. If that is unexpected, check its "
        "SQL (a WHERE clause that matches nothing?) on the Models page."
    ]
    assert "No field changes: the model returned no rows." in [c.value for c in at.caption]
    assert at.button(key="start_sync").label == "Start sync (nothing to send)"
    assert at.button(key="start_sync").disabled
    assert app_env.sandbox.store.requests() == []


# --- 3. rows of every odd kind, in one dirty model --------------------------------------------

NOT_SET = object()  # the property is absent from the profile


@dataclass(frozen=True)
class Row:
    """One row of the dirty model: its id, the one odd value it carries, and what must happen to it."""

    case: str
    key: str | None = None  # user_id; None means the default, user_<case>
    column: str = "name"  # the column holding the odd value (name holds the case's name otherwise)
    value: str = ""  # that value as a DuckDB literal
    reason: str | None = None  # why the row is rejected, word for word
    stored: Any = NOT_SET  # what Amplitude keeps for `column` when the row is accepted
    times: int = 1  # how many rows carry this key
    null_key: bool = False

    @property
    def user_id(self) -> str | None:
        if self.null_key:
            return None
        return self.key if self.key is not None else "user_" + self.case.replace(" ", "_")

    @property
    def properties(self) -> dict[str, Any]:
        """The profile Amplitude should hold for an accepted row."""
        kept = {} if self.stored is NOT_SET or self.column == "name" else {self.column: self.stored}
        return {"name": self.case, **kept}

    def cli_line(self) -> str:
        # The terminal shows blank keys quoted and cuts long ones, so every line stays readable.
        from amp_sync.cli import _shown_key

        return f"    {_shown_key(self.user_id or '')}: {self.reason}"

    def page_row(self) -> tuple[str, str | None]:
        return (self.user_id or "(missing)", self.reason)


def placeholder(key: str) -> Row:
    return Row(
        f"placeholder {key}", key, reason=f"user id {key!r} is a placeholder id that Amplitude refuses"
    )


REJECTED = [
    Row("null id", null_key=True, reason="missing user id"),
    Row("empty id", "", reason="user id '' is a placeholder id that Amplitude refuses"),
    Row("blank id", "     ", reason="user id '     ' is a placeholder id that Amplitude refuses"),
    Row("short id", "abc", reason="user id 'abc' is shorter than 5 characters"),
    *(placeholder(k) for k in ("null", "NULL", "undefined", "anonymous", "0", "-1", "n/a")),
    placeholder("00000000-0000-0000-0000-000000000000"),
    Row("duplicate id", "user_dup01", times=2,
        reason="user id appears 2 times in the model; none of its rows is sent"),
    Row("over-long id", "u" * 1025, reason="the user id is longer than 1,024 characters"),
    Row("infinity", column="ratio", value="'inf'::double",
        reason="ratio: an infinite number has no JSON form"),
    Row("bytes not UTF-8", column="raw", value="'\\xFF\\xFE\\x00'::blob",
        reason="raw: a binary value is not UTF-8 text and has no faithful string form"),
    Row("2 KB text", column="bio", value="repeat('x', 2048)",
        reason="bio: a text value is 2,048 characters long; Amplitude keeps only 1,024"),
    Row("2 KB text inside JSON", column="attrs", value="json_object('note', repeat('y', 2000))",
        reason="attrs: a text value is 2,000 characters long; Amplitude keeps only 1,024"),
    Row("JSON 400 deep", column="attrs", value="(repeat('[', 400) || repeat(']', 400))::json",
        reason="attrs: " + too_deep(400)),
]  # fmt: skip
ACCEPTED = [
    Row("decimal", column="amount", value="19.99", stored=19.99),
    Row("huge whole decimal", column="big", value="123456789012345678901234567890",
        stored=123456789012345678901234567890),
    Row("NaN", column="ratio", value="'nan'::double"),  # not set, as a null would be
    Row("bytes in UTF-8", column="raw", value="encode('héllo wörld')", stored="héllo wörld"),
    Row("JSON object", column="attrs", value="""'{"plan": {"tier": "pro", "seats": [1, 2]}}'""",
        stored={"plan": {"tier": "pro", "seats": [1, 2]}}),
    Row("JSON array", column="attrs", value="""'[1, "two", {"three": 3}]'""",
        stored=[1, "two", {"three": 3}]),
    Row("list", column="tags", value="['trial', 'beta']", stored=["trial", "beta"]),
    Row("struct", column="point", value="{'x': 1, 'y': 2}", stored={"x": 1, "y": 2}),
    Row("naive datetime", column="seen_at", value="timestamp '2024-01-02 03:04:05.250'",
        stored="2024-01-02T03:04:05.250000Z"),
    Row("aware datetime", column="paid_at", value="timestamptz '2024-01-02 03:04:05+02:00'",
        stored="2024-01-02T01:04:05Z"),
    Row("1 KB text", column="bio", value="repeat('x', 1024)", stored="x" * 1024),
    Row("emoji", column="bio", value="'Zoë 🚀 👩‍👩‍👧 ok'", stored="Zoë 🚀 👩‍👩‍👧 ok"),
    Row("emoji id", "user_🚀🚀"),
]  # fmt: skip
DIRTY_COLUMNS = (
    "user_id varchar, name varchar, amount decimal(18, 2), big decimal(38, 0), ratio double, "
    "raw blob, attrs json, tags varchar[], point struct(x integer, y integer), seen_at timestamp, "
    "paid_at timestamptz, bio varchar"
)
MAPPED = ("name", "amount", "big", "ratio", "raw", "attrs", "tags", "point", "seen_at", "paid_at", "bio")
ROWS_READ = sum(r.times for r in REJECTED + ACCEPTED)


@pytest.fixture(scope="module")
def dirty_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A DuckDB warehouse whose table holds one row per case (two for the duplicate)."""
    path = tmp_path_factory.mktemp("dirty") / "dirty.duckdb"
    with contextlib.closing(duckdb.connect(str(path))) as con:
        con.execute(f"create table people ({DIRTY_COLUMNS})")
        for row in REJECTED + ACCEPTED:
            columns = "user_id, name" + ("" if row.column == "name" else f", {row.column}")
            value = "" if row.column == "name" else f", {row.value}"
            for _ in range(row.times):
                con.execute(f"insert into people ({columns}) values (?, ?{value})", [row.user_id, row.case])
    return f"duckdb:///{path}"


def dirty_spec(url: str, endpoint: str) -> Spec:
    return Spec(url, endpoint, sql=f"select user_id, {', '.join(MAPPED)} from people", mappings=MAPPED)


@dataclass
class CliOutcome:
    preview: tuple[int, str, str]
    run: tuple[int, str, str]
    store: SandboxStore


@dataclass
class PageOutcome:
    metrics: dict[str, str]
    rejections: list[tuple[str, str]]
    payloads: dict[str, dict[str, Any]]
    sent: dict[str, str]
    store: SandboxStore


@pytest.fixture(scope="module")
def dirty_cli(dirty_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliOutcome]:
    """`amp-sync preview`, then `amp-sync run --json`, of the dirty model into a sandbox of its own."""
    folder = tmp_path_factory.mktemp("dirty_cli")
    with Sandbox() as sandbox, pytest.MonkeyPatch.context() as env:
        env.setenv("AMP_SYNC_HOME", str(folder / "home"))
        path = dirty_spec(dirty_url, sandbox.url).write(folder)
        yield CliOutcome(cli("preview", path), cli("run", "--json", path), sandbox.store)


@pytest.fixture(scope="module")
def dirty_page(
    dirty_url: str, demo_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PageOutcome]:
    """The Preview page on the dirty model: counts, rejections, every payload; then Start sync."""
    home = tmp_path_factory.mktemp("dirty_page") / "home"
    with Sandbox() as sandbox, pytest.MonkeyPatch.context() as env:
        env.setenv("AMP_SYNC_HOME", str(home))
        env.setenv("AMP_SYNC_SANDBOX_URL", sandbox.url)
        env.setenv("AMP_SYNC_DEMO_PATH", str(demo_db))
        dirty_spec(dirty_url, sandbox.url).save(home)
        at = click(open_page("preview"), "preview_button")
        metrics = {m.label: m.value for m in at.metric}
        rejected = table(at, "Key", "Reason")
        payloads = {}
        for key in at.selectbox(key="preview_payload_key").options:
            at.selectbox(key="preview_payload_key").select(key).run()
            payloads[key] = json.loads(at.code[0].value)
        click(at, "start_sync")
        sent = {m.label: m.value for m in at.metric}
        rows = list(zip(rejected["Key"], rejected["Reason"], strict=True))
        yield PageOutcome(metrics, rows, payloads, sent, sandbox.store)


@pytest.mark.parametrize("row", REJECTED, ids=lambda r: r.case)
def test_a_row_amplitude_cannot_take_is_listed_with_its_reason_and_never_sent(
    dirty_cli: CliOutcome, dirty_page: PageOutcome, row: Row
) -> None:
    code, out, err = dirty_cli.preview
    assert (code, err) == (0, "")
    assert out.splitlines().count(row.cli_line()) == row.times
    in_json = json.loads(dirty_cli.run[1])["rejections"]
    assert in_json.count({"key": row.user_id or "", "reason": row.reason}) == row.times
    assert dirty_page.rejections.count(row.page_row()) == row.times
    for store in (dirty_cli.store, dirty_page.store):
        assert row.user_id is None or store.profile(user_id=row.user_id) is None


@pytest.mark.parametrize("row", ACCEPTED, ids=lambda r: r.case)
def test_an_odd_value_arrives_as_faithful_json(
    dirty_cli: CliOutcome, dirty_page: PageOutcome, row: Row
) -> None:
    key = str(row.user_id)
    assert dirty_page.payloads[key] == {"user_id": key, "user_properties": {"$set": row.properties}}
    for store in (dirty_cli.store, dirty_page.store):
        profile = store.profile(user_id=key)
        assert profile is not None and profile["user_properties"] == row.properties


def test_the_dirty_model_loses_no_row(dirty_cli: CliOutcome, dirty_page: PageOutcome) -> None:
    rejected = ROWS_READ - len(ACCEPTED)
    code, out, _ = dirty_cli.preview
    assert out.splitlines()[1:4] == [
        f"  new {len(ACCEPTED)}  changed 0  unchanged 0  removed 0  rejected {rejected}",
        f"  would send {len(ACCEPTED)} rows; nothing was sent",
        f"  rejected rows ({rejected}), never sent:",
    ]
    assert out.startswith(f"{SYNC}: {ROWS_READ} rows read in ") and "... and" not in out
    code, out, err = dirty_cli.run
    report = json.loads(out)
    assert (code, err) == (0, "")
    assert (report["sent"], report["failed"], report["rejected"]) == (len(ACCEPTED), 0, rejected)
    assert dirty_page.metrics == {
        "New": str(len(ACCEPTED)), "Changed": "0", "Unchanged": "0", "Removed": "0",
        "Rejected": str(rejected),
    }  # fmt: skip
    assert (dirty_page.sent["Sent"], dirty_page.sent["Failed"]) == (str(len(ACCEPTED)), "0")
    assert sorted(dirty_page.payloads) == sorted(str(r.user_id) for r in ACCEPTED)
    for store in (dirty_cli.store, dirty_page.store):
        assert len(store.profiles()) == len(ACCEPTED)


# --- 3b. a value nested far deeper than Amplitude keeps ------------------------------------

DEEP_VALUES = [
    pytest.param(
        "(repeat('[', 400) || repeat(']', 400))::json", """'{"tier": "gold"}'::json""", {"tier": "gold"},
        "attrs: " + too_deep(400),
        id="json-400-deep",  # decoded into nested lists by the driver, as deep as the text goes
    ),
    pytest.param(
        "[" * 41 + "1" + "]" * 41, "NULL", NOT_SET, "attrs: " + too_deep(41),
        id="list-41-deep",  # a DuckDB LIST of LISTs arrives as nested Python lists
    ),
    pytest.param(
        "(repeat('[', 5000) || repeat(']', 5000))::json", "NULL", NOT_SET,
        "attrs: the JSON value nests too deep to read (over 900 levels); Amplitude keeps at most 40",
        id="json-5000-deep",  # deeper than Python's json module decodes
    ),
    pytest.param(
        "(repeat('[', 40) || '1' || repeat(']', 40))::json",
        "(repeat('[', 39) || '1' || repeat(']', 39))::json",
        json.loads("[" * 39 + "1" + "]" * 39), "attrs: " + too_deep(40),
        # 39 levels inside the properties object are Amplitude's 40 layers: the sandbox, which
        # checks on its own, keeps them.
        id="list-40-deep-refused-39-deep-kept",
    ),
    pytest.param(
        "(select json_group_object('key_' || i, i) from range(2000) t(i))", "NULL", NOT_SET,
        "attrs: an object in the value has 2,000 keys; Amplitude keeps at most 1,024",
        id="json-object-of-2000-keys",
    ),
    pytest.param(
        "(select json_group_array(repeat('x', 1000)) from range(1000) t(i))", "NULL", NOT_SET,
        "attrs: the value is 1,003,001 bytes of JSON; one Amplitude request carries at most 1,000,000",
        id="json-of-1-MB",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("deep", "ordinary", "stored", "reason"), DEEP_VALUES)
def test_a_value_amplitude_cannot_hold_is_one_rejected_row_and_the_others_are_sent(
    app_env: AppEnv, tmp_path: Path, deep: str, ordinary: str, stored: Any, reason: str
) -> None:
    path = tmp_path / "deep.duckdb"
    with contextlib.closing(duckdb.connect(str(path))) as con:
        con.execute(
            f"create table users as select 'user_00001' as user_id, 'pro' as plan, {deep} as attrs "
            f"union all select 'user_00002', 'free', {ordinary}"
        )
    sql = "select user_id, plan, attrs from users order by user_id"
    file = Spec(f"duckdb:///{path}", app_env.sandbox.url, sql=sql, mappings=("plan", "attrs")).write(tmp_path)
    rejected = f"    user_00001: {reason}"

    code, out, err = cli("preview", file)
    assert (code, err) == (0, "")
    assert out.splitlines()[1:5] == [
        "  new 1  changed 0  unchanged 0  removed 0  rejected 1",
        "  would send 1 rows; nothing was sent",
        "  rejected rows (1), never sent:",
        rejected,
    ]
    code, out, err = cli("preview", "--json", file)
    assert (code, err) == (0, "")
    assert json.loads(out)["rejections"] == [{"key": "user_00001", "reason": reason}]
    assert app_env.sandbox.store.requests() == []

    code, out, err = cli("run", file)
    assert (code, err) == (0, "")
    assert "  sent 1 rows in 1 requests; failed 0" in out.splitlines()
    assert rejected in out.splitlines()
    kept = {"plan": "free"} if stored is NOT_SET else {"plan": "free", "attrs": stored}
    assert app_env.sandbox.store.profile(user_id="user_00002")["user_properties"] == kept
    assert app_env.sandbox.store.profile(user_id="user_00001") is None

    code, out, err = cli("run", "--json", file)  # the next run: nothing new, the same rejection
    report = json.loads(out)
    assert (code, err, report["sent"], report["unchanged"]) == (0, "", 0, 1)
    assert report["rejections"] == [{"key": "user_00001", "reason": reason}]


# --- 4. destinations that refuse, cannot be reached, or are not Amplitude ---------------------


class Answering:
    """A loopback server answering every request with one status and body, optionally over TLS."""

    def __init__(self, status: int, body: str, tls: ssl.SSLContext | None = None) -> None:
        data = body.encode()

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def self_signed(folder: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1 (made by openssl)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    except FileNotFoundError:
        pytest.skip("openssl is not installed")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


HTML_500 = "<html><body><h1>500 Internal Server Error</h1></body></html>"
WELCOME = "<html><body><h1>Welcome to nginx!</h1></body></html>"
NOT_AMPLITUDE = "an answer that is not Amplitude's: check that the endpoint is Amplitude's base URL"
TLS_PLAIN = "the server does not speak HTTPS on that port (should the endpoint start with http://?)"
TLS_CERT = "the server's certificate is not trusted (self-signed, expired, or a proxy's)"
REFUSED = "Amplitude refused the API key"
KEY_HINT = "check that it is the project's API key (not the secret key) and that the project is in the"


def region_hint(region: str, other: str) -> str:
    return (
        f'{region.upper()} region (for a project in the {other.upper()} data centre, set region = "{other}")'
    )


Endpoint = Callable[[Sandbox, Path, contextlib.ExitStack], str]


def answering(status: int, body: str) -> Endpoint:
    def start(sandbox: Sandbox, folder: Path, stack: contextlib.ExitStack) -> str:
        server = Answering(status, body)
        stack.callback(server.close)
        return server.url

    return start


def _self_signed(sandbox: Sandbox, folder: Path, stack: contextlib.ExitStack) -> str:
    server = Answering(200, "success", tls=self_signed(folder))
    stack.callback(server.close)
    return server.url


DESTINATIONS = [
    pytest.param(
        lambda sb, folder, stack: sb.url, WRONG_KEY, "us",
        f"{REFUSED}: {KEY_HINT} {region_hint('us', 'eu')}",
        2, f"{REFUSED} of destination '{DESTINATION}': {KEY_HINT} {region_hint('us', 'eu')}",
        id="invalid-api-key",
    ),
    pytest.param(
        lambda sb, folder, stack: sb.url, WRONG_KEY, "eu",
        f"{REFUSED}: {KEY_HINT} {region_hint('eu', 'us')}",
        2, f"{REFUSED} of destination '{DESTINATION}': {KEY_HINT} {region_hint('eu', 'us')}",
        id="key-of-the-other-region",
    ),
    pytest.param(
        lambda sb, folder, stack: closed_port(), SANDBOX_API_KEY, "us",
        "cannot reach {url}: check the endpoint and your network",
        1, "2 rows were not delivered (2 rows: gave up after 1 try: could not reach {url}); "
        "run again to retry them",
        id="unreachable-endpoint",
    ),
    pytest.param(
        lambda sb, folder, stack: sb.url.replace("http://", "https://"), SANDBOX_API_KEY, "us",
        f"the TLS handshake with {{url}} failed: {TLS_PLAIN}",
        1, "2 rows were not delivered (2 rows: gave up after 1 try: the TLS handshake with {url} failed: "
        f"{TLS_PLAIN}); run again to retry them",
        id="tls-to-a-plain-http-port",
    ),
    pytest.param(
        _self_signed, SANDBOX_API_KEY, "us",
        f"the TLS handshake with {{url}} failed: {TLS_CERT}",
        1, "2 rows were not delivered (2 rows: gave up after 1 try: the TLS handshake with {url} failed: "
        f"{TLS_CERT}); run again to retry them",
        id="tls-self-signed-certificate",
    ),
    pytest.param(
        answering(500, HTML_500), SANDBOX_API_KEY, "us",
        "{url} answered HTTP 500; try again later",
        1, "2 rows were not delivered (2 rows: gave up after 1 try: server error 500 (in doubt: the next "
        "run resends them first, exactly as they were)); run again to retry them",
        id="html-500-answer",
    ),
    pytest.param(
        answering(200, WELCOME), SANDBOX_API_KEY, "us",
        "{url} answered HTTP 200 with a body that is not Amplitude's JSON: check that the endpoint is "
        "Amplitude's (or the sandbox's) base URL",
        1, f"2 rows were not delivered (2 rows: HTTP 200 with {NOT_AMPLITUDE}); run again to retry them",
        id="not-json-200-answer",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("endpoint", "api_key", "region", "check", "run_code", "run"), DESTINATIONS)
def test_a_destination_problem_is_said_in_words(
    app_env: AppEnv,
    sqlite_warehouse: Database,
    tmp_path: Path,
    endpoint: Endpoint,
    api_key: str,
    region: str,
    check: str,
    run_code: int,
    run: str,
) -> None:
    make_users(sqlite_warehouse)
    with contextlib.ExitStack() as stack:
        url = endpoint(app_env.sandbox, tmp_path, stack)
        check, run = check.format(url=url), run.format(url=url)
        spec = Spec(sqlite_warehouse.url, url, api_key=api_key, region=region)
        path = spec.write(tmp_path)

        assert cli("check", path) == (1, f"not ok: {check}\n", "")
        code, out, err = cli("run", "--attempts", "1", path)
        assert (code, err) == (run_code, f"amp-sync: {run}\n")
        sent = "" if run_code == 2 else "  sent 0 rows in 2 requests; failed 2\n"  # one per user partition
        assert sent in out
        code, out, _ = cli("run", "--attempts", "1", "--json", path)  # nothing was kept as sent:
        assert code == run_code and (code == 2 or json.loads(out)["failed"] == 2)  # all go out again

        spec.save(app_env.home)
        at = click(open_page("destinations"), "dest_test_target")
        assert errors(at) == [check]
        if run_code == 2:  # refused at once; the others retry with real pauses, so only the CLI runs them
            at = click(click(open_page("preview"), "preview_button"), "start_sync")
            assert errors(at) == [run]
    assert api_key not in "\n".join(str(node.proto) for node in at._tree if hasattr(node, "proto"))
    assert app_env.sandbox.store.profiles() == []


# --- 5. sync files that cannot be used -------------------------------------------------------

UNSET = "AMP_SYNC_TEST_NEVER_SET"


def broken_toml(text: str) -> str:
    return text.replace('region = "us"', "region = us")


def unset_variable(text: str) -> str:
    return text.replace(f'api_key = "{SANDBOX_API_KEY}"', f'api_key = "${{{UNSET}}}"')


def misspelt_key(text: str) -> str:
    return text.replace('region = "us"', 'regoin = "us"')


def upper_case_region(text: str) -> str:
    return text.replace('region = "us"', 'region = "US"')


SYNC_FILES = [
    pytest.param(broken_toml, ["the sync file is not valid TOML: Invalid value (at line 7, column 10)"],
                 id="broken-toml"),
    pytest.param(misspelt_key,
                 ["unknown key 'regoin' in [destination]", "missing key 'region' in [destination]"],
                 id="misspelt-key"),
    pytest.param(upper_case_region, ["[destination].region must be one of us, eu, not 'US'"],
                 id="region-in-capitals"),
]  # fmt: skip


@pytest.mark.parametrize(("edit", "problems"), SYNC_FILES)
def test_a_sync_file_that_cannot_be_used_lists_every_problem(
    app_env: AppEnv,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    edit: Callable[[str], str],
    problems: list[str],
) -> None:
    monkeypatch.delenv(UNSET, raising=False)
    text = edit(Spec("sqlite:///warehouse.db", app_env.sandbox.url).toml())
    path = tmp_path / "sync.toml"
    path.write_text(text, encoding="utf-8")

    listed = "".join(f"\n  - {p}" for p in problems)
    assert cli("preview", str(path)) == (2, "", f"amp-sync: the sync file has problems:{listed}\n")

    at = open_page("syncs")  # "Import a sync file": the app's way in for a file
    at.text_area(key="sync_import_text").input(text)
    click(at, "sync_import")
    shown = (
        problems[0] if len(problems) == 1 else "Please fix these:\n" + "\n".join(f"- {p}" for p in problems)
    )
    assert errors(at) == [shown]
    assert Workspace(app_env.home).names(SavedSync) == []


def test_an_unset_variable_stops_the_cli_and_is_saved_as_a_reference_by_the_app(
    app_env: AppEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI needs the key now; the app keeps "${VAR}" and says the sync cannot run until it is set."""
    monkeypatch.delenv(UNSET, raising=False)
    text = unset_variable(Spec("sqlite:///warehouse.db", app_env.sandbox.url).toml())
    path = tmp_path / "sync.toml"
    path.write_text(text, encoding="utf-8")
    problem = f"environment variable {UNSET} is not set (used in destination.api_key)"
    assert cli("preview", str(path)) == (2, "", f"amp-sync: the sync file has problems:\n  - {problem}\n")

    at = open_page("syncs")
    at.text_area(key="sync_import_text").input(text)
    click(at, "sync_import")
    name = Workspace(app_env.home).names(SavedSync)[0]
    assert f"Before “{name}” can run: " in " ".join(w.value for w in at.warning)
    assert UNSET in " ".join(w.value for w in at.warning)
    assert f"${{{UNSET}}}" in (app_env.home / "workspace.json").read_text(encoding="utf-8")


# --- 6. an AMP_SYNC_HOME that cannot be written ----------------------------------------------


@pytest.mark.parametrize("where", ["under-a-file", "is-a-file"])
def test_an_unusable_home_folder_is_said_in_words(
    app_env: AppEnv, sqlite_warehouse: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    # Tests run as root, which ignores folder permissions: a regular file in the way is what fails.
    make_users(sqlite_warehouse)
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    home = blocker / "home" if where == "under-a-file" else blocker
    monkeypatch.setenv("AMP_SYNC_HOME", str(home))
    path = Spec(sqlite_warehouse.url, app_env.sandbox.url).write(tmp_path)

    assert cli("preview", path)[0] == 0  # a preview writes nothing, so it works
    assert cli("run", path) == (
        2, "",
        f"amp-sync: cannot keep the sync's state under {home}: Not a directory. "
        "Point AMP_SYNC_HOME at a folder you can write to\n",
    )  # fmt: skip
    assert app_env.sandbox.store.requests() == []

    workspace = home / "workspace.json"
    message = f"cannot read the workspace file {workspace}: [Errno 20] Not a directory: '{workspace}'"
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    for page in ("home", "destinations", "warehouses", "models", "syncs", "preview", "history"):
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, (page, at.exception)
        assert errors(at) == [message], page


# --- 7. millions of rows, memory bounded ------------------------------------------------------

BIG_ROWS = 3_000_000
BIG_SQL = (
    "select 'user_' || i::varchar as user_id, i % 7 as plan, repeat('x', 200) || i::varchar as bio "
    "from range({rows}) t(i)"
)
MEASURE = """
import resource, sys, tracemalloc
from amp_sync.cli import main
from amp_sync.warehouse import read_model

path, sample_sql = sys.argv[1:3]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
code = main(["preview", "--json", path])
growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
# What holding the rows would take, measured on the first 100,000 rows of the same model.
tracemalloc.start()
with read_model("duckdb:///:memory:", sample_sql) as stream:
    held = [tuple(row) for chunk in stream.chunks for row in chunk]
per_row = tracemalloc.get_traced_memory()[0] / len(held)
print(code, growth, per_row, file=sys.stderr)
"""


def test_a_model_of_millions_of_rows_is_previewed_in_bounded_memory(tmp_path: Path) -> None:
    """Peak memory grows by well under what holding the rows would take: rows stream through.

    Holding 3,000,000 of these rows as Python tuples takes about 1.1 GB (measured below on the
    first 100,000). A preview keeps no row, only a few dozen bytes per key for spotting repeated
    keys and counting, plus fixed buffers (DuckDB, one chunk of rows): under half of that.
    """
    sql = BIG_SQL.format(rows=BIG_ROWS)
    spec = Spec("duckdb:///:memory:", "http://127.0.0.1:9", sql=sql, mappings=("plan", "bio"))
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, spec.write(tmp_path), BIG_SQL.format(rows=100_000)],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
        env={**os.environ, "AMP_SYNC_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["new"], report["rejected"]) == (BIG_ROWS, 0)
    code, growth, per_row = result.stderr.split()[-3:]
    held = float(per_row) * BIG_ROWS
    assert int(code) == 0
    assert float(growth) < held / 2, (
        f"peak grew {float(growth) / 2**20:.0f} MB; rows held: {held / 2**20:.0f} MB"
    )
