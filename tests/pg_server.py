"""Start a real, throwaway PostgreSQL server for the tests.

Uses the binaries of Debian's ``postgresql`` package (``/usr/lib/postgresql/<version>/bin``),
or the directory named by ``AMP_SYNC_PG_BIN``. PostgreSQL refuses to run as root, so when the
tests run as root the server is run as the ``postgres`` system user (created by the Debian
package) through ``runuser``.

The server lives in its own directory made with ``tempfile.mkdtemp()`` (not inside pytest's
``tmp_path``, whose parents may be mode 700 and owned by root), listens only on 127.0.0.1 and on
a Unix socket in that directory, and is stopped by ``stop()``, by ``__exit__``, at interpreter
exit, and — should the test process be killed outright — by a small watchdog process.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

import sqlalchemy as sa

PG_BIN_ENV = "AMP_SYNC_PG_BIN"
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"
START_TIMEOUT_S = 30
PORT_ATTEMPTS = 3
LOG_TAIL_LINES = 40

# Settings appended to postgresql.conf: speed over durability, loopback only.
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "50",
    "shared_buffers": "32MB",
    "logging_collector": "off",
}

# Runs in its own session; gets EOF on stdin when the test process dies. If the test process
# stopped the server itself, it writes one byte first and the watchdog exits doing nothing.
_WATCHDOG = """
import shutil, subprocess, sys
if not sys.stdin.buffer.read(1):
    subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    shutil.rmtree(sys.argv[1], ignore_errors=True)
"""


def _has_pg_tools(directory: Path) -> bool:
    return all((directory / tool).is_file() for tool in ("initdb", "pg_ctl"))


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    version = bin_dir.parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (-1,)


def find_pg_bin() -> Path | None:
    """Return the directory holding ``initdb`` and ``pg_ctl``, or None.

    Order: ``$AMP_SYNC_PG_BIN`` (an error if set but wrong), Debian's
    ``/usr/lib/postgresql/*/bin`` (highest version first), then ``PATH``.
    """
    override = os.environ.get(PG_BIN_ENV)
    if override:
        directory = Path(override)
        if not _has_pg_tools(directory):
            raise FileNotFoundError(f"{PG_BIN_ENV}={override} does not hold initdb and pg_ctl")
        return directory
    candidates = sorted(DEBIAN_PG_ROOT.glob("*/bin"), key=_version_key, reverse=True)
    for directory in candidates:
        if _has_pg_tools(directory):
            return directory
    initdb = shutil.which("initdb")
    if initdb and _has_pg_tools(Path(initdb).parent):
        return Path(initdb).parent
    return None


def _runuser() -> str:
    # /usr/sbin may be missing from a non-login root PATH.
    found = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
    if found is None:
        raise RuntimeError("running as root but runuser (util-linux) is not installed")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:])


class PostgresServer:
    """A throwaway PostgreSQL server; use as a context manager or call start()/stop()."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = Path(bin_dir)
        self.port: int | None = None
        self.root: Path | None = None
        self._as_root = os.geteuid() == 0
        self._watchdog: subprocess.Popen[bytes] | None = None

    # -- paths ------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._root() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._root() / "socket"

    @property
    def log_file(self) -> Path:
        return self._root() / "server.log"

    def _root(self) -> Path:
        if self.root is None:
            raise RuntimeError("PostgresServer is not started")
        return self.root

    # -- running the binaries ---------------------------------------------------------------

    def _command(self, tool: str, *args: str) -> list[str]:
        command = [str(self.bin_dir / tool), *args]
        if self._as_root:
            return [_runuser(), "-u", SERVER_USER, "--", *command]
        return command

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        # cwd: the server user may not be able to enter the caller's directory (e.g. /root).
        return subprocess.run(
            self._command(tool, *args),
            cwd=self._root(),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S + 30,
            check=False,
        )

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        """initdb and start the server; raise RuntimeError with the server log tail on failure."""
        if self.port is not None:
            return self
        try:
            self._make_dirs()
            self._initdb()
            self._start_watchdog()
            atexit.register(self.stop)
            self._start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def _make_dirs(self) -> None:
        # /tmp, not $TMPDIR: the server user must reach it, and socket paths must stay short.
        base = "/tmp" if Path("/tmp").is_dir() else None
        self.root = Path(tempfile.mkdtemp(prefix="amp_sync_pg_", dir=base))
        self.socket_dir.mkdir()
        if self._as_root:
            try:
                user = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise RuntimeError(
                    f"running as root but there is no {SERVER_USER!r} user to run PostgreSQL "
                    "as (it is created by Debian's postgresql package)"
                ) from None
            for path in (self.root, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
        self.root.chmod(0o755)

    def _initdb(self) -> None:
        result = self._run(
            "initdb",
            "-D", str(self.data_dir),
            "-A", "trust",
            "-U", SERVER_USER,
            "-E", "UTF8",
            "--locale=C",
            "--no-sync",
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
        settings = [f"{key} = {value}" for key, value in SERVER_SETTINGS.items()]
        settings.append(f"unix_socket_directories = '{self.socket_dir}'")
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# amp_sync tests\n" + "\n".join(settings) + "\n")

    def _start_server(self) -> None:
        for _ in range(PORT_ATTEMPTS):
            port = _free_port()
            result = self._pg_ctl_start(port)
            if result.returncode == 0:
                self.port = port
                return
            # Another process may have taken the port between probing and binding: retry.
            if "already in use" not in _tail(self.log_file, 5):
                break
        raise RuntimeError(
            f"pg_ctl start failed (exit {result.returncode}):\n{result.stdout}{result.stderr}\n"
            f"--- server log ({self.log_file}) ---\n{_tail(self.log_file)}"
        )

    def _pg_ctl_start(self, port: int) -> subprocess.CompletedProcess[str]:
        return self._run(
            "pg_ctl", "start",
            "-w", "-t", str(START_TIMEOUT_S),
            "-D", str(self.data_dir),
            "-l", str(self.log_file),
            "-o", f"-p {port}",
        )  # fmt: skip

    def _stop_command(self) -> list[str]:
        return self._command("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data_dir))

    def _start_watchdog(self) -> None:
        # Stops the server even if this process is killed (SIGKILL skips atexit handlers).
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(self.root), *self._stop_command()],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,
        )

    def stop(self) -> None:
        """Stop the server (immediate mode) and remove its directory. Idempotent."""
        atexit.unregister(self.stop)
        root = self.root
        if root is None:
            return
        try:
            if (self.data_dir / "postmaster.pid").exists():
                subprocess.run(self._stop_command(), cwd=root, capture_output=True, timeout=60, check=False)
        finally:
            shutil.rmtree(root, ignore_errors=True)
            self.root = self.port = None
            self._dismiss_watchdog()

    def _dismiss_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None or watchdog.stdin is None:
            return
        try:
            watchdog.stdin.write(b"x")
            watchdog.stdin.close()
            watchdog.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            watchdog.kill()

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- clients ------------------------------------------------------------------------------

    def url(self, dbname: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        """SQLAlchemy URL, e.g. ``postgresql+psycopg://postgres@127.0.0.1:PORT/postgres``."""
        if self.port is None:
            raise RuntimeError("PostgresServer is not started")
        url = sa.URL.create(driver, username=SERVER_USER, host="127.0.0.1", port=self.port, database=dbname)
        return url.render_as_string(hide_password=False)

    def create_database(self, name: str) -> str:
        """CREATE DATABASE ``name`` and return its URL."""
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        quoted = '"' + name.replace('"', '""') + '"'
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f"CREATE DATABASE {quoted}"))
        finally:
            engine.dispose()
        return self.url(name)
