"""The servers the clients send to, each a child process on a free loopback port: the sandbox
(`python -m amp_sync sandbox`) and the endpoint that does nothing (`python -m bench.null_endpoint`).

Separate processes, so a server does not share the GIL with the client being measured.
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

from amp_sync.sandbox import CONTROL_HEADERS

STARTUP_SECONDS = 30.0
REPO = Path(__file__).resolve().parent.parent  # `-m bench.null_endpoint` imports from here


@dataclass(slots=True)
class SandboxProcess:
    """A running sandbox: its base URL and the inspection endpoints the benchmark reads."""

    url: str
    process: subprocess.Popen[bytes]

    def reset(self) -> None:
        """Forget every profile, event and request."""
        requests.post(f"{self.url}/sandbox/reset", headers=CONTROL_HEADERS, timeout=60).raise_for_status()

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


@dataclass(slots=True)
class NullEndpoint:
    """A running endpoint that does nothing: its base URL and what it received."""

    url: str
    process: subprocess.Popen[bytes]

    def reset(self) -> None:
        """Zero the counts."""
        requests.post(f"{self.url}/received/reset", timeout=60).raise_for_status()

    def received(self) -> tuple[int, int]:
        """(requests, items) received since the last reset."""
        answer = requests.get(f"{self.url}/received", timeout=60)
        answer.raise_for_status()
        counts = answer.json()
        return int(counts["requests"]), int(counts["items"])


@contextmanager
def sandbox(log: Path) -> Iterator[SandboxProcess]:
    """Start a sandbox child, wait until it answers /health, stop it on exit."""
    port = free_port()
    command = [sys.executable, "-m", "amp_sync", "sandbox", "--port", str(port)]
    with _child(command, port, log) as (url, process):
        yield SandboxProcess(url, process)


@contextmanager
def null_endpoint(log: Path) -> Iterator[NullEndpoint]:
    """Start the endpoint that does nothing, wait until it answers /health, stop it on exit."""
    port = free_port()
    command = [sys.executable, "-m", "bench.null_endpoint", str(port)]
    with _child(command, port, log) as (url, process):
        yield NullEndpoint(url, process)


@contextmanager
def _child(command: list[str], port: int, log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    with log.open("ab") as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, cwd=REPO)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, process, command[2])
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited at start (status {process.returncode})")
        try:
            if requests.get(f"{url}/health", timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer within {STARTUP_SECONDS:.0f} s")
