"""The errors amp_sync raises; every message says what to do next.

    AmpSyncError
    ├── ConfigError          the sync file or its environment is wrong (lists every problem)
    ├── WarehouseError       the model could not be read (connection, SQL, refused statement)
    ├── StateError           the local snapshot store could not be read or written
    └── DestinationError     Amplitude (or the sandbox) refused or could not be reached
        ├── RetriableError   worth another try: 429, 5xx, timeouts, dropped connections
        └── FatalError       retrying cannot help: invalid API key, malformed request

Per-row problems are never exceptions: they are `Rejection` values.
"""

from __future__ import annotations


class AmpSyncError(Exception):
    """Root of every error amp_sync raises on purpose."""


class ConfigError(AmpSyncError):
    """The sync file is invalid; `problems` lists every one found."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class WarehouseError(AmpSyncError):
    """The warehouse could not be reached or the model could not be read."""


class StateError(AmpSyncError):
    """The snapshot store under AMP_SYNC_HOME could not be used."""


class DestinationError(AmpSyncError):
    """Amplitude answered with an error or could not be reached."""


class RetriableError(DestinationError):
    """A failure that another attempt may cure."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FatalError(DestinationError):
    """A failure that stops the run: retrying would fail the same way."""
