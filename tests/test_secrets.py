"""Keys never leak: not in CLI output, logs, run history, exported files, error messages or pages."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from amp_sync.cli import main
from amp_sync.config import load_config
from amp_sync.sandbox import Sandbox
from amp_sync.workspace import Workspace, export_sync

API_KEY = "known-api-key-7f3a9c1e5b2d4f60"
SECRET_KEY = "known-secret-key-0a1b2c3d4e5f6789"
PASSWORD = "known-db-password-55aa"
ROOT = Path(__file__).resolve().parents[1]


def leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [s for s in (API_KEY, SECRET_KEY, PASSWORD) if s.encode() in data]


@pytest.fixture
def keyed_sandbox():
    with Sandbox(api_keys={API_KEY: SECRET_KEY}) as sb:
        yield sb


def sync_file(tmp_path: Path, endpoint: str, api_key: str = API_KEY) -> Path:
    db = sqlite3.connect(tmp_path / "w.db")
    db.execute("create table users (user_id text, plan text)")
    db.executemany(
        "insert into users values (?, ?)", [("alice-001", "pro"), ("abc", "x"), ("bobby-002", "free")]
    )
    db.commit()
    path = tmp_path / "sync.toml"
    path.write_text(f'''
[source]
url = "sqlite:///{tmp_path / "w.db"}"
[destination]
name = "Prod"
api_key = "${{AMP_TEST_KEY}}"
secret_key = "{SECRET_KEY}"
region = "eu"
endpoint = "{endpoint}"
[model]
name = "m"
sql = "select user_id, plan from users"
[sync]
name = "secret-test"
object = "user"
behavior = "update_or_create"
key = "user_id"
[[sync.mappings]]
column = "plan"
property = "plan"
''')
    return path


def test_cli_output_logs_history_and_exports_never_hold_the_keys(
    tmp_path, home, keyed_sandbox, capsys, caplog, monkeypatch
) -> None:
    monkeypatch.setenv("AMP_TEST_KEY", API_KEY)
    caplog.set_level(logging.DEBUG)  # everything any library logs, urllib3 included
    path = sync_file(tmp_path, keyed_sandbox.url)
    for args in (
        ["check", str(path)],
        ["preview", str(path)],
        ["run", str(path)],
        ["run", str(path), "--json"],
    ):
        assert main(args) == 0
    out, err = capsys.readouterr()
    assert leaks(out + err + caplog.text) == []
    assert keyed_sandbox.store.profile(user_id="alice-001") is not None  # the key did work

    history = b"".join(p.read_bytes() for p in (home / "state").iterdir() if p.is_file())
    assert history and leaks(history) == []
    assert leaks(export_sync(load_config(path))) == []


def test_refused_keys_and_failures_never_echo_the_key(tmp_path, home, capsys, monkeypatch) -> None:
    monkeypatch.setenv("AMP_TEST_KEY", API_KEY)
    with Sandbox() as other_project:  # does not know the key: answers "Invalid API key: <key>"
        path = sync_file(tmp_path, other_project.url)
        assert main(["run", str(path)]) == 2
        assert main(["check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "refused" in out + err and leaks(out + err) == []
    assert leaks(b"".join(p.read_bytes() for p in (home / "state").iterdir() if p.is_file())) == []


def test_a_warehouse_password_never_shows_in_errors(tmp_path, home, capsys, monkeypatch) -> None:
    monkeypatch.setenv("AMP_TEST_KEY", API_KEY)
    path = tmp_path / "pg.toml"
    text = sync_file(tmp_path, "http://127.0.0.1:9").read_text()
    path.write_text(
        text.replace(
            f"sqlite:///{tmp_path / 'w.db'}", f"postgresql+psycopg://analyst:{PASSWORD}@127.0.0.1:9/db"
        )
    )
    assert main(["preview", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "cannot connect" in err and leaks(out + err) == []


def test_pages_never_show_saved_keys(app_env) -> None:
    from amp_sync.config import Destination, Region
    from amp_sync.secret import Secret
    from amp_sync.workspace import Warehouse

    ws = Workspace(app_env.home)
    ws.save(Destination("Prod", Secret(API_KEY), Secret(SECRET_KEY), Region.EU, app_env.sandbox.url))
    ws.save(Warehouse("pg", Secret(f"postgresql+psycopg://analyst:{PASSWORD}@db.internal/prod")))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    for page in ("home", "destinations", "warehouses", "models", "syncs", "preview", "history"):
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception
        rendered = "\n".join(str(element.proto) for element in at.main) + str(at.sidebar)
        assert leaks(rendered) == [], page


def test_the_app_and_the_sandbox_listen_on_loopback_only() -> None:
    import tomllib

    from amp_sync.cli import _parser

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["browser"]["gatherUsageStats"] is False
    assert _parser().parse_args(["sandbox"]).host == "127.0.0.1"


def test_nothing_typed_into_the_app_is_unpickled_or_evaluated() -> None:
    import ast

    sources = [
        *(ROOT / "amp_sync").glob("*.py"),
        *(ROOT / "app_pages").glob("*.py"),
        ROOT / "app.py",
        ROOT / "ui.py",
    ]
    for path in sources:
        tree = ast.parse(path.read_text(), filename=str(path))
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        modules = {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names
        }
        modules |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not names & {"eval", "exec", "compile", "__import__"}, path
        assert not modules & {"pickle", "marshal", "shelve", "dill", "cloudpickle"}, path
