"""The last check of a saved destination or warehouse: works, failed and why, or never checked."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

HIDDEN = "***"


class Status(enum.StrEnum):
    """What the last check of a connection said."""

    WORKS = "works"
    FAILED = "failed"
    NEVER = "never"


# Which to offer first: a working connection, then one never checked, a failing one last.
_RANK = {Status.WORKS: 0, Status.NEVER: 1, Status.FAILED: 2}
ICONS = {
    Status.WORKS: ":material/check_circle:",
    Status.FAILED: ":material/error:",
    Status.NEVER: ":material/help:",
}
COLORS = {Status.WORKS: "green", Status.FAILED: "red", Status.NEVER: "gray"}


@dataclass(frozen=True, slots=True)
class Check:
    """One check of a connection: whether it worked, why not (free of secrets), when (Unix seconds)."""

    ok: bool
    reason: str
    at: float

    def record(self) -> dict[str, Any]:
        """The check as the workspace file keeps it."""
        return {"ok": self.ok, "reason": self.reason, "at": self.at}

    @classmethod
    def from_record(cls, record: Any) -> Check | None:
        """The check a workspace record holds; None for none (or one that cannot be read)."""
        if not isinstance(record, dict) or not isinstance(record.get("at"), int | float):
            return None
        return cls(bool(record.get("ok")), str(record.get("reason") or ""), float(record["at"]))


def scrubbed(reason: str, secrets: Iterable[str]) -> str:
    """`reason` with every secret text in it replaced by ***, longest first (one may hold another)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        reason = reason.replace(secret, HIDDEN)
    return reason


def status(check: Check | None) -> Status:
    """Works, failed, or never checked."""
    if check is None:
        return Status.NEVER
    return Status.WORKS if check.ok else Status.FAILED


def ago(seconds: float) -> str:
    """A duration in the past, in words: "just now", "2 min ago", "3 h ago", "4 days ago"."""
    if seconds < 60:
        return "just now"
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if unit == 'day' and count > 1 else ''} ago"
    return "just now"  # unreachable: 60 s and more is at least a minute


def label(check: Check | None, now: float) -> str:
    """The check in words: "Works · checked 2 min ago", "Failed: <reason> · checked …", "Never checked"."""
    if check is None:
        return "Never checked"
    when = f"checked {ago(max(0.0, now - check.at))}"
    return f"Works · {when}" if check.ok else f"Failed: {check.reason} · {when}"


def ranked(names: Iterable[str], checks: Mapping[str, Check | None]) -> list[str]:
    """`names` with the working first, then the never checked, the failing last; otherwise as given."""
    return sorted(names, key=lambda name: _RANK[status(checks.get(name))])


def default_choice(
    names: Iterable[str], checks: Mapping[str, Check | None], preferred: str | None = None
) -> str | None:
    """The one to choose by default: `preferred` when none ranks better, else the best ranked; None if none.

    A failing one is chosen only when every one is failing.
    """
    order = ranked(names, checks)
    if not order:
        return None
    best = _RANK[status(checks.get(order[0]))]
    if preferred in order and _RANK[status(checks.get(preferred))] == best:
        return preferred
    return order[0]
