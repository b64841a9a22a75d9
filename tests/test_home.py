"""Where state lives: one per-user home wherever amp_sync starts, and an old ./.amp_sync moved into it.

Every test here points XDG_DATA_HOME (or AMP_SYNC_HOME) at a temp folder: none touches the real
~/.local/share.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from support import sync_file_text

from amp_sync.config import Destination, Region
from amp_sync.home import adopt_legacy, find_home, home_dir, import_state, legacy_folder, state_groups
from amp_sync.sandbox import Sandbox
from amp_sync.secret import Secret
from amp_sync.workspace import Warehouse, Workspace

ROOT = Path(__file__).resolve().parents[1]
SYNC = "ltv-to-amplitude"
ROWS = 30
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_DATA_HOME is Linux's")


def users_db(path: Path, rows: int = ROWS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("create table users (user_id text, plan text, ltv integer)")
        db.executemany(
            "insert into users values (?, ?, ?)", [(f"user-{i:05d}", "pro", i) for i in range(rows)]
        )
    db.close()


def project(tmp_path: Path, sandbox: Sandbox, name: str = SYNC) -> Path:
    """A folder with a warehouse and a sync file that names it by a relative path."""
    folder = tmp_path / "project"
    users_db(folder / "data" / "warehouse.db")
    (folder / "sync.toml").write_text(sync_file_text("sqlite:///data/warehouse.db", sandbox.url, name=name))
    return folder


def user_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a user who never set AMP_SYNC_HOME; the per-user folder is a temp one."""
    env = {k: v for k, v in os.environ.items() if k != "AMP_SYNC_HOME"}
    return {**env, "XDG_DATA_HOME": str(tmp_path / "xdg"), **extra}


def amp_sync(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "amp_sync", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def report(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def databases(folder: Path) -> list[Path]:
    """The sync databases a folder holds (their journal files aside)."""
    return [group[0] for group in state_groups(folder) if group[0].suffix == ".sqlite"]


def old_state(folder: Path, sandbox: Sandbox, tmp_path: Path) -> Path:
    """Run the project's sync the way earlier versions did: state in ./.amp_sync."""
    done = report(
        amp_sync("run", "sync.toml", "--json", cwd=folder, env=user_env(tmp_path, AMP_SYNC_HOME=".amp_sync"))
    )
    assert done["sent"] == ROWS
    return folder / ".amp_sync"


# --- the home folder -------------------------------------------------------------------------


@linux_only
def test_the_default_home_is_the_per_user_data_folder_and_honours_xdg_data_home(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.delenv("AMP_SYNC_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert home_dir() == tmp_path / "data" / "amp_sync"
    assert home_dir({"AMP_SYNC_HOME": ""}) == tmp_path / "data" / "amp_sync"  # empty counts as unset
    assert "per-user data folder" in find_home().origin


def test_amp_sync_home_overrides_the_per_user_folder(tmp_path) -> None:
    chosen = find_home({"AMP_SYNC_HOME": str(tmp_path / "mine")})
    assert (chosen.path, chosen.origin) == (tmp_path / "mine", "set by AMP_SYNC_HOME")


@linux_only
def test_amp_sync_home_prints_the_folder_and_where_it_comes_from(tmp_path) -> None:
    shown = amp_sync("home", cwd=tmp_path / "anywhere", env=user_env(tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == str(tmp_path / "xdg" / "amp_sync")
    assert "per-user data folder (AMP_SYNC_HOME is not set)" in shown.stdout

    env = user_env(tmp_path, AMP_SYNC_HOME=str(tmp_path / "mine"))
    shown = amp_sync("home", cwd=tmp_path / "anywhere", env=env)
    assert shown.stdout.splitlines() == [str(tmp_path / "mine"), "  set by AMP_SYNC_HOME"]


# --- one state wherever the sync runs from ---------------------------------------------------


@linux_only
def test_a_sync_with_a_relative_warehouse_path_keeps_one_state_from_any_folder(tmp_path) -> None:
    with Sandbox() as sandbox:
        folder = project(tmp_path, sandbox)
        env = user_env(tmp_path)
        first = report(amp_sync("run", "sync.toml", "--json", cwd=folder, env=env))
        assert (first["new"], first["sent"]) == (ROWS, ROWS)
        sent = len(sandbox.store.requests())

        again = report(amp_sync("run", "../project/sync.toml", "--json", cwd=tmp_path / "elsewhere", env=env))
        assert (again["new"], again["changed"], again["unchanged"], again["sent"]) == (0, 0, ROWS, 0)
        assert len(sandbox.store.requests()) == sent  # nothing sent twice

        path = str(folder / "sync.toml")
        shown = report(amp_sync("preview", path, "--json", cwd=tmp_path / "a" / "third", env=env))
        assert (shown["new"], shown["changed"]) == (0, 0)
    assert databases(tmp_path / "xdg" / "amp_sync") == [Path("state", f"{SYNC}.sqlite")]
    assert not (folder / ".amp_sync").exists() and not (tmp_path / "elsewhere" / ".amp_sync").exists()


# --- an old ./.amp_sync ----------------------------------------------------------------------


@linux_only
def test_an_old_amp_sync_folder_is_moved_into_the_new_home_and_said_once(tmp_path) -> None:
    with Sandbox() as sandbox:
        folder = project(tmp_path, sandbox)
        old = old_state(folder, sandbox, tmp_path)
        sent = len(sandbox.store.requests())

        moved = amp_sync("run", "sync.toml", "--json", cwd=folder, env=user_env(tmp_path))
        assert report(moved)["sent"] == 0 and len(sandbox.store.requests()) == sent  # the old state counts
        home = tmp_path / "xdg" / "amp_sync"
        assert moved.stderr == (
            f"amp-sync: moved the state of 1 sync that an earlier amp_sync saved in {old} to {home}, "
            "where amp_sync now keeps its state (amp-sync home says so)\n"
        )
        assert state_groups(old) == () and databases(home) == [Path("state", f"{SYNC}.sqlite")]
        assert (home.stat().st_mode & 0o777, (home / "state").stat().st_mode & 0o777) == (0o700, 0o700)

        again = amp_sync("preview", "sync.toml", "--json", cwd=folder, env=user_env(tmp_path))
        assert report(again)["new"] == 0 and again.stderr == ""  # said once


@linux_only
def test_an_old_folder_stays_with_how_to_move_it_when_the_home_has_state(tmp_path) -> None:
    with Sandbox() as sandbox:
        folder = project(tmp_path, sandbox)
        old = old_state(folder, sandbox, tmp_path)
        Workspace(old).save(Warehouse("crm", Secret("sqlite:////srv/crm.db")))
        env = user_env(tmp_path)
        copy = tmp_path / "copy"  # the same sync, run first from a folder without old state
        copy.mkdir()
        (copy / "sync.toml").write_text(
            (folder / "sync.toml").read_text().replace("data/", "../project/data/")
        )
        assert report(amp_sync("run", "sync.toml", "--json", cwd=copy, env=env))["sent"] == ROWS

        left = amp_sync("preview", "sync.toml", "--json", cwd=folder, env=env)
        home = tmp_path / "xdg" / "amp_sync"
        assert report(left)["new"] == 0  # the home's own state
        assert left.stderr == (
            f"amp-sync: {old} holds state saved by an earlier amp_sync; it stays there because {home} "
            f"already holds state. To move its files one by one: amp-sync home --import {old}\n"
        )
        assert databases(old) == [Path("state", f"{SYNC}.sqlite")] and (old / "workspace.json").exists()

        shown = amp_sync("home", cwd=folder, env=env)
        assert f"amp-sync home --import {old} moves it here" in shown.stdout

        imported = amp_sync("home", "--import", ".amp_sync", cwd=folder, env=env)
        assert imported.returncode == 1, imported.stderr
        assert imported.stdout.splitlines() == [
            "moved workspace.json",
            f"not moved: state/{SYNC}.sqlite: {home / 'state' / f'{SYNC}.sqlite'} already exists",
            f"moved the workspace from {old} to {home}; the state of 1 sync left in {old}",
        ]
    assert Workspace(home).names(Warehouse) == ["crm"]
    assert databases(old) == [Path("state", f"{SYNC}.sqlite")]


def test_import_refuses_a_folder_without_state_in_words(tmp_path) -> None:
    env = user_env(tmp_path, AMP_SYNC_HOME=str(tmp_path / "home"))
    refused = amp_sync("home", "--import", "nothing-here", cwd=tmp_path, env=env)
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr == (
        f"amp-sync: there is no saved state in {tmp_path / 'nothing-here'} (amp_sync looks for "
        "workspace.json and state/*.sqlite)\n"
    )


def write_state(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(f"{folder.name}:{name}")


def test_state_groups_keep_a_database_with_its_journal_files(tmp_path) -> None:
    write_state(
        tmp_path, "workspace.json", "state/a.sqlite", "state/a.sqlite-wal", "state/b.sqlite", "state/a.lock"
    )
    assert state_groups(tmp_path) == (
        (Path("workspace.json"),),
        (Path("state/a.sqlite"), Path("state/a.sqlite-wal")),
        (Path("state/b.sqlite"),),
    )
    assert state_groups(tmp_path / "missing") == ()


def test_the_owner_only_secrets_file_moves_with_the_workspace(tmp_path) -> None:
    write_state(tmp_path, "workspace.json", "secrets.json")
    assert state_groups(tmp_path) == ((Path("workspace.json"), Path("secrets.json")),)


def test_import_moves_file_by_file_and_never_overwrites(tmp_path) -> None:
    old, home = tmp_path / "old", tmp_path / "home"
    write_state(old, "state/a.sqlite", "state/a.sqlite-wal", "state/b.sqlite", "state/c.sqlite")
    write_state(home, "state/b.sqlite", "state/c.sqlite-wal")  # a stray journal blocks its database too
    moved = import_state(old, home)
    assert moved.moved == (Path("state/a.sqlite"),)
    assert [(str(p), why) for p, why in moved.refused] == [
        ("state/b.sqlite", f"{home / 'state/b.sqlite'} already exists"),
        ("state/c.sqlite", f"{home / 'state/c.sqlite-wal'} already exists"),
    ]
    assert (home / "state/a.sqlite-wal").read_text() == "old:state/a.sqlite-wal"
    assert (home / "state/b.sqlite").read_text() == "home:state/b.sqlite"  # untouched
    assert state_groups(old) == ((Path("state/b.sqlite"),), (Path("state/c.sqlite"),))


def test_import_refuses_a_sync_that_is_running_in_the_old_folder(tmp_path) -> None:
    from amp_sync.state import run_lock

    old, home = tmp_path / "old", tmp_path / "home"
    write_state(old, "state/a.sqlite")
    with run_lock(old, "a"):
        moved = import_state(old, home)
    assert moved.moved == () and "another run of the sync 'a' is in progress" in moved.refused[0][1]


@linux_only
def test_adopting_an_old_folder_follows_the_environment_it_is_given(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    write_state(tmp_path / ".amp_sync", "workspace.json")
    assert legacy_folder(tmp_path, {"AMP_SYNC_HOME": str(tmp_path / "set")}) is None  # a chosen home
    assert adopt_legacy(tmp_path / "empty", {}) is None
    assert legacy_folder(tmp_path, {}) == tmp_path / ".amp_sync"
    said = adopt_legacy(tmp_path, {})
    assert said == (
        f"moved the workspace that an earlier amp_sync saved in {tmp_path / '.amp_sync'} to "
        f"{tmp_path / 'xdg' / 'amp_sync'}, where amp_sync now keeps its state (amp-sync home says so)"
    )
    assert adopt_legacy(tmp_path, {}) is None  # nothing left to move
    assert (tmp_path / "xdg" / "amp_sync" / "workspace.json").read_text() == ".amp_sync:workspace.json"


# --- the app ---------------------------------------------------------------------------------


def open_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, at.exception
    return at


@linux_only
def test_the_app_moves_an_old_workspace_and_says_so_on_home(app_env, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("AMP_SYNC_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    started = tmp_path / "started_here"
    (started / "crm.db").parent.mkdir(parents=True)
    users_db(started / "crm.db")
    old = Workspace(started / ".amp_sync")
    old.save(Destination("Prod", Secret("k" * 32), None, Region.US, app_env.sandbox.url))
    data = json.loads(old.path.read_text())
    data["warehouses"] = {"crm": {"name": "crm", "url": "sqlite:///crm.db"}}  # as an earlier app saved it
    old.path.write_text(json.dumps(data))
    monkeypatch.chdir(started)

    at = open_app()
    home = tmp_path / "xdg" / "amp_sync"
    notes = [i.value for i in at.info if "earlier amp_sync" in i.value]
    assert notes == [
        f"moved the workspace that an earlier amp_sync saved in {started / '.amp_sync'} to {home}, "
        "where amp_sync now keeps its state (amp-sync home says so)"
    ]
    ws = Workspace(home)
    assert ws.names(Destination) == ["Prod"]  # no demo defaults: the moved workspace came first
    assert ws.get(Warehouse, "crm").url.reveal() == f"sqlite:///{started / 'crm.db'}"
    assert not (started / ".amp_sync" / "workspace.json").exists()


def test_a_relative_warehouse_path_is_saved_absolute_and_the_page_says_so(
    app_env, tmp_path, monkeypatch
) -> None:
    users_db(tmp_path / "crm.db")
    monkeypatch.chdir(tmp_path)
    at = open_app("warehouses")
    at.text_input(key="wh_name").input("CRM")
    at.text_input(key="wh_url").input("sqlite:///crm.db?timeout=5")
    at.button(key="wh_save").click().run()
    assert not at.exception
    assert at.success[0].value.startswith("connected to")
    assert [i.value for i in at.info] == [
        "The relative file path of “CRM” was saved absolute, against the folder the app runs in "
        f"({tmp_path})."
    ]
    saved = Workspace(app_env.home).get(Warehouse, "CRM").url.reveal()
    assert saved == f"sqlite:///{tmp_path / 'crm.db'}?timeout=5"


def test_an_imported_sync_file_saves_its_relative_warehouse_path_absolute(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    ws = Workspace(tmp_path / "home")
    ws.import_sync(sync_file_text("duckdb:///w.duckdb", "http://127.0.0.1:9"), {})
    assert [w.url.reveal() for w in ws.all(Warehouse)] == [f"duckdb:///{tmp_path / 'w.duckdb'}"]
    ws.import_sync(sync_file_text("duckdb:///w.duckdb", "http://127.0.0.1:9"), {})  # the same warehouse again
    assert len(ws.all(Warehouse)) == 1
