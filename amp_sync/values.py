"""Warehouse values to JSON values Amplitude stores faithfully, or a reason why not."""

from __future__ import annotations

import datetime as dt
import json
import math
import numbers
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from amp_sync.amplitude import MAX_BYTES

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

# "Object depth may not exceed 40 layers", for user, group and event properties alike
# (https://amplitude.com/docs/apis/analytics/http-v2, https://amplitude.com/docs/apis/analytics/identify).
MAX_DEPTH = 40
# The properties object holding a value is the first of those layers.
MAX_VALUE_DEPTH = MAX_DEPTH - 1
# Amplitude's Python SDK sends an object of more than 1,024 keys as {} ("Too many properties"):
# https://github.com/amplitude/Amplitude-Python/blob/main/src/amplitude/utils.py
MAX_KEYS = 1024
# One value must fit in one request: Identify and Group Identify requests take at most 1 MB
# (https://amplitude.com/docs/apis/analytics/group-identify), HTTP V2 ones less than 1 MB
# (https://amplitude.com/docs/apis/analytics/http-v2). Event syncs pass the Batch API's 20 MB
# (https://amplitude.com/docs/apis/analytics/batch-event-upload).
MAX_VALUE_BYTES = MAX_BYTES

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # as requests carry values


@dataclass(frozen=True, slots=True)
class Invalid:
    """A value that cannot be sent as it is, with the reason in words."""

    reason: str


# What the converters return for a list or dict deeper than MAX_VALUE_DEPTH: they stop there, so
# converting recurses at most MAX_VALUE_DEPTH levels, however deep the value.
_TOO_DEEP = Invalid("too deep")


def to_json(value: Any, max_bytes: int = MAX_VALUE_BYTES) -> JsonValue | Invalid:
    """Convert one warehouse value to JSON, or say why it cannot be sent."""
    converted = _convert(value, 0)
    if converted is _TOO_DEEP:
        # Measured without recursion: a JSON column the driver decodes can nest deeper than
        # Python's call stack goes.
        deep = max(nesting(value), MAX_VALUE_DEPTH + 1)
        return Invalid(
            f"the value nests {deep:,} levels deep ({deep + 1:,} with its properties object); "
            f"Amplitude keeps at most {MAX_DEPTH}"
        )
    return _sized(converted, max_bytes) if isinstance(converted, list | dict) else converted


def _convert(value: Any, depth: int) -> JsonValue | Invalid:
    """`value` as JSON, where `depth` lists and dicts enclose it."""
    if isinstance(value, Invalid):  # what the warehouse reader made of JSON too deep to decode
        return value
    if value is None or isinstance(value, str | bool):
        return _checked_str(value) if isinstance(value, str) else value
    if isinstance(value, int):
        return _int(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, dt.datetime):
        return _datetime(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return _other(value, depth)


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
    if value == value.to_integral_value():
        return _int(int(value))
    number = float(value)
    return Invalid(_TOO_BIG) if math.isinf(number) else number


# Amplitude stores numbers as doubles: a whole number past the largest double has no form there
# (and Python will not even write one of over 4,300 digits as JSON).
_TOO_BIG = "a number larger than Amplitude can hold (over 1.8e308)"


def _int(value: int) -> int | Invalid:
    return Invalid(_TOO_BIG) if value.bit_length() > 1024 else value


def _datetime(value: dt.datetime) -> str:
    # Naive datetimes are taken as UTC; every datetime is sent in UTC with a "Z".
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat() + "Z"


def _other(value: Any, depth: int) -> JsonValue | Invalid:
    if isinstance(value, bytes | bytearray | memoryview):
        return _bytes(bytes(value))
    if isinstance(value, dict):
        return _mapping(value, depth + 1)
    if isinstance(value, list | tuple):
        return _sequence(value, depth + 1)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return _float(float(value))
    if isinstance(value, uuid.UUID | dt.timedelta) or hasattr(value, "__fspath__"):
        return _checked_str(str(value))
    return _generic(value, depth)


def _bytes(value: bytes) -> str | Invalid:
    try:
        return _checked_str(value.decode("utf-8"))
    except UnicodeDecodeError:
        return Invalid("a binary value is not UTF-8 text and has no faithful string form")


def _mapping(value: dict[Any, Any], depth: int) -> dict[str, JsonValue] | Invalid:
    if depth > MAX_VALUE_DEPTH:
        return _TOO_DEEP
    if len(value) > MAX_KEYS:
        return Invalid(
            f"an object in the value has {len(value):,} keys; Amplitude keeps at most {MAX_KEYS:,}"
        )
    out: dict[str, JsonValue] = {}
    for k, v in value.items():
        item = _convert(v, depth)
        if isinstance(item, Invalid):
            return item
        out[str(k)] = item
    return out


def _sequence(value: list[Any] | tuple[Any, ...], depth: int) -> list[JsonValue] | Invalid:
    if depth > MAX_VALUE_DEPTH:
        return _TOO_DEEP
    out: list[JsonValue] = []
    for v in value:
        item = _convert(v, depth)
        if isinstance(item, Invalid):
            return item
        out.append(item)
    return out


def _generic(value: Any, depth: int) -> JsonValue | Invalid:
    # numpy arrays and scalars, pandas values: anything offering a plain-Python form.
    for attr in ("tolist", "item"):
        method = getattr(value, attr, None)
        if callable(method):
            return _convert(method(), depth)
    text = str(value)
    if text.startswith("<") and " object at 0x" in text:
        return Invalid(f"a value of type {type(value).__name__} has no faithful text form")
    return _checked_str(text)


def _sized(value: JsonValue, max_bytes: int) -> JsonValue | Invalid:
    size = len(_ENCODER.encode(value).encode("utf-8"))
    if size > max_bytes:
        return Invalid(
            f"the value is {size:,} bytes of JSON; one Amplitude request carries at most {max_bytes:,}"
        )
    return value


def nesting(value: Any) -> int:
    """How many lists and dicts deep `value` nests (0 for a scalar), found without recursion."""
    deepest, seen = 0, set()
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, list | tuple | dict) or id(node) in seen:
            continue
        seen.add(id(node))  # a value that contains itself is measured once, not forever
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def load_json(text: str | bytes) -> Any:
    """json.loads for JSON columns, where a value too deep to decode becomes an Invalid, not an error."""
    try:
        return json.loads(text)
    except RecursionError:
        return Invalid(
            f"the JSON value nests too deep to read (over 900 levels); Amplitude keeps at most {MAX_DEPTH}"
        )


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
