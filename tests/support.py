"""Test helpers shared by several test modules (import from here, never from conftest)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from amp_sync.sandbox import Sandbox


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
