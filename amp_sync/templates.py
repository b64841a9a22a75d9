"""Starter models: SQL a user can pick, run against the demo warehouse, then adapt to their own.

Each user model returns one row per `users` row (LEFT JOINs onto pre-aggregated facts), so every
user appears, dirty ones included, and a duplicated id stays duplicated for the sync to flag.
The company model returns one row per company (a group), the events model one row per event.
Dates are measured from the demo's fixed `AS_OF` as a literal; on a live warehouse, swap the
literal for `CURRENT_DATE`. The SQL sticks to what DuckDB and PostgreSQL both accept (no
`FILTER`, no `now()`; `DATE - DATE` for whole days) and is a single read-only statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from amp_sync.config import SyncObject
from amp_sync.demo import AS_OF

_AS_OF = f"DATE '{AS_OF.isoformat()}'"
_KEY_ACTION_TYPES = "('Create Report', 'Share Report')"


def _days_before(days: int) -> str:
    """A SQL timestamp literal for midnight `days` before AS_OF."""
    return f"TIMESTAMP '{(AS_OF - timedelta(days=days)).isoformat()} 00:00:00'"


@dataclass(frozen=True, slots=True)
class ModelTemplate:
    """A ready-made model: its SQL, what a row is in Amplitude, its key column, suggested mappings."""

    name: str
    title: str
    description: str
    sql: str
    key: str
    mappings: tuple[tuple[str, str], ...]
    object: SyncObject = SyncObject.USER


_LIFETIME_VALUE = ModelTemplate(
    name="lifetime_value",
    title="Lifetime value",
    description="What each user has paid so far (succeeded payments only), how often and "
    "when, in their billing currency, with their current plan.",
    sql="""\
WITH paid AS (
    SELECT
        user_id,
        SUM(amount) AS lifetime_value,
        COUNT(*) AS payment_count,
        MAX(currency) AS currency,
        CAST(MIN(paid_at) AS DATE) AS first_paid_date,
        CAST(MAX(paid_at) AS DATE) AS last_paid_date
    FROM payments
    WHERE status = 'succeeded'
    GROUP BY user_id
)
SELECT
    u.user_id,
    COALESCE(paid.lifetime_value, 0) AS lifetime_value,
    COALESCE(paid.payment_count, 0) AS payment_count,
    paid.currency,
    paid.first_paid_date,
    paid.last_paid_date,
    p.name AS plan
FROM users AS u
LEFT JOIN paid ON paid.user_id = u.user_id
LEFT JOIN plans AS p ON p.plan_id = u.plan_id""",
    key="user_id",
    mappings=(
        ("lifetime_value", "lifetime_value"),
        ("payment_count", "payment_count"),
        ("currency", "billing_currency"),
        ("first_paid_date", "first_paid_date"),
        ("last_paid_date", "last_paid_date"),
        ("plan", "plan"),
    ),
)

_TRIAL_END = ModelTemplate(
    name="trial_end",
    title="Trial end date",
    description=f"When each user's trial ends or ended, and the days left as of {AS_OF} "
    "(0 once it has ended, empty for users who never trialled).",
    sql=f"""\
SELECT
    u.user_id,
    CAST(u.trial_ends_at AS DATE) AS trial_end_date,
    CASE
        WHEN u.trial_ends_at IS NULL THEN NULL
        WHEN CAST(u.trial_ends_at AS DATE) < {_AS_OF} THEN 0
        ELSE CAST(u.trial_ends_at AS DATE) - {_AS_OF}
    END AS trial_days_left
FROM users AS u""",
    key="user_id",
    mappings=(
        ("trial_end_date", "trial_end_date"),
        ("trial_days_left", "trial_days_left"),
    ),
)

_BECAME_ACTIVE = ModelTemplate(
    name="became_active",
    title="Date the user became active",
    description="The first day each user did anything in the event window, and the first day "
    "they created or shared a report.",
    sql=f"""\
WITH activity AS (
    SELECT
        user_id,
        CAST(MIN(occurred_at) AS DATE) AS first_active_date,
        CAST(MIN(CASE WHEN event_type IN {_KEY_ACTION_TYPES} THEN occurred_at END) AS DATE)
            AS first_key_action_date
    FROM events
    GROUP BY user_id
)
SELECT
    u.user_id,
    a.first_active_date,
    a.first_key_action_date
FROM users AS u
LEFT JOIN activity AS a ON a.user_id = u.user_id""",
    key="user_id",
    mappings=(
        ("first_active_date", "first_active_date"),
        ("first_key_action_date", "first_key_action_date"),
    ),
)

_KEY_ACTIONS = ModelTemplate(
    name="key_actions",
    title="Key actions in the last 7 and 30 days",
    description=f"How many reports each user created or shared in the 7 and 30 days before {AS_OF}.",
    sql=f"""\
WITH recent AS (
    SELECT
        user_id,
        SUM(CASE WHEN occurred_at >= {_days_before(7)} THEN 1 ELSE 0 END) AS actions_7d,
        COUNT(*) AS actions_30d
    FROM events
    WHERE event_type IN {_KEY_ACTION_TYPES}
        AND occurred_at >= {_days_before(30)}
        AND occurred_at < {_days_before(0)}
    GROUP BY user_id
)
SELECT
    u.user_id,
    CAST(COALESCE(r.actions_7d, 0) AS INTEGER) AS key_actions_7d,
    CAST(COALESCE(r.actions_30d, 0) AS INTEGER) AS key_actions_30d
FROM users AS u
LEFT JOIN recent AS r ON r.user_id = u.user_id""",
    key="user_id",
    mappings=(
        ("key_actions_7d", "key_actions_7d"),
        ("key_actions_30d", "key_actions_30d"),
    ),
)

_COMPANY_ACCOUNTS = ModelTemplate(
    name="company_accounts",
    title="Companies (groups)",
    description="One row per company: its seats, paying seats, monthly recurring revenue, "
    'status and the day its first user signed up, for a group sync of type "company".',
    sql="""\
SELECT
    u.company,
    COUNT(*) AS seats,
    SUM(CASE WHEN p.monthly_price > 0 THEN 1 ELSE 0 END) AS paying_seats,
    SUM(p.monthly_price) AS mrr,
    CASE
        WHEN SUM(CASE WHEN p.monthly_price > 0 THEN 1 ELSE 0 END) > 0 THEN 'customer'
        WHEN SUM(CASE WHEN p.is_trial THEN 1 ELSE 0 END) > 0 THEN 'trial'
        ELSE 'free'
    END AS account_status,
    CAST(MIN(u.signup_at) AS DATE) AS customer_since
FROM users AS u
JOIN plans AS p ON p.plan_id = u.plan_id
WHERE u.company IS NOT NULL
GROUP BY u.company""",
    key="company",
    mappings=(
        ("seats", "seats"),
        ("paying_seats", "paying_seats"),
        ("mrr", "mrr"),
        ("account_status", "account_status"),
        ("customer_since", "customer_since"),
    ),
    object=SyncObject.GROUP,
)

_PRODUCT_EVENTS = ModelTemplate(
    name="product_events",
    title="Product events (backfill)",
    description="One row per product event: its id (the insert_id), user, type, time and the "
    "platform of the device it came from, for an event sync.",
    sql="""\
SELECT
    e.event_id,
    e.user_id,
    e.event_type,
    e.occurred_at,
    d.platform
FROM events AS e
LEFT JOIN devices AS d ON d.device_id = e.device_id""",
    key="user_id",
    mappings=(("platform", "platform"),),
    object=SyncObject.EVENT,
)

STARTER_MODELS: tuple[ModelTemplate, ...] = (
    _LIFETIME_VALUE,
    _TRIAL_END,
    _BECAME_ACTIVE,
    _KEY_ACTIONS,
    _COMPANY_ACCOUNTS,
    _PRODUCT_EVENTS,
)


def template(name: str) -> ModelTemplate:
    """The starter model called `name`; KeyError naming the choices if there is none."""
    for model in STARTER_MODELS:
        if model.name == name:
            return model
    choices = ", ".join(model.name for model in STARTER_MODELS)
    raise KeyError(f"no starter model named {name!r}; choose one of: {choices}")
