"""Keys never leak: not in CLI output, logs, run history, exports, error messages, pages or workspace.json."""

from __future__ import annotations

import logging
import sqlite3
import stat
from pathlib import Path

import pytest
from keyring.backends import fail
from streamlit.testing.v1 import AppTest
from support import MemoryKeyring

from amp_sync.cli import main
from amp_sync.config import load_config
from amp_sync.sandbox import Sandbox
from amp_sync.vault import SECRETS_FILE, Vault
from amp_sync.workspace import WORKSPACE_FILE, Workspace, export_sync

API_KEY = "known-api-key-7f3a9c1e5b2d4f60"
SECRET_KEY = "known-secret-key-0a1b2c3d4e5f6789"
PASSWORD = "known-db-password-55aa"
ROOT = Path(__file__).resolve().parents[1]


def leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [s for s in (API_KEY, SECRET_KEY, PASSWORD) if s.encode() in data]


def leaks_by_file(home: Path) -> dict[str, list[str]]:
    """Every file under `home` that holds a known secret, with the secrets it holds."""
    found = {str(p.relative_to(home)): leaks(p.read_bytes()) for p in home.rglob("*") if p.is_file()}
    return {name: secrets for name, secrets in found.items() if secrets}


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
    # A sync file's keys are read from the environment at run time: nothing of them is kept.
    assert leaks_by_file(home) == {} and not (home / WORKSPACE_FILE).exists()
    assert not (home / SECRETS_FILE).exists()


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


def imported(tmp_path: Path, name: str, api_key: str, secret_key: str, url: str) -> str:
    """The text of a sync file named `name` with these keys and warehouse URL."""
    return (
        (tmp_path / "sync.toml")
        .read_text()
        .replace("${AMP_TEST_KEY}", api_key)
        .replace(SECRET_KEY, secret_key)
        .replace(f"sqlite:///{tmp_path / 'w.db'}", url)
        .replace('name = "secret-test"', f'name = "{name}"')
        .replace('name = "m"', f'name = "{name} model"')
    )


KEY_ENV = {"AMPLITUDE_API_KEY": API_KEY, "AMPLITUDE_SECRET_KEY": SECRET_KEY, "WAREHOUSE_PASSWORD": PASSWORD}
PG_TEMPLATE = "postgresql+psycopg://analyst:{password}@db.internal/prod"


@pytest.mark.parametrize("keyring", ["in-memory keyring", "no keyring"])
def test_an_imported_sync_file_leaves_no_secret_in_the_workspace_file(
    tmp_path, home, keyed_sandbox, keyring
) -> None:
    from amp_sync.runner import run

    items: dict[tuple[str, str], str] = {}
    backend = MemoryKeyring(items) if keyring == "in-memory keyring" else fail.Keyring()
    ws = Workspace(home, env=KEY_ENV, vault=Vault(home, backend))
    sqlite_url = f"sqlite:///{tmp_path / 'w.db'}"
    sync_file(tmp_path, keyed_sandbox.url)
    keys = ("${AMPLITUDE_API_KEY}", "${AMPLITUDE_SECRET_KEY}")
    ws.import_sync(imported(tmp_path, "by-reference", *keys, sqlite_url))
    pg_url = PG_TEMPLATE.format(password="${WAREHOUSE_PASSWORD}")
    ws.import_sync(imported(tmp_path, "pg-by-reference", *keys, pg_url))
    assert run(ws.sync_config("by-reference"), home).sent == 2  # the references are read when used
    assert ws.sync_config("pg-by-reference").source.url.reveal() == PG_TEMPLATE.format(password=PASSWORD)
    assert leaks_by_file(home) == {} and items == {}  # references only: no secret kept anywhere

    # Keys typed beside the file, and a file holding a key and a password in clear, go to the vault.
    typed = {"AMPLITUDE_API_KEY": API_KEY}
    ws.import_sync(imported(tmp_path, "typed", keys[0], SECRET_KEY, sqlite_url), typed=typed)
    pg_url = PG_TEMPLATE.format(password=PASSWORD)
    ws.import_sync(imported(tmp_path, "pg-typed", keys[0], SECRET_KEY, pg_url), typed=typed)
    assert ws.sync_config("pg-typed").source.url.reveal() == pg_url
    assert run(ws.sync_config("typed"), home).sent == 2
    assert leaks((home / WORKSPACE_FILE).read_bytes()) == []
    if keyring == "in-memory keyring":
        assert leaks_by_file(home) == {}
        assert sorted(leaks("".join(items.values()))) == sorted([API_KEY, SECRET_KEY, PASSWORD])
        assert {service for service, _ in items} == {"amp_sync"}
    else:
        assert leaks_by_file(home) == {SECRETS_FILE: [API_KEY, SECRET_KEY, PASSWORD]}
        assert stat.S_IMODE((home / SECRETS_FILE).stat().st_mode) == 0o600


def test_pages_never_show_saved_keys(app_env, monkeypatch) -> None:
    from amp_sync.config import Destination, Region
    from amp_sync.secret import Secret
    from amp_sync.workspace import Warehouse

    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setenv("AMP_TEST_KEY", API_KEY)
    monkeypatch.setenv("AMP_TEST_PASSWORD", PASSWORD)
    ws = Workspace(app_env.home)
    ws.save(Destination("Prod", Secret(API_KEY), Secret(SECRET_KEY), Region.EU, app_env.sandbox.url))
    ws.save(Destination("By reference", Secret("${AMP_TEST_KEY}"), None, Region.EU, app_env.sandbox.url))
    ws.save(Warehouse("pg", Secret(f"postgresql+psycopg://analyst:{PASSWORD}@db.internal/prod")))
    ws.save(
        Warehouse(
            "pg by reference", Secret("postgresql+psycopg://analyst:${AMP_TEST_PASSWORD}@db.internal/x")
        )
    )
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
