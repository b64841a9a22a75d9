"""The baselines amp_sync is measured against, written as a user would write them.

- `sdk_backfill`: read the model and send one identify per row through Amplitude's official Python
  SDK (`amplitude-analytics`), default settings but the server URL.
- `bare_read`: run the model's SELECT through the same SQLAlchemy driver and fetch it to the end.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from amplitude import Amplitude, Config, EventOptions, Identify

from amp_sync.sandbox import SANDBOX_API_KEY

CHUNK_ROWS = 10_000


def engine(url: str) -> sa.Engine:
    """An engine opened as amp_sync opens it (DuckDB files read-only)."""
    args = {"read_only": True} if url.startswith("duckdb:") else {}
    return sa.create_engine(url, connect_args=args)


def bare_read(url: str, sql: str) -> int:
    """Fetch every row of `sql` in chunks and drop it; returns the row count."""
    rows = 0
    eng = engine(url)
    try:
        with eng.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=CHUNK_ROWS).exec_driver_sql(sql)
            for part in result.partitions(CHUNK_ROWS):
                rows += len(part)
    finally:
        eng.dispose()
    return rows


def plain(value: Any) -> Any:
    """A warehouse value as the SDK accepts it (it takes only str, int, float, bool, list, dict)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.date):  # datetime is a date too
        return value.isoformat()
    return value


def sdk_backfill(url: str, sql: str, endpoint: str) -> int:
    """Send one identify per row with the official SDK, flush and shut down; returns rows read."""
    logging.getLogger("amplitude").setLevel(logging.CRITICAL)  # its per-batch logs are not the job
    client = Amplitude(SANDBOX_API_KEY, Config(server_url=f"{endpoint}/2/httpapi"))
    rows = 0
    eng = engine(url)
    try:
        with eng.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=CHUNK_ROWS).exec_driver_sql(sql)
            names = list(result.keys())[1:]
            for part in result.partitions(CHUNK_ROWS):
                for user_id, *values in part:
                    identify = Identify()
                    for name, value in zip(names, values, strict=True):
                        if value is not None:
                            identify.set(name, plain(value))
                    client.identify(identify, EventOptions(user_id=user_id))
                rows += len(part)
    finally:
        eng.dispose()
        client.flush()
        client.shutdown()
    return rows
