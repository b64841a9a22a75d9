"""The sandbox as a child process (`python -m amp_sync sandbox`) on a free loopback port.

A separate process, so the server does not share the GIL with the client being measured.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

STARTUP_SECONDS = 30.0


@dataclass(slots=True)
class SandboxProcess:
    """A running sandbox: its base URL and the inspection endpoints the benchmark reads."""

    url: str
    process: subprocess.Popen[bytes]

    def reset(self) -> None:
        """Forget every profile, event and request."""
        requests.post(f"{self.url}/sandbox/reset", timeout=60).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        """Every Amplitude API request received so far: path, status, items."""
        answer = requests.get(f"{self.url}/sandbox/requests", timeout=60)
        answer.raise_for_status()
        return list(answer.json())

    def profile_count(self) -> int:
        """How many user profiles the sandbox holds (fetches them all: use at 200k, not 5M)."""
        answer = requests.get(f"{self.url}/sandbox/profiles", timeout=300)
        answer.raise_for_status()
        return len(answer.json())

    def profile(self, user_id: str) -> dict[str, Any] | None:
        """The user properties of one user, or None."""
        answer = requests.get(f"{self.url}/sandbox/profiles", params={"user_id": user_id}, timeout=60)
        answer.raise_for_status()
        found = answer.json()
        return found[0]["user_properties"] if found else None


def free_port() -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def sandbox(log: Path) -> Iterator[SandboxProcess]:
    """Start a sandbox child, wait until it answers /health, stop it on exit."""
    port = free_port()
    command = [sys.executable, "-m", "amp_sync", "sandbox", "--port", str(port)]
    with log.open("ab") as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
    try:
        running = SandboxProcess(f"http://127.0.0.1:{port}", process)
        _wait_healthy(running)
        yield running
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_healthy(running: SandboxProcess) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise RuntimeError(f"the sandbox exited at start (status {running.process.returncode})")
        try:
            if requests.get(f"{running.url}/health", timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the sandbox did not answer within {STARTUP_SECONDS:.0f} s")
