"""Shared fixtures: a fresh AMP_SYNC_HOME, the sandbox on a loopback port, sync files."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from pg_server import PostgresServer, find_pg_bin
from support import AppEnv, Warehouse, sync_file_text

from amp_sync.sandbox import Faults, Sandbox

# Shared CI machines are slow and uneven: judge properties, not speed.
settings.register_profile("amp_sync", deadline=None, max_examples=60)
settings.load_profile("amp_sync")


@pytest.fixture(scope="session", autouse=True)
def _no_real_user_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A test that leaves AMP_SYNC_HOME unset writes to a temp per-user data folder, never the real one.

    Nor does a saved key reach the developer's own keyring: tests that want one pass a backend.
    """
    with pytest.MonkeyPatch.context() as env:
        env.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg_data_home")))
        env.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
        yield


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh AMP_SYNC_HOME for the test."""
    path = tmp_path / "amp_sync_home"
    monkeypatch.setenv("AMP_SYNC_HOME", str(path))
    return path


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """The Amplitude sandbox on a free loopback port."""
    with Sandbox() as sb:
        yield sb


@pytest.fixture(scope="module")
def server() -> Iterator[Sandbox]:
    """One sandbox for a whole test module; `sb` gives each test a clean one."""
    with Sandbox() as sb:
        yield sb


@pytest.fixture
def sb(server: Sandbox) -> Iterator[Sandbox]:
    """The module's sandbox, emptied, with no faults once the test is done."""
    server.store.reset()
    yield server
    server.set_faults(Faults())


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session, from the machine's binaries."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries not found: .ci/run must apt-install postgresql")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    with PostgresServer(bin_dir) as server:
        server.start()
        yield server


_db_counter = iter(range(1, 1_000_000))


def _make_warehouse(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Warehouse:
    if kind == "sqlite":
        return Warehouse(kind, f"sqlite:///{tmp_path / 'warehouse.db'}")
    if kind == "duckdb":
        return Warehouse(kind, f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    server: PostgresServer = request.getfixturevalue("postgres")
    return Warehouse(kind, server.create_database(f"wh{next(_db_counter)}"))


@pytest.fixture(params=["sqlite", "duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    """Each real warehouse in turn: SQLite, DuckDB and PostgreSQL."""
    return _make_warehouse(request.param, tmp_path, request)


@pytest.fixture
def sqlite_warehouse(tmp_path: Path, request: pytest.FixtureRequest) -> Warehouse:
    """A SQLite warehouse, for tests about behaviour rather than drivers."""
    return _make_warehouse("sqlite", tmp_path, request)


@pytest.fixture
def write_sync(tmp_path: Path) -> Callable[..., Path]:
    """Write a sync file into the test's folder and return its path."""

    def write(*args: object, filename: str = "sync.toml", **kwargs: object) -> Path:
        path = tmp_path / filename
        path.write_text(sync_file_text(*args, **kwargs))  # type: ignore[arg-type]
        return path

    return write


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo DuckDB warehouse, built once per test session."""
    from amp_sync.demo import build_demo_warehouse

    return build_demo_warehouse(tmp_path_factory.mktemp("demo") / "warehouse.duckdb")


@pytest.fixture
def app_env(home: Path, sandbox: Sandbox, demo_db: Path, monkeypatch: pytest.MonkeyPatch) -> AppEnv:
    """Point the app at a fresh AMP_SYNC_HOME, a loopback sandbox and the demo warehouse."""
    monkeypatch.setenv("AMP_SYNC_SANDBOX_URL", sandbox.url)
    monkeypatch.setenv("AMP_SYNC_DEMO_PATH", str(demo_db))
    return AppEnv(home, sandbox, demo_db)
