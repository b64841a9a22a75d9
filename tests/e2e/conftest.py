"""Browser journeys: `streamlit run app.py` against a loopback sandbox, driven by Debian's Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from e2e_support import ROOT, App

from amp_sync.sandbox import Sandbox

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google on this closed network.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # On CI a missing browser must fail the run (the launch error says why), never skip it.
    if Path(CHROMIUM).exists() or os.environ.get("CI"):
        return
    reason = f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)"
    for item in items:
        if "e2e" in item.nodeid:
            item.add_marker(pytest.mark.skip(reason=reason))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/_stcore/health", timeout=1).text == "ok":
                return
        except requests.RequestException:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"streamlit not healthy after 60 s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory, demo_db: Path) -> Iterator[App]:
    """`streamlit run app.py` on a free port with a fresh home, the demo warehouse and a sandbox."""
    folder = tmp_path_factory.mktemp("app")
    home = folder / "home"
    port = _free_port()
    with Sandbox() as sandbox:
        env = {
            **os.environ, "AMP_SYNC_HOME": str(home), "AMP_SYNC_SANDBOX_URL": sandbox.url,
            "AMP_SYNC_DEMO_PATH": str(demo_db),
        }  # fmt: skip
        log = folder / "streamlit.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
                 "--server.headless", "true", "--server.address", "127.0.0.1",
                 "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            try:
                _wait_healthy(url, proc, log)
                yield App(url, home, sandbox)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """Debian's Chromium instead of a browser Playwright would download."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}
