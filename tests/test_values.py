"""Warehouse values become faithful JSON, or a reason; ids are checked as Amplitude checks them."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal

import pytest
from support import too_deep

from amp_sync.values import (
    JUNK_IDS,
    MAX_KEYS,
    MAX_VALUE_BYTES,
    MAX_VALUE_DEPTH,
    Invalid,
    to_id,
    to_json,
)

UTC = dt.UTC
PLUS2 = dt.timezone(dt.timedelta(hours=2))


def nested(levels: int, inner: object = 1, kind: str = "list") -> object:
    """`inner` wrapped in `levels` lists (or one-key dicts), built without recursion."""
    value = inner
    for _ in range(levels):
        value = [value] if kind == "list" else {"a": value}
    return value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, True),
        (0, 0),
        (12, 12),
        (1.5, 1.5),
        (float("nan"), None),
        (Decimal("12.50"), 12.5),
        (Decimal("100"), 100),
        (Decimal("12345678901234567890"), 12345678901234567890),
        (Decimal("NaN"), None),
        (dt.date(2026, 3, 1), "2026-03-01"),
        (dt.datetime(2026, 3, 1, 12, 30), "2026-03-01T12:30:00Z"),
        (dt.datetime(2026, 3, 1, 12, 30, tzinfo=PLUS2), "2026-03-01T10:30:00Z"),
        (dt.datetime(2026, 3, 1, 12, 30, 0, 250000, tzinfo=UTC), "2026-03-01T12:30:00.250000Z"),
        (dt.time(8, 15), "08:15:00"),
        ("héllo 🚀", "héllo 🚀"),
        ("x" * 1024, "x" * 1024),
        (b"plain", "plain"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        ([1, "a", None], [1, "a", None]),
        ({"a": {"b": Decimal("1.5")}}, {"a": {"b": 1.5}}),
        (dt.timedelta(hours=1), "1:00:00"),
    ],
)
def test_values_become_json(value, expected) -> None:
    result = to_json(value)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("x" * 1025, "1,025 characters"),
        (float("inf"), "infinite"),
        (Decimal("-Infinity"), "infinite"),
        (b"\xff\xfe", "binary"),
        ([1, "y" * 2000], "2,000 characters"),
        (object(), "no faithful text form"),
    ],
)
def test_values_without_a_faithful_form_are_rejected_with_a_reason(value, words) -> None:
    result = to_json(value)
    assert isinstance(result, Invalid) and words in result.reason


def test_numpy_scalars_are_plain_numbers() -> None:
    np = pytest.importorskip("numpy")
    assert to_json(np.int64(7)) == 7 and to_json(np.float32(0.5)) == 0.5
    assert to_json(np.float64(math.nan)) is None


@pytest.mark.parametrize("junk", [*sorted(JUNK_IDS), "NULL", " Undefined ", "N/A", "LMY47D"])
def test_junk_ids_are_refused(junk: str) -> None:
    result = to_id(junk, "user id")
    assert isinstance(result, Invalid)
    assert "placeholder" in result.reason or "shorter" in result.reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("alice", "alice"),
        (123456, "123456"),
        (Decimal("123456"), "123456"),
        (12345.0, "12345"),
        ("  abcde", "  abcde"),
    ],
)
def test_good_ids(value, expected) -> None:
    assert to_id(value, "user id") == expected


@pytest.mark.parametrize(
    ("value", "words"),
    [(None, "missing user id"), ("abcd", "shorter than 5"), (1234, "shorter than 5"),
     (float("nan"), "missing"), (True, "text or a whole number"), ("z" * 1025, "longer")],
)  # fmt: skip
def test_bad_ids_say_why(value, words) -> None:
    result = to_id(value, "user id")
    assert isinstance(result, Invalid) and words in result.reason


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_a_value_nested_as_deep_as_amplitude_allows_is_kept_whole(kind: str) -> None:
    """39 levels: with the properties object that holds it, the 40 layers Amplitude allows."""
    value = nested(MAX_VALUE_DEPTH, "deepest", kind)
    assert to_json(value) == value


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (nested(40), too_deep(40)),
        (nested(41), too_deep(41)),
        (nested(41, kind="dict"), too_deep(41)),
        ({"ok": [1, 2], "deep": nested(411)}, too_deep(412)),
        (nested(100_000), too_deep(100_000)),
        (nested(50_000, kind="dict"), too_deep(50_000)),
        (
            {str(i): i for i in range(MAX_KEYS + 1)},
            "an object in the value has 1,025 keys; Amplitude keeps at most 1,024",
        ),
        (
            [1, {"inner": {str(i): i for i in range(5000)}}],
            "an object in the value has 5,000 keys; Amplitude keeps at most 1,024",
        ),
        (
            ["x" * 1000] * 1000,
            "the value is 1,003,001 bytes of JSON; one Amplitude request carries at most 1,000,000",
        ),
        (
            list(range(300_000)),
            "the value is 1,988,891 bytes of JSON; one Amplitude request carries at most 1,000,000",
        ),
    ],
    ids=["40-lists", "41-lists", "41-dicts", "412-deep-beside-others", "100000-lists", "50000-dicts",
         "1025-keys", "5000-keys-inside", "1-MB-of-text", "300000-numbers"],
)  # fmt: skip
def test_a_value_amplitude_cannot_hold_is_rejected_with_words(value: object, words: str) -> None:
    assert to_json(value) == Invalid(words)


def test_an_object_of_1024_keys_is_kept() -> None:
    value = {f"key_{i}": i for i in range(MAX_KEYS)}
    assert to_json(value) == value


def test_a_value_of_exactly_the_request_limit_is_kept_and_events_take_the_batch_limit() -> None:
    at_limit = ["x" * 1000] * 997 + ["x" * 5]  # 1,000,000 bytes of JSON: quotes, commas, brackets
    over = ["x" * 1000] * 997 + ["x" * 6]
    assert to_json(at_limit) == at_limit
    assert to_json(over) == Invalid(
        "the value is 1,000,001 bytes of JSON; one Amplitude request carries at most 1,000,000"
    )
    assert to_json(over, max_bytes=20 * MAX_VALUE_BYTES) == over  # the Batch API's 20 MB


@pytest.mark.parametrize("value", [10**400, -(10**400), Decimal("1e400"), Decimal("1.5e400")])
def test_a_number_past_the_largest_double_is_refused_in_words(value) -> None:
    assert to_json(value) == Invalid("a number larger than Amplitude can hold (over 1.8e308)")


def test_the_largest_whole_numbers_a_double_holds_are_kept() -> None:
    assert to_json(2**1023) == 2**1023 and to_json(Decimal(2**53)) == 2**53
