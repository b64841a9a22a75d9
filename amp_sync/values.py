"""Warehouse values to JSON values Amplitude stores faithfully, or a reason why not."""

from __future__ import annotations

import datetime as dt
import math
import numbers
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# Amplitude cuts longer strings silently (https://amplitude.com/docs/apis/analytics/http-v2, "String length").
MAX_STRING = 1024

# Amplitude's reserved ids that it refuses with a 400:
# https://amplitude.com/docs/apis/analytics/http-v2 ("Device IDs and User IDs")
JUNK_IDS = frozenset(
    {
        "anonymous", "nil", "none", "null", "n/a", "na", "undefined", "unknown", "",
        '""', "00000000-0000-0000-0000-000000000000", "{}", "lmy47d", "0", "-1",
    }
)  # fmt: skip
MIN_ID_LENGTH = 5

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


@dataclass(frozen=True, slots=True)
class Invalid:
    """A value that cannot be sent as it is, with the reason in words."""

    reason: str


def to_json(value: Any) -> JsonValue | Invalid:
    """Convert one warehouse value to JSON, or say why it cannot be sent."""
    if value is None or isinstance(value, str | bool | int):
        return _checked_str(value) if isinstance(value, str) else value
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, dt.datetime):
        return _datetime(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return _other(value)


def _checked_str(text: str) -> str | Invalid:
    if len(text) > MAX_STRING:
        return Invalid(f"a text value is {len(text):,} characters long; Amplitude keeps only {MAX_STRING:,}")
    return text


def _float(value: float) -> float | Invalid | None:
    if math.isnan(value):
        return None
    if math.isinf(value):
        return Invalid("an infinite number has no JSON form")
    return value


def _decimal(value: Decimal) -> int | float | Invalid | None:
    if value.is_nan():
        return None
    if value.is_infinite():
        return Invalid("an infinite number has no JSON form")
    # Integral decimals stay exact as JSON integers; others become the nearest double,
    # which is what Amplitude stores for any number.
    return int(value) if value == value.to_integral_value() else float(value)


def _datetime(value: dt.datetime) -> str:
    # Naive datetimes are taken as UTC; every datetime is sent in UTC with a "Z".
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat() + "Z"


def _other(value: Any) -> JsonValue | Invalid:
    if isinstance(value, bytes | bytearray | memoryview):
        return _bytes(bytes(value))
    if isinstance(value, dict):
        return _mapping(value)
    if isinstance(value, list | tuple):
        return _sequence(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return _float(float(value))
    if isinstance(value, uuid.UUID | dt.timedelta) or hasattr(value, "__fspath__"):
        return _checked_str(str(value))
    return _generic(value)


def _bytes(value: bytes) -> str | Invalid:
    try:
        return _checked_str(value.decode("utf-8"))
    except UnicodeDecodeError:
        return Invalid("a binary value is not UTF-8 text and has no faithful string form")


def _mapping(value: dict[Any, Any]) -> dict[str, JsonValue] | Invalid:
    out: dict[str, JsonValue] = {}
    for k, v in value.items():
        item = to_json(v)
        if isinstance(item, Invalid):
            return item
        out[str(k)] = item
    return out


def _sequence(value: list[Any] | tuple[Any, ...]) -> list[JsonValue] | Invalid:
    out: list[JsonValue] = []
    for v in value:
        item = to_json(v)
        if isinstance(item, Invalid):
            return item
        out.append(item)
    return out


def _generic(value: Any) -> JsonValue | Invalid:
    # numpy arrays and scalars, pandas values: anything offering a plain-Python form.
    for attr in ("tolist", "item"):
        method = getattr(value, attr, None)
        if callable(method):
            return to_json(method())
    text = str(value)
    if text.startswith("<") and " object at 0x" in text:
        return Invalid(f"a value of type {type(value).__name__} has no faithful text form")
    return _checked_str(text)


def plain_id(value: Any) -> bool:
    """True for the common case of a text id that needs no further checks."""
    return (
        type(value) is str
        and MIN_ID_LENGTH <= len(value) <= MAX_STRING
        and (len(value) > 40 or value.strip().lower() not in JUNK_IDS)
    )


def to_id(value: Any, label: str) -> str | Invalid:
    """The Amplitude id held by `value`, or why Amplitude would refuse it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Invalid(f"missing {label}")
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal | uuid.UUID):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            return Invalid(f"the {label} must be text or a whole number, not {type(value).__name__}")
    if isinstance(value, Decimal) and value == value.to_integral_value():
        value = int(value)
    text = str(value)
    if text.strip().lower() in JUNK_IDS:
        return Invalid(f"{label} {text!r} is a placeholder id that Amplitude refuses")
    if len(text) < MIN_ID_LENGTH:
        return Invalid(f"{label} {text!r} is shorter than {MIN_ID_LENGTH} characters")
    if len(text) > MAX_STRING:
        return Invalid(f"the {label} is longer than {MAX_STRING:,} characters")
    return text


def to_group_value(value: Any, label: str = "group value") -> str | Invalid:
    """A group value (an account, a team...): any non-blank text or whole number Amplitude keeps."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Invalid(f"missing {label}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, str | int | uuid.UUID):
        return Invalid(f"the {label} must be text or a whole number, not {type(value).__name__}")
    text = str(value)
    if not text.strip():
        return Invalid(f"blank {label}")
    if len(text) > MAX_STRING:
        return Invalid(f"the {label} is longer than {MAX_STRING:,} characters")
    return text
