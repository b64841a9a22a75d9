"""A local Amplitude look-alike: the embedded default destination and the fake Amplitude in tests.

It answers /identify, /groupidentify, /2/httpapi, /batch and /api/2/events/list with Amplitude's
status codes and bodies, validates as Amplitude does (a request with one bad item is refused whole,
with the bad indexes), and keeps the profiles, groups and events it builds in memory, readable
through `SandboxStore` or GET /sandbox/... . Nothing it receives is ever logged: request bodies and
query strings can hold API keys. Limits and rules come from Amplitude's API pages
(https://amplitude.com/docs/apis/analytics/identify, .../http-v2, .../batch-event-upload,
.../group-identify).

`Faults` makes the ingestion endpoints fail on purpose, as Amplitude and networks do (429, 500,
503, a 500 after the request was applied, dropped connections, slow answers, 413), so that tests
and the app's demo mode can show that a sync loses nothing. Its throttle can carry a Retry-After
header (`retry_after`). `daily_quota` simulates Amplitude's daily limit of events per user_id and
per device_id (rolling 24 h in hourly steps, read from the store's clock): an HTTP V2 or Batch
request holding an id that has reached it gets Amplitude's 429 with `exceeded_daily_quota_users` /
`exceeded_daily_quota_devices`, and nothing of it is applied. It is off by default, as Amplitude
enforces it only on ids it flags as spamming; events count from when it is set. Set faults at
start, with `Sandbox.set_faults`, or over HTTP at /sandbox/faults (`set_faults`, `get_faults`).

It serves this machine, not the web pages its browser opens. A request whose Host header names
neither a loopback address (localhost, 127.x.y.z, [::1]), nor the host the sandbox was started on,
nor the address the connection arrived on gets a 403, so a page cannot reach it by pointing its own
DNS name at it; so does a request with an Origin that is not a loopback origin. POSTs to
/sandbox/faults, /sandbox/reset and /sandbox/inactive also need the header `X-Amp-Sync-Sandbox:
control` (`CONTROL_HEADERS`), which a page cannot send to another origin without a CORS preflight
that the sandbox never approves; `set_faults`, `get_faults` and `fetch` send it. A connection that
sends nothing for `idle_timeout` seconds (30) is closed. Properties nested deeper than 40 levels
are refused as Amplitude refuses them, and a request is applied whole or not at all.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import hmac
import ipaddress
import json
import math
import random
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from base64 import b64decode
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from email.message import Message
from enum import StrEnum
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, urlsplit

from amp_sync.errors import DestinationError

SANDBOX_API_KEY = "sandbox-api-key"
SANDBOX_SECRET_KEY = "sandbox-secret-key"
DEFAULT_PORT = 8766
# gc.set_threshold of a served sandbox: CPython's defaults, but full collections at most a tenth as often.
FULL_COLLECTION_THRESHOLDS = (700, 10, 100)

# Amplitude's documented limits (amplitude-api.md §0, §2, §3, §4).
DEFAULT_MIN_ID_LENGTH = 5
MAX_STRING_LENGTH = 1024
MAX_EVENTS = 2000
MAX_GROUP_IDENTIFICATIONS = 1024
BATCH_MAX_BODY_BYTES = 20_000_000
# "Object depth may not exceed 40 layers" (https://amplitude.com/docs/apis/analytics/http-v2): a
# properties object is layer 1, an object or array in it layer 2, and so on.
MAX_PROPERTY_DEPTH = 40

# The local-server rules (see the module docstring).
CONTROL_HEADER, CONTROL_VALUE = "X-Amp-Sync-Sandbox", "control"
CONTROL_HEADERS: Mapping[str, str] = MappingProxyType({CONTROL_HEADER: CONTROL_VALUE})
CONTROL_PATHS = frozenset({"/sandbox/faults", "/sandbox/reset", "/sandbox/inactive"})
DEFAULT_IDLE_TIMEOUT = 30.0

# Ids Amplitude refuses with a 400 (amplitude-api.md §2 "IDs"); matched after strip, any case.
JUNK_IDS = frozenset(
    {
        "anonymous",
        "nil",
        "none",
        "null",
        "n/a",
        "na",
        "undefined",
        "unknown",
        "",
        '""',
        "00000000-0000-0000-0000-000000000000",
        "{}",
        "lmy47d",
        "0",
        "-1",
    }
)
USER_OPERATIONS = frozenset(
    {
        "$set",
        "$setOnce",
        "$add",
        "$append",
        "$prepend",
        "$preInsert",
        "$postInsert",
        "$remove",
        "$unset",
        "$clearAll",
    }
)
GROUP_OPERATIONS = frozenset({"$set", "$setOnce", "$add", "$append", "$prepend", "$unset"})
# Identify calls are not events: Amplitude lists neither as an event type.
_IDENTIFY_EVENT_TYPES = frozenset({"$identify", "$groupidentify"})
_ID_FIELDS = ("user_id", "device_id")
_USER_FIELD = ("user_properties",)
_OPERATION_FIELDS = ("user_properties", "group_properties")

JSON = dict[str, Any]
# (invalid field names, missing field names) of one item
_FieldFaults = tuple[list[str], list[str]]


# --- property operations (pure) -------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_list(value: object) -> list[Any]:
    """A property value as a list: absent is empty, a scalar becomes a one-item list."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _new_values(current: list[Any], values: object) -> list[Any]:
    """The values not yet in `current`, each once, in the order given."""
    fresh: list[Any] = []
    for value in _as_list(values):
        if value not in current and value not in fresh:
            fresh.append(value)
    return fresh


def _set(props: JSON, values: JSON) -> None:
    props.update(values)


def _set_once(props: JSON, values: JSON) -> None:
    for name, value in values.items():
        props.setdefault(name, value)


def _add(props: JSON, values: JSON) -> None:
    for name, value in values.items():
        base = props.get(name)
        props[name] = (base if _is_number(base) else 0) + value


def _append(props: JSON, values: JSON) -> None:
    for name, value in values.items():
        props[name] = _as_list(props.get(name)) + _as_list(value)


def _prepend(props: JSON, values: JSON) -> None:
    for name, value in values.items():
        props[name] = _as_list(value) + _as_list(props.get(name))


def _post_insert(props: JSON, values: JSON) -> None:
    for name, value in values.items():
        current = _as_list(props.get(name))
        props[name] = current + _new_values(current, value)


def _pre_insert(props: JSON, values: JSON) -> None:
    for name, value in values.items():
        current = _as_list(props.get(name))
        props[name] = _new_values(current, value) + current


def _remove(props: JSON, values: JSON) -> None:
    for name, value in values.items():
        if name in props:
            gone = _as_list(value)
            props[name] = [item for item in _as_list(props[name]) if item not in gone]


def _unset(props: JSON, values: JSON) -> None:
    for name in values:
        props.pop(name, None)


_OPERATORS: dict[str, Callable[[JSON, JSON], None]] = {
    "$set": _set,
    "$setOnce": _set_once,
    "$add": _add,
    "$append": _append,
    "$prepend": _prepend,
    "$preInsert": _pre_insert,
    "$postInsert": _post_insert,
    "$remove": _remove,
    "$unset": _unset,
}


def _apply_operations(current: JSON, operations: JSON) -> JSON:
    """The properties after `operations`; $clearAll goes first so the rest start from nothing."""
    result: JSON = {} if "$clearAll" in operations else dict(current)
    for operation, values in operations.items():
        if operation != "$clearAll":
            _OPERATORS[operation](result, values)
    return result


# --- validation (pure) ----------------------------------------------------------------------


def _beyond_limits(values: Iterable[object], depth: int, max_length: float) -> bool:
    """Whether a string among `values`, or in the lists and dicts in them, is over `max_length`
    characters, or those lists and dicts nest past MAX_PROPERTY_DEPTH; what holds `values` is at `depth`.
    """
    # A loop over a stack, not recursion: json.loads takes nesting almost as deep as the recursion
    # limit, and a recursive walk of it would raise RecursionError halfway through a request. It
    # runs on every property of every item, hence one isinstance per type and no union types.
    stack: list[tuple[Iterable[object], int]] = [(values, depth)]
    while stack:
        group, level = stack.pop()
        for value in group:
            if isinstance(value, str):
                if len(value) > max_length:
                    return True
            elif isinstance(value, dict):
                if level >= MAX_PROPERTY_DEPTH:
                    return True
                stack.append((value.values(), level + 1))
            elif isinstance(value, list):
                if level >= MAX_PROPERTY_DEPTH:
                    return True
                stack.append((value, level + 1))
    return False


def _over_limits(values: Iterable[object]) -> bool:
    """Whether the values of a properties object hold a string over 1,024 characters or nest past 40."""
    return _beyond_limits(values, 1, MAX_STRING_LENGTH)


def _too_deep(value: object) -> bool:
    """Whether `value`, a list or dict being layer 1, nests past 40 layers."""
    return _beyond_limits((value,), 0, math.inf)


def _operations_valid(operations: JSON) -> bool:
    """Whether each operation holds a dict, $add only numbers, and no property appears twice."""
    seen: set[str] = set()
    for operation, values in operations.items():
        if operation == "$clearAll":
            continue  # its value is a placeholder, usually "-"
        if not isinstance(values, dict) or not seen.isdisjoint(values) or _over_limits(values.values()):
            return False
        if operation == "$add" and not all(_is_number(v) for v in values.values()):
            return False
        seen.update(values)
    return True


def _operations(props: JSON) -> JSON:
    """Properties as {operation: {name: value}}: a dict without operations is one $set."""
    return {"$set": props} if USER_OPERATIONS.isdisjoint(props) else props


def _properties_valid(props: object, allowed: frozenset[str]) -> bool:
    """Whether Amplitude takes `props`: plain properties, or only operations among `allowed`."""
    if not isinstance(props, dict):
        return False
    if not USER_OPERATIONS.isdisjoint(props) and not allowed.issuperset(props):
        return False  # Amplitude refuses operations mixed with plain properties
    return _operations_valid(_operations(props))


def _is_name(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip()) and len(value) <= MAX_STRING_LENGTH


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_id(value: object, min_length: int) -> bool:
    return (
        isinstance(value, str)
        and min_length <= len(value) <= MAX_STRING_LENGTH
        and value.strip().lower() not in JUNK_IDS
    )


def _id_faults(item: JSON, min_length: int, *, required: bool = True) -> _FieldFaults:
    """Bad user_id/device_id values, and "user_id" as missing when the item has neither."""
    user_id, device_id = item.get("user_id"), item.get("device_id")
    invalid: list[str] = []
    if user_id is not None and not _valid_id(user_id, min_length):
        invalid.append("user_id")
    if device_id is not None and not _valid_id(device_id, min_length):
        invalid.append("device_id")
    return invalid, ["user_id"] if required and user_id is None and device_id is None else []


def _identify_faults(item: JSON) -> _FieldFaults:
    """What Amplitude would refuse in one /identify item."""
    invalid, missing = _id_faults(item, DEFAULT_MIN_ID_LENGTH)
    props = item.get("user_properties")
    if props is not None and not _properties_valid(props, USER_OPERATIONS):
        invalid.append("user_properties")
    return invalid, missing


def _group_faults(item: JSON) -> _FieldFaults:
    """What Amplitude would refuse in one /groupidentify item."""
    invalid: list[str] = []
    missing: list[str] = []
    for name in ("group_type", "group_value"):
        if item.get(name) is None:
            missing.append(name)
        elif not _is_name(item[name]):
            invalid.append(name)
    props = item.get("group_properties")
    if props is not None and not _properties_valid(props, GROUP_OPERATIONS):
        invalid.append("group_properties")
    return invalid, missing


def _valid_groups(groups: object) -> bool:
    """Whether `groups` maps group types to a group value or a list of them."""
    if not isinstance(groups, dict) or not groups:
        return False
    values = [v for value in groups.values() for v in _as_list(value)]
    return all(_is_name(k) for k in groups) and bool(values) and all(_is_name(v) for v in values)


def _event_property_faults(event: JSON) -> list[str]:
    """Bad user_properties, and for $groupidentify bad groups/group_properties."""
    faults: list[str] = []
    props = event.get("user_properties")
    if event.get("event_type") == "$identify":
        valid = props is None or _properties_valid(props, USER_OPERATIONS)
    else:  # operations only count on $identify; elsewhere user_properties is a plain dict
        valid = props is None or (isinstance(props, dict) and not _over_limits(props.values()))
    faults += [] if valid else ["user_properties"]
    if event.get("event_type") == "$groupidentify":
        faults += [] if _valid_groups(event.get("groups")) else ["groups"]
        group_props = event.get("group_properties")
        if group_props is not None and not _properties_valid(group_props, GROUP_OPERATIONS):
            faults.append("group_properties")
    return faults


def _deep_fields(event: JSON) -> list[str]:
    """The fields nested past 40 layers, but for properties that _event_property_faults checks."""
    # Those hold operations, whose own layer does not count.
    checked = _OPERATION_FIELDS if event.get("event_type") == "$groupidentify" else _USER_FIELD
    containers = (dict, list)  # a tuple: isinstance takes it faster than a union, on every field
    return [
        name
        for name, value in event.items()
        if isinstance(value, containers) and name not in checked and _too_deep(value)
    ]


def _event_faults(event: JSON, min_length: int) -> _FieldFaults:
    """What Amplitude would refuse in one HTTP V2 / Batch event."""
    event_type = event.get("event_type")
    # The official SDK sends $groupidentify without ids; only the group matters.
    invalid, missing = _id_faults(event, min_length, required=event_type != "$groupidentify")
    if event_type is None:
        missing.append("event_type")
    elif not _is_name(event_type):
        invalid.append("event_type")
    if "time" in event and not _is_int(event["time"]):
        invalid.append("time")  # ms since epoch only; ISO strings get a 400
    invalid += _event_property_faults(event)
    invalid += [name for name in _deep_fields(event) if name not in invalid]  # "groups" can be both
    return invalid, missing


def _min_id_length(options: object) -> int:
    """The request's options.min_id_length, or Amplitude's default of 5."""
    value = options.get("min_id_length") if isinstance(options, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return DEFAULT_MIN_ID_LENGTH


# --- fault injection ------------------------------------------------------------------------

# Only Amplitude's ingestion endpoints fail on purpose; inspection and key checks never do.
INGESTION_PATHS = frozenset({"/identify", "/groupidentify", "/2/httpapi", "/batch"})
MAX_SLOW_SECONDS = 3600.0
THROTTLE_EPS = 31  # events/s reported for each throttled id: just over the threshold below
# Events/s per user or device: 30 on HTTP V2 (https://amplitude.com/docs/apis/analytics/http-v2),
# 1,000 on Batch (https://amplitude.com/docs/apis/analytics/batch-event-upload); a 429's eps_threshold.
THROTTLE_THRESHOLD = 30
BATCH_THROTTLE_THRESHOLD = 1000
MAX_RETRY_AFTER_SECONDS = 3600
QUOTA_WINDOW_HOURS = 24  # the daily quota's rolling window, in the hourly steps Amplitude counts in


class Fault(StrEnum):
    """A failure the sandbox injected, as named by the "fault" field of `SandboxStore.requests()`."""

    THROTTLE = "throttle"  # 429 with Amplitude's throttling body; nothing applied
    ERROR_500 = "error_500"  # nothing applied
    ERROR_503 = "error_503"  # nothing applied
    INGEST_THEN_500 = "ingest_then_500"  # applied in full, then answered 500
    DROP = "drop"  # the connection closed without an answer; nothing applied
    TOO_LARGE = "max_body_bytes"  # 413 because of Faults.max_body_bytes
    DAILY_QUOTA = "daily_quota"  # 429 because an id reached Faults.daily_quota; nothing applied


# A request meets at most one of these: their probabilities share one draw.
_OUTCOMES = (Fault.THROTTLE, Fault.ERROR_500, Fault.ERROR_503, Fault.INGEST_THEN_500, Fault.DROP)
_PROBABILITIES = (*(fault.value for fault in _OUTCOMES), "slow")
_LABELS = {
    Fault.THROTTLE: "429 throttled",
    Fault.ERROR_500: "500",
    Fault.ERROR_503: "503",
    Fault.INGEST_THEN_500: "applied then 500",
    Fault.DROP: "dropped connection",
}


@dataclass(frozen=True, slots=True)
class Faults:
    """Failures injected into ingestion requests; each probability is per request, from 0 to 1.

    throttle, error_500, error_503, ingest_then_500 and drop exclude one another, so they add up
    to at most 1. slow delays any answer by slow_seconds. max_body_bytes answers 413 above that
    size in place of the usual limit. seed makes the sequence of draws repeatable. retry_after
    adds a `Retry-After: N` header (whole seconds) to the throttle's 429s. daily_quota refuses,
    with Amplitude's 429, HTTP V2 and Batch requests holding a user_id or device_id that has
    that many events in the last 24 hours.
    """

    throttle: float = 0.0
    error_500: float = 0.0
    error_503: float = 0.0
    ingest_then_500: float = 0.0
    drop: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 1.0
    max_body_bytes: int | None = None
    seed: int | None = None
    retry_after: int | None = None
    daily_quota: int | None = None

    def __post_init__(self) -> None:
        problems = _fault_problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_json(cls, data: object) -> Faults:
        """Faults from a JSON object of settings (absent ones are off); ValueError if invalid."""
        if not isinstance(data, dict):
            raise ValueError('send a JSON object of fault settings, e.g. {"throttle": 0.1}')
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown settings {', '.join(unknown)}; the known ones: {', '.join(known)}")
        # Refused before the checks, whose messages show each value: showing a deeply nested one
        # would recurse as deep as it nests.
        nested = sorted(name for name, value in data.items() if isinstance(value, list | dict))
        if nested:
            raise ValueError(f"{', '.join(nested)} must be numbers, not JSON arrays or objects")
        return cls(**data)

    def to_json(self) -> JSON:
        """The settings as a JSON object, as GET /sandbox/faults answers."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def outcome(self, roll: float) -> Fault | None:
        """The outcome a uniform `roll` in [0, 1) picks, or None for the normal answer."""
        edge = 0.0
        for fault in _OUTCOMES:
            edge += getattr(self, fault.value)
            if roll < edge:
                return fault
        return None

    @property
    def active(self) -> bool:
        """Whether any request can fail, be slow, or meet the injected size limit or daily quota."""
        chances = (getattr(self, name) for name in _PROBABILITIES)
        return any(chances) or self.max_body_bytes is not None or self.daily_quota is not None

    def describe(self) -> str:
        """The settings in words, e.g. "429 throttled 10%, 500 5%, slow 20% (2 s)"."""
        chances = [(fault, getattr(self, fault.value)) for fault in _OUTCOMES]
        parts = [f"{_LABELS[fault]} {_percent(p)}" for fault, p in chances if p]
        if self.throttle and self.retry_after is not None:
            parts[0] += f" (Retry-After {self.retry_after} s)"
        if self.slow:
            parts.append(f"slow {_percent(self.slow)} ({self.slow_seconds:g} s)")
        if self.max_body_bytes is not None:
            parts.append(f"413 above {self.max_body_bytes:,} bytes")
        if self.daily_quota is not None:
            parts.append(f"429 past {self.daily_quota:,} events per user or device in 24 h")
        return ", ".join(parts) or "no failures"


def _percent(probability: float) -> str:
    return f"{probability * 100:.3g}%"


def _is_probability(value: object) -> bool:
    # NaN and infinities fail the comparison.
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1


def _fault_problems(faults: Faults) -> list[str]:
    """What is wrong with these settings, in words; empty when they are valid."""
    problems = [
        f"{name} must be a probability from 0 to 1, not {getattr(faults, name)!r}"
        for name in _PROBABILITIES
        if not _is_probability(getattr(faults, name))
    ]
    total = sum(getattr(faults, f.value) for f in _OUTCOMES) if not problems else 0.0
    if total > 1 + 1e-9:  # a little slack for float sums such as 0.1 + 0.2 + 0.7
        problems.append(
            f"throttle, error_500, error_503, ingest_then_500 and drop add up to {total:g}, but a "
            "request fails in one way at most, so they must add up to 1 or less"
        )
    seconds = faults.slow_seconds
    if not (isinstance(seconds, int | float) and not isinstance(seconds, bool)) or not (
        0 <= seconds <= MAX_SLOW_SECONDS
    ):
        problems.append(f"slow_seconds must be from 0 to {MAX_SLOW_SECONDS:g} seconds, not {seconds!r}")
    limit = faults.max_body_bytes
    if limit is not None and not (_is_int(limit) and limit >= 1):
        problems.append(f"max_body_bytes must be a whole number of bytes, at least 1, not {limit!r}")
    if faults.seed is not None and not _is_int(faults.seed):
        problems.append(f"seed must be a whole number, not {faults.seed!r}")
    wait = faults.retry_after
    if wait is not None and not (_is_int(wait) and 0 <= wait <= MAX_RETRY_AFTER_SECONDS):
        problems.append(
            f"retry_after must be a whole number of seconds from 0 to {MAX_RETRY_AFTER_SECONDS}, not {wait!r}"
        )
    quota = faults.daily_quota
    if quota is not None and not (_is_int(quota) and quota >= 1):
        problems.append(f"daily_quota must be a whole number of events, at least 1, not {quota!r}")
    return problems


_WHOLE_NUMBERS = frozenset({"max_body_bytes", "seed", "retry_after", "daily_quota"})


def parse_faults(texts: Mapping[str, str], names: Mapping[str, str] | None = None) -> Faults:
    """Faults from settings written as text, as on a command line.

    A ValueError says what is wrong, calling each setting by its entry in `names` (for example
    the CLI's flags) when there is one.
    """
    names = names or {}
    values: dict[str, Any] = {}
    for field, text in texts.items():
        whole = field in _WHOLE_NUMBERS
        try:
            values[field] = int(text) if whole else float(text)
        except ValueError:
            kind = "a whole number" if whole else "a number"
            raise ValueError(f"{names.get(field, field)} expects {kind}, not {text!r}") from None
    try:
        return Faults.from_json(values)
    except ValueError as exc:  # every value is a number now: only setting names can match
        pattern = r"\b(" + "|".join(map(re.escape, names)) + r")\b"
        raise ValueError(re.sub(pattern, lambda m: names[m[1]], str(exc)) if names else str(exc)) from None


@dataclass(frozen=True, slots=True)
class _Draw:
    """What one ingestion request meets: an outcome (None: normal), a delay, a body limit."""

    outcome: Fault | None = None
    delay: float = 0.0
    max_body_bytes: int | None = None
    retry_after: int | None = None


class _FaultDice:
    """The current Faults and a random source seeded from them; thread-safe, changeable live."""

    def __init__(self, faults: Faults) -> None:
        self._lock = threading.Lock()
        self._faults = faults
        self._rng = random.Random(faults.seed)

    def get(self) -> Faults:
        with self._lock:
            return self._faults

    def set(self, faults: Faults) -> None:
        """Use `faults` from the next request on, with the draws restarted from its seed."""
        with self._lock:
            self._faults, self._rng = faults, random.Random(faults.seed)

    def draw(self) -> _Draw:
        # Two draws per request, always, so a seed gives the same sequence whatever is enabled.
        with self._lock:
            faults, roll, slow_roll = self._faults, self._rng.random(), self._rng.random()
        delay = faults.slow_seconds if slow_roll < faults.slow else 0.0
        return _Draw(faults.outcome(roll), delay, faults.max_body_bytes, faults.retry_after)


# --- store ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Profile:
    """One Amplitude user: a user_id and/or the devices merged onto it."""

    user_id: str | None
    device_ids: list[str]
    properties: JSON

    def public(self) -> JSON:
        return {
            "user_id": self.user_id,
            "device_ids": list(self.device_ids),
            "user_properties": copy.deepcopy(self.properties),
        }

    def sort_key(self) -> tuple[bool, str, str]:
        return (self.user_id is None, self.user_id or "", next(iter(self.device_ids), ""))


@dataclass(frozen=True, slots=True)
class _OverQuota:
    """The ids of a request that reached the daily quota, with their counts, and their events."""

    users: dict[str, int]
    devices: dict[str, int]
    events: list[int]


class _DailyCounts:
    """Events per user_id and per device_id in hourly steps, for the rolling 24 h daily quota."""

    def __init__(self) -> None:
        self._hours: dict[tuple[str, str], Counter[int]] = {}  # (id field, id) -> {hour: events}

    def clear(self) -> None:
        self._hours.clear()

    def over(self, events: list[JSON], quota: int, now: float) -> _OverQuota | None:
        """The ids among `events` with `quota` events or more in the window; None if there are none."""
        hour = _hour(now)
        counts: dict[tuple[str, str], int] = {}
        indexes: list[int] = []
        for index, event in enumerate(events):
            ids = _ids(event)
            for key in ids:
                if key not in counts:
                    counts[key] = self._count(key, hour)
            if any(counts[key] >= quota for key in ids):
                indexes.append(index)
        if not indexes:
            return None
        over = {key: n for key, n in counts.items() if n >= quota}
        users = {value: n for (name, value), n in over.items() if name == "user_id"}
        devices = {value: n for (name, value), n in over.items() if name == "device_id"}
        return _OverQuota(users, devices, indexes)

    def _count(self, key: tuple[str, str], hour: int) -> int:
        counts = self._hours.get(key)
        return sum(n for h, n in counts.items() if h > hour - QUOTA_WINDOW_HOURS) if counts else 0

    def add(self, events: Iterable[JSON], now: float) -> None:
        hour = _hour(now)
        for event in events:
            for key in _ids(event):
                counts = self._hours.setdefault(key, Counter())
                counts[hour] += 1
                for old in [h for h in counts if h <= hour - QUOTA_WINDOW_HOURS]:
                    del counts[old]  # out of the window: forgotten, so memory stays bounded


@dataclass(frozen=True, slots=True)
class _Saved:
    """The parts of a store that one request can change, as they were before it."""

    users: dict[str, _Profile | None]
    devices: dict[str, _Profile | None]
    groups: dict[tuple[str, str], JSON | None]
    profiles: list[tuple[_Profile, JSON, list[str]]]  # (profile, its properties, its device ids)
    events: int


class _Unappliable(Exception):
    """An item that cannot be applied to what the store holds, such as a $add past a float's range."""

    def __init__(self, index: int, field: str) -> None:
        super().__init__(f"item {index}: {field} cannot be applied")
        self.index, self.field = index, field


def _ids(event: JSON) -> list[tuple[str, str]]:
    """(field, id) of each user_id and device_id an event holds."""
    return [(name, event[name]) for name in _ID_FIELDS if isinstance(event.get(name), str)]


def _hour(now: float) -> int:
    return int(now // 3600)


class SandboxStore:
    """Everything the sandbox received and built, in memory; one lock makes it thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._by_user: dict[str, _Profile] = {}
        self._by_device: dict[str, _Profile] = {}
        self._groups: dict[tuple[str, str], JSON] = {}
        self._events: list[JSON] = []
        self._insert_ids: set[str] = set()
        self._requests: list[JSON] = []
        self._inactive: set[str] = set()
        self._daily = _DailyCounts()

    def profiles(self) -> list[JSON]:
        """Every profile, by user_id (device-only profiles last), then first device id."""
        with self._lock:
            anonymous = [p for p in self._by_device.values() if p.user_id is None]
            found = sorted([*self._by_user.values(), *anonymous], key=_Profile.sort_key)
            return [profile.public() for profile in found]

    def profile(self, *, user_id: str | None = None, device_id: str | None = None) -> JSON | None:
        """The profile of this user_id (or, if none is given, this device_id), or None."""
        if user_id is None and device_id is None:
            raise ValueError("profile() needs a user_id or a device_id")
        with self._lock:
            found = self._find(user_id, device_id)
            return found.public() if found else None

    def events(self) -> list[JSON]:
        """The events ingested (each once per insert_id), in arrival order."""
        with self._lock:
            return copy.deepcopy(self._events)

    def groups(self) -> list[JSON]:
        """Every group with its properties, sorted by group type then value."""
        with self._lock:
            return [
                {"group_type": kind, "group_value": value, "group_properties": copy.deepcopy(props)}
                for (kind, value), props in sorted(self._groups.items())
            ]

    def requests(self) -> list[JSON]:
        """Every Amplitude API request received: path (no query), status, item count.

        An injected failure adds "fault" (a `Fault` value; a dropped connection has status None)
        and a delayed answer adds "slow_seconds".
        """
        with self._lock:
            return [dict(request) for request in self._requests]

    def reset(self) -> None:
        """Forget everything: profiles, groups, events, insert_ids, requests, inactive types."""
        with self._lock:
            for collection in (self._by_user, self._by_device, self._groups, self._events):
                collection.clear()
            for bag in (self._insert_ids, self._requests, self._inactive):
                bag.clear()
            self._daily.clear()

    def mark_inactive(self, event_type: str, inactive: bool = True) -> None:
        """Flag an event type as inactive (or active again), as Amplitude's Data settings do."""
        with self._lock:
            if inactive:
                self._inactive.add(event_type)
            else:
                self._inactive.discard(event_type)

    def _find(self, user_id: str | None, device_id: str | None) -> _Profile | None:
        if user_id is not None:
            return self._by_user.get(user_id)
        return self._by_device.get(device_id) if device_id is not None else None

    # The methods below take items the server has already validated, and apply them under the lock
    # whole or not at all: validation reads only the request, so an item can still fail against
    # what the store holds (a $add past a float's range), and then the items before it are undone.

    def _record(
        self, path: str, status: int | None, items: int, fault: Fault | None = None, delay: float = 0.0
    ) -> None:
        entry: JSON = {"path": path, "status": status, "items": items}
        if fault is not None:
            entry["fault"] = fault.value
        if delay:
            entry["slow_seconds"] = delay
        with self._lock:
            self._requests.append(entry)

    def _apply_identifications(self, items: list[JSON]) -> None:
        """Apply every /identify item, or none (_Unappliable names the one that failed)."""
        with self._lock, self._all_or_nothing(items):
            for index, item in enumerate(items):
                try:
                    profile = self._resolve(item.get("user_id"), item.get("device_id"))
                    self._update(profile, _operations(item.get("user_properties") or {}))
                except ArithmeticError as exc:
                    raise _Unappliable(index, "user_properties") from exc

    def _apply_group_identifications(self, items: list[JSON]) -> None:
        """Apply every /groupidentify item, or none (_Unappliable names the one that failed)."""
        keys = [(item["group_type"], item["group_value"]) for item in items]
        with self._lock, self._all_or_nothing([], keys):  # groups only: no profile changes
            for index, item in enumerate(items):
                try:
                    operations = _operations(item.get("group_properties") or {})
                    self._update_group(item["group_type"], item["group_value"], operations)
                except ArithmeticError as exc:
                    raise _Unappliable(index, "group_properties") from exc

    def _ingest(self, events: list[JSON], daily_quota: int | None = None) -> int | _OverQuota:
        """Store new events and apply their properties; returns the server time in ms.

        With a daily quota, a request holding an id that has reached it is refused whole: the
        answer is then its ids and events, and nothing is stored.
        """
        with self._lock:
            now = self._clock()
            over = None if daily_quota is None else self._daily.over(events, daily_quota, now)
            if over is not None:
                return over
            received = int(now * 1000)
            keys = [key for event in events for key in _event_groups(event)]
            with self._all_or_nothing(events, keys):
                self._store_events(events, received)
            if daily_quota is not None:  # counted once the request is in
                self._daily.add(events, now)
            return received

    def _store_events(self, events: list[JSON], received: int) -> None:
        for index, event in enumerate(events):
            if self._is_duplicate(event.get("insert_id")):
                continue
            self._events.append({**event, "server_received_time": received})
            try:
                self._apply_event(event)
            except ArithmeticError as exc:
                groups = event["event_type"] == "$groupidentify"
                raise _Unappliable(index, "group_properties" if groups else "user_properties") from exc

    @contextlib.contextmanager
    def _all_or_nothing(
        self, items: list[JSON], group_keys: Iterable[tuple[str, str]] = ()
    ) -> Iterator[None]:
        """Apply a request's `items` inside: if that raises, the store is put back as it was."""
        saved = self._save(items, group_keys)
        try:
            yield
        except BaseException:  # whatever it is, half a request must not stay applied
            self._restore(saved)
            raise

    def _save(self, items: list[JSON], group_keys: Iterable[tuple[str, str]]) -> _Saved:
        """What applying `items` can change, as it is now.

        Applying an item changes only the profiles its ids lead to (or new ones) and the groups it
        names, so those, with the length of the event list, are all that _restore needs.
        """
        ids = [key for item in items for key in _ids(item)]
        users = {value: self._by_user.get(value) for name, value in ids if name == "user_id"}
        devices = {value: self._by_device.get(value) for name, value in ids if name == "device_id"}
        found = {id(p): p for p in (*users.values(), *devices.values()) if p is not None}
        profiles = [(p, p.properties, list(p.device_ids)) for p in found.values()]
        groups = {key: self._groups.get(key) for key in group_keys}
        return _Saved(users, devices, groups, profiles, len(self._events))

    def _restore(self, saved: _Saved) -> None:
        """Undo everything applied since `saved` was taken."""
        for event in self._events[saved.events :]:
            insert_id = event.get("insert_id")
            if isinstance(insert_id, str):  # each stored event added its insert_id, if it had one
                self._insert_ids.discard(insert_id)
        del self._events[saved.events :]
        _put_back(self._by_user, saved.users)
        _put_back(self._by_device, saved.devices)
        _put_back(self._groups, saved.groups)
        for profile, properties, device_ids in saved.profiles:
            # Operations replace a profile's properties dict, never change it, so the old one is intact.
            profile.properties, profile.device_ids = properties, device_ids

    def _event_list(self) -> list[JSON]:
        """Event types with totals and activity, as GET /api/2/events/list lists them."""
        with self._lock:
            names = (e["event_type"] for e in self._events)
            totals = Counter(name for name in names if name not in _IDENTIFY_EVENT_TYPES)
            inactive = self._inactive
            return [
                {
                    "name": n,
                    "totals": c,
                    "non_active": n in inactive,
                    "deleted": False,
                    "display": n,
                }
                for n, c in totals.items()
            ]

    def _is_duplicate(self, insert_id: object) -> bool:
        # Amplitude ignores an insert_id seen in the past 7 days; a sandbox never lives that long.
        if not isinstance(insert_id, str) or not insert_id:
            return False
        if insert_id in self._insert_ids:
            return True
        self._insert_ids.add(insert_id)
        return False

    def _apply_event(self, event: JSON) -> None:
        if event["event_type"] == "$groupidentify":
            operations = _operations(event.get("group_properties") or {})
            for kind, value in _event_groups(event):
                self._update_group(kind, value, operations)
            return
        profile = self._resolve(event.get("user_id"), event.get("device_id"))
        self._update(profile, _event_operations(event))

    def _update_group(self, kind: str, value: str, operations: JSON | None) -> None:
        current = self._groups.get((kind, value), {})
        self._groups[(kind, value)] = _apply_operations(current, operations or {})

    @staticmethod
    def _update(profile: _Profile, operations: JSON | None) -> None:
        if operations:
            profile.properties = _apply_operations(profile.properties, operations)

    def _resolve(self, user_id: str | None, device_id: str | None) -> _Profile:
        """The profile these ids land on, created or merged as Amplitude merges users."""
        if user_id is None:
            return self._device_profile(cast(str, device_id))
        profile = self._by_user.get(user_id)
        if profile is None:
            profile = self._by_user[user_id] = _Profile(user_id, [], {})
        if device_id is not None:
            self._attach(profile, device_id)
        return profile

    def _device_profile(self, device_id: str) -> _Profile:
        profile = self._by_device.get(device_id)
        if profile is None:
            profile = self._by_device[device_id] = _Profile(None, [device_id], {})
        return profile

    def _attach(self, profile: _Profile, device_id: str) -> None:
        """Put `device_id` on the user's profile, merging an anonymous device profile into it."""
        current = self._by_device.get(device_id)
        if current is profile:
            return
        if current is not None and current.user_id is None:
            # Logging in merges the device's anonymous history; the user's own values win.
            profile.properties = {**current.properties, **profile.properties}
        elif current is not None:
            current.device_ids.remove(device_id)  # a shared device follows its latest user
        profile.device_ids.append(device_id)
        self._by_device[device_id] = profile


def _event_groups(event: JSON) -> list[tuple[str, str]]:
    """The (group type, group value) pairs a validated $groupidentify event sets; none for others."""
    if event["event_type"] != "$groupidentify":
        return []
    return [(kind, value) for kind, values in event["groups"].items() for value in _as_list(values)]


_Key = TypeVar("_Key")
_Value = TypeVar("_Value")


def _put_back(table: dict[_Key, _Value], saved: dict[_Key, _Value | None]) -> None:
    """Give each key of `saved` its saved value again, or none (None: it had none)."""
    for key, value in saved.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


def _event_operations(event: JSON) -> JSON | None:
    """The user-property operations an ingested event carries, if any."""
    props = event.get("user_properties")
    if event["event_type"] == "$identify":
        return _operations(props or {})
    # Backfills set this flag so old values do not overwrite the live profile (§3).
    if not props or event.get("$skip_user_properties_sync") is True:
        return None
    return {"$set": props}


# --- HTTP -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Reply:
    """An HTTP answer: a str body goes as text/plain, anything else as JSON."""

    status: int
    body: JSON | list[Any] | str
    items: int = 0
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class _Request:
    path: str
    query: dict[str, list[str]]
    authorization: str | None
    body: bytes


@dataclass(frozen=True, slots=True)
class _Limits:
    items: int
    body_bytes: int


@dataclass(frozen=True, slots=True)
class _App:
    store: SandboxStore
    api_keys: dict[str, str | None]
    limits: dict[str, _Limits]
    max_body_bytes: int
    faults: _FaultDice
    host: str  # the host it was started on, as a Host header names it: lower case, no brackets

    def body_limit(self, path: str, draw: _Draw) -> int:
        if draw.max_body_bytes is not None:
            return draw.max_body_bytes
        limits = self.limits.get(path)
        return limits.body_bytes if limits else self.max_body_bytes


def _error(status: int, message: str, **extra: Any) -> _Reply:
    return _Reply(status, {"code": status, "error": message, **extra})


def _too_large(items: int = 0) -> _Reply:
    return _Reply(413, {"code": 413, "error": "Payload too large"}, items)


class _NestedTooDeep:
    """What _parse_json answers for JSON nested deeper than json.loads can go."""


_TOO_DEEP = _NestedTooDeep()


def _parse_json(data: str | bytes | None) -> Any:
    """The decoded JSON value; None when `data` is absent or not JSON, _TOO_DEEP when too deep."""
    if not data:
        return None
    try:
        return json.loads(data)
    except RecursionError:  # it recurses once per level, and gives up near the recursion limit
        return _TOO_DEEP
    except ValueError:
        return None


def _too_deep_json() -> _Reply:
    return _error(400, f"Invalid JSON: nested too deep (Amplitude takes {MAX_PROPERTY_DEPTH} layers at most)")


def _json_object(data: bytes) -> JSON | None:
    parsed = _parse_json(data)
    return parsed if isinstance(parsed, dict) else None


def _is_object_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def _form(body: bytes) -> dict[str, str]:
    """The first value of each form field, url-encoded or multipart (Amplitude takes both)."""
    if body.startswith(b"--"):
        return _multipart(body)
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def _multipart(body: bytes) -> dict[str, str]:
    boundary = body.split(b"\r\n", 1)[0]
    fields: dict[str, str] = {}
    for part in body.split(boundary)[1:]:
        if part.startswith(b"--"):  # the closing boundary
            break
        head, _, value = part.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        if name:
            text = value[:-2] if value.endswith(b"\r\n") else value
            fields.setdefault(name[1].decode("utf-8", "replace"), text.decode("utf-8", errors="replace"))
    return fields


def _identifications(parsed: Any) -> list[JSON] | None:
    """The parsed `identification` field as a list of objects, or None if missing or malformed."""
    items = [parsed] if isinstance(parsed, dict) else parsed
    return items if _is_object_list(items) and items else None


def _key_refusal(app: _App, api_key: object) -> _Reply | None:
    """Amplitude's 400 for a missing or unknown API key; None when the key is accepted."""
    if not api_key:
        return _error(400, "Request missing required field", missing_field="api_key")
    if not isinstance(api_key, str):  # not shown: a deeply nested value would recurse to be shown
        return _error(400, "Invalid API key: not a string")
    if api_key not in app.api_keys:
        return _error(400, f"Invalid API key: {api_key}")
    return None


def _rejection(items: list[JSON], faults_of: Callable[[JSON], _FieldFaults]) -> _Reply | None:
    """Amplitude's 400 listing every bad item by field, or None when all items are good."""
    invalid: dict[str, list[int]] = {}
    missing: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        bad, absent = faults_of(item)
        for name in bad:
            invalid.setdefault(name, []).append(index)
        for name in absent:
            missing.setdefault(name, []).append(index)
    return _refused(invalid, missing, len(items)) if invalid or missing else None


def _refused(invalid: dict[str, list[int]], missing: dict[str, list[int]], items: int) -> _Reply:
    """Amplitude's 400 for bad items: the indexes of the items with each bad or missing field."""
    body = {
        "code": 400,
        "error": "Invalid field values on some events",
        "events_with_invalid_fields": invalid,
        "events_with_missing_fields": missing,
    }
    return _Reply(400, body, items)


def _not_applied(exc: _Unappliable, items: int) -> _Reply:
    """The 400 naming the item that could not be applied; the store has undone those before it."""
    return _refused({exc.field: [exc.index]}, {}, items)


def _form_endpoint(
    app: _App,
    request: _Request,
    faults_of: Callable[[JSON], _FieldFaults],
    apply: Callable[[list[JSON]], None],
) -> _Reply:
    """/identify and /groupidentify: form fields api_key and identification."""
    form = _form(request.body)
    refused = _key_refusal(app, form.get("api_key"))
    if refused:
        return refused
    parsed = _parse_json(form.get("identification"))
    if parsed is _TOO_DEEP:
        return _too_deep_json()
    items = _identifications(parsed)
    if items is None:
        return _error(400, "missing_event")
    if len(items) > app.limits[request.path].items:
        return _too_large(len(items))
    rejection = _rejection(items, faults_of)
    if rejection:
        return rejection
    try:
        apply(items)
    except _Unappliable as exc:
        return _not_applied(exc, len(items))
    return _Reply(200, "success", len(items))


def _handle_identify(app: _App, request: _Request) -> _Reply:
    return _form_endpoint(app, request, _identify_faults, app.store._apply_identifications)


def _handle_group_identify(app: _App, request: _Request) -> _Reply:
    return _form_endpoint(app, request, _group_faults, app.store._apply_group_identifications)


def _events_payload(request: _Request) -> JSON | _Reply:
    """The JSON object of an HTTP V2 or Batch body, or the 400 that refuses the body."""
    parsed = _parse_json(request.body)
    if isinstance(parsed, dict):
        return parsed
    if parsed is _TOO_DEEP:
        return _too_deep_json()
    return _error(400, "Invalid JSON request body" if request.body else "Missing request body")


def _handle_events(app: _App, request: _Request) -> _Reply:
    """/2/httpapi and /batch: a JSON body {api_key, events, options}."""
    payload = _events_payload(request)
    if isinstance(payload, _Reply):
        return payload
    refused = _key_refusal(app, payload.get("api_key"))
    if refused:
        return refused
    events = payload.get("events")
    if not events:
        return _error(400, "Request missing required field", missing_field="events")
    if not _is_object_list(events):
        return _error(400, "Invalid event JSON")
    if len(events) > app.limits[request.path].items:
        return _too_large(len(events))
    min_length = _min_id_length(payload.get("options"))
    rejection = _rejection(events, partial(_event_faults, min_length=min_length))
    if rejection:
        return rejection
    try:
        received = app.store._ingest(events, app.faults.get().daily_quota)
    except _Unappliable as exc:
        return _not_applied(exc, len(events))
    if isinstance(received, _OverQuota):
        return _over_quota(request.path, len(events), received)
    # events_ingested counts every event sent, duplicates of earlier insert_ids included: that is
    # what Amplitude reports, so clients cannot use it to detect de-duplication.
    body = {"code": 200, "events_ingested": len(events), "payload_size_bytes": len(request.body)}
    return _Reply(200, {**body, "server_upload_time": received}, len(events))


def _over_quota(path: str, items: int, over: _OverQuota) -> _Reply:
    """Amplitude's 429 for ids past their daily quota (batch-event-upload "Daily limit").

    Those ids are not over the per-second rate, so, as in Amplitude's example, throttled_users and
    throttled_devices leave them out; throttled_events lists the events that hold them.
    """
    body = {
        "code": 429,
        "error": "Too many requests for some devices and users",
        "eps_threshold": _eps_threshold(path),
        "throttled_devices": {},
        "throttled_users": {},
        "exceeded_daily_quota_users": over.users,
        "exceeded_daily_quota_devices": over.devices,
        "throttled_events": over.events,
    }
    return _Reply(429, body, items)


def _eps_threshold(path: str) -> int:
    return BATCH_THROTTLE_THRESHOLD if path == "/batch" else THROTTLE_THRESHOLD


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(api_key, secret_key) from an HTTP Basic Authorization header."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = b64decode(token.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error and UnicodeDecodeError are both ValueErrors
        return None
    api_key, colon, secret = decoded.partition(":")
    return (api_key, secret) if colon else None


def _authorized(app: _App, header: str | None) -> bool:
    credentials = _basic_credentials(header)
    if credentials is None:
        return False
    expected = app.api_keys.get(credentials[0])
    return expected is not None and hmac.compare_digest(expected.encode(), credentials[1].encode())


def _handle_event_list(app: _App, request: _Request) -> _Reply:
    if not _authorized(app, request.authorization):
        return _Reply(401, {"error": "Invalid credentials"})
    return _Reply(200, {"data": app.store._event_list()})


def _handle_user_properties(app: _App, request: _Request) -> _Reply:
    """Amplitude's Taxonomy API list of user properties, from the properties the profiles hold.

    https://amplitude.com/docs/apis/analytics/taxonomy ("Get all user properties")
    """
    if not _authorized(app, request.authorization):
        return _Reply(401, {"error": "Invalid credentials"})
    names = sorted({name for p in app.store.profiles() for name in p.get("user_properties", {})})
    described = [
        {"user_property": n, "description": "", "type": "", "enum_values": "", "regex": "",
         "is_array_type": False, "classifications": []}
        for n in names
    ]  # fmt: skip
    return _Reply(200, {"success": True, "data": described})


def _first(query: dict[str, list[str]], name: str) -> str | None:
    return query[name][0] if query.get(name) else None


def _handle_profiles(app: _App, request: _Request) -> _Reply:
    """All profiles, or a list of the one matching ?user_id= or ?device_id= (maybe empty)."""
    user_id, device_id = _first(request.query, "user_id"), _first(request.query, "device_id")
    if user_id is None and device_id is None:
        return _Reply(200, app.store.profiles())
    found = app.store.profile(user_id=user_id, device_id=device_id)
    return _Reply(200, [found] if found else [])


def _handle_inactive(app: _App, request: _Request) -> _Reply:
    payload = _json_object(request.body) or {}
    event_type, inactive = payload.get("event_type"), payload.get("inactive", True)
    if not isinstance(event_type, str) or not _is_name(event_type) or not isinstance(inactive, bool):
        return _error(400, 'Send JSON {"event_type": "<name>", "inactive": true or false}')
    app.store.mark_inactive(event_type, inactive)
    return _Reply(200, {"code": 200})


def _handle_reset(app: _App, request: _Request) -> _Reply:
    app.store.reset()
    return _Reply(200, {"code": 200})


def _handle_set_faults(app: _App, request: _Request) -> _Reply:
    try:
        faults = Faults.from_json(_parse_json(request.body))
    except ValueError as exc:
        return _error(400, f"Invalid fault settings: {exc}")
    app.faults.set(faults)
    return _Reply(200, faults.to_json())


_Handle = Callable[[_App, _Request], _Reply]
_ROUTES: dict[tuple[str, str], _Handle] = {
    ("POST", "/identify"): _handle_identify,
    ("POST", "/groupidentify"): _handle_group_identify,
    ("POST", "/2/httpapi"): _handle_events,
    ("POST", "/batch"): _handle_events,
    ("GET", "/api/2/events/list"): _handle_event_list,
    ("GET", "/api/2/taxonomy/user-property"): _handle_user_properties,
    ("GET", "/sandbox/profiles"): _handle_profiles,
    ("GET", "/sandbox/events"): lambda app, _: _Reply(200, app.store.events()),
    ("GET", "/sandbox/groups"): lambda app, _: _Reply(200, app.store.groups()),
    ("GET", "/sandbox/requests"): lambda app, _: _Reply(200, app.store.requests()),
    ("POST", "/sandbox/reset"): _handle_reset,
    ("POST", "/sandbox/inactive"): _handle_inactive,
    ("GET", "/sandbox/faults"): lambda app, _: _Reply(200, app.faults.get().to_json()),
    ("POST", "/sandbox/faults"): _handle_set_faults,
    ("GET", "/health"): lambda app, _: _Reply(200, "ok"),
}


def _respond(app: _App, method: str, request: _Request, too_large: bool) -> _Reply:
    handle = _ROUTES.get((method, request.path))
    if handle is not None:
        return _too_large() if too_large else handle(app, request)
    allowed = ", ".join(m for m, path in _ROUTES if path == request.path)
    if not allowed:
        return _error(404, "Invalid request path")
    return _Reply(405, {"code": 405, "error": "Method not allowed"}, 0, (("Allow", allowed),))


def _request_items(request: _Request) -> list[JSON]:
    """The identifications or events of an ingestion request; empty when malformed."""
    if request.path in ("/identify", "/groupidentify"):
        return _identifications(_parse_json(_form(request.body).get("identification"))) or []
    events = (_json_object(request.body) or {}).get("events")
    return cast(list[JSON], events) if _is_object_list(events) else []


def _throttled(request: _Request, retry_after: int | None) -> _Reply:
    """Amplitude's 429, with every user and device of the request over the limit (§2)."""
    items = _request_items(request)
    ids = {name: [i[name] for i in items if isinstance(i.get(name), str)] for name in _ID_FIELDS}
    body = {
        "code": 429,
        "error": "Too many requests for some devices and users",
        "eps_threshold": _eps_threshold(request.path),
        "throttled_devices": dict.fromkeys(ids["device_id"], THROTTLE_EPS),
        "throttled_users": dict.fromkeys(ids["user_id"], THROTTLE_EPS),
        "throttled_events": list(range(len(items))),
    }
    headers = () if retry_after is None else (("Retry-After", str(retry_after)),)
    return _Reply(429, body, len(items), headers)


def _answer(
    app: _App, method: str, request: _Request, too_large: bool, draw: _Draw
) -> tuple[_Reply | None, Fault | None]:
    """The reply (None: drop the connection) and the fault injected into it, if any."""
    fault = draw.outcome
    if fault is Fault.DROP:
        return None, fault
    if fault is Fault.THROTTLE:
        return _throttled(request, draw.retry_after), fault
    if fault is Fault.ERROR_500:
        return _error(500, "Internal server error"), fault
    if fault is Fault.ERROR_503:
        return _error(503, "Service unavailable"), fault
    reply = _respond(app, method, request, too_large)
    if fault is Fault.INGEST_THEN_500:
        return _Reply(500, {"code": 500, "error": "Internal server error"}, reply.items), fault
    if reply.status == 429:  # only the daily quota answers 429 without an injected throttle
        return reply, Fault.DAILY_QUOTA
    return reply, Fault.TOO_LARGE if too_large and draw.max_body_bytes is not None else None


def _is_inspection(path: str) -> bool:
    # Not recorded, so that looking at the log does not change it.
    return path == "/health" or path.startswith("/sandbox/")


# --- local-server rules (see the module docstring) -------------------------------------------

# A Host header: "[v6]" or a name or IPv4 address, each with an optional port, or a bare IPv6 address.
_HOST = re.compile(
    r"\[(?P<bracketed>[^\]]*)\](?::\d*)?|(?P<name>[^:\[\]]+)(?::\d*)?|(?P<bare>[0-9a-f:.]+)", re.ASCII
)


def _host_name(header: str) -> str | None:
    """The host a Host header names, without brackets or port ("[::1]:8766" -> "::1"); None if malformed."""
    match = _HOST.fullmatch(header.strip().lower())
    if match is None:
        return None
    return match["bracketed"] or match["name"] or match["bare"] or None


def _is_loopback(host: str) -> bool:
    """Whether a host name or address can only mean this machine: localhost, 127.x.y.z, ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, not an address
        return False


def _foreign_origin(origin: str) -> bool:
    """Whether an Origin header names anything but a page served from a loopback address."""
    try:
        url = urlsplit(origin.strip())
        host = url.hostname
    except ValueError:  # such as an unclosed "["
        return True
    return url.scheme not in ("http", "https") or host is None or not _is_loopback(host)


def _refusal(method: str, path: str, headers: Message, hosts: tuple[str, ...]) -> _Reply | None:
    """The 403 for a request that a web page could have sent, or None to serve it.

    `hosts` are the names, besides loopback ones, that a Host header may give: the host the
    sandbox was started on and the address the connection arrived on.
    """
    host = headers.get("Host") or ""
    name = _host_name(host)
    if name is None or not (_is_loopback(name) or name in hosts):
        return _error(
            403,
            f"Host {host!r} is not this machine: send requests to localhost, 127.0.0.1, [::1] or the "
            "address the sandbox listens on (a web page could point a name of its own at it)",
        )
    origin = headers.get("Origin")
    if origin is not None and _foreign_origin(origin):
        return _error(403, f"Web pages from {origin} may not use the sandbox; only loopback origins may")
    if method == "POST" and path in CONTROL_PATHS and headers.get(CONTROL_HEADER) != CONTROL_VALUE:
        return _error(
            403,
            f"{path} changes the sandbox: send the header {CONTROL_HEADER}: control, which a web page "
            "cannot send (amp_sync.sandbox.set_faults and the app send it)",
        )
    return None


def _content_length(header: str | None) -> int:
    try:
        return max(int(header or 0), 0)
    except ValueError:
        return 0


class _Handler(BaseHTTPRequestHandler):
    """Routes each request; never logs, as query strings and bodies can hold keys."""

    # Keep-alive, as Amplitude's servers: clients send every batch down one connection, where a
    # new connection and handler thread per request would cost more than a small request itself.
    protocol_version = "HTTP/1.1"
    # Each answer leaves in one write, with Nagle off: otherwise a small answer written in two
    # parts waits for the client's delayed ACK (~40 ms on Linux) on a kept-alive connection.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_OPTIONS(self) -> None:
        # A browser's CORS preflight: answered without any Access-Control-Allow-* header, so refused.
        self._dispatch("OPTIONS")

    def log_message(self, format: str, *args: Any) -> None:
        """Write nothing: the request line can carry an API key in its query string."""

    def setup(self) -> None:
        super().setup()
        # Every read and write of the connection times out: a client that connects and then sends
        # nothing, or half a request, is dropped when it runs out instead of holding a thread.
        self.connection.settimeout(cast(_Server, self.server).idle_timeout)

    def _dispatch(self, method: str) -> None:
        app = cast(_Server, self.server).app
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        local_address = str(self.connection.getsockname()[0])
        refusal = _refusal(method, path, self.headers, (app.host, local_address))
        if refusal is None:
            self._serve(app, method, path, url.query)
        else:  # not recorded: it never reached the Amplitude API that the sandbox stands in for
            self._read_body(app.body_limit(path, _Draw()))  # read, so the connection stays in step
            self._send(refusal)

    def _serve(self, app: _App, method: str, path: str, query: str) -> None:
        draw = app.faults.draw() if method == "POST" and path in INGESTION_PATHS else _Draw()
        body = self._read_body(app.body_limit(path, draw))
        auth = self.headers.get("Authorization")
        request = _Request(path, parse_qs(query), auth, body or b"")
        if draw.delay:
            time.sleep(draw.delay)  # the injected slow answer: this thread is the "network"
        reply, fault = _answer(app, method, request, body is None, draw)
        if not _is_inspection(path):
            status, items = (reply.status, reply.items) if reply else (None, 0)
            app.store._record(path, status, items, fault, draw.delay)
        if reply is None:
            self._drop()
        else:
            self._send(reply)

    def _drop(self) -> None:
        """Close the connection without answering, as a network failure or a dying server does."""
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client may have gone already
            self.connection.shutdown(socket.SHUT_RDWR)

    def _read_body(self, limit: int) -> bytes | None:
        """The request body, or None when it is over `limit` bytes."""
        if self.headers.get("Transfer-Encoding"):
            # A chunked body is not read (Content-Length is 0), so what follows is no request.
            self.close_connection = True
        length = _content_length(self.headers.get("Content-Length"))
        if length <= limit:
            return self.rfile.read(length)
        # Read what the client sent before answering, else it sees a reset instead of our 413.
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                break
            length -= len(chunk)
        return None

    def _send(self, reply: _Reply) -> None:
        if isinstance(reply.body, str):
            data, content_type = reply.body.encode(), "text/plain; charset=utf-8"
        else:
            data, content_type = json.dumps(reply.body).encode(), "application/json"
        self.send_response(reply.status)
        for name, value in (("Content-Type", content_type), *reply.headers):
            self.send_header(name, value)
        if self.close_connection:  # say so, or the client may send its next request down it
            self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client must never keep the process alive
    # socketserver's default backlog of 5 drops connections when several senders connect at
    # once, and each dropped one then waits a 1 s SYN retry.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: _App, idle_timeout: float) -> None:
        super().__init__(address, _Handler)
        self.app = app
        self.idle_timeout = idle_timeout

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that resets or drops its connection mid-request is ordinary for a stand-in that
        # takes injected faults and killed runs: it is not worth a traceback in the terminal.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class Sandbox:
    """A sandbox server bound at construction and served from a daemon thread; a context manager."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_keys: dict[str, str | None] | None = None,
        max_identifications: int = 1000,
        max_body_bytes: int = 1_000_000,
        max_events: int = MAX_EVENTS,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        """Bind at `host`:`port` (0: any free port); `idle_timeout` seconds of silence close a connection."""
        self.store = SandboxStore(clock)
        self._faults = _FaultDice(faults or Faults())
        keys: dict[str, str | None] = (
            {SANDBOX_API_KEY: SANDBOX_SECRET_KEY} if api_keys is None else dict(api_keys)
        )
        limits = {
            "/identify": _Limits(max_identifications, max_body_bytes),
            "/groupidentify": _Limits(MAX_GROUP_IDENTIFICATIONS, max_body_bytes),
            "/2/httpapi": _Limits(max_events, max_body_bytes),
            "/batch": _Limits(max_events, BATCH_MAX_BODY_BYTES),
        }
        app = _App(self.store, keys, limits, max_body_bytes, self._faults, host.strip("[]").lower())
        self._server = _Server((host, port), app, idle_timeout)
        self.url = f"http://{host}:{self._server.server_port}"
        self._thread: threading.Thread | None = None

    @property
    def faults(self) -> Faults:
        """The failures injected now."""
        return self._faults.get()

    def set_faults(self, faults: Faults) -> None:
        """Inject `faults` from the next request on (Faults() for none); draws restart from its seed."""
        self._faults.set(faults)

    def start(self) -> Sandbox:
        """Serve in a daemon thread (once); returns self."""
        if self._thread is None:
            # A short poll interval lets close() return within ~50 ms, keeping test suites fast.
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="amp-sync-sandbox",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve(host: str, port: int, api_keys: dict[str, str | None], faults: Faults | None = None) -> None:
    """Serve a sandbox in the foreground until Ctrl+C (the `amp-sync sandbox` command)."""
    # This process is only the sandbox, so the collector's settings are its own to choose. Its
    # store grows by a few objects per profile or event and never forms reference cycles; with the
    # default thresholds, full collections sweeping the whole store took about a third of the
    # sandbox's CPU time in a large backfill. Fewer of them change nothing else.
    gc.set_threshold(*FULL_COLLECTION_THRESHOLDS)
    sandbox = Sandbox(host, port, api_keys, faults=faults)
    print(f"Amplitude sandbox listening on {sandbox.url}", flush=True)
    if faults is not None and faults.active:
        print(f"Simulating Amplitude failures: {faults.describe()}", flush=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C is how the user stops it
            sandbox._server.serve_forever()
    finally:
        sandbox._server.server_close()


def fetch(base_url: str, what: str = "profiles", timeout: float = 5.0) -> list[JSON]:
    """Read a running sandbox's profiles, events, groups or requests over HTTP."""
    if what not in ("profiles", "events", "groups", "requests"):
        raise ValueError(f"unknown sandbox listing {what!r}")
    request = _control_request(f"{base_url.rstrip('/')}/sandbox/{what}")
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        data = json.loads(resp.read())
    return list(data)


def get_faults(base_url: str, timeout: float = 5.0) -> Faults:
    """The failures a running sandbox injects now (GET /sandbox/faults); DestinationError if none."""
    return _call_faults(_control_request(_faults_url(base_url)), base_url, timeout)


def set_faults(base_url: str, faults: Faults, timeout: float = 5.0) -> Faults:
    """Make a running sandbox inject `faults` (Faults() for none); returns what it now injects."""
    request = _control_request(_faults_url(base_url), faults.to_json())
    return _call_faults(request, base_url, timeout)


def _control_request(url: str, body: JSON | None = None) -> urllib.request.Request:
    """A GET, or a POST of `body`, with the header that tells the sandbox no web page sent it."""
    if body is None:
        return urllib.request.Request(url, headers=dict(CONTROL_HEADERS))
    headers = {**CONTROL_HEADERS, "Content-Type": "application/json"}
    return urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")


def _faults_url(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/sandbox/faults"


def _call_faults(request: urllib.request.Request, base_url: str, timeout: float) -> Faults:
    """The Faults a sandbox answers with, every failure said as a DestinationError."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return Faults.from_json(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:  # before OSError: it is one
        error = (_json_object(exc.read()) or {}).get("error") or exc.reason
        raise DestinationError(f"the sandbox at {base_url} answered {exc.code}: {error}") from exc
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DestinationError(
            f"could not reach the sandbox at {base_url} ({reason}); start it with `amp-sync sandbox`"
        ) from exc
    except ValueError as exc:  # JSON that is not fault settings
        raise DestinationError(f"{base_url} does not answer like an amp_sync sandbox ({exc})") from exc


def is_running(base_url: str, timeout: float = 1.0) -> bool:
    """True when a sandbox answers at `base_url`."""
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/health", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False
