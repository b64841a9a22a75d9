"""A deterministic demo warehouse (a DuckDB file) of a made-up SaaS product.

Tables: `plans`, `users`, `devices`, `payments`, `events`. Everything is drawn from
`random.Random(seed)` and anchored on the fixed date `AS_OF`, so one seed gives the same
table contents on every run and machine. Events cover the 90 days before `AS_OF`; each has a
unique `event_id` (an insert_id for a backfill) and the `device_id` it came from, one of its
user's devices. Users' `company` names a company with many users (a group for Amplitude's
Accounts). The event devices are drawn last, so every other column is the same as it was
before `events.device_id` was added.

Dirty rows are planted on purpose, so a sync shows what Amplitude refuses and why:

- short user ids `u_1` and `abc` (Amplitude wants user ids of 5 characters or more);
- a user with a NULL `user_id`;
- junk user ids `null`, `undefined` and `0` (Amplitude rejects these placeholder values);
- a duplicated user id: a second `users` row for the first user, on a different plan;
- about 1.5% of users with a NULL `country`;
- a `name` with an emoji (`u_000002`);
- a `company` longer than 1,024 characters (`u_000003`); Amplitude truncates longer strings.

The dirty rows come on top of the `users` clean ones and have devices, payments and events too.
"""

from __future__ import annotations

import itertools
import os
import random
import secrets
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pandas as pd

from amp_sync.home import home_dir

_CHECKOUT = Path(__file__).resolve().parents[1]
# In a checkout, its demo/ folder (where `make run` and examples/*.toml look), wherever amp_sync
# starts; an installed package has no such folder and keeps the demo in amp_sync's home.
DEFAULT_DEMO_PATH = (
    _CHECKOUT / "demo" / "warehouse.duckdb"
    if (_CHECKOUT / "pyproject.toml").is_file()
    else home_dir().absolute() / "demo" / "warehouse.duckdb"
)
AS_OF = date(2026, 11, 1)
EVENT_WINDOW_DAYS = 90
EVENT_TYPES = ("Login", "Create Report", "Share Report", "Invite Teammate", "Export CSV")

_DAY = 86_400
_AS_OF_S = int(datetime(AS_OF.year, AS_OF.month, AS_OF.day, tzinfo=UTC).timestamp())
_HISTORY_DAYS = 3 * 365
_TRIAL_DAYS = 14
_EVENT_WEIGHTS = (50, 20, 10, 5, 15)

# plan_id, name, monthly price in cents, is_trial
_PLANS = (
    ("free", "Free", 0, False),
    ("trial", "Trial", 0, True),
    ("starter", "Starter", 2_900, False),
    ("pro", "Pro", 9_900, False),
    ("enterprise", "Enterprise", 49_900, False),
)
_PRICE_CENTS = {plan_id: cents for plan_id, _, cents, _ in _PLANS}
_SETTLED_PLANS = ("free", "starter", "pro", "enterprise")
_SETTLED_WEIGHTS = (48, 27, 19, 6)
# Paying customers use the product more; dormant free users drag the average down.
_ACTIVITY = {"free": 0.6, "trial": 1.4, "starter": 1.0, "pro": 1.3, "enterprise": 1.6}

_COUNTRIES = ("US", "GB", "DE", "FR", "IN", "BR", "CA", "AU", "NL", "ES", "JP", "SE", "PL", "MX")
_COUNTRY_WEIGHTS = (34, 10, 8, 6, 9, 5, 5, 4, 3, 3, 4, 2, 3, 4)
_EURO = frozenset({"DE", "FR", "NL", "ES"})
_PLATFORMS = ("iOS", "Android", "Web", "macOS", "Windows")
_PLATFORM_WEIGHTS = (25, 25, 35, 8, 7)

# Word lists stay packed, several to a line: one per line would add a hundred lines of names.
# fmt: off
_FIRST = (
    "Ada", "Alan", "Amara", "Ana", "Ben", "Carla", "Chen", "Dana", "Diego", "Elif", "Emma",
    "Farah", "Felix", "Grace", "Hana", "Hugo", "Ines", "Ivan", "Jonas", "Julia", "Kai", "Kenji",
    "Lara", "Leo", "Lina", "Luca", "Maya", "Mateo", "Nia", "Noah", "Olga", "Omar", "Priya",
    "Rafael", "Sara", "Sven", "Tariq", "Uma", "Vera", "Yusuf", "Zara",
)
_LAST = (
    "Abbott", "Alvarez", "Bauer", "Brown", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia",
    "Gupta", "Haddad", "Ito", "Jansen", "Kim", "Kowalski", "Larsen", "Lopez", "Martin", "Meyer",
    "Moreau", "Nakamura", "Novak", "Okafor", "Patel", "Petrov", "Quinn", "Rossi", "Santos",
    "Schmidt", "Silva", "Singh", "Smith", "Tanaka", "Thompson", "Visser", "Wagner", "Weber",
    "Wilson", "Yilmaz",
)
_COMPANY_A = (
    "Acme", "Blue", "Bright", "Cedar", "Delta", "Ever", "Falcon", "Golden", "Harbor", "Iron",
    "Lumen", "Nova", "North",
)
_COMPANY_B = (
    "Analytics", "Labs", "Systems", "Works", "Health", "Logistics", "Media", "Retail", "Robotics",
    "Studio",
)
# fmt: on


# Explicit column types: money is DECIMAL, ids stay VARCHAR even when they look numeric.
_DDL = {
    "plans": "plan_id VARCHAR, name VARCHAR, monthly_price DECIMAL(12,2), is_trial BOOLEAN",
    "users": "user_id VARCHAR, email VARCHAR, name VARCHAR, country VARCHAR, plan_id VARCHAR, "
    "signup_at TIMESTAMP, trial_ends_at TIMESTAMP, company VARCHAR, is_verified BOOLEAN",
    "devices": "device_id VARCHAR, user_id VARCHAR, platform VARCHAR, last_seen_at TIMESTAMP",
    "payments": "payment_id VARCHAR, user_id VARCHAR, paid_at TIMESTAMP, amount DECIMAL(12,2), "
    "currency VARCHAR, status VARCHAR",
    "events": "event_id VARCHAR, user_id VARCHAR, event_type VARCHAR, occurred_at TIMESTAMP, "
    "device_id VARCHAR",
}


# user_id, paid_at (epoch seconds), amount in cents, currency, status
_Charge = tuple[str | None, int, int, str, str]


@dataclass(frozen=True, slots=True)
class _User:
    """One `users` row; times are epoch seconds so bulk generation stays cheap."""

    user_id: str | None
    email: str
    name: str
    country: str | None
    plan_id: str
    signup_s: int
    trial_ends_s: int | None
    company: str | None
    is_verified: bool


def build_demo_warehouse(path: Path, *, users: int = 12_000, seed: int = 7) -> Path:
    """(Re)write the demo warehouse at `path` atomically and return `path`."""
    if users < 3:
        raise ValueError(f"users must be at least 3 (got {users}): dirty rows reuse three ids")
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique sibling name keeps the final os.replace on one filesystem, hence atomic.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        _write(tmp, _tables(random.Random(seed), users))
        os.replace(tmp, path)
    finally:
        _remove(tmp)
    return path


def ensure_demo_warehouse(path: Path = DEFAULT_DEMO_PATH) -> Path:
    """Build the demo warehouse at `path` unless a file is already there; return `path`."""
    return path if path.exists() else build_demo_warehouse(path)


def demo_url(path: Path = DEFAULT_DEMO_PATH) -> str:
    """The SQLAlchemy URL of the demo warehouse at `path`."""
    return f"duckdb:///{path.resolve()}"


def _tables(rng: random.Random, count: int) -> dict[str, pd.DataFrame]:
    """Generate every table, in a fixed order so the random stream is reproducible."""
    people = _with_dirty_rows(rng, _clean_users(rng, count))
    frames = {
        "plans": _plans_frame(),
        "users": _users_frame(people),
        "devices": _devices_frame(rng, people),
        "payments": _payments_frame(rng, people),
        "events": _events_frame(rng, people),
    }
    # Drawn after everything else, so adding this column changed no other value.
    frames["events"]["device_id"] = _event_devices(rng, frames["events"], frames["devices"])
    return frames


def _write(path: Path, frames: dict[str, pd.DataFrame]) -> None:
    """Create the tables with explicit types and bulk-insert each frame."""
    con = duckdb.connect(str(path))
    try:
        for table, frame in frames.items():
            con.execute(f"CREATE TABLE {table} ({_DDL[table]})")
            con.register("frame", frame)
            con.execute(f"INSERT INTO {table} SELECT {_select_list(frame)} FROM frame")
            con.unregister("frame")
    finally:
        con.close()


def _select_list(frame: pd.DataFrame) -> str:
    """Columns in frame order; `*_s` epoch seconds become TIMESTAMP, `*_cents` become money."""
    parts = []
    for column in frame.columns:
        if column.endswith("_s"):
            parts.append(f"epoch_ms({column} * 1000)")
        elif column.endswith("_cents"):
            # Float division then a DECIMAL cast rounds to the exact cent.
            parts.append(f"CAST({column} / 100 AS DECIMAL(12,2))")
        else:
            parts.append(column)
    return ", ".join(parts)


def _remove(path: Path) -> None:
    """Delete a leftover temp database and its write-ahead log, if any."""
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)


def _plans_frame() -> pd.DataFrame:
    """The five plans."""
    return pd.DataFrame(_PLANS, columns=["plan_id", "name", "monthly_price_cents", "is_trial"]).astype(
        {"monthly_price_cents": "int64"}
    )


def _clean_users(rng: random.Random, count: int) -> list[_User]:
    """`count` plausible users with ids `u_000001`, `u_000002`, ..."""
    return [_user(rng, f"u_{i:06d}", i) for i in range(1, count + 1)]


def _user(rng: random.Random, user_id: str | None, number: int) -> _User:
    """One plausible user; signups grow towards AS_OF, recent ones are mostly on trial."""
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    signup_s = _AS_OF_S - int(_HISTORY_DAYS * _DAY * (1 - rng.random() ** 0.6)) - 1
    plan_id, trial_ends_s = _plan(rng, signup_s)
    company = _company(rng) if rng.random() < (0.4 if plan_id == "free" else 0.9) else None
    domain = company.split()[0].lower() + ".example" if company else "mail.example"
    return _User(
        user_id=user_id,
        email=f"{first}.{last}.{number}@{domain}".lower(),
        name=f"{first} {last}",
        country=None if rng.random() < 0.015 else _weighted(rng, _COUNTRIES, _COUNTRY_WEIGHTS),
        plan_id=plan_id,
        signup_s=signup_s,
        trial_ends_s=trial_ends_s,
        company=company,
        is_verified=rng.random() < 0.85,
    )


def _plan(rng: random.Random, signup_s: int) -> tuple[str, int | None]:
    """A plan and a trial end (set only for trials and converted trials)."""
    trial_ends_s = signup_s + _TRIAL_DAYS * _DAY
    if trial_ends_s > _AS_OF_S and rng.random() < 0.7:
        return "trial", trial_ends_s
    plan_id = _weighted(rng, _SETTLED_PLANS, _SETTLED_WEIGHTS)
    converted = plan_id != "free" and trial_ends_s <= _AS_OF_S and rng.random() < 0.5
    return plan_id, trial_ends_s if converted else None


def _company(rng: random.Random) -> str:
    """A made-up company name."""
    return f"{rng.choice(_COMPANY_A)} {rng.choice(_COMPANY_B)}"


def _weighted(rng: random.Random, values: Sequence[str], weights: Sequence[int]) -> str:
    """One value drawn with the given weights."""
    return rng.choices(values, weights)[0]


def _with_dirty_rows(rng: random.Random, people: list[_User]) -> list[_User]:
    """Plant the dirty rows listed in the module docstring, on top of `people`."""
    first, second, third = people[:3]
    long_company = ("Very Long Company Name Holdings " * 40).strip()
    other_plan = "free" if first.plan_id == "enterprise" else "enterprise"
    bad_ids = ("u_1", "abc", None, "null", "undefined", "0")
    return [
        first,
        replace(second, name="Zoë 🦄 Okafor"),
        replace(third, company=long_company),
        *people[3:],
        *(_user(rng, bad_id, len(people) + n) for n, bad_id in enumerate(bad_ids, start=1)),
        replace(first, plan_id=other_plan, trial_ends_s=None),
    ]


def _users_frame(people: list[_User]) -> pd.DataFrame:
    """The `users` table, columns in DDL order."""
    return pd.DataFrame(
        {
            "user_id": [p.user_id for p in people],
            "email": [p.email for p in people],
            "name": [p.name for p in people],
            "country": [p.country for p in people],
            "plan_id": [p.plan_id for p in people],
            "signup_at_s": pd.array([p.signup_s for p in people], dtype="Int64"),
            "trial_ends_at_s": pd.array([p.trial_ends_s for p in people], dtype="Int64"),
            "company": [p.company for p in people],
            "is_verified": [p.is_verified for p in people],
        }
    )


def _devices_frame(rng: random.Random, people: list[_User]) -> pd.DataFrame:
    """One to three devices per user, seen at some point since signup."""
    rows = []
    for person in people:
        for _ in range(rng.choices((1, 2, 3), (60, 30, 10))[0]):
            device_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            platform = _weighted(rng, _PLATFORMS, _PLATFORM_WEIGHTS)
            seen_s = person.signup_s + int(rng.random() * (_AS_OF_S - person.signup_s))
            rows.append((device_id, person.user_id, platform, seen_s))
    columns = ["device_id", "user_id", "platform", "last_seen_at_s"]
    return pd.DataFrame(rows, columns=columns).astype({"last_seen_at_s": "int64"})


def _payments_frame(rng: random.Random, people: list[_User]) -> pd.DataFrame:
    """Monthly charges for paying plans; a few fail (and are retried) or get refunded."""
    rows = []
    for person in people:
        for paid_s in _billing_dates(person):
            rows.extend(_charge(rng, person, paid_s))
    numbered = [(f"pay_{i:07d}", *row) for i, row in enumerate(rows, start=1)]
    columns = ["payment_id", "user_id", "paid_at_s", "amount_cents", "currency", "status"]
    return pd.DataFrame(numbered, columns=columns).astype({"paid_at_s": "int64", "amount_cents": "int64"})


def _billing_dates(person: _User) -> Iterator[int]:
    """Epoch seconds of each monthly charge before AS_OF, from signup or trial end."""
    if _PRICE_CENTS[person.plan_id] == 0:
        return
    start = datetime.fromtimestamp(person.trial_ends_s or person.signup_s, UTC)
    for months in itertools.count():
        paid_s = int(_add_months(start, months).timestamp())
        if paid_s >= _AS_OF_S:
            return
        yield paid_s


def _add_months(moment: datetime, months: int) -> datetime:
    """`moment` moved by whole calendar months; day 28 at most so every month has it."""
    year, month = divmod(moment.month - 1 + months, 12)
    return moment.replace(year=moment.year + year, month=month + 1, day=min(moment.day, 28))


def _charge(rng: random.Random, person: _User, paid_s: int) -> list[_Charge]:
    """One billing attempt: succeeded, refunded, or failed then retried three days later."""
    cents, currency = _PRICE_CENTS[person.plan_id], _currency(person.country)
    roll = rng.random()
    if roll >= 0.03:
        status = "refunded" if roll < 0.045 else "succeeded"
        return [(person.user_id, paid_s, cents, currency, status)]
    failed: _Charge = (person.user_id, paid_s, cents, currency, "failed")
    retry_s = paid_s + 3 * _DAY
    if retry_s >= _AS_OF_S:
        return [failed]
    return [failed, (person.user_id, retry_s, cents, currency, "succeeded")]


def _currency(country: str | None) -> str:
    """Billing currency; one per user, so per-user sums stay in one currency."""
    if country == "GB":
        return "GBP"
    return "EUR" if country in _EURO else "USD"


def _events_frame(rng: random.Random, people: list[_User]) -> pd.DataFrame:
    """Product events over the 90 days before AS_OF: many dormant users, a heavy tail."""
    user_ids: list[str | None] = []
    types: list[str] = []
    times: list[int] = []
    window_start = _AS_OF_S - EVENT_WINDOW_DAYS * _DAY
    for person in people:
        start = max(window_start, person.signup_s)
        count = _event_count(rng, person, (_AS_OF_S - start) / (_AS_OF_S - window_start))
        span = _AS_OF_S - start
        user_ids.extend([person.user_id] * count)
        types.extend(rng.choices(EVENT_TYPES, _EVENT_WEIGHTS, k=count))
        times.extend(start + int(rng.random() * span) for _ in range(count))
    return pd.DataFrame(
        {
            "event_id": [f"evt_{i:07d}" for i in range(1, len(times) + 1)],
            "user_id": user_ids,
            "event_type": types,
            "occurred_at_s": pd.array(times, dtype="int64"),
        }
    )


def _event_count(rng: random.Random, person: _User, share_of_window: float) -> int:
    """How many events a user has: 35% none, the rest Pareto-distributed, capped."""
    if rng.random() < 0.35:
        return 0
    heavy_tail = rng.paretovariate(1.4) * 12 * _ACTIVITY[person.plan_id]
    return min(1_500, int(heavy_tail * share_of_window))


def _event_devices(rng: random.Random, events: pd.DataFrame, devices: pd.DataFrame) -> list[str]:
    """The device each event came from: one of its user's devices, the first one most often."""
    owned: dict[str | None, list[str]] = {}
    for device_id, user_id in zip(devices["device_id"], devices["user_id"], strict=True):
        owned.setdefault(user_id, []).append(device_id)
    picks = []
    for user_id in events["user_id"]:
        choices = owned[user_id]
        picks.append(choices[0] if len(choices) == 1 or rng.random() < 0.6 else rng.choice(choices))
    return picks
