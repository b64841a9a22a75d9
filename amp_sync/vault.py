"""Where typed secrets are kept: the system keyring when one is usable, else an owner-only file.

workspace.json never holds a key or a password. A secret typed into the app goes to the
operating system's keyring (macOS Keychain, Windows Credential Manager, the Secret Service on
Linux desktops) under the service "amp_sync"; on a machine without one (a server, a container)
it goes to `secrets.json` beside the workspace, readable by its owner only.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import keyring
import keyring.core
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null
from keyring.errors import KeyringError

from amp_sync.errors import StateError

SERVICE = "amp_sync"
SECRETS_FILE = "secrets.json"
FORMAT = 1


class Place(StrEnum):
    """Where the vault put one secret."""

    KEYRING = "keyring"
    FILE = "file"


@dataclass(frozen=True, slots=True)
class Entry:
    """One secret in the vault: the place and the name it is kept under."""

    place: Place
    name: str


def usable(backend: KeyringBackend) -> bool:
    """True for a keyring that keeps secrets; False for keyring's fail, null and empty chainer backends."""
    if isinstance(backend, fail.Keyring | null.Keyring):
        return False
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return False
    try:
        return float(backend.priority) > 0
    except RuntimeError:  # keyring's way for a backend to say it cannot run here
        return False


def system_keyring() -> KeyringBackend:
    """The keyring the operating system offers (PYTHON_KEYRING_BACKEND when set)."""
    # keyring.get_keyring() keeps the first backend it found for the life of the process;
    # PYTHON_KEYRING_BACKEND is read on each call so a test or a deployment can choose its own.
    try:
        return keyring.core.load_env() or keyring.get_keyring()
    except (ImportError, AttributeError, RuntimeError):  # a backend named that cannot be loaded
        return fail.Keyring()


class Vault:
    """Secrets by name, in the keyring `backend` (default: the system's) or else the owner-only file."""

    def __init__(self, home: Path, backend: KeyringBackend | None = None) -> None:
        self.home = home
        self.path = home / SECRETS_FILE
        self._backend = backend

    def keyring(self) -> KeyringBackend | None:
        """The keyring secrets go to, or None when none is usable (they go to the file)."""
        backend = self._system()
        return backend if usable(backend) else None

    def put(self, name: str, value: str) -> Entry:
        """Keep `value` under `name`, replacing what was there; where it went."""
        backend = self.keyring()
        if backend is not None:
            try:
                backend.set_password(SERVICE, name, value)
                return Entry(Place.KEYRING, name)
            except KeyringError:
                pass  # a locked or refusing keyring: the owner-only file still keeps it from others
        self._write({**self._read(), name: value})
        return Entry(Place.FILE, name)

    def get(self, entry: Entry) -> str | None:
        """The value kept at `entry`; None when it is not there (any more)."""
        if entry.place is Place.FILE:
            return self._read().get(entry.name)
        try:
            return self._system().get_password(SERVICE, entry.name)
        except KeyringError as exc:
            raise StateError(f"cannot read a saved key from the system keyring: {exc}") from None

    def delete(self, entry: Entry) -> None:
        """Forget the value at `entry`; nothing happens when it is not there."""
        if entry.place is Place.FILE:
            secrets = self._read()
            if secrets.pop(entry.name, None) is not None:
                self._write(secrets)
            return
        with contextlib.suppress(KeyringError):  # already gone, or the keyring is away
            self._system().delete_password(SERVICE, entry.name)

    def where(self, place: Place) -> str:
        """Where `place` is, in words for the user."""
        if place is Place.KEYRING:
            return "kept in the system keyring"
        return f"kept in an owner-only file {self.path}, no system keyring is available"

    def _system(self) -> KeyringBackend:
        return self._backend if self._backend is not None else system_keyring()

    def _read(self) -> dict[str, str]:
        try:
            data: Any = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise StateError(f"cannot read the secrets file {self.path}: {exc}") from None
        secrets = data.get("secrets") if isinstance(data, dict) else None
        if not isinstance(secrets, dict):
            raise StateError(f"the secrets file {self.path} is not one amp_sync wrote: move it away")
        return {str(k): str(v) for k, v in secrets.items()}

    def _write(self, secrets: dict[str, str]) -> None:
        try:
            self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=".secrets-", dir=self.home)  # created 0600
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"format": FORMAT, "secrets": secrets}, f, indent=2, ensure_ascii=False)
            os.replace(tmp, self.path)
        except OSError as exc:
            raise StateError(f"cannot save the secrets file in {self.home}: {exc}") from None
