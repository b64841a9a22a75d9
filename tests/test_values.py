"""Warehouse values become faithful JSON, or a reason; ids are checked as Amplitude checks them."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal

import pytest

from amp_sync.values import JUNK_IDS, Invalid, to_id, to_json

UTC = dt.UTC
PLUS2 = dt.timezone(dt.timedelta(hours=2))


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
