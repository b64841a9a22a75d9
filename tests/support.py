"""Test helpers shared by several test modules (import from here, never from conftest)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

from amp_sync.sandbox import SANDBOX_API_KEY, Sandbox
from amp_sync.state import DestinationRef, StateStore


@dataclass
class Warehouse:
    """A real database reachable by URL, with a helper to run setup SQL."""

    name: str
    url: str

    def execute(self, *statements: str, rows: list[dict] | None = None) -> None:
        engine = sa.create_engine(self.url)
        try:
            with engine.begin() as conn:
                for sql in statements:
                    if rows is not None and sql.lstrip().lower().startswith("insert"):
                        conn.execute(sa.text(sql), rows)
                    else:
                        conn.execute(sa.text(sql))
        finally:
            engine.dispose()


@dataclass
class AppEnv:
    """What the app sees in a test: its home folder, the sandbox and the demo warehouse."""

    home: Path
    sandbox: Sandbox
    demo: Path


# A destination for tests of the state store itself (the runner derives one from the sync file).
TEST_DESTINATION = DestinationRef("Sandbox", "http://127.0.0.1:8766", "0" * 32)


def too_deep(levels: int) -> str:
    """The reason a value nested `levels` deep is rejected with."""
    return (
        f"the value nests {levels:,} levels deep ({levels + 1:,} with its properties object); "
        "Amplitude keeps at most 40"
    )


def open_state(home: Path, sync: str, read_only: bool = False) -> StateStore | None:
    """The state of `sync` at the one destination it has sent to (TEST_DESTINATION if none)."""
    reader = StateStore.open_read_only(home, sync)
    known = reader.known_destinations() if reader else []
    if reader:
        reader.close()
    ref = known[0].ref if len(known) == 1 else TEST_DESTINATION
    return StateStore.open_read_only(home, sync, ref) if read_only else StateStore.open(home, sync, ref)


def sync_file_text(
    url: str,
    endpoint: str,
    sql: str = "select user_id, plan, ltv from users",
    mappings: tuple[tuple[str, str, str], ...] = (
        ("plan", "plan", "$set"),
        ("ltv", "lifetime_value", "$set"),
    ),
    name: str = "ltv-to-amplitude",
    object_: str = "user",
    key: str = "user_id",
    extra_sync: str = "",
    api_key: str = SANDBOX_API_KEY,
    behavior: str | None = "update_or_create",
) -> str:
    """A complete sync file."""
    maps = "".join(
        f'\n[[sync.mappings]]\ncolumn = "{c}"\nproperty = "{p}"\nop = "{o}"\n' for c, p, o in mappings
    )
    return f'''
[source]
url = "{url}"

[destination]
name = "Sandbox"
api_key = "{api_key}"
region = "us"
endpoint = "{endpoint}"

[model]
name = "users"
sql = """{sql}"""

[sync]
name = "{name}"
object = "{object_}"
{f'behavior = "{behavior}"' if behavior else ""}
key = "{key}"
{extra_sync}
{maps}'''


class MemoryKeyring(KeyringBackend):
    """A system keyring the test holds in a dict.

    It takes that dict as an argument, so keyring's own detection (which builds every backend it
    knows without arguments) never picks it for anything else in the process.
    """

    priority = 1

    def __init__(self, items: dict[tuple[str, str], str]) -> None:
        super().__init__()
        self.items = items

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.items.pop((service, username), None) is None:
            raise PasswordDeleteError(username)
